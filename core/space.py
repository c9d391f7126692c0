"""The MnasNet / EfficientNet-B0 search space of Accel-NASBench.

An :class:`Architecture` is seven MBConv stages, each with an expansion ratio, a depthwise kernel
size, a layer count and a squeeze-excite switch. It converts losslessly to and from

* the Accel-NASBench config dict (``block{i}_e``, ``block{i}_k``, ``block{i}_l``, ``block{i}_se``),
* a compact string id: seven dash-separated groups ``<e><k><l><se>``, e.g. ``1311-6321-...``,
* a numeric feature vector ``[e0, k0, l0, se0, e1, ...]`` of length 28.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelnas.core.errors import InvalidArchitectureError, InvalidArgumentError, describe
from accelnas.core.records import is_whole

NUM_STAGES = 7
EXPANSIONS: tuple[int, ...] = (1, 4, 6)
KERNELS: tuple[int, ...] = (3, 5)
LAYERS: tuple[tuple[int, ...], ...] = ((1, 2, 3),) * 5 + ((1, 2, 3, 4),) + ((1, 2, 3),)
SE_CHOICES: tuple[bool, ...] = (False, True)
FIELDS: tuple[str, ...] = ("e", "k", "l", "se")
FEATURE_NAMES: tuple[str, ...] = tuple(f"block{i}_{f}" for i in range(NUM_STAGES) for f in FIELDS)


def _choices(stage: int, field: str) -> tuple[Any, ...]:
    return {"e": EXPANSIONS, "k": KERNELS, "l": LAYERS[stage], "se": SE_CHOICES}[field]


@dataclass(frozen=True, slots=True)
class Stage:
    """One MBConv stage: expansion ratio, kernel size, number of layers, squeeze-excite."""

    e: int
    k: int
    l: int  # noqa: E741 - the field name of the published dataset
    se: bool


@dataclass(frozen=True, slots=True)
class Architecture:
    """An immutable, validated point of the search space."""

    stages: tuple[Stage, ...]
    _vector: tuple[float, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple) or len(self.stages) != NUM_STAGES:
            raise InvalidArchitectureError(f"an architecture has {NUM_STAGES} stages, got {self.stages!r}")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise InvalidArchitectureError(f"stage {i} is not a Stage: {stage!r}")
            for field in FIELDS:
                value = getattr(stage, field)
                allowed = _choices(i, field)
                ok = (
                    isinstance(value, bool)
                    if field == "se"
                    else (isinstance(value, int) and not isinstance(value, bool))
                )
                if not ok or value not in allowed:
                    shown = ", ".join(str(a) for a in allowed)
                    raise InvalidArchitectureError(
                        f"invalid architecture: block{i}_{field}={value!r} is not one of {{{shown}}}"
                    )
        vector = tuple(float(v) for s in self.stages for v in (s.e, s.k, s.l, int(s.se)))
        object.__setattr__(self, "_vector", vector)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_lists(
        cls,
        e: Sequence[int],
        k: Sequence[int],
        l: Sequence[int],  # noqa: E741
        se: Sequence[bool],
    ) -> Architecture:
        """Build from per-stage lists of expansion, kernel, layers and squeeze-excite."""
        lists = {"e": e, "k": k, "l": l, "se": se}
        for name, values in lists.items():
            if len(values) != NUM_STAGES:
                raise InvalidArchitectureError(
                    f"invalid architecture: {name} needs {NUM_STAGES} values, got {len(values)}"
                )
        return cls(tuple(Stage(e[i], k[i], l[i], se[i]) for i in range(NUM_STAGES)))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Architecture:
        """Build from an Accel-NASBench config dict (``block{i}_e/_k/_l/_se``)."""
        if not isinstance(config, Mapping):
            raise InvalidArchitectureError(f"invalid architecture: a config must be a mapping, got {config!r}")
        unknown = sorted(set(config) - set(FEATURE_NAMES))
        if unknown:
            raise InvalidArchitectureError(f"invalid architecture: unknown config key {unknown[0]!r}")
        missing = [name for name in FEATURE_NAMES if name not in config]
        if missing:
            raise InvalidArchitectureError(f"invalid architecture: missing config key {missing[0]!r}")
        stages = []
        for i in range(NUM_STAGES):
            values = {}
            for field in FIELDS:
                value = config[f"block{i}_{field}"]
                if field == "se":
                    value = _to_bool(value, f"block{i}_se")
                else:
                    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
                        value = value.item()
                    if isinstance(value, float) and value.is_integer():
                        value = int(value)
                values[field] = value
            stages.append(Stage(**values))
        return cls(tuple(stages))

    @classmethod
    def from_string(cls, text: str) -> Architecture:
        """Parse a string id such as ``1311-6321-6521-6331-6531-6541-6311``."""
        if not isinstance(text, str):
            raise InvalidArchitectureError(f"invalid architecture id {text!r}: not a string")
        groups = text.strip().split("-")
        if len(groups) != NUM_STAGES or any(len(g) != 4 or not (g.isascii() and g.isdigit()) for g in groups):
            raise InvalidArchitectureError(
                f"invalid architecture id {text!r}: expected {NUM_STAGES} dash-separated groups of 4 digits "
                "<expansion><kernel><layers><se>, e.g. " + EFFICIENTNET_B0.id
            )
        stages = []
        for i, g in enumerate(groups):
            if g[3] not in "01":
                raise InvalidArchitectureError(
                    f"invalid architecture id {text!r}: block{i}_se={g[3]} is not one of {{0, 1}}"
                )
            stages.append(Stage(int(g[0]), int(g[1]), int(g[2]), g[3] == "1"))
        return cls(tuple(stages))

    @classmethod
    def from_vector(cls, vector: Sequence[float]) -> Architecture:
        """Inverse of :meth:`to_vector`."""
        if len(vector) != len(FEATURE_NAMES):
            raise InvalidArchitectureError(
                f"invalid architecture vector: expected {len(FEATURE_NAMES)} values, got {len(vector)}"
            )
        config: dict[str, Any] = {}
        for name, value in zip(FEATURE_NAMES, vector, strict=True):
            try:
                number = float(value)
            except (TypeError, ValueError):
                message = f"invalid architecture vector: {name}={value!r} is not a number"
                raise InvalidArchitectureError(message) from None
            if not math.isfinite(number) or number != round(number):
                raise InvalidArchitectureError(f"invalid architecture vector: {name}={value} is not integral")
            if name.endswith("_se") and number not in (0, 1):
                raise InvalidArchitectureError(f"invalid architecture vector: {name}={value} is not 0 or 1")
            config[name] = bool(number) if name.endswith("_se") else round(number)
        return cls.from_config(config)

    # -- encodings -------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """Compact string id, stable across versions."""
        return "-".join(f"{s.e}{s.k}{s.l}{int(s.se)}" for s in self.stages)

    def to_config(self) -> dict[str, Any]:
        """Accel-NASBench config dict."""
        out: dict[str, Any] = {}
        for i, s in enumerate(self.stages):
            out[f"block{i}_e"] = s.e
            out[f"block{i}_k"] = s.k
            out[f"block{i}_l"] = s.l
            out[f"block{i}_se"] = s.se
        return out

    def to_vector(self) -> list[float]:
        """Numeric feature vector ordered as :data:`FEATURE_NAMES`."""
        return list(self._vector)

    @property
    def num_layers(self) -> int:
        return sum(s.l for s in self.stages)

    def __str__(self) -> str:
        return self.id


def _to_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "0", "1"}:
        return value.strip().lower() in {"true", "1"}
    raise InvalidArchitectureError(f"invalid architecture: {name}={value!r} is not a boolean")


EFFICIENTNET_B0 = Architecture.from_lists(
    e=[1, 6, 6, 6, 6, 6, 6],
    k=[3, 3, 5, 3, 5, 5, 3],
    l=[1, 2, 2, 3, 3, 4, 1],
    se=[True] * NUM_STAGES,
)


def space_size() -> int:
    """Number of distinct architectures in the space."""
    total = 1
    for i in range(NUM_STAGES):
        total *= len(EXPANSIONS) * len(KERNELS) * len(LAYERS[i]) * len(SE_CHOICES)
    return total


def unique(archs: Iterable[Architecture]) -> list[Architecture]:
    """``archs`` with each architecture once, in the order of first appearance."""
    return list({a.id: a for a in archs}.values())


def sample(num: int, seed: int = 0, *, exclude: Iterable[str | Architecture] | None = None) -> list[Architecture]:
    """``num`` distinct architectures drawn uniformly at random; the same seed gives the same list.

    ``exclude`` holds architectures (or their ids) never to draw.
    """
    return list(iter_sample(num, seed, exclude=exclude))


def iter_sample(
    num: int, seed: int = 0, *, exclude: Iterable[str | Architecture] | None = None
) -> Iterator[Architecture]:
    """:func:`sample`, one architecture at a time as it is drawn."""
    if not is_whole(num):
        raise TypeError(f"num must be a whole number, got {num!r}")
    if num < 0:
        raise ValueError("num must be >= 0")
    if isinstance(exclude, str):
        raise TypeError("exclude must be a collection of architectures or ids, not one string")
    seen = {a.id if isinstance(a, Architecture) else a for a in exclude or ()}
    if num > space_size() - len(seen):
        left = space_size() - len(seen)
        raise InvalidArgumentError(f"num {num} exceeds the {left:,} architectures the space has left")
    rng = random.Random(int(seed) if is_whole(seed) else seed)
    drawn = 0
    while drawn < num:
        arch = sample_one(rng)
        if arch.id not in seen:
            seen.add(arch.id)
            drawn += 1
            yield arch


def sample_one(rng: random.Random) -> Architecture:
    """One architecture drawn uniformly with ``rng``."""
    return Architecture(
        tuple(
            Stage(rng.choice(EXPANSIONS), rng.choice(KERNELS), rng.choice(LAYERS[i]), rng.choice(SE_CHOICES))
            for i in range(NUM_STAGES)
        )
    )


def parse_architecture(text: str) -> Architecture:
    """Parse what a user typed: a string id, ``b0``, a JSON config, or a path to a JSON config.

    A JSON file may also be an Accel-NASBench ``result_N.json`` record (its ``architecture`` key) or what
    ``accelnas info --json`` writes (its ``config``, checked against its ``id``).
    """
    if not isinstance(text, str):
        raise InvalidArchitectureError(f"expected an architecture as text, got {type(text).__name__}")
    text = text.strip()
    if text.lower() in {"b0", "efficientnet-b0", "efficientnet_b0"}:
        return EFFICIENTNET_B0
    if text.startswith("{"):
        return _from_json_text(text, "argument")
    path = Path(text)
    if text.endswith(".json") or (path.suffix and path.exists()):
        if not path.is_file():
            raise InvalidArchitectureError(f"architecture file not found: {text}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArchitectureError(f"cannot read architecture file {path}: {describe(exc)}") from None
        return _from_json_text(text, str(path))
    return Architecture.from_string(text)


def as_architecture(item: Architecture | str | Mapping[str, Any]) -> Architecture:
    """An :class:`Architecture` from itself, what :func:`parse_architecture` reads, or a config dict."""
    if isinstance(item, Architecture):
        return item
    if isinstance(item, str):
        return parse_architecture(item)
    if isinstance(item, Mapping):
        return Architecture.from_config(item)
    raise InvalidArchitectureError(f"invalid architecture: expected an id, a JSON config or a dict, got {item!r}")


def _from_json_text(text: str, where: str) -> Architecture:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArchitectureError(f"invalid architecture JSON in {where}: {exc.msg} (line {exc.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("architecture"), dict):  # an Accel-NASBench result
        data = data["architecture"]
    elif isinstance(data, dict) and isinstance(data.get("config"), dict):  # `accelnas info --json`
        arch = Architecture.from_config(data["config"])
        if "id" in data and data["id"] != arch.id:
            raise InvalidArchitectureError(
                f"invalid architecture in {where}: its id {data['id']!r} is not that of its config ({arch.id})"
            )
        return arch
    return Architecture.from_config(data)
