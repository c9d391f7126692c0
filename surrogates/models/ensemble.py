"""Seed ensembles: the same family fitted with several seeds; mean and spread of their predictions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from accelnas.core.records import is_whole
from accelnas.core.space import Architecture
from accelnas.surrogates.models.base import Files, Regressor, Surrogate, not_fitted, same

log = logging.getLogger(__name__)


class SeedEnsemble(Regressor):
    """``n_members`` copies of ``base`` fitted with seeds ``seed, seed+1, ...``.

    Parameters follow scikit-learn's nesting: ``base``, ``n_members`` and ``base__<name>`` for the
    base family's own.
    """

    family = "ensemble"

    def __init__(self, base: Surrogate, n_members: int = 5) -> None:
        _check(base, n_members)
        self.base = base
        self.n_members = n_members
        self.members_: list[Surrogate] = []

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params: dict[str, Any] = {"base": self.base, "n_members": self.n_members}
        if deep:
            params |= {f"base__{k}": v for k, v in self.base.get_params().items()}
        return params

    def set_params(self, **params: Any) -> SeedEnsemble:
        """Change parameters; values the constructor refuses raise its error and change nothing. A fitted
        ensemble whose parameters change is no longer fitted (as a :class:`Surrogate`)."""
        unknown = sorted(k for k in params if k not in ("base", "n_members") and not k.startswith("base__"))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} for SeedEnsemble")
        base, n_members = params.get("base", self.base), params.get("n_members", self.n_members)
        _check(base, n_members)
        current = base.get_params()  # of the base the ensemble will have
        nested = {k.removeprefix("base__"): v for k, v in params.items() if k.startswith("base__")}
        if nested:
            base.set_params(**nested)  # validates all of them before changing any
        changed = not same(base, self.base) or not same(n_members, self.n_members)
        if changed or any(not same(current[name], value) for name, value in nested.items()):
            self.members_ = []
        self.base, self.n_members = base, n_members
        return self

    @property
    def encoding(self) -> str:
        return self.base.encoding

    @property
    def fitted_(self) -> bool:
        return bool(self.members_)

    def fit(
        self,
        X: Sequence[Architecture] | np.ndarray,
        y: Sequence[float],
        sample_weight: Sequence[float] | np.ndarray | None = None,
    ) -> SeedEnsemble:
        features = self.base.features(X)  # members differ only in their seed: encode once
        if self.n_members > 1 and not self.base.uses_seed(len(features)):
            log.warning(
                "%s surrogates with these parameters do not depend on their seed: the %d ensemble members "
                "are the same model (spread 0 at %d times the cost)",
                self.base.family,
                self.n_members,
                self.n_members,
            )
        self.members_ = []
        for i in range(self.n_members):
            member = type(self.base)(**(self.base.get_params() | {"seed": (self.base.seed + i) % 2**32}))
            self.members_.append(member.fit_features(features, y, sample_weight))
        return self

    def _member_predictions(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        if not self.members_:
            raise not_fitted("ensemble")
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
        # "params" as written since the first saved ensembles (informational: loading reads the members)
        params = {"n_members": self.n_members, "base_family": self.base.family}
        params |= {f"base__{k}": v for k, v in self.base.get_params().items()}
        return {"family": self.family, "params": params, "members": states}, files


def _check(base: Any, n_members: Any) -> None:
    """Refuse what a seed ensemble cannot be made of."""
    if not isinstance(base, Surrogate):
        raise ValueError(f"a seed ensemble's base is a surrogate of one family, got {type(base).__name__}")
    if not is_whole(n_members) or n_members < 1:
        raise ValueError(f"n_members must be an integer >= 1, got {n_members!r}")


def member_prefix(i: int) -> str:
    """File-name prefix of member ``i``'s native files inside an ensemble's artifact."""
    return f"member{i}-"


def member_files(files: Files, i: int) -> Files:
    """Member ``i``'s files under their own names (and, for artifacts whose member states name the
    prefixed files, under those too)."""
    prefix = member_prefix(i)
    return files | {name.removeprefix(prefix): data for name, data in files.items() if name.startswith(prefix)}
