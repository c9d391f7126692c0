"""vai_q_pytorch in the Vitis AI container's own Python: rebuild the network, calibrate, export the xmodel.

Run by :mod:`accelnas.plugins.fpga_vitis.quantize` as ``<ACCELNAS_VAI_PYTHON> vai_q_worker.py JOB.json``
(the ``vitis-ai-pytorch`` conda environment with pytorch_nndct: Python 3.7 and torch 1.12.1 in Vitis AI
3.0, Python 3.8 and torch 1.13.1 in 3.5). Standalone on purpose: no accelnas imports and nothing newer
than Python 3.7 and torch 1.12. The job (JSON) names

* ``blocks``: accelnas' ``core/_torch_blocks.py``, which builds the network from ``network``;
* ``network``: the plain network description (JSON); ``weights``: its state (``.npz``);
* ``images``: the calibration images (``.npy``, NCHW float32); ``output_dir``; ``target``: the DPU
  (passed to ``torch_quantizer`` where it accepts one; may be empty).

It writes ``<output_dir>/<Model>_int.xmodel``, ``float_logits.npy`` and ``quant_logits.npy`` (the
float and int8 logits of the calibration images) and ``result.json`` next to the job. A failure
prints one line ``vai_q_worker: <Type>: <message>`` on stderr and exits with status 1.
"""

from __future__ import annotations

import glob
import importlib.util
import inspect
import json
import os
import platform
import sys
import traceback

PREFIX = "vai_q_worker: "


def _load_blocks(path):
    spec = importlib.util.spec_from_file_location("accelnas_torch_blocks", path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load the network builder " + str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(job):
    import numpy as np
    import torch

    blocks = _load_blocks(job["blocks"])
    with open(job["network"], encoding="utf-8") as fh:
        description = json.load(fh)
    model = blocks.build(description)
    with np.load(job["weights"], allow_pickle=False) as npz:
        state = {name: torch.from_numpy(np.array(npz[name])) for name in npz.files}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _logits(model, images):
    import numpy as np
    import torch

    outs = []
    with torch.no_grad():
        for i in range(len(images)):
            outs.append(model(torch.from_numpy(images[i : i + 1])).float().numpy())
    return np.concatenate(outs)


def quantize_model(model, images, out_dir, target=""):
    """vai_q_pytorch on ``model`` (eval mode): calibrate on ``images`` (NCHW float32), then export
    ``<Model>_int.xmodel`` into ``out_dir``; return (its path or None, the int8 logits, the target
    passed to ``torch_quantizer``). Also called in-process by the plugin where accelnas and
    pytorch_nndct share one Python."""
    import torch
    from pytorch_nndct.apis import torch_quantizer

    example = (torch.from_numpy(images[:1]),)
    kwargs = {"output_dir": str(out_dir), "device": torch.device("cpu")}
    if target and "target" in inspect.signature(torch_quantizer).parameters:
        kwargs["target"] = target  # target-aware quantization (Vitis AI >= 3.0)
    calib = torch_quantizer("calib", model, example, **kwargs)
    quantized = calib.quant_model  # a property that wraps the module anew on each read
    with torch.no_grad():
        for i in range(len(images)):
            quantized(torch.from_numpy(images[i : i + 1]))
    calib.export_quant_config()
    test = torch_quantizer("test", model, example, **kwargs)
    logits = _logits(test.quant_model, images)
    test.export_xmodel(output_dir=str(out_dir), deploy_check=False)
    found = sorted(glob.glob(os.path.join(str(out_dir), "*_int.xmodel")))
    return (found[0] if found else None), logits, kwargs.get("target")


def run(job):
    """Quantize the job's network; return what ``result.json`` holds."""
    import numpy as np
    import torch

    out_dir = job["output_dir"]
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    model = _build(job)
    images = np.ascontiguousarray(np.load(job["images"], allow_pickle=False), dtype=np.float32)
    np.save(os.path.join(out_dir, "float_logits.npy"), _logits(model, images))
    xmodel, logits, target = quantize_model(model, images, out_dir, job.get("target") or "")
    np.save(os.path.join(out_dir, "quant_logits.npy"), logits)
    if xmodel is None:
        raise RuntimeError("vai_q_pytorch exported no *_int.xmodel into " + out_dir)
    nndct = sys.modules.get("pytorch_nndct")
    return {
        "xmodel": xmodel,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_nndct": getattr(nndct, "__version__", None),
        "target": target,
    }


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(PREFIX + "usage: vai_q_worker.py JOB.json\n")
        return 2
    try:
        with open(argv[1], encoding="utf-8") as fh:
            job = json.load(fh)
        result = run(job)
        with open(job["result"], "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    except BaseException as exc:  # every failure becomes one line for the parent
        if isinstance(exc, SystemExit) and not exc.code:
            raise
        traceback.print_exc()
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        sys.stderr.write(PREFIX + type(exc).__name__ + ": " + (lines[0] if lines else "no message") + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
