"""Surrogate families, by name."""

from __future__ import annotations

from typing import Any

from accelnas.core.errors import SurrogateError
from accelnas.surrogates.models.additive import AdditiveSurrogate, HybridSurrogate
from accelnas.surrogates.models.base import Files, Surrogate
from accelnas.surrogates.models.blend import BlendSurrogate
from accelnas.surrogates.models.boosting import LightGBMSurrogate, XGBoostSurrogate
from accelnas.surrogates.models.ensemble import SeedEnsemble, member_files
from accelnas.surrogates.models.forest import RandomForestSurrogate
from accelnas.surrogates.models.gp import GaussianProcessSurrogate
from accelnas.surrogates.models.svr import SVRSurrogate

FAMILIES: dict[str, type[Surrogate]] = {
    cls.family: cls
    for cls in (
        XGBoostSurrogate,
        LightGBMSurrogate,
        RandomForestSurrogate,
        SVRSurrogate,
        GaussianProcessSurrogate,
        AdditiveSurrogate,
        HybridSurrogate,
        BlendSurrogate,
    )
}


def make(family: str, **params: Any) -> Surrogate:
    """A fresh surrogate of the named family."""
    try:
        return FAMILIES[family](**params)
    except KeyError:
        raise SurrogateError(f"unknown surrogate family {family!r} (known: {', '.join(FAMILIES)})") from None


def family_name(model: Surrogate | SeedEnsemble) -> str:
    """A fitted model's family as people read it: a seed ensemble's base family, a blend's members
    joined by ``+`` (``hybrid+gp``)."""
    model = getattr(model, "base", model)
    if isinstance(model, BlendSurrogate):
        return "+".join(str(member.get("family")) for member in model.members)
    return getattr(model, "family", "?")


def from_state(state: dict[str, Any], files: Files) -> Surrogate | SeedEnsemble:
    """Rebuild a fitted model (or seed ensemble) from :meth:`to_state` output."""
    family = state.get("family")
    if family == SeedEnsemble.family:
        members = [from_state(m, member_files(files, i)) for i, m in enumerate(state["members"])]
        if not members:
            raise SurrogateError("an ensemble without members")
        ensemble = SeedEnsemble(type(members[0])(**members[0].get_params()), n_members=len(members))
        ensemble.members_ = members  # type: ignore[assignment]
        return ensemble
    if family not in FAMILIES:
        raise SurrogateError(f"unknown surrogate family {family!r}")
    return FAMILIES[family].from_state(state, files)


__all__ = [
    "FAMILIES",
    "AdditiveSurrogate",
    "BlendSurrogate",
    "GaussianProcessSurrogate",
    "HybridSurrogate",
    "LightGBMSurrogate",
    "RandomForestSurrogate",
    "SVRSurrogate",
    "SeedEnsemble",
    "Surrogate",
    "XGBoostSurrogate",
    "family_name",
    "from_state",
    "make",
]
