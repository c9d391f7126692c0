"""``tpu/jax``: the architecture's PyTorch module run through torchax and compiled by ``jax.jit``.

torchax traces the ``torch.nn.Module`` into a pure JAX function of (weights, inputs); the same
module the other targets measure is thus compiled by XLA, with no second implementation of the
network. Per batch size the function is lowered and compiled explicitly
(``jax.jit(f).lower(...).compile()``), weights and input are placed on the device(s) beforehand,
and each timed call ends with ``jax.block_until_ready``. With ``devices=all`` the batch axis is
sharded over every local device (``NamedSharding`` on a one-axis mesh, weights replicated).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from accelnas.core.provenance import package_version
from accelnas.core.records import ExportedModel
from accelnas.plugins.tpu_xla.detect import XlaPlatformError, require_platform, scan_pci
from accelnas.plugins.tpu_xla.options import XlaOptions, split_batch
from accelnas.plugins.tpu_xla.program import XlaProgram, random_input
from accelnas.plugins.tpu_xla.torchax_compat import import_torchax

log = logging.getLogger(__name__)

FORMAT = "torchax"


def jax_versions() -> dict[str, Any]:
    return {
        "jax": package_version("jax"),
        "jaxlib": package_version("jaxlib"),
        "libtpu": package_version("libtpu") or package_version("libtpu-nightly"),
        "torchax": package_version("torchax"),
    }


def export_torchax(model: Any) -> ExportedModel:
    """Weights (a dict of JAX arrays) and the pure function torchax extracts from ``model``."""
    torchax = import_torchax()
    states, fn = torchax.extract_jax(model)
    params = sum(p.numel() for p in model.parameters())
    return ExportedModel(format=FORMAT, obj=(states, fn), info={"params": params, "weights": len(states)})


def select_devices(all_devices: bool) -> tuple[str, list[Any]]:
    """This host's TPU devices, else (when allowed) the CPU device; one unless ``all_devices``.

    Local devices only: on a multi-host slice ``jax.devices()`` also lists other hosts' chips.
    """
    import jax

    try:
        found = jax.local_devices(backend="tpu")
    except RuntimeError as exc:
        if scan_pci().present:
            raise XlaPlatformError(
                f"a TPU is attached but JAX could not open it (is jax[tpu] installed, the TPU free?): {exc}"
            ) from exc
        found = []
    platform = "tpu"
    if not found:
        require_platform("cpu")
        platform, found = "cpu", jax.local_devices(backend="cpu")
    return platform, list(found if all_devices else found[:1])


def _to_bf16(array: Any) -> Any:
    import jax.numpy as jnp

    return array.astype(jnp.bfloat16) if jnp.issubdtype(array.dtype, jnp.floating) else array


class JaxProgram(XlaProgram):
    """The torchax function of one network, compiled per batch size on the chosen device(s)."""

    backend = "jax"
    compile_step = "jax.jit(f).lower(...).compile()"

    def __init__(self, states: dict[str, Any], fn: Callable, input_size: int, options: XlaOptions) -> None:
        import jax
        import jax.numpy as jnp

        platform, devices = select_devices(options.all_devices)
        self._jax_devices = devices
        self._dtype = jnp.bfloat16 if options.bf16 else jnp.float32
        if options.bf16:
            states = jax.tree.map(_to_bf16, states)
        self._states = states
        self._fn = fn
        self._placed: dict[bool, tuple[Any, Any, Any]] = {}  # parallel? -> (states, weight sharding, input sharding)
        self._executables: dict[int, tuple[Any, Any]] = {}  # batch -> (executable, input sharding)
        super().__init__(
            input_size=input_size,
            options=options,
            platform=platform,
            device_kind=devices[0].device_kind,
            devices=[str(d) for d in devices],
            versions=jax_versions(),
        )

    def _placement(self, parallel: bool) -> tuple[Any, Any, Any]:
        if parallel not in self._placed:
            import jax
            from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

            if parallel:
                mesh = Mesh(np.array(self._jax_devices), ("data",))
                weights, inputs = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
            else:
                weights = inputs = SingleDeviceSharding(self._jax_devices[0])
            self._placed[parallel] = (jax.device_put(self._states, weights), weights, inputs)
        return self._placed[parallel]

    def _put_input(self, x: np.ndarray, sharding: Any) -> Any:
        import jax

        return jax.device_put(x.astype(self._dtype), sharding)

    def _compile(self, batch: int) -> Callable[[], Any]:
        import jax

        parallel = self.parallel(batch)
        if parallel:
            split_batch(batch, len(self._jax_devices))
        states, weights, inputs = self._placement(parallel)
        x = self._put_input(random_input(batch, self.input_size), inputs)
        jitted = jax.jit(self._fn, in_shardings=(weights, (inputs,)), out_shardings=inputs)
        executable = jitted.lower(states, (x,)).compile()
        self._executables[batch] = (executable, inputs)
        return lambda: jax.block_until_ready(executable(states, (x,)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        batch = x.shape[0]
        self.runner(batch)
        executable, inputs = self._executables[batch]
        states = self._placement(self.parallel(batch))[0]
        out = executable(states, (self._put_input(x, inputs),))
        return np.asarray(out.astype("float32"))
