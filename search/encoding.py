"""Architectures as 28 choice indices (one per Accel-NASBench config key), for optimizers and ConfigSpace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from accelnas.core.errors import InvalidArchitectureError
from accelnas.core.space import EXPANSIONS, FEATURE_NAMES, KERNELS, LAYERS, NUM_STAGES, SE_CHOICES, Architecture


def _position_choices() -> tuple[tuple[str, tuple[Any, ...]], ...]:
    table = []
    for i in range(NUM_STAGES):
        table += [
            (f"block{i}_e", EXPANSIONS),
            (f"block{i}_k", KERNELS),
            (f"block{i}_l", LAYERS[i]),
            (f"block{i}_se", SE_CHOICES),
        ]
    assert tuple(name for name, _ in table) == FEATURE_NAMES
    return tuple(table)


# (config key, allowed values) per position, in the order of accelnas.core.space.FEATURE_NAMES
CHOICES: tuple[tuple[str, tuple[Any, ...]], ...] = _position_choices()
UPPER: np.ndarray = np.array([len(values) - 1 for _, values in CHOICES])


def encode(arch: Architecture) -> np.ndarray:
    """Choice index per position."""
    config = arch.to_config()
    return np.array([values.index(config[name]) for name, values in CHOICES])


def decode(indices: Sequence[float] | np.ndarray) -> Architecture:
    """Architecture of choice indices (floats are rounded, as integer-coded optimizers produce them)."""
    if len(indices) != len(CHOICES):
        raise InvalidArchitectureError(f"expected {len(CHOICES)} choice indices, got {len(indices)}")
    config = {}
    for (name, values), raw in zip(CHOICES, indices, strict=True):
        i = round(float(raw))
        if not 0 <= i < len(values):
            raise InvalidArchitectureError(f"choice index {raw} of {name} is outside 0..{len(values) - 1}")
        config[name] = values[i]
    return Architecture.from_config(config)
