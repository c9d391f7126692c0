"""Test fixture: ``torch_quantizer`` as vai_q_pytorch spells it, with power-of-two int8 fake quantization.

``calib`` records the largest absolute output and ``export_quant_config`` writes it to
``<output_dir>/quant_info.json``; ``test`` reads it and rounds the outputs to int8 steps of a power-of-two
scale; ``export_xmodel`` writes ``<output_dir>/MBConvNet_int.xmodel`` as the JSON the stand-in vai_c_xir
reads. ``NNDCT_STANDIN_MODE=fail`` makes calibration raise, ``noxmodel`` exports nothing. As the real
one, ``quant_model`` is a property that wraps the module anew on each read, and ``export_xmodel``
refuses before a test-mode forward pass and after one at a batch other than 1.
"""

import json
import math
import os

import torch


class _Quantizer:
    def __init__(self, mode, module, input_args, output_dir, target):
        self.mode = mode
        self.module = module
        self.output_dir = output_dir
        self.target = target
        self.peak = 0.0
        self.forward_batches = []
        self.wrapped = 0  # reads of quant_model
        self.info = os.path.join(output_dir, "quant_info.json")
        if mode == "test":
            with open(self.info, encoding="utf-8") as fh:
                peak = json.load(fh)["peak"]
            self.scale = 2.0 ** math.ceil(math.log2(max(peak, 1e-6) / 127.0))

    @property
    def quant_model(self):
        self.wrapped += 1
        return self._forward

    def _forward(self, x):
        self.forward_batches.append(int(x.shape[0]))
        if os.environ.get("NNDCT_STANDIN_MODE") == "fail":
            raise RuntimeError("[NNDCT_OP_NOT_SUPPORTED] stand-in refuses this graph\nsecond line")
        y = self.module(x)
        if self.mode == "calib":
            self.peak = max(self.peak, float(y.abs().max()))
            return y
        return torch.clamp(torch.round(y / self.scale), -128, 127) * self.scale

    def export_quant_config(self):
        with open(self.info, "w", encoding="utf-8") as fh:
            json.dump({"peak": self.peak, "target": self.target}, fh)

    def export_xmodel(self, output_dir="quantize_result", deploy_check=False):
        if not self.forward_batches:
            raise RuntimeError("[QUANTIZER_TORCH_NO_FORWARD] run a forward pass in test mode before export_xmodel")
        if set(self.forward_batches) != {1}:
            raise RuntimeError("[QUANTIZER_TORCH_XMODEL_BATCHSIZE] batch size must be 1 when exporting xmodel")
        if os.environ.get("NNDCT_STANDIN_MODE") == "noxmodel":
            return
        with open(os.path.join(output_dir, "MBConvNet_int.xmodel"), "w", encoding="utf-8") as fh:
            json.dump({"frame_ms": 2.5, "batch": 1, "graph": "MBConvNet", "target": self.target}, fh)


def torch_quantizer(
    quant_mode,
    module,
    input_args=None,
    state_dict_file=None,
    output_dir="quantize_result",
    bitwidth=8,
    device=None,
    quant_config_file=None,
    target=None,
):
    return _Quantizer(quant_mode, module, input_args, output_dir, target)
