"""DPU-friendly activations: SiLU becomes hard-swish and the squeeze-excite sigmoid hard-sigmoid.

The DPUs of ZCU102 (DPUCZDX8G) and VCK190 (DPUCVDX8G) run hard-swish and hard-sigmoid but not
SiLU or sigmoid; left as they are, every SiLU and SE gate runs on the board's CPU with a layout
transpose on each side, splitting the network into dozens of DPU subgraphs. Deployments therefore
swap them before quantization, as done here (option ``fpga_activations``: ``hard``, the default, or
``native`` to keep the network as built).
"""

from __future__ import annotations

import copy
from typing import Any

from accelnas.plugins.fpga_vitis.errors import FpgaError

OPTION = "fpga_activations"
MODES = ("hard", "native")


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`; raise :class:`FpgaError` otherwise."""
    if mode not in MODES:
        raise FpgaError(f"option {OPTION} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def dpu_activations(model: Any, input_size: int, mode: str = "hard") -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` with DPU-friendly activations and re-calibrated BatchNorm, plus what changed."""
    import torch
    from torch import nn

    from accelnas.core.model import calibrate_batchnorm

    if check_mode(mode) == "native":
        return model, {"activations": "native (SiLU, sigmoid)", "swapped": {}}
    swapped = {"SiLU->Hardswish": 0, "Sigmoid->Hardsigmoid": 0}
    out = copy.deepcopy(model)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.SiLU):
                setattr(parent, name, nn.Hardswish())
                swapped["SiLU->Hardswish"] += 1
            elif isinstance(child, nn.Sigmoid):
                setattr(parent, name, nn.Hardsigmoid())
                swapped["Sigmoid->Hardsigmoid"] += 1
    description = getattr(model, "description", None)
    if isinstance(description, dict):  # what a separate process rebuilds the network from (.vai_q_worker)
        out.description = description | {"activation": "hardswish", "gate": "hardsigmoid"}
    with torch.no_grad():
        out = calibrate_batchnorm(out, input_size)
    return out, {"activations": "hard (Hardswish, Hardsigmoid), BatchNorm re-calibrated", "swapped": swapped}
