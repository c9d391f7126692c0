"""Blends: a weighted mean of surrogates of different families fitted on the same rows.

Families that err differently (boosted trees on an additive base, a Gaussian process) average to a
better surrogate than either. Each member keeps its own encoding and transform; the blend averages
their predictions in the target's natural unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from accelnas.core.errors import SurrogateError
from accelnas.core.space import Architecture
from accelnas.surrogates.models.base import Files, Surrogate, check_targets, model_input, not_fitted
from accelnas.surrogates.models.ensemble import member_files, member_prefix


class BlendSurrogate(Surrogate):
    """``members`` is a list of ``{"family": ..., "params": {...}}``; ``weights`` their shares
    (equal when ``None``). Members are fitted with the blend's seed and the same sample weights
    (the blend's ``transform`` names the target space those weights were made for)."""

    family = "blend"
    _own_params: ClassVar[dict[str, Any]] = {"members": (), "weights": None}

    def __init__(self, *, encoding: str = "raw", transform: str = "none", seed: int = 0, **params: Any) -> None:
        super().__init__(encoding=encoding, transform=transform, seed=seed, **params)
        # parameters are kept as given (scikit-learn's clone checks that); only checked here
        if isinstance(self.members, str | bytes | dict) or not isinstance(self.members, Sequence):
            raise ValueError(f"blend members are a list of member specifications, got {self.members!r}")
        for spec in self.members:
            if (
                not isinstance(spec, dict)
                or spec.get("family") in (None, self.family)
                or set(spec) - {"family", "params"}
                or not isinstance(spec.get("params") or {}, dict)
            ):
                shape = "{'family': <a family other than blend>, 'params': {...}}"
                raise ValueError(f"a blend member is {shape}, got {spec!r}")
        self._make_members()  # each member's family and parameters must be valid
        if self.weights is not None:
            try:
                weights = [float(w) for w in self.weights]
            except (TypeError, ValueError):
                weights = []
            valid = bool(weights) and np.all(np.isfinite(weights)) and min(weights) >= 0 and sum(weights) > 0
            if not valid or len(weights) != len(self.members):
                raise ValueError("blend weights: one finite, non-negative weight per member, not all zero")

    def uses_seed(self, n_rows: int) -> bool:
        return any(member.uses_seed(n_rows) for member in self._make_members())

    def _shares(self) -> np.ndarray:
        weights = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        return weights / weights.sum()

    def _make_members(self) -> list[Surrogate]:
        from accelnas.surrogates.models import make

        return [make(spec["family"], **({"seed": self.seed} | dict(spec.get("params") or {}))) for spec in self.members]

    def features(self, X: Sequence[Architecture] | np.ndarray) -> list[Architecture]:  # type: ignore[override]
        """``X`` as a list of architectures: a blend takes no feature rows, its members encode on their own."""
        X = model_input(X)
        if isinstance(X, np.ndarray) or (X and not isinstance(X[0], Architecture)):
            raise TypeError("a blend needs architectures, not feature rows (its members use their own encodings)")
        return X

    def fit_features(
        self,
        features: Any,
        y: Sequence[float],
        sample_weight: Sequence[float] | np.ndarray | None = None,
    ) -> BlendSurrogate:
        if not self.members:
            raise ValueError("a blend needs at least one member")
        archs = self.features(features)
        y = check_targets(y)
        if len(archs) != len(y):
            raise ValueError(f"{len(archs)} architectures but {len(y)} targets")
        self.members_ = [member.fit(archs, y, sample_weight) for member in self._make_members()]
        self.z_range_ = (float(y.min()), float(y.max()))
        self.fitted_ = True
        return self

    def member_predictions(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        """Each member's predictions, one row per member."""
        if not self.fitted_:
            raise not_fitted("blend surrogate")
        archs = self.features(X)
        return np.vstack([member.predict(archs) for member in self.members_])

    def predict_features(self, features: Any) -> np.ndarray:
        return self._shares() @ self.member_predictions(features)

    def predict_dist(self, X: Sequence[Architecture] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean and weighted standard deviation of the members' predictions: how much the
        families disagree, not a calibrated error."""
        parts, shares = self.member_predictions(X), self._shares()
        mean = shares @ parts
        return mean, np.sqrt(np.maximum(shares @ (parts - mean) ** 2, 0.0))

    def _state(self) -> tuple[dict[str, Any], Files]:
        states, files = [], {}
        for i, member in enumerate(self.members_):
            state, own = member.to_state()
            states.append(state)
            files |= {member_prefix(i) + name: data for name, data in own.items()}
        return {"members": states}, files

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        from accelnas.surrogates.models import FAMILIES

        states = data.get("members")
        if not isinstance(states, list) or len(states) != len(self.members):
            raise SurrogateError(f"a blend of {len(self.members)} members stores {len(states or [])} member states")
        self.members_ = []
        for i, state in enumerate(states):
            family = state.get("family")
            if family not in FAMILIES or family == self.family:
                raise SurrogateError(f"unknown blend member family {family!r}")
            self.members_.append(FAMILIES[family].from_state(state, member_files(files, i)))
