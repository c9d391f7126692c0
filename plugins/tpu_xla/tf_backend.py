"""``tpu/tensorflow``: the Keras model of :mod:`.keras_net` compiled by XLA through TensorFlow.

On a TPU VM (a TPU on the PCI bus) the TPU system is opened with ``TPUClusterResolver(tpu="local")``
and the model runs under ``TPUStrategy``: one replica by default (a one-core device assignment),
every core with ``devices=all`` (the batch is split over the replicas). Elsewhere, when allowed,
it runs on the CPU under ``tf.function(jit_compile=True)``, i.e. through XLA's CPU backend.

The input lives in a device variable, so timed calls move no images; each call returns the
logits and their sum, and reading that scalar back to the host is what blocks until the device is
done. XLA compiles on the first execution, so the recorded compile time is tracing plus that
first call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from accelnas.core.provenance import package_version
from accelnas.core.records import ExportedModel
from accelnas.core.space import Architecture
from accelnas.plugins.tpu_xla.detect import XlaPlatformError, require_platform, scan_pci
from accelnas.plugins.tpu_xla.keras_net import build_keras_model, copy_torch_weights, import_keras, trainable_params
from accelnas.plugins.tpu_xla.options import XlaOptions, split_batch
from accelnas.plugins.tpu_xla.program import XlaProgram, random_input

log = logging.getLogger(__name__)

FORMAT = "keras"
_tpu_topology: list[Any] = []  # the TPU system is initialised once per process


def tf_versions() -> dict[str, Any]:
    return {
        "tensorflow": package_version("tensorflow")
        or package_version("tensorflow-cpu")
        or package_version("tensorflow-tpu"),
        "keras": package_version("keras"),
        "libtpu": package_version("libtpu") or package_version("libtpu-nightly"),
    }


def export_keras(arch: Architecture, torch_model: Any, input_size: int, options: XlaOptions) -> ExportedModel:
    """Build the Keras model of ``arch`` and copy ``torch_model``'s weights into it."""
    from accelnas.core.model import count_params

    model = build_keras_model(arch, input_size, bf16=options.bf16)
    params = trainable_params(model)
    expected = count_params(arch)
    if params != expected:
        raise ValueError(f"Keras model of {arch.id} has {params} parameters, the PyTorch model {expected}")
    copied = copy_torch_weights(model, torch_model)
    return ExportedModel(format=FORMAT, obj=model, input_name="images", info={"params": params, "layers": copied})


def _tpu_strategy(all_devices: bool) -> tuple[Any, str, list[str]]:
    import tensorflow as tf

    if not _tpu_topology:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
            tf.config.experimental_connect_to_cluster(resolver)
            _tpu_topology.append((resolver, tf.tpu.experimental.initialize_tpu_system(resolver)))
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise XlaPlatformError(f"a TPU is attached but TensorFlow could not open it: {exc}") from exc
    resolver, topology = _tpu_topology[0]
    assignment = None if all_devices else tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=1)
    strategy = tf.distribute.TPUStrategy(resolver, experimental_device_assignment=assignment)
    devices = [d.name for d in tf.config.list_logical_devices("TPU")]
    kind = scan_pci().kind or "TPU"
    return strategy, kind, devices if all_devices else devices[:1]


class TfProgram(XlaProgram):
    """One Keras model compiled per batch size; TPUStrategy on a TPU, XLA's CPU backend otherwise."""

    backend = "tensorflow"

    def __init__(self, model: Any, input_size: int, options: XlaOptions) -> None:
        import tensorflow as tf

        self._tf = tf
        self._exported = model
        self._strategies: dict[bool, tuple[Any, Any]] = {}  # parallel? -> (strategy, model in its scope)
        self._steps: dict[int, tuple[Any, Any, Any]] = {}  # batch -> (step function, input variable, strategy)
        if scan_pci().present:
            strategy, kind, devices = _tpu_strategy(options.all_devices)
            platform = "tpu"
            self._strategies[options.all_devices] = (strategy, self._clone_into(strategy))
        else:
            require_platform("cpu")
            platform, kind = "cpu", "cpu"
            devices = [d.name for d in tf.config.list_logical_devices("CPU")][:1]
            self._strategies[False] = (tf.distribute.get_strategy(), model)
        jit = "TPUStrategy tf.function" if platform == "tpu" else "tf.function(jit_compile=True)"
        self.compile_step = f"{jit}: trace + first call"
        super().__init__(
            input_size=input_size,
            options=options,
            platform=platform,
            device_kind=kind,
            devices=devices,
            versions=tf_versions(),
        )

    def _clone_into(self, strategy: Any) -> Any:
        keras = import_keras()
        with strategy.scope():
            clone = keras.models.clone_model(self._exported)
            clone.set_weights(self._exported.get_weights())
        return clone

    def _strategy(self, parallel: bool) -> tuple[Any, Any]:
        if parallel not in self._strategies:
            strategy = _tpu_strategy(parallel)[0]  # only reached on a TPU with devices=all
            self._strategies[parallel] = (strategy, self._clone_into(strategy))
        return self._strategies[parallel]

    def _compile(self, batch: int) -> Callable[[], Any]:
        tf = self._tf
        parallel = self.parallel(batch)
        strategy, model = self._strategy(parallel)
        per_replica = split_batch(batch, strategy.num_replicas_in_sync)
        x = random_input(per_replica, self.input_size).transpose(0, 2, 3, 1)
        with strategy.scope():
            images = tf.Variable(x, trainable=False, name=f"images_{batch}")

        def replica_step() -> tuple[Any, Any]:
            logits = model(images, training=False)
            return logits, tf.reduce_sum(tf.cast(logits, tf.float32))

        # TPUStrategy functions always go through XLA; elsewhere jit_compile asks for it
        step = tf.function(lambda: strategy.run(replica_step), jit_compile=None if self.platform == "tpu" else True)
        step.get_concrete_function()
        self._steps[batch] = (step, images, strategy)
        call = self._blocking(step, strategy)
        call()  # XLA compiles on the first execution
        return call

    @staticmethod
    def _blocking(step: Any, strategy: Any) -> Callable[[], Any]:
        def call() -> Any:
            _, total = step()
            return [t.numpy() for t in strategy.experimental_local_results(total)]

        return call

    def predict(self, x: np.ndarray) -> np.ndarray:
        batch = x.shape[0]
        self.runner(batch)
        step, images, strategy = self._steps[batch]
        if strategy.num_replicas_in_sync != 1:
            raise ValueError("predict runs on one replica; use devices=1")
        saved = images.read_value()
        images.assign(x.transpose(0, 2, 3, 1))
        logits = strategy.experimental_local_results(step()[0])[0].numpy()
        images.assign(saved)
        return logits.astype(np.float32)
