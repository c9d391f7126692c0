"""Support-vector regression with an RBF kernel (scikit-learn to fit), stored as JSON."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from accelnas.surrogates.models.base import Files, Surrogate


class SVRSurrogate(Surrogate):
    """Epsilon-SVR on standardised features; predicts with NumPy from the stored support vectors."""

    family = "svr"
    _own_params: ClassVar[dict[str, Any]] = {"C": 10.0, "epsilon": 0.01, "gamma": "scale"}
    _rules: ClassVar[dict[str, str]] = {"C": "positive", "epsilon": "non_negative", "gamma": "gamma"}
    seeded = False  # a convex problem: one solution whatever the seed

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        from sklearn.svm import SVR

        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        self.z_mean_, self.z_scale_ = float(z.mean()), float(z.std() or 1.0)
        model = SVR(C=self.C, epsilon=self.epsilon, gamma=self.gamma)
        model.fit((X - self.mean_) / self.scale_, (z - self.z_mean_) / self.z_scale_, sample_weight=weight)
        self.support_ = model.support_vectors_
        self.dual_ = model.dual_coef_[0]
        self.intercept_ = float(model.intercept_[0])
        self.gamma_ = float(model._gamma)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Xs = (X - self.mean_) / self.scale_
        sq = (Xs**2).sum(1)[:, None] + (self.support_**2).sum(1)[None, :] - 2 * Xs @ self.support_.T
        k = np.exp(-self.gamma_ * np.maximum(sq, 0))
        return (k @ self.dual_ + self.intercept_) * self.z_scale_ + self.z_mean_

    def _state(self) -> tuple[dict[str, Any], Files]:
        data = {
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "z_mean": self.z_mean_,
            "z_scale": self.z_scale_,
            "support": self.support_.tolist(),
            "dual": self.dual_.tolist(),
            "intercept": self.intercept_,
            "gamma": self.gamma_,
        }
        return data, {}

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        self.mean_, self.scale_ = np.asarray(data["mean"]), np.asarray(data["scale"])
        self.z_mean_, self.z_scale_ = float(data["z_mean"]), float(data["z_scale"])
        self.support_ = np.asarray(data["support"], dtype=np.float64).reshape(-1, len(self.mean_))
        self.dual_ = np.asarray(data["dual"], dtype=np.float64)
        self.intercept_, self.gamma_ = float(data["intercept"]), float(data["gamma"])
