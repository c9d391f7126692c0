"""The additive per-layer model and the hybrid (additive + gradient-boosted residual).

Latency on these networks is close to a sum over layers, each layer's cost set by its stage, its
position (first layer of the stage or not), expansion, kernel and squeeze-excite. The additive model
is ridge regression on the ``additive`` encoding; the hybrid fits XGBoost on what it leaves over.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from accelnas.core.records import is_real
from accelnas.core.space import EFFICIENTNET_B0, Architecture
from accelnas.surrogates.features import ADDITIVE_WIDTH, encode, raw
from accelnas.surrogates.models.base import Files, Surrogate
from accelnas.surrogates.models.boosting import XGBoostSurrogate

ALPHAS = tuple(10.0**p for p in range(-6, 4))


def _check_alpha(alpha: Any) -> None:
    """The ridge penalty is ``"auto"`` or a finite number >= 0."""
    if alpha != "auto" and not (is_real(alpha) and np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be 'auto' or a finite number >= 0, got {alpha!r}")


def ridge(
    X: np.ndarray, z: np.ndarray, alpha: float | str, weight: np.ndarray | None = None
) -> tuple[np.ndarray, float, float]:
    """(Weighted) ridge regression with an unpenalised intercept; ``alpha="auto"`` picks it by
    leave-one-out error.

    Returns (coefficients, intercept, alpha used). Features are scaled by their mean absolute value
    (so one alpha fits all columns) and the coefficients mapped back. ``weight`` (mean 1) weights the
    squared errors of the rows.
    """
    w = np.ones(len(z)) if weight is None else np.asarray(weight, dtype=np.float64) / np.mean(weight)
    x_mean, z_mean = (w @ X) / w.sum(), float(w @ z) / w.sum()
    Xc, zc = X - x_mean, z - z_mean
    scale = np.abs(Xc).mean(axis=0)
    scale[scale == 0] = 1.0
    root = np.sqrt(w)
    Xs, zs = Xc / scale * root[:, None], zc * root
    U, S, Vt = np.linalg.svd(Xs, full_matrices=False)
    Uz = U.T @ zs
    candidates = ALPHAS if alpha == "auto" else (float(alpha),)
    best: tuple[float, float] | None = None
    for a in candidates:
        shrink = S**2 / (S**2 + a * len(z))
        fitted = U @ (shrink * Uz)
        leverage = (U**2) @ shrink + w / w.sum()
        loo = np.mean(((zs - fitted) / np.maximum(1.0 - leverage, 1e-9)) ** 2)
        if best is None or loo < best[0]:
            best = (loo, a)
    assert best is not None
    a = best[1]
    coef = Vt.T @ ((S / (S**2 + a * len(z))) * Uz) / scale
    return coef, float(z_mean - x_mean @ coef), a


def linear(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """``X @ coef + intercept`` without BLAS: a BLAS call leaves OpenBLAS threads spinning for a
    while, and they slow the OpenMP threads of the tree predictions that follow (about 2x on 2 cores)."""
    return np.einsum("ij,j->i", X, coef) + intercept


class AdditiveSurrogate(Surrogate):
    """Linear in per-stage one-hot (e, k, se) weighted by layer counts; JSON coefficients."""

    family = "additive"
    _own_params: ClassVar[dict[str, Any]] = {"alpha": "auto"}
    seeded = False  # ridge regression: the same coefficients whatever the seed

    def __init__(self, *, encoding: str = "additive", transform: str = "none", seed: int = 0, **params: Any) -> None:
        super().__init__(encoding=encoding, transform=transform, seed=seed, **params)
        _check_alpha(self.alpha)

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        self.coef_, self.intercept_, self.alpha_ = ridge(X, z, self.alpha, weight)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return linear(X, self.coef_, self.intercept_)

    def _state(self) -> tuple[dict[str, Any], Files]:
        return {"coef": self.coef_.tolist(), "intercept": self.intercept_}, {}

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        self.coef_, self.intercept_ = np.asarray(data["coef"], dtype=np.float64), float(data["intercept"])


class HybridSurrogate(Surrogate):
    """Additive model plus XGBoost on its residuals (in the transformed target space).

    ``encoding`` is the residual model's encoding (the additive prediction is added to it as one more
    feature); the additive part always uses ``additive``.
    """

    family = "hybrid"
    _own_params: ClassVar[dict[str, Any]] = {
        "alpha": "auto",
        "n_estimators": 3000,
        "max_depth": 3,
        "learning_rate": 0.03,
        "subsample": 0.6,
        "colsample_bytree": 0.5,
        "n_jobs": 1,
    }
    _rules: ClassVar[dict[str, str]] = {
        "n_estimators": "count",
        "max_depth": "whole",  # XGBoost's 0: no limit
        "learning_rate": "positive",
        "subsample": "fraction",
        "colsample_bytree": "fraction",
        "n_jobs": "threads",
    }

    def __init__(self, *, encoding: str = "analytic", transform: str = "log", seed: int = 0, **params: Any) -> None:
        super().__init__(encoding=encoding, transform=transform, seed=seed, **params)
        _check_alpha(self.alpha)

    def uses_seed(self, n_rows: int) -> bool:
        return self.subsample < 1 or self.colsample_bytree < 1  # the residual trees sample rows or columns

    def encode(self, archs: list[Architecture]) -> np.ndarray:
        """Rows of the ``additive`` encoding followed by ``encoding`` (given as rows, they need both parts)."""
        R = raw(archs)
        return np.hstack([encode(R, "additive"), encode(R, self.encoding)])

    def feature_layout(self) -> tuple[int, str]:
        width = ADDITIVE_WIDTH + encode([EFFICIENTNET_B0], self.encoding).shape[1]
        return width, f"{ADDITIVE_WIDTH} additive, then {self.encoding}"

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X[:, :ADDITIVE_WIDTH], X[:, ADDITIVE_WIDTH:]

    def _residual_model(self) -> XGBoostSurrogate:
        return XGBoostSurrogate(
            encoding=self.encoding,
            transform="none",
            seed=self.seed,
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            n_jobs=self.n_jobs,
        )

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        additive_X, residual_X = self._split(X)
        self.coef_, self.intercept_, self.alpha_ = ridge(additive_X, z, self.alpha, weight)
        base = linear(additive_X, self.coef_, self.intercept_)
        residual = z - base
        self.residual_scale_ = float(residual.std()) or 1.0  # trees regularise in absolute units
        self.residual_ = self._residual_model()
        self.residual_._fit(np.column_stack([residual_X, base]), residual / self.residual_scale_, weight)
        self.residual_.fitted_ = True

    def _predict(self, X: np.ndarray) -> np.ndarray:
        additive_X, residual_X = self._split(X)
        base = linear(additive_X, self.coef_, self.intercept_)
        return base + self.residual_._predict(np.column_stack([residual_X, base])) * self.residual_scale_

    def _state(self) -> tuple[dict[str, Any], Files]:
        data, files = self.residual_._state()
        state = {"coef": self.coef_.tolist(), "intercept": self.intercept_, "residual_scale": self.residual_scale_}
        return state | {"residual": data}, files

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        self.coef_, self.intercept_ = np.asarray(data["coef"], dtype=np.float64), float(data["intercept"])
        self.residual_scale_ = float(data["residual_scale"])
        self.residual_ = self._residual_model()
        self.residual_._load_state(data["residual"], files)
        self.residual_.fitted_ = True
