"""``tpu/torch_xla``: the legacy PyTorch/XLA path, used where ``import torch_xla`` works.

PyTorch/XLA has had no release since December 2025, and that release pins an older torch, so the
target is usually listed unavailable with the import error. Where it imports, the eager
module is moved to the XLA device; PyTorch/XLA traces lazily and compiles each new graph on its
first execution, so the compile step is a first traced call, and every timed call ends with
``torch_xla.sync(wait=True)`` (``xm.mark_step()`` + ``xm.wait_device_ops()`` on releases before
``sync`` took ``wait``), which returns once the device has finished.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from accelnas.core.errors import first_line
from accelnas.core.provenance import package_version
from accelnas.plugins.tpu_xla.detect import allow_cpu, require_platform, scan_pci
from accelnas.plugins.tpu_xla.options import XlaOptions
from accelnas.plugins.tpu_xla.program import XlaProgram, random_input

log = logging.getLogger(__name__)

MODULE = "torch_xla"
DEPRECATION = "PyTorch/XLA's last release (December 2025) needs an older torch"


@lru_cache(maxsize=1)
def import_problem() -> str | None:
    """Why ``torch_xla`` cannot be used here (None when it imports)."""
    if importlib.util.find_spec(MODULE) is None:
        return f"torch_xla is not installed ({DEPRECATION}; tpu/jax covers the same network)"
    try:
        importlib.import_module(MODULE)
        importlib.import_module("torch_xla.core.xla_model")
    except Exception as exc:  # a binary built for another torch fails in many ways
        first = first_line(exc)
        return f"torch_xla {package_version('torch-xla') or ''} does not import: {type(exc).__name__}: {first}"
    return None


def sync(torch_xla: Any, xm: Any) -> None:
    """Run the pending graph and wait for the device."""
    try:
        torch_xla.sync(wait=True)
    except (AttributeError, TypeError):  # releases without torch_xla.sync or its wait argument
        xm.mark_step()
        xm.wait_device_ops()


def device_of(torch_xla: Any, xm: Any) -> Any:
    """The first XLA device: ``torch_xla.device()``, or ``xm.xla_device()`` on releases before it."""
    device = getattr(torch_xla, "device", None)
    return device() if callable(device) else xm.xla_device()


class TorchXlaProgram(XlaProgram):
    """The eager PyTorch module on the first XLA device (TPU, or CPU when allowed)."""

    backend = "torch_xla"
    compile_step = "first traced call + torch_xla.sync(wait=True)"

    def __init__(self, model: Any, input_size: int, options: XlaOptions) -> None:
        if not scan_pci().present and allow_cpu():
            os.environ.setdefault("PJRT_DEVICE", "CPU")  # PyTorch/XLA's CPU client, read when the runtime starts
        import torch
        import torch_xla
        import torch_xla.core.xla_model as xm
        import torch_xla.runtime as xr

        platform = str(xr.device_type()).lower()
        require_platform(platform)
        self._torch, self._torch_xla, self._xm = torch, torch_xla, xm
        self._device = device_of(torch_xla, xm)
        self._dtype = torch.bfloat16 if options.bf16 else torch.float32
        self._model = model.to(self._device, dtype=self._dtype).eval()
        if options.all_devices:
            log.warning("tpu/torch_xla measures one device; devices=all is ignored")
        super().__init__(
            input_size=input_size,
            options=XlaOptions(dtype=options.dtype),
            platform=platform,
            device_kind=_device_kind(xm, self._device),
            devices=[str(self._device)],
            versions={"torch_xla": package_version("torch-xla"), "libtpu": package_version("libtpu")},
        )

    def _run(self, x: Any) -> Any:
        with self._torch.no_grad():
            out = self._model(x)
        sync(self._torch_xla, self._xm)
        return out

    def _compile(self, batch: int) -> Callable[[], Any]:
        x = self._torch.from_numpy(random_input(batch, self.input_size)).to(self._device, dtype=self._dtype)
        self._run(x)  # traces and compiles the graph of this shape
        return lambda: self._run(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.runner(x.shape[0])
        out = self._run(self._torch.from_numpy(x).to(self._device, dtype=self._dtype))
        return out.float().cpu().numpy()


def _device_kind(xm: Any, device: Any) -> str:
    """``xm.xla_device_kind`` ("TPU v4"), or the hardware type on releases without it."""
    try:
        return str(xm.xla_device_kind(device))
    except AttributeError:
        return str(xm.xla_device_hw(device))
