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
from itertools import chain

import numpy as np

from accelnas.core.errors import SurrogateError
from accelnas.core.model import BN_MACS, block_specs, count_macs, count_params
from accelnas.core.space import (
    EFFICIENTNET_B0,
    EXPANSIONS,
    FEATURE_NAMES,
    KERNELS,
    LAYERS,
    NUM_STAGES,
    Architecture,
    Stage,
)

_E = np.array(EXPANSIONS)
_K = np.array(KERNELS)
_MAX_L = max(len(choices) for choices in LAYERS)
_STAGE_COSTS = 8  # expand, depthwise, SE, project, BN MACs; params; hidden and block activations
ADDITIVE_WIDTH = NUM_STAGES * 2 * len(EXPANSIONS) * len(KERNELS) * 2  # columns of the additive encoding


def raw(archs: Sequence[Architecture]) -> np.ndarray:
    """``[e, k, l, se]`` per stage, as :meth:`Architecture.to_vector`."""
    values = chain.from_iterable(a._vector for a in archs)
    width = len(FEATURE_NAMES)
    return np.fromiter(values, dtype=np.float64, count=len(archs) * width).reshape(len(archs), width)


def _columns(R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(e, k, l, se) as (N, 7) arrays from raw rows."""
    return R[:, 0::4], R[:, 1::4], R[:, 2::4], R[:, 3::4]


def onehot(R: np.ndarray) -> np.ndarray:
    e, k, l, se = _columns(R)  # noqa: E741
    cols = []
    for i in range(NUM_STAGES):
        cols += [e[:, i] == v for v in EXPANSIONS] + [k[:, i] == v for v in KERNELS]
        cols += [l[:, i] == v for v in LAYERS[i]] + [se[:, i] == 1]
    return np.stack(cols, axis=1).astype(np.float64)


def raw_products(R: np.ndarray) -> np.ndarray:
    e, k, l, se = _columns(R)  # noqa: E741
    extra = np.stack([l * e, l * k, l * se, l * e * k * k], axis=2).reshape(len(R), 4 * NUM_STAGES)
    return np.hstack([R, extra])


def _combo(e: np.ndarray, k: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Index 0..11 of the (e, k, se) combination of each stage."""
    return (np.searchsorted(_E, e) * len(KERNELS) + np.searchsorted(_K, k)) * 2 + se.astype(np.int64)


def additive(R: np.ndarray) -> np.ndarray:
    e, k, l, se = _columns(R)  # noqa: E741
    combos = len(EXPANSIONS) * len(KERNELS) * 2
    out = np.zeros((len(e), NUM_STAGES, 2, combos))
    rows = np.arange(len(e))[:, None]
    stages = np.arange(NUM_STAGES)[None, :]
    c = _combo(e, k, se)
    out[rows, stages, 0, c] = 1.0
    out[rows, stages, 1, c] = l - 1
    return out.reshape(len(e), ADDITIVE_WIDTH)


def additive_compact(R: np.ndarray) -> np.ndarray:
    e, k, l, se = _columns(R)  # noqa: E741
    terms = np.stack([np.ones_like(e), e, k**2, e * k**2, se, e * se], axis=2)  # (N, 7, 6)
    counts = np.stack([np.ones_like(l), l - 1], axis=2)  # (N, 7, 2)
    return (counts[:, :, :, None] * terms[:, :, None, :]).reshape(len(e), NUM_STAGES * 2 * terms.shape[2])


@lru_cache(maxsize=1)
def _stage_tables() -> tuple[np.ndarray, float, float]:
    """Per stage and (e, k, l, se): summed layer costs (8) and the stage's MACs and parameters in the
    dataset's convention; plus the constant MACs and parameters of stem, head and classifier."""
    table = np.zeros((NUM_STAGES, len(EXPANSIONS), len(KERNELS), _MAX_L, 2, _STAGE_COSTS + 2))
    base = EFFICIENTNET_B0
    for i in range(NUM_STAGES):
        for a, e in enumerate(EXPANSIONS):
            for b, k in enumerate(KERNELS):
                for l in LAYERS[i]:  # noqa: E741
                    for se in (False, True):
                        stages = list(base.stages)
                        stages[i] = Stage(e, k, l, se)
                        costs = _layer_costs(Architecture(tuple(stages)))[i]
                        macs = costs[0] + costs[1] + costs[2] + costs[3] + costs[4]
                        table[i, a, b, l - 1, int(se)] = (*costs, macs, costs[5])
    stage_macs = sum(table[i, EXPANSIONS.index(s.e), KERNELS.index(s.k), s.l - 1, int(s.se), 8]
                     for i, s in enumerate(base.stages))  # fmt: skip
    stage_params = sum(table[i, EXPANSIONS.index(s.e), KERNELS.index(s.k), s.l - 1, int(s.se), 9]
                       for i, s in enumerate(base.stages))  # fmt: skip
    return table, count_macs(base) - stage_macs, count_params(base) - stage_params


def _layer_costs(arch: Architecture) -> np.ndarray:
    costs = np.zeros((NUM_STAGES, _STAGE_COSTS))
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
    return costs


def analytic(R: np.ndarray) -> np.ndarray:
    """Raw, then per stage the expand, depthwise, squeeze-excite, project and BatchNorm MACs,
    parameters, hidden and block activations (millions), layers per stage, and totals: MACs,
    parameters, layers, squeeze-excite layers, activations, depthwise, pointwise and SE MACs."""
    table, const_macs, const_params = _stage_tables()
    e, k, l, se = _columns(R)  # noqa: E741
    idx = (np.arange(NUM_STAGES)[None, :], np.searchsorted(_E, e), np.searchsorted(_K, k),
           l.astype(np.int64) - 1, se.astype(np.int64))  # fmt: skip
    stage = table[idx]  # (N, 7, 10)
    costs = stage[:, :, :_STAGE_COSTS]
    totals = np.stack(
        [
            (stage[:, :, 8].sum(1) + const_macs) / 1e6,
            (stage[:, :, 9].sum(1) + const_params) / 1e6,
            l.sum(1),
            (l * se).sum(1),
            (costs[:, :, 6].sum(1) + costs[:, :, 7].sum(1)) / 1e6,
            costs[:, :, 1].sum(1) / 1e6,
            (costs[:, :, 0].sum(1) + costs[:, :, 3].sum(1)) / 1e6,
            costs[:, :, 2].sum(1) / 1e6,
        ],
        axis=1,
    )
    return np.hstack([R, costs.reshape(len(R), NUM_STAGES * _STAGE_COSTS) / 1e6, l, totals])


ENCODINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": lambda R: R,
    "onehot": onehot,
    "raw+products": raw_products,
    "additive": additive,
    "additive-compact": additive_compact,
    "analytic": analytic,
}


def encode(archs: Sequence[Architecture] | np.ndarray, encoding: str) -> np.ndarray:
    """Feature matrix of ``archs`` (or of their raw rows) under the named encoding."""
    try:
        fn = ENCODINGS[encoding]
    except KeyError:
        raise SurrogateError(f"unknown feature encoding {encoding!r} (known: {', '.join(ENCODINGS)})") from None
    return fn(archs if isinstance(archs, np.ndarray) else raw(archs))
