"""The network of an :class:`~accelnas.core.space.Architecture` as a Keras 3 model (TensorFlow backend).

Layer for layer the same as :func:`accelnas.core.model.build_model` (see ``core/_torch_blocks.py``)
but channels-last (NHWC), the layout TensorFlow's CPU kernels and TPUs want. Padding follows
PyTorch: stride-1 convolutions use ``"same"`` (identical to symmetric ``k // 2`` padding for odd
kernels), while stride-2 ones pad ``k // 2`` on every side explicitly and then convolve ``"valid"``;
TensorFlow's ``"same"`` would pad only the bottom/right there and shift every later activation.
BatchNorm uses PyTorch's epsilon (1e-5).

Every layer holding weights is named after its PyTorch module path with dots replaced by ``_``
(``blocks.3.block.6.reduce`` -> ``blocks_3_block_6_reduce``), which is how
:func:`copy_torch_weights` pairs them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from accelnas.core.model import HEAD_CHANNELS, STEM_CHANNELS, BlockSpec, block_specs
from accelnas.core.space import Architecture
from accelnas.plugins.tpu_xla.options import XlaOptionError

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
NHWC = "channels_last"  # given to each layer: keras.json's image_data_format may say channels_first


def backend_problem(backend: str | None = None) -> str | None:
    """Why tpu/tensorflow cannot run on Keras backend ``backend`` (default: what ``KERAS_BACKEND`` names,
    which wins over keras.json; unset, :func:`import_keras` sets TensorFlow); None for TensorFlow."""
    backend = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend == "tensorflow":
        return None
    return f"tpu/tensorflow needs Keras' TensorFlow backend, but KERAS_BACKEND is {backend!r}"


def import_keras() -> Any:
    """Keras 3 on its TensorFlow backend (the default unless ``KERAS_BACKEND`` names another).

    TensorFlow's C++ INFO lines are silenced unless ``TF_CPP_MIN_LOG_LEVEL`` is set already.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import keras

    if problem := backend_problem(keras.backend.backend()):
        raise XlaOptionError(problem)
    return keras


class _Builder:
    def __init__(self, keras: Any, dtype: Any) -> None:
        self.keras = keras
        self.layers = keras.layers
        self.dtype = dtype

    def conv_bn(self, x: Any, path: str, index: int, cout: int, kernel: int, stride: int, depthwise: bool, act: bool):
        """Conv (no bias) + BN (+ SiLU) as ``_conv_bn`` of the torch blocks; returns (tensor, next index)."""
        L = self.layers
        padding = "same"
        if stride > 1:
            x = L.ZeroPadding2D(kernel // 2, data_format=NHWC, dtype=self.dtype)(x)
            padding = "valid"
        name = f"{path}_{index}"
        if depthwise:
            conv = L.DepthwiseConv2D(
                kernel, stride, padding, use_bias=False, name=name, data_format=NHWC, dtype=self.dtype
            )
        else:
            conv = L.Conv2D(
                cout, kernel, stride, padding, use_bias=False, name=name, data_format=NHWC, dtype=self.dtype
            )
        x = conv(x)
        x = L.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=f"{path}_{index + 1}", dtype=self.dtype)(x)
        index += 2
        if act:
            x = L.Activation("silu", dtype=self.dtype)(x)
            index += 1
        return x, index

    def squeeze_excite(self, x: Any, path: str, channels: int, squeeze: int) -> Any:
        L = self.layers
        g = L.GlobalAveragePooling2D(keepdims=True, data_format=NHWC, dtype=self.dtype)(x)
        g = L.Conv2D(squeeze, 1, name=f"{path}_reduce", data_format=NHWC, dtype=self.dtype)(g)
        g = L.Activation("silu", dtype=self.dtype)(g)
        g = L.Conv2D(channels, 1, name=f"{path}_expand", data_format=NHWC, dtype=self.dtype)(g)
        g = L.Activation("sigmoid", dtype=self.dtype)(g)
        return L.Multiply(dtype=self.dtype)([x, g])

    def mbconv(self, x: Any, i: int, spec: BlockSpec) -> Any:
        path, h, j = f"blocks_{i}_block", spec.hidden, 0
        y = x
        if spec.expansion != 1:
            y, j = self.conv_bn(y, path, j, h, 1, 1, depthwise=False, act=True)
        y, j = self.conv_bn(y, path, j, h, spec.kernel, spec.stride, depthwise=True, act=True)
        if spec.se:
            y = self.squeeze_excite(y, f"{path}_{j}", h, spec.squeeze)
            j += 1
        y, j = self.conv_bn(y, path, j, spec.out_channels, 1, 1, depthwise=False, act=False)
        return self.layers.Add(dtype=self.dtype)([x, y]) if spec.residual else y


def build_keras_model(
    arch: Architecture, input_size: int, num_classes: int = 1000, dropout: float = 0.2, *, bf16: bool = False
) -> Any:
    """A functional ``keras.Model`` mapping NHWC images to logits; ``bf16`` keeps weights and
    activations in bfloat16 (Keras's ``bfloat16`` policy, as ``tpu/jax`` casts its weights), not
    ``mixed_bfloat16``'s float32 weights cast at each use."""
    keras = import_keras()
    dtype = keras.DTypePolicy("bfloat16" if bf16 else "float32")
    b = _Builder(keras, dtype)
    L = keras.layers
    inputs = keras.Input((input_size, input_size, 3), name="images")
    x, _ = b.conv_bn(inputs, "stem", 0, STEM_CHANNELS, 3, 2, depthwise=False, act=True)
    for i, spec in enumerate(block_specs(arch)):
        x = b.mbconv(x, i, spec)
    x, _ = b.conv_bn(x, "head", 0, HEAD_CHANNELS, 1, 1, depthwise=False, act=True)
    x = L.GlobalAveragePooling2D(data_format=NHWC, dtype=dtype)(x)
    x = L.Dropout(dropout, dtype=dtype)(x)
    logits = L.Dense(num_classes, name="classifier", dtype=dtype)(x)
    return keras.Model(inputs, logits, name=f"mbconv_{arch.id.replace('-', '_')}")


def trainable_params(model: Any) -> int:
    """Trainable parameters of a Keras model (BatchNorm moving statistics excluded, as in PyTorch)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def copy_torch_weights(model: Any, torch_model: Any) -> int:
    """Copy every Conv2d, BatchNorm2d and Linear of ``torch_model`` into ``model``; return how many."""
    import torch
    from torch import nn

    copied = 0
    names = {layer.name for layer in model.layers}
    for path, module in torch_model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue
        name = path.replace(".", "_")
        if name not in names:
            raise ValueError(f"the Keras model has no layer {name!r} for torch module {path!r}")
        with torch.no_grad():
            if isinstance(module, nn.Conv2d):
                w = module.weight.numpy()
                depthwise = module.groups > 1
                if depthwise and module.groups != module.in_channels:
                    raise ValueError(f"{path}: grouped convolutions other than depthwise are not supported")
                kernel = w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)
                weights = [kernel] + ([module.bias.numpy()] if module.bias is not None else [])
            elif isinstance(module, nn.BatchNorm2d):
                weights = [t.numpy() for t in (module.weight, module.bias, module.running_mean, module.running_var)]
            else:
                weights = [module.weight.numpy().T, module.bias.numpy()]
        model.get_layer(name).set_weights([np.ascontiguousarray(w, dtype=np.float32) for w in weights])
        copied += 1
    return copied
