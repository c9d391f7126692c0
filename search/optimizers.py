"""The optimizers by name; each takes an :class:`~accelnas.search.evaluator.Evaluator` and a seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from accelnas.search import evolution
from accelnas.search import nsga2 as nsga2_module
from accelnas.search.evaluator import Evaluator
from accelnas.search.evolution import regularized_evolution
from accelnas.search.nsga2 import nsga2
from accelnas.search.objectives import SearchSpecError
from accelnas.search.random_search import random_search

OPTIMIZERS: dict[str, Callable[..., None]] = {
    "random": random_search,
    "evolution": regularized_evolution,
    "nsga2": nsga2,
}
# options each optimizer accepts (the command line passes only these)
OPTIONS: dict[str, tuple[str, ...]] = {
    "random": (),
    "evolution": ("population", "sample_size", "batch"),
    "nsga2": ("population",),
}


BUILT_IN = tuple(OPTIMIZERS)


def register_optimizer(
    name: str, fn: Callable[..., None], options: str | Sequence[str] = (), *, replace: bool = False
) -> None:
    """Make ``fn(evaluator, seed, **options)`` an optimizer called ``name`` (for ``search``/``run_search``).

    ``options`` names the keyword options it takes (one name or several); ``run_search`` passes it
    those of its options. A built-in optimizer's name is refused unless ``replace`` is set.
    """
    if not isinstance(name, str) or not name or not callable(fn):
        raise TypeError("register_optimizer takes a name and a callable fn(evaluator, seed, **options)")
    if name in BUILT_IN and not replace:
        raise SearchSpecError(f"{name!r} is a built-in optimizer; choose another name (or pass replace=True)")
    names = (options,) if isinstance(options, str) else options
    if not isinstance(names, Sequence) or not all(isinstance(o, str) and o for o in names):
        raise TypeError(f"options are the names of fn's keyword options, got {options!r}")
    OPTIMIZERS[name] = fn
    OPTIONS[name] = tuple(names)


def optimizer(name: str) -> Callable[..., None]:
    """The optimizer called ``name``."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise SearchSpecError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})") from None


def _chosen(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (options or {}).items() if k in OPTIONS.get(name, ()) and v is not None}


def check_options_used(names: list[str], options: dict[str, Any] | None) -> None:
    """Raise :class:`SearchSpecError` for an option (not None) that none of ``names`` takes (a typo, or
    ``--batch`` for NSGA-II alone), instead of ignoring it."""
    taken = {k for name in names for k in OPTIONS.get(name, ())}
    unused = sorted(k for k, v in (options or {}).items() if v is not None and k not in taken)
    if unused:
        known = "; ".join(f"{n}: {', '.join(OPTIONS.get(n, ())) or 'none'}" for n in dict.fromkeys(names))
        raise SearchSpecError(f"option {unused[0]!r} is taken by none of the optimizers run ({known})")


def check(name: str, options: dict[str, Any] | None = None) -> None:
    """Raise :class:`SearchSpecError` for an unknown optimizer or options it cannot run with."""
    optimizer(name)
    chosen = _chosen(name, options)
    if name == "evolution":
        evolution.check_options(
            chosen.get("population", evolution.POPULATION),
            chosen.get("sample_size"),
            chosen.get("batch", evolution.BATCH),
        )
    elif name == "nsga2":
        nsga2_module.check_options(chosen.get("population", nsga2_module.POPULATION))


def run_optimizer(name: str, evaluator: Evaluator, seed: int, options: dict[str, Any] | None = None) -> None:
    """Run optimizer ``name`` with the options it understands (others are ignored)."""
    optimizer(name)(evaluator, seed, **_chosen(name, options))
