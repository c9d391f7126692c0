"""Random forest (scikit-learn to fit), stored as JSON arrays and evaluated with NumPy."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from accelnas.surrogates.models.base import Files, Surrogate
from accelnas.surrogates.models.tree_checks import check_forest_trees


def _tree_predict(tree: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    node = np.zeros(len(X), dtype=np.int64)
    left, right, feature, threshold = tree["left"], tree["right"], tree["feature"], tree["threshold"]
    active = left[node] >= 0
    while active.any():
        idx = np.nonzero(active)[0]
        n = node[idx]
        go_left = X[idx, feature[n]] <= threshold[n]
        node[idx] = np.where(go_left, left[n], right[n])
        active = left[node] >= 0
    return tree["value"][node]


class RandomForestSurrogate(Surrogate):
    """Bagged regression trees; the fitted trees are plain arrays (no pickle)."""

    family = "random_forest"
    _own_params: ClassVar[dict[str, Any]] = {
        "n_estimators": 300,
        "max_features": 0.5,
        "min_samples_leaf": 1,
        "max_depth": None,
        "n_jobs": 1,
    }
    _rules: ClassVar[dict[str, str]] = {
        "n_estimators": "count",
        "max_features": "features",
        "min_samples_leaf": "count_or_share",
        "max_depth": "count_or_none",
        "n_jobs": "threads",
    }

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(
            n_estimators=self.n_estimators,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        ).fit(X, z, sample_weight=weight)
        self.trees_ = [
            {
                "left": t.tree_.children_left.astype(np.int64),
                "right": t.tree_.children_right.astype(np.int64),
                "feature": t.tree_.feature.astype(np.int64),
                "threshold": t.tree_.threshold.astype(np.float64),
                "value": t.tree_.value[:, 0, 0].astype(np.float64),
            }
            for t in forest.estimators_
        ]

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.mean([_tree_predict(t, X) for t in self.trees_], axis=0)

    def _state(self) -> tuple[dict[str, Any], Files]:
        return {"trees": [{k: v.tolist() for k, v in t.items()} for t in self.trees_]}, {}

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        kinds = {"left": np.int64, "right": np.int64, "feature": np.int64, "threshold": np.float64, "value": np.float64}
        self.trees_ = [{k: np.asarray(t[k], dtype=kind) for k, kind in kinds.items()} for t in data["trees"]]
        check_forest_trees(self.trees_)
