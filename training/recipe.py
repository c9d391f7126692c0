"""Training recipes: the reference recipe and its proxies are the same validated, hashable type.

A recipe is read from YAML (a mapping of the fields of :class:`Recipe`); unknown keys and bad values
raise :class:`RecipeError` naming the field. ``lr`` is the learning rate for a batch of 256 images and
is scaled linearly with ``batch_size`` (the linear-scaling rule), so a proxy that only changes the
batch size keeps a sensible learning rate. The resolution schedule is a list of ``[start_epoch, size]``
pairs (progressive resizing); a single number means a fixed resolution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from accelnas.core import files, yamlio
from accelnas.core.errors import AccelnasError, describe

OPTIMIZERS: tuple[str, ...] = ("sgd", "rmsprop", "adamw")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
# fields that only describe a recipe; everything else changes what training produces
_DESCRIPTIVE = ("name", "description")


class RecipeError(AccelnasError):
    """A recipe or proxy-space file is missing or malformed."""

    exit_code = 2


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how an architecture is trained and evaluated."""

    name: str = "recipe"
    description: str = ""
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1  # for a batch of 256; scaled linearly with batch_size
    momentum: float = 0.9
    weight_decay: float = 4e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_every: float = 2.4  # epochs between decays of the step schedule
    step_gamma: float = 0.97
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak learning rate
    resolution: tuple[tuple[int, int], ...] = ((0, 224),)  # (start epoch, image size)
    eval_resolution: int | None = None  # None: the last training resolution
    data_fraction: float = 1.0  # share of the training set used (class-stratified, fixed by seed)
    label_smoothing: float = 0.1
    mixed_precision: bool = False  # bf16 autocast on CPU, fp16 with loss scaling on CUDA
    channels_last: bool = False
    ema_decay: float = 0.0  # 0 disables the exponential moving average of the weights
    dropout: float = 0.2
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random-resized-crop area range
    hflip: bool = True
    bn_recalibration_images: int = 0  # "precise BN": re-estimate BatchNorm statistics on this many training images
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived -----------------------------------------------------------------------------------
    @property
    def peak_lr(self) -> float:
        """The learning rate after linear scaling with the batch size."""
        return self.lr * self.batch_size / 256

    def size_at(self, epoch: int) -> int:
        """Training image size in ``epoch`` (0-based)."""
        size = self.resolution[0][1]
        for start, s in self.resolution:
            if epoch >= start:
                size = s
        return size

    @property
    def final_eval_resolution(self) -> int:
        return self.eval_resolution or self.resolution[-1][1]

    def identity(self) -> dict[str, Any]:
        """The fields that change a training result (not the name or description)."""
        d = self.to_dict()
        for key in _DESCRIPTIVE:
            d.pop(key)
        return d

    def key(self) -> str:
        """Short stable hash of :meth:`identity`."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (validated like a file)."""
        return from_dict({**self.to_dict(), **changes}, where=f"recipe {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolution"] = [list(p) for p in self.resolution]
        d["crop_scale"] = list(self.crop_scale)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _fail(recipe: Recipe | str, message: str) -> RecipeError:
    name = recipe.name if isinstance(recipe, Recipe) else recipe
    return RecipeError(f"recipe {name!r}: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(r: Recipe) -> None:
    for name in _DESCRIPTIVE:
        if not isinstance(getattr(r, name), str):
            raise _fail(str(r.name), f"{name} must be text, got {getattr(r, name)!r}")
    ints = {"epochs": (1, 10_000), "batch_size": (1, 1 << 20), "bn_recalibration_images": (0, 1 << 30),
            "seed": (0, 2**31 - 1)}  # fmt: skip
    for name, (lo, hi) in ints.items():
        value = getattr(r, name)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise _fail(r, f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if r.optimizer not in OPTIMIZERS:
        raise _fail(r, f"optimizer {r.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if r.schedule not in SCHEDULES:
        raise _fail(r, f"schedule {r.schedule!r} is not one of {', '.join(SCHEDULES)}")
    ranges = {
        "lr": (0.0, 1e3, False),
        "momentum": (0.0, 1.0, True),
        "weight_decay": (0.0, 1.0, True),
        "warmup_epochs": (0.0, float(r.epochs) if isinstance(r.epochs, int) else 1e4, True),
        "step_every": (0.0, 1e4, False),
        "step_gamma": (0.0, 1.0, False),
        "min_lr_ratio": (0.0, 1.0, True),
        "data_fraction": (0.0, 1.0, False),
        "label_smoothing": (0.0, 1.0, True),
        "ema_decay": (0.0, 1.0, True),
        "dropout": (0.0, 1.0, True),
    }
    for name, (lo, hi, low_inclusive) in ranges.items():
        value = getattr(r, name)
        ok = _number(value) and (value >= lo if low_inclusive else value > lo) and value <= hi
        if name == "ema_decay" and ok and value == 1.0:
            ok = False
        if not ok:
            bracket = "[" if low_inclusive else "("
            raise _fail(r, f"{name} must be a number in {bracket}{lo}, {hi}], got {value!r}")
    for name in ("mixed_precision", "channels_last", "hflip"):
        if not isinstance(getattr(r, name), bool):
            raise _fail(r, f"{name} must be true or false, got {getattr(r, name)!r}")
    if not r.resolution:
        raise _fail(r, "resolution schedule is empty")
    previous = -1
    for i, pair in enumerate(r.resolution):
        if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
            raise _fail(r, f"resolution[{i}] must be [start_epoch, size] integers, got {list(pair)!r}")
        start, size = pair
        if i == 0 and start != 0:
            raise _fail(r, "the resolution schedule must start at epoch 0")
        if start <= previous or start >= r.epochs:
            raise _fail(r, f"resolution[{i}] starts at epoch {start}: starts must increase and be < epochs")
        if not 8 <= size <= 1024:
            raise _fail(r, f"resolution[{i}] size must be within 8..1024, got {size}")
        previous = start
    if r.eval_resolution is not None and (
        not isinstance(r.eval_resolution, int)
        or isinstance(r.eval_resolution, bool)
        or not 8 <= r.eval_resolution <= 1024
    ):
        raise _fail(r, f"eval_resolution must be an integer within 8..1024, got {r.eval_resolution!r}")
    lo, hi = r.crop_scale
    if not (_number(lo) and _number(hi) and 0 < lo <= hi <= 1):
        raise _fail(r, f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(r.crop_scale)!r}")


def _normalise(data: dict[str, Any], where: str) -> dict[str, Any]:
    data = dict(data)
    if "description" in data and data["description"] is None:  # YAML's "description:" left empty
        data["description"] = ""
    res = data.get("resolution")
    if isinstance(res, (int, float)) and not isinstance(res, bool):
        data["resolution"] = ((0, res),)
    elif isinstance(res, (list, tuple)):
        pairs = []
        for item in res:
            if isinstance(item, dict) and set(item) == {"epoch", "size"}:
                item = (item["epoch"], item["size"])
            if not isinstance(item, (list, tuple)):
                raise RecipeError(f"{where}: resolution entries must be [start_epoch, size], got {item!r}")
            pairs.append(tuple(item))
        data["resolution"] = tuple(pairs)
    elif res is not None:
        raise RecipeError(f"{where}: resolution must be a size or a list of [start_epoch, size], got {res!r}")
    if "crop_scale" in data:
        cs = data["crop_scale"]
        if not isinstance(cs, (list, tuple)) or len(cs) != 2:
            raise RecipeError(f"{where}: crop_scale must be [low, high], got {cs!r}")
        data["crop_scale"] = tuple(cs)
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "step_every", "step_gamma", "min_lr_ratio",
                 "data_fraction", "label_smoothing", "ema_decay", "dropout"):  # fmt: skip
        if isinstance(data.get(name), int) and not isinstance(data.get(name), bool):
            data[name] = float(data[name])
    return data


def from_dict(data: Any, *, where: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from a mapping (as read from YAML), with one-line errors."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a mapping of fields, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RecipeError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(names))})")
    data = _normalise(data, where)
    try:
        return Recipe(**data)
    except TypeError as exc:  # e.g. a list where a number belongs, caught before validation
        raise RecipeError(f"{where}: {exc}") from None


def builtin_names(spaces: bool = False) -> list[str]:
    """Names of the recipes (or, with ``spaces``, the proxy spaces ``*-space``) in ``accelnas/training/recipes``."""
    folder = resources.files("accelnas.training") / "recipes"
    names = sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
    return [n for n in names if n.endswith("-space") == spaces]


def read_yaml(text_or_name: str | Path, kind: str = "recipe") -> tuple[Any, str]:
    """Parsed YAML of a file path or a built-in name of ``kind`` ("recipe" or "proxy space"), and
    where it came from."""
    spaces = kind == "proxy space"
    path = Path(text_or_name)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise RecipeError(f"{kind} file not found: {path}")
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(f"cannot read {kind} file {path}: {describe(exc)}") from None
    else:
        name = str(text_or_name)
        if name in builtin_names(spaces=not spaces):
            use = "proxy-search --space" if not spaces else "train --recipe or proxy-search --reference"
            other = "a proxy space" if not spaces else "a recipe"
            raise RecipeError(f"built-in {name!r} is {other}, not a {kind}; use it with accelnas {use}")
        if name not in builtin_names(spaces=spaces):
            known = ", ".join(builtin_names(spaces=spaces))
            raise RecipeError(f"unknown {kind} {name!r}: not a file and not a built-in ({known})")
        resource = resources.files("accelnas.training") / "recipes" / f"{name}.yaml"
        text, where = resource.read_text(encoding="utf-8"), f"built-in {kind} {name}"
    try:
        return yamlio.load(text), where
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: invalid YAML: {yamlio.problem(exc)}") from None


def load_recipe(source: str | Path) -> Recipe:
    """A recipe from a YAML file path or a built-in name (``accelnas train --list-recipes``)."""
    data, where = read_yaml(source)
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": Path(str(source)).stem}
    return from_dict(data, where=where)


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write ``recipe`` as YAML to ``path`` (replaced whole; parents created); returns the path."""
    path = Path(path)
    files.write_text(path, recipe.to_yaml())
    return path


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Recipe",
    "RecipeError",
    "builtin_names",
    "from_dict",
    "load_recipe",
    "read_yaml",
    "save_recipe",
]
