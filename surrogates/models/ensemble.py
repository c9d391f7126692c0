"""Seed ensembles: the same family fitted with several seeds; mean and spread of their predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from accelnas.core.space import Architecture
from accelnas.surrogates.models.base import Files, Surrogate


class SeedEnsemble:
    """``n_members`` copies of ``base`` fitted with seeds ``seed, seed+1, ...``."""

    family = "ensemble"

    def __init__(self, base: Surrogate, n_members: int = 5) -> None:
        if n_members < 1:
            raise ValueError("n_members must be >= 1")
        self.base = base
        self.n_members = n_members
        self.members_: list[Surrogate] = []

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = {"n_members": self.n_members, "base_family": self.base.family}
        if deep:
            params |= {f"base__{k}": v for k, v in self.base.get_params().items()}
        return params

    def set_params(self, **params: Any) -> SeedEnsemble:
        base = {k.removeprefix("base__"): v for k, v in params.items() if k.startswith("base__")}
        if base:
            self.base.set_params(**base)
        if "n_members" in params:
            self.n_members = int(params["n_members"])
        unknown = set(params) - {"n_members"} - {k for k in params if k.startswith("base__")}
        if unknown:
            raise ValueError(f"unknown parameter {sorted(unknown)[0]!r} for SeedEnsemble")
        return self

    @property
    def encoding(self) -> str:
        return self.base.encoding

    def fit(
        self,
        X: Sequence[Architecture] | np.ndarray,
        y: Sequence[float],
        sample_weight: Sequence[float] | np.ndarray | None = None,
    ) -> SeedEnsemble:
        features = self.base.features(X)  # members differ only in their seed: encode once
        self.members_ = []
        for i in range(self.n_members):
            member = type(self.base)(**(self.base.get_params() | {"seed": self.base.seed + i}))
            self.members_.append(member.fit_features(features, y, sample_weight))
        return self

    def _member_predictions(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        if not self.members_:
            raise RuntimeError("fit the ensemble before predicting")
        features = self.members_[0].features(X)
        return np.vstack([m.predict_features(features) for m in self.members_])

    def predict(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        return self._member_predictions(X).mean(axis=0)

    def predict_dist(self, X: Sequence[Architecture] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over the members."""
        preds = self._member_predictions(X)
        return preds.mean(axis=0), preds.std(axis=0)

    def to_state(self) -> tuple[dict[str, Any], Files]:
        states, files = [], {}
        for i, member in enumerate(self.members_):
            state, member_files = member.to_state()
            files |= {member_prefix(i) + name: data for name, data in member_files.items()}
            states.append(state)
        return {"family": self.family, "params": self.get_params(), "members": states}, files


def member_prefix(i: int) -> str:
    """File-name prefix of member ``i``'s native files inside an ensemble's artifact."""
    return f"member{i}-"


def member_files(files: Files, i: int) -> Files:
    """Member ``i``'s files under their own names (and, for artifacts whose member states name the
    prefixed files, under those too)."""
    prefix = member_prefix(i)
    return files | {name.removeprefix(prefix): data for name, data in files.items() if name.startswith(prefix)}
