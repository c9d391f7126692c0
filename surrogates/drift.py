"""Measurement drift: offsets shared by measurements taken close together, estimated and removed.

Measurements taken in one session (one host, one runtime build, one board temperature) can share a
factor that has nothing to do with the architecture. Accel-NASBench's TPU throughputs show it:
ordered by record number, the cross-fitted residuals of a surrogate move in runs of hundreds of
records (TPUv2: records 1,150-1,750 about 1.3% low). Such a factor is noise to a model of the
architecture, so before the final fit it is estimated and divided out:

1. cross-fitted residuals: each row's ``log(y) - log(prediction)`` from a model that did not see it;
2. rows sorted by their ``sequence`` (when they were measured: a timestamp or a record number) and
   cut into blocks of ``block`` consecutive measurements;
3. each block's mean residual, shrunk towards zero by how much the block means vary beyond what
   the within-block scatter explains (empirical Bayes): a dataset without drift gets no correction;
4. every value divided by its block's factor ``exp(offset)`` (its std too). ``rounds > 1`` repeats
   steps 1-3 on the corrected values (on Accel-NASBench a second round finds nothing left).

The surrogate then predicts the value of a typical session. Offsets are multiplicative, so the
values must be positive (throughput and latency are).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelnas.core.errors import DatasetError

DRIFTS = ("none", "sequence", "auto")
BLOCK = 50
FOLDS = 5
ROUNDS = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftCorrection:
    """Per-row log offsets and what they say about the dataset."""

    offsets: np.ndarray  # log factor per row
    sequence: np.ndarray  # when each row was measured
    residual: np.ndarray  # the first round's cross-fitted log residuals (centred)
    block: int
    blocks: int
    spread: float  # root mean square of the offsets
    explained: float  # share of the first cross-fitted residuals' variance the offsets account for

    def apply(self, y: np.ndarray) -> np.ndarray:
        """``y`` with each row's session factor divided out."""
        return np.asarray(y, dtype=np.float64) * np.exp(-self.offsets)

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for an artifact's metadata."""
        extremes = (self.offsets.min(), self.offsets.max()) if len(self.offsets) else (0.0, 0.0)
        return {
            "method": "sequence",
            "block": self.block,
            "blocks": self.blocks,
            "spread_pct": round(100 * self.spread, 3),
            "largest_offsets_pct": [round(100 * float(np.expm1(v)), 2) for v in extremes],
            "explained": round(self.explained, 4),
        }


def check_sequence(sequence: Any, n: int) -> np.ndarray:
    """``sequence`` as floats, or a :class:`DatasetError` naming what is missing."""
    if sequence is None:
        raise DatasetError("drift correction needs the dataset's 'sequence' column (when each row was measured)")
    try:
        seq = np.asarray(sequence, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError("drift correction needs numbers in the 'sequence' column (times, record numbers)") from None
    if seq.shape != (n,):
        raise DatasetError(f"drift correction needs one sequence value per row, got {seq.shape} for {n} rows")
    missing = int((~np.isfinite(seq)).sum())
    if missing:
        raise DatasetError(f"drift correction needs a 'sequence' value on every row; {missing} of {n} rows lack one")
    return seq


def check_estimable(y: Any, sequence: Any, block: int = BLOCK) -> np.ndarray:
    """``sequence`` as floats where drift can be estimated from ``y`` and it (a sequence on every row,
    positive values, two blocks of rows); a :class:`DatasetError` naming what is missing otherwise."""
    y = np.asarray(y, dtype=np.float64)
    seq = check_sequence(sequence, len(y))
    if np.any(y <= 0):
        raise DatasetError("drift correction divides out session factors and needs positive values")
    if len(y) < 2 * block:
        raise DatasetError(f"drift correction needs at least {2 * block} rows (two blocks), got {len(y)}")
    return seq


def resolve(drift: str, sequence: Any, n: int) -> str:
    """``"auto"`` as ``"sequence"`` where every row has a sequence and there are two blocks of rows,
    else ``"none"`` (logged); other modes as given."""
    if drift not in DRIFTS:
        raise ValueError(f"drift must be one of {DRIFTS}, got {drift!r}")
    if drift != "auto":
        return drift
    try:
        check_sequence(sequence, n)
    except DatasetError as exc:
        log.info("no drift correction: %s", exc)
        return "none"
    if n < 2 * BLOCK:
        log.info("no drift correction: %d rows are fewer than two blocks of %d", n, BLOCK)
        return "none"
    return "sequence"


def block_offsets(residual: np.ndarray, sequence: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, float, int]:
    """Shrunken mean residual of each run of ``block`` consecutive measurements, per row.

    Returns (offsets, std of the session effect, number of blocks). Offsets have mean zero over
    the rows, so the overall level stays where the data put it.
    """
    if block < 2:
        raise ValueError(f"a drift block needs at least 2 measurements, got {block}")
    r = np.asarray(residual, dtype=np.float64)
    r = r - r.mean()
    ids = np.empty(len(r), dtype=np.int64)
    ids[np.argsort(sequence, kind="stable")] = np.arange(len(r)) // block
    n_blocks = int(ids.max()) + 1 if len(r) else 0
    if n_blocks < 2:
        return np.zeros(len(r)), 0.0, n_blocks
    counts = np.bincount(ids, minlength=n_blocks).astype(np.float64)
    means = np.bincount(ids, weights=r, minlength=n_blocks) / counts
    within = float(np.sum((r - means[ids]) ** 2) / max(len(r) - n_blocks, 1))
    between = max(float(np.average(means**2, weights=counts) - np.average(within / counts, weights=counts)), 0.0)
    shrunk = means * between / (between + within / counts)
    offsets = shrunk[ids]
    return offsets - offsets.mean(), float(np.sqrt(between)), n_blocks


def order_correlation(residual: np.ndarray, sequence: Any, max_lag: int = 10) -> float:
    """Correlation of the residuals of rows measured up to ``max_lag`` places apart.

    Rows are put in measurement order (``sequence``) and each pair of rows 1 … ``max_lag`` places
    apart contributes; residuals are centred once, so this is the share of their variance that rows
    measured close together have in common. Near 0 for residuals that are noise or architecture
    error (where architectures were measured in random order); positive where the values share a
    factor of when they were measured, which a model of the architecture cannot predict (on
    held-out rows it bounds what any such model can score).
    """
    r = np.asarray(residual, dtype=np.float64)
    seq = check_sequence(sequence, len(r))
    if max_lag < 1:
        raise ValueError(f"max_lag must be at least 1, got {max_lag}")
    finite = int(np.isfinite(r).sum())
    if len(r) < 3 or finite < len(r):
        raise ValueError(f"order correlation needs at least 3 residuals, all finite; got {finite} finite of {len(r)}")
    r = r[np.argsort(seq, kind="stable")] - r.mean()
    products = squares = 0.0
    for lag in range(1, min(max_lag, len(r) - 1) + 1):
        a, b = r[:-lag], r[lag:]
        products += float(a @ b)
        squares += float(np.sqrt((a @ a) * (b @ b)))
    return products / squares if squares > 0 else 0.0


def estimate(
    fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    y: np.ndarray,
    sequence: Any,
    *,
    block: int = BLOCK,
    folds: int = FOLDS,
    rounds: int = ROUNDS,
    seed: int = 0,
) -> DriftCorrection:
    """Estimate the drift of ``y`` from cross-fitted residuals.

    ``fit_predict(values, train_rows, test_rows)`` fits a fresh model on ``values[train_rows]`` and
    returns its predictions for ``test_rows`` (row indices into ``y``). Each further round refits
    on the values corrected so far (the models then see less session noise) and adds what is left.
    """
    y = np.asarray(y, dtype=np.float64)
    seq = check_estimable(y, sequence, block)
    if rounds < 1 or folds < 2:
        raise ValueError(f"drift estimation needs rounds >= 1 and folds >= 2, got {rounds} and {folds}")
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    offsets = np.zeros(len(y))
    first: np.ndarray | None = None
    blocks = 0
    for _ in range(rounds):
        values = y * np.exp(-offsets)
        predicted = np.empty(len(y))
        for k in range(folds):
            train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            predicted[test] = fit_predict(values, train, test)
        residual = np.log(values) - np.log(np.maximum(predicted, np.min(values) * 1e-3))
        if first is None:
            first = residual - residual.mean()
        more, _, blocks = block_offsets(residual, seq, block)
        offsets += more
    assert first is not None
    explained = 1.0 - float(np.mean((first - offsets) ** 2) / max(np.mean(first**2), 1e-300))
    spread = float(np.sqrt(np.mean(offsets**2)))
    return DriftCorrection(offsets, seq, first, block, blocks, spread, explained)
