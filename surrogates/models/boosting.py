"""Gradient-boosted trees: XGBoost and LightGBM, stored in their own model formats."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from accelnas.surrogates.models.base import Files, Surrogate
from accelnas.surrogates.models.tree_checks import check_lightgbm_text, check_xgboost_json


class XGBoostSurrogate(Surrogate):
    """XGBoost regressor (``hist`` trees); saved as XGBoost JSON."""

    family = "xgboost"
    _own_params: ClassVar[dict[str, Any]] = {
        "n_estimators": 800,
        "max_depth": 6,
        "learning_rate": 0.03,
        "subsample": 0.8,
        "colsample_bytree": 0.7,
        "min_child_weight": 1.0,
        "reg_lambda": 1.0,
        "n_jobs": 1,
    }
    _rules: ClassVar[dict[str, str]] = {
        "n_estimators": "count",
        "max_depth": "whole",  # 0: no limit
        "learning_rate": "positive",
        "subsample": "fraction",
        "colsample_bytree": "fraction",
        "min_child_weight": "non_negative",
        "reg_lambda": "non_negative",
        "n_jobs": "threads",
    }

    def uses_seed(self, n_rows: int) -> bool:
        return self.subsample < 1 or self.colsample_bytree < 1  # row or column sampling

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        import xgboost as xgb

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
            "nthread": self.n_jobs,
        }
        self.booster_ = xgb.train(params, xgb.DMatrix(X, label=z, weight=weight), num_boost_round=self.n_estimators)
        self._for_prediction()

    # Below this many rows one thread answers fastest: waking a thread pool costs more than the
    # trees, and far more on a loaded machine (a single query: ~1 ms on one thread, tens of ms on all).
    _PARALLEL_ROWS: ClassVar[int] = 1000

    def _for_prediction(self) -> None:
        # n_jobs governs fitting (one thread is fastest for these small tables); predictions of
        # large batches use every core
        self._set_threads(1)

    def _set_threads(self, threads: int) -> None:
        if getattr(self, "_threads", None) != threads:
            self.booster_.set_param({"nthread": threads})
            self._threads = threads

    def _predict(self, X: np.ndarray) -> np.ndarray:
        self._set_threads(1 if len(X) < self._PARALLEL_ROWS else (os.cpu_count() or 1))
        return np.asarray(self.booster_.inplace_predict(X), dtype=np.float64)

    def _state(self) -> tuple[dict[str, Any], Files]:
        return {"model_file": "xgboost.json"}, {"xgboost.json": bytes(self.booster_.save_raw("json"))}

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        import xgboost as xgb

        raw = files[data["model_file"]]
        check_xgboost_json(raw)
        self.booster_ = xgb.Booster()
        self.booster_.load_model(bytearray(raw))
        self._for_prediction()


class LightGBMSurrogate(Surrogate):
    """LightGBM regressor; saved as LightGBM's text model."""

    family = "lightgbm"
    _own_params: ClassVar[dict[str, Any]] = {
        "n_estimators": 1000,
        "num_leaves": 31,
        "learning_rate": 0.03,
        "subsample": 0.8,
        "colsample_bytree": 0.7,
        "min_child_samples": 10,
        "reg_lambda": 1.0,
        "n_jobs": 1,
    }
    _rules: ClassVar[dict[str, str]] = {
        "n_estimators": "count",
        "num_leaves": "at_least_two",
        "learning_rate": "positive",
        "subsample": "fraction",
        "colsample_bytree": "fraction",
        "min_child_samples": "whole",
        "reg_lambda": "non_negative",
        "n_jobs": "threads",
    }

    def uses_seed(self, n_rows: int) -> bool:
        return self.subsample < 1 or self.colsample_bytree < 1  # bagging or feature sampling

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        import lightgbm as lgb

        if int(self.subsample * len(X)) < 1:  # LightGBM bags int(share * rows) rows, and fails on none
            raise ValueError(f"lightgbm subsample={self.subsample} of {len(X)} rows bags no row (1.0 takes every row)")
        params = {
            "objective": "regression",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.colsample_bytree,
            "min_data_in_leaf": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "seed": self.seed,
            "num_threads": self.n_jobs,
            "verbosity": -1,
        }
        self.booster_ = lgb.train(params, lgb.Dataset(X, label=z, weight=weight), num_boost_round=self.n_estimators)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        threads = 1 if len(X) < XGBoostSurrogate._PARALLEL_ROWS else (os.cpu_count() or 1)
        return np.asarray(self.booster_.predict(X, num_threads=threads), dtype=np.float64)

    def _state(self) -> tuple[dict[str, Any], Files]:
        return {"model_file": "lightgbm.txt"}, {"lightgbm.txt": self.booster_.model_to_string().encode()}

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        import lightgbm as lgb

        text = files[data["model_file"]].decode()
        check_lightgbm_text(text)
        self.booster_ = lgb.Booster(model_str=text)
