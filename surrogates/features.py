"""Feature encodings of architectures for surrogate models (named, so artifacts can record them).

* ``raw``: ``[e, k, l, se]`` per stage (28 columns), the paper's encoding.
* ``onehot``: per stage one-hot of expansion, kernel and layers, plus se (64 columns).
* ``raw+products``: raw plus per-stage ``l*e``, ``l*k``, ``l*se``, ``l*e*k^2`` (56 columns).
* ``additive``: the design matrix of a per-layer additive cost model: per stage, one-hot of
  (e, k, se) for the first layer and the same one-hot weighted by the remaining ``l - 1`` layers
  (168 columns). A linear model on it is "cost = sum of the costs of the layers".
* ``additive-compact``: the same per-layer additive structure with each layer's cost linear in
  ``1, e, k², e·k², se, e·se`` (84 columns): fewer coefficients, so it learns from fewer
  measurements (a layer's MACs are exactly linear in these).
* ``analytic``: raw plus per-stage analytic costs (expand, depthwise, squeeze-excite, project and
  BatchNorm MACs, parameters, activation volumes), layers per stage and totals (99 columns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from accelnas.core.errors import SurrogateError
from accelnas.core.model import BN_MACS, block_specs, count_macs, count_params
from accelnas.core.space import EXPANSIONS, FEATURE_NAMES, KERNELS, LAYERS, NUM_STAGES, Architecture

_COMBOS = [(e, k, se) for e in EXPANSIONS for k in KERNELS for se in (False, True)]
_COMBO_INDEX = {c: i for i, c in enumerate(_COMBOS)}


def raw(archs: Sequence[Architecture]) -> np.ndarray:
    return np.asarray([a.to_vector() for a in archs], dtype=np.float64).reshape(len(archs), len(FEATURE_NAMES))


def onehot(archs: Sequence[Architecture]) -> np.ndarray:
    width = sum(len(EXPANSIONS) + len(KERNELS) + len(LAYERS[i]) + 1 for i in range(NUM_STAGES))
    out = np.zeros((len(archs), width))
    for row, a in enumerate(archs):
        col = 0
        for i, s in enumerate(a.stages):
            out[row, col + EXPANSIONS.index(s.e)] = 1
            col += len(EXPANSIONS)
            out[row, col + KERNELS.index(s.k)] = 1
            col += len(KERNELS)
            out[row, col + LAYERS[i].index(s.l)] = 1
            col += len(LAYERS[i])
            out[row, col] = float(s.se)
            col += 1
    return out


def raw_products(archs: Sequence[Architecture]) -> np.ndarray:
    extra = np.asarray(
        [[v for s in a.stages for v in (s.l * s.e, s.l * s.k, s.l * s.se, s.l * s.e * s.k * s.k)] for a in archs],
        dtype=np.float64,
    ).reshape(len(archs), 4 * NUM_STAGES)
    return np.hstack([raw(archs), extra])


def additive(archs: Sequence[Architecture]) -> np.ndarray:
    per_stage = 2 * len(_COMBOS)
    out = np.zeros((len(archs), NUM_STAGES * per_stage))
    for row, a in enumerate(archs):
        for i, s in enumerate(a.stages):
            c = i * per_stage + _COMBO_INDEX[(s.e, s.k, s.se)]
            out[row, c] = 1.0
            out[row, c + len(_COMBOS)] = s.l - 1
    return out


def additive_compact(archs: Sequence[Architecture]) -> np.ndarray:
    out = np.zeros((len(archs), NUM_STAGES * 12))
    for row, a in enumerate(archs):
        for i, s in enumerate(a.stages):
            terms = (1.0, s.e, s.k**2, s.e * s.k**2, float(s.se), s.e * float(s.se))
            for pos, count in enumerate((1.0, s.l - 1.0)):
                start = i * 12 + pos * 6
                out[row, start : start + 6] = [count * t for t in terms]
    return out


@lru_cache(maxsize=65536)
def _analytic_row(arch: Architecture) -> tuple[float, ...]:
    """Per stage: expand, depthwise, squeeze-excite, project and BatchNorm MACs, parameters, hidden
    and block activations (millions); then layers per stage and totals."""
    costs = np.zeros((NUM_STAGES, 8))
    size = 112  # after the stem
    for b in block_specs(arch):
        h, area_in = b.hidden, size * size
        row = costs[b.stage]
        params = 0
        if b.expansion != 1:
            row[0] += area_in * h * b.in_channels
            row[4] += BN_MACS * area_in * h
            params += b.in_channels * h + 2 * h
        size = (size + 2 * (b.kernel // 2) - b.kernel) // b.stride + 1
        area = size * size
        row[1] += area * h * b.kernel**2
        row[4] += BN_MACS * area * h
        params += h * b.kernel**2 + 2 * h
        if b.se:
            row[2] += (area + 1) * h + 2 * b.squeeze * h
            params += 2 * h * b.squeeze + b.squeeze + h
        row[3] += area * b.out_channels * h
        row[4] += BN_MACS * area * b.out_channels
        params += h * b.out_channels + 2 * b.out_channels
        row[5] += params
        row[6] += h * (area_in + area) + (h * area_in if b.expansion != 1 else 0)
        row[7] += b.in_channels * area_in + b.out_channels * area
    layers = [s.l for s in arch.stages]
    totals = (
        count_macs(arch) / 1e6,
        count_params(arch) / 1e6,
        float(sum(layers)),
        float(sum(s.l for s in arch.stages if s.se)),
        (costs[:, 6].sum() + costs[:, 7].sum()) / 1e6,
        costs[:, 1].sum() / 1e6,
        (costs[:, 0].sum() + costs[:, 3].sum()) / 1e6,
        costs[:, 2].sum() / 1e6,
    )
    return (*arch.to_vector(), *(costs.ravel() / 1e6), *map(float, layers), *totals)


def analytic(archs: Sequence[Architecture]) -> np.ndarray:
    return np.asarray([_analytic_row(a) for a in archs], dtype=np.float64)


ENCODINGS: dict[str, Callable[[Sequence[Architecture]], np.ndarray]] = {
    "raw": raw,
    "onehot": onehot,
    "raw+products": raw_products,
    "additive": additive,
    "additive-compact": additive_compact,
    "analytic": analytic,
}


def encode(archs: Sequence[Architecture], encoding: str) -> np.ndarray:
    """Feature matrix of ``archs`` under the named encoding."""
    try:
        fn = ENCODINGS[encoding]
    except KeyError:
        raise SurrogateError(f"unknown feature encoding {encoding!r} (known: {', '.join(ENCODINGS)})") from None
    return fn(archs)
