"""Gradient-boosted trees (XGBoost) as a scikit-learn-style surrogate estimator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from accelnas.core.space import Architecture
from accelnas.surrogates.features import encode

TRANSFORMS = ("none", "log")


class XGBoostSurrogate:
    """Predicts a metric from an architecture. ``fit``/``predict`` take architectures or feature rows."""

    family = "xgboost"

    def __init__(
        self,
        *,
        encoding: str = "raw",
        transform: str = "log",
        n_estimators: int = 600,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        seed: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.encoding = encoding
        self.transform = transform
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.seed = seed
        self.n_jobs = n_jobs
        self.booster_: Any = None

    # scikit-learn estimator protocol
    _PARAMS = (
        "encoding",
        "transform",
        "n_estimators",
        "max_depth",
        "learning_rate",
        "subsample",
        "colsample_bytree",
        "min_child_weight",
        "reg_lambda",
        "seed",
        "n_jobs",
    )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> XGBoostSurrogate:
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"unknown parameter {name!r} for {type(self).__name__}")
            setattr(self, name, value)
        return self

    def _features(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        if len(X) and isinstance(X[0], Architecture):
            return encode(X, self.encoding)
        return np.asarray(X, dtype=np.float32)

    def fit(self, X: Sequence[Architecture] | np.ndarray, y: Sequence[float]) -> XGBoostSurrogate:
        import xgboost as xgb

        y_arr = np.asarray(y, dtype=float)
        if self.transform == "log":
            if np.any(y_arr <= 0):
                raise ValueError("log transform needs positive targets")
            y_arr = np.log(y_arr)
        params = {
            "objective": "reg:squarederror",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "tree_method": "hist",
            "nthread": self.n_jobs or 0,
        }
        dtrain = xgb.DMatrix(self._features(X), label=y_arr)
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators)
        return self

    def predict(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        import xgboost as xgb

        if self.booster_ is None:
            raise RuntimeError("fit the surrogate before predicting")
        out = self.booster_.predict(xgb.DMatrix(self._features(X)))
        return np.exp(out) if self.transform == "log" else out
