"""Feature encodings of architectures for surrogate models (named, so artifacts can record them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from accelnas.core.errors import SurrogateError
from accelnas.core.space import FEATURE_NAMES, NUM_STAGES, Architecture


def raw(archs: Sequence[Architecture]) -> np.ndarray:
    """``[e, k, l, se]`` per stage, 28 columns."""
    return np.asarray([a.to_vector() for a in archs], dtype=np.float32).reshape(len(archs), len(FEATURE_NAMES))


def raw_products(archs: Sequence[Architecture]) -> np.ndarray:
    """Raw features plus per-stage ``l*e``, ``l*k``, ``l*se`` and ``l*e*k^2`` (work done by each stage)."""
    extra = np.asarray(
        [[v for s in a.stages for v in (s.l * s.e, s.l * s.k, s.l * s.se, s.l * s.e * s.k * s.k)] for a in archs],
        dtype=np.float32,
    ).reshape(len(archs), 4 * NUM_STAGES)
    return np.hstack([raw(archs), extra])


ENCODINGS: dict[str, Callable[[Sequence[Architecture]], np.ndarray]] = {
    "raw": raw,
    "raw+products": raw_products,
}


def encode(archs: Sequence[Architecture], encoding: str) -> np.ndarray:
    try:
        fn = ENCODINGS[encoding]
    except KeyError:
        raise SurrogateError(f"unknown feature encoding {encoding!r} (known: {', '.join(ENCODINGS)})") from None
    return fn(archs)
