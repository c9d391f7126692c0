"""Plain records exchanged between the core and device plugins, and their validation."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelnas.core.errors import PASS_THROUGH, AccelnasError, PluginError, UnknownOptionError, first_line

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # targets whose check_values gave options that cannot key results

METRICS: tuple[str, ...] = ("throughput", "latency")
UNITS = {"throughput": "images/s", "latency": "ms"}
SQLITE_MAX_INT = 2**63 - 1  # the largest integer an SQLite column holds
_REPR = reprlib.Repr()
_REPR.maxlong = _REPR.maxstring = _REPR.maxother = 60


def _show(value: object) -> str:
    """A short one-line repr for error messages (a 400-digit int is cut)."""
    return _REPR.repr(value).replace("\n", " ")


def finite_float(value: object, name: str) -> float:
    """``value`` (any real number but a bool, numpy scalars included) as a finite Python float."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            result = float(value)
        except (OverflowError, ValueError, TypeError):
            pass
        else:
            if math.isfinite(result):
                return result
    raise ValueError(f"{name} must be a finite number, got {_show(value)}")


def is_whole(value: object) -> bool:
    """Whether ``value`` is a whole number (Python's or numpy's int), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (int or float, Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value: object, name: str) -> int:
    """``value`` (any integral number but a bool) as a Python int within 1..SQLITE_MAX_INT."""
    if is_whole(value) and 1 <= int(value) <= SQLITE_MAX_INT:
        return int(value)
    raise ValueError(f"{name} must be a positive int, got {_show(value)}")


def _is_bool(value: object) -> bool:
    """True for ``bool`` and numpy's bool scalar (not registered as a number)."""
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def _plain(value: Any) -> Any:
    """``value`` with the numbers inside its dicts, lists and tuples as Python ``bool``/``int``/``float``."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_plain(item) for item in value)
    if _is_bool(value):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, float):
        return float(value)
    return value


def names_target(name: str, target: str) -> bool:
    """Whether ``name`` names ``target``: its full ``device/backend`` name, or its device alone (``cpu``)."""
    return target == name or ("/" not in name and target.split("/")[0] == name)


@dataclass(frozen=True)
class Target:
    """A measurable (device, backend) pair declared by a plugin through ``register_targets``.

    ``available`` is False when the SDK or hardware is missing; ``reason`` then says why.
    ``options`` names the backend option keys the target reads (``--option KEY=VALUE``); a campaign
    asking for any other key is refused. ``None`` leaves them undeclared: every key passes through.
    ``check_values`` (optional) is called with a campaign's settings before it starts and raises an
    :class:`~accelnas.core.errors.AccelnasError` for an option value the target cannot use; where it
    returns a mapping, that is the options in the target's own spelling (defaults left out), and
    results are keyed by it, so ``bf16`` and ``bfloat16``, or a default given explicitly, key alike.
    ``latency_batch_size`` is the batch latency is measured at: 1 unless the hardware runs a fixed
    larger batch (a DPU compiled for batch 6); a latency measurement at another batch is refused.
    ``needs_model`` False spares building and calibrating the PyTorch model of each architecture for
    a backend that never uses it (``export_model`` then gets ``model=None``). ``protocol`` labels what
    the backend times, when that is not in the settings (a tool's environment); it is part of each
    result's settings key, so results timed another way are never resumed or merged with these.
    """

    device: str
    backend: str
    description: str = ""
    kind: str = "cpu"
    metrics: tuple[str, ...] = METRICS
    default_batch_size: int = 16
    requires: tuple[str, ...] = ()
    available: bool = True
    reason: str | None = None
    options: tuple[str, ...] | None = None
    check_values: Callable[[MeasureSettings], object] | None = field(default=None, compare=False, repr=False)
    latency_batch_size: int = 1
    needs_model: bool = True
    protocol: str | None = None
    plugin: str | None = None  # filled in by the core when the target is registered

    @property
    def name(self) -> str:
        return f"{self.device}/{self.backend}"

    def __post_init__(self) -> None:
        for part, label in ((self.device, "device"), (self.backend, "backend")):
            if not part or "/" in part or part.strip() != part:
                raise ValueError(f"target {label} must be a non-empty name without '/', got {part!r}")
        for name in ("metrics", "requires", "options"):  # a str would be read as its letters
            if isinstance(getattr(self, name), str):
                raise ValueError(f"target {self.device}/{self.backend}: {name} must be a tuple of names, not a string")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"target {self.device}/{self.backend}: unknown metric {bad[0]!r}")
        if not self.metrics:  # a campaign on it would measure nothing and report success
            raise ValueError(f"target {self.device}/{self.backend}: metrics must name at least one of {METRICS}")
        object.__setattr__(self, "metrics", tuple(dict.fromkeys(self.metrics)))
        for name in ("available", "needs_model"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"target {self.device}/{self.backend}: {name} must be True or False")
        for name in ("default_batch_size", "latency_batch_size"):
            value = getattr(self, name)
            if not is_whole(value) or value < 1:
                raise ValueError(f"target {self.device}/{self.backend}: {name} must be an int >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.options is not None:
            object.__setattr__(self, "options", tuple(self.options))

    def check_options(self, settings: MeasureSettings) -> dict[str, Any]:
        """The options as results are keyed by; raise :class:`UnknownOptionError` for a key of
        ``settings.options`` the target does not declare or a value its ``check_values`` refuses."""
        if self.options is not None:
            unknown = [key for key, _ in settings.options if key not in self.options]
            if unknown:
                known = ", ".join(self.options) or "none"
                raise UnknownOptionError(f"target {self.name} has no option {unknown[0]!r} (its options: {known})")
        if self.check_values is None:
            return dict(settings.options)
        try:
            canonical = self.check_values(settings)
        except AccelnasError as exc:
            if type(exc).exit_code != AccelnasError.exit_code:  # e.g. unavailable (3): keep its meaning
                raise
            raise UnknownOptionError(f"target {self.name}: {first_line(exc)}") from None
        except PASS_THROUGH:
            raise
        except BaseException as exc:  # a parser's ValueError, even sys.exit(): a refused value, the plugin's
            raise PluginError(
                f"plugin {self.plugin!r} raised in check_values of {self.name}: {type(exc).__name__}: "
                f"{first_line(exc)}",
                plugin=self.plugin,
            ) from None
        if not isinstance(canonical, Mapping):  # a check only: the options key results as given
            return dict(settings.options)
        if not all(isinstance(k, str) and _json_value(v) for k, v in canonical.items()):
            if self.name not in _WARNED:
                _WARNED.add(self.name)
                log.warning(
                    "plugin %r: check_values of %s returned options that are not text keys with JSON values "
                    "(%r); results are keyed by the options as typed",
                    self.plugin, self.name, canonical,
                )  # fmt: skip
            return dict(settings.options)
        return dict(canonical)


def _json_value(value: Any) -> bool:
    """True for a value JSON keeps as it is (a settings key must not depend on ``default=str``)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return False


@dataclass(frozen=True)
class MeasureSettings:
    """What a campaign asks every measurement to honour. Part of each result's identity."""

    input_size: int = 224
    batch_size: int | None = None  # throughput batch; None = the target's default
    precision: float = 0.02  # relative half-width of the 95% CI of the mean
    max_seconds: float = 30.0  # time budget of the timed phase, per metric
    warmup_seconds: float = 5.0  # warm-up budget, counted from the 3 calls that always run; windows stop at it
    min_samples: int = 20
    threads: int | None = None  # intra-op threads; None = the physical cores this process may use
    options: tuple[tuple[str, Any], ...] = ()  # backend-specific options, sorted (key, value) pairs

    def __post_init__(self) -> None:
        if not 16 <= self.input_size <= 1024:
            raise ValueError(f"input size must be within 16..1024, got {self.input_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        for name in ("precision", "max_seconds", "warmup_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {_show(value)}")
        if not 0 < self.precision < 1:
            raise ValueError(f"precision must be within (0, 1), got {self.precision}")
        if self.max_seconds <= 0 or self.warmup_seconds < 0:
            raise ValueError("time budgets must be positive")
        if self.min_samples < 2:
            raise ValueError("min_samples must be >= 2")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")

    def batch_for(self, target: Target) -> int:
        return self.batch_size or target.default_batch_size

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def identity(self, target: Target) -> dict[str, Any]:
        """Settings that change what is measured (time budgets do not), with the batch resolved.

        ``threads`` stays as given: None (each machine's default, its count in every result's
        provenance) keys results of different machines alike; pass a count to tell them apart. The
        options are the target's own spelling of them where its ``check_values`` gives one.
        """
        identity = {
            "input_size": self.input_size,
            "batch_size": self.batch_for(target),
            "threads": self.threads,
            "options": target.check_options(self),
        }
        if target.protocol is not None:  # absent otherwise: the keys of targets without one stay as they were
            identity["protocol"] = target.protocol
        return identity

    def key(self, target: Target) -> str:
        """Short stable hash of :meth:`identity`."""
        return _settings_key(self.identity(target))

    def typed_key(self, target: Target) -> str:
        """The key results had when options were keyed as typed (before targets gave their own
        spelling): a campaign moves results stored under it to :meth:`key`."""
        return _settings_key(self.identity(target) | {"options": dict(self.options)})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d


def _settings_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ExportedModel:
    """Result of ``export_model``: a file (ONNX, TorchScript, xmodel, ...) or an in-memory object."""

    format: str
    path: Path | None = None
    obj: Any = None
    input_name: str = "input"
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompiledModel:
    """Result of ``compile``: whatever the backend runs (a session, an engine), plus facts about it."""

    handle: Any
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measurement:
    """One measured metric of one architecture on one target, with its statistics and provenance."""

    metric: str
    unit: str
    mean: float
    std: float
    ci_low: float
    ci_high: float
    samples: list[float]
    batch_size: int
    input_size: int
    precision_reached: bool
    extra: dict[str, Any] = field(default_factory=dict)  # p50/p90/p99, warm-up facts, ...
    provenance: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> Measurement:
        """Raise ``ValueError`` naming the first malformed field.

        Numbers of other types (numpy scalars) are converted in place to Python ``float``/``int``/``bool``,
        so what is stored is plain data; one that no SQLite column can hold is malformed.
        """
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {METRICS}")
        if self.unit != UNITS[self.metric]:
            raise ValueError(f"unit {self.unit!r} for {self.metric}, expected {UNITS[self.metric]!r}")
        for name in ("mean", "std", "ci_low", "ci_high"):
            setattr(self, name, finite_float(getattr(self, name), name))
        if self.mean <= 0:
            raise ValueError(f"mean must be positive, got {self.mean}")
        if self.std < 0:
            raise ValueError(f"std must be >= 0, got {self.std}")
        if not self.ci_low <= self.mean <= self.ci_high:
            raise ValueError(f"confidence interval [{self.ci_low}, {self.ci_high}] does not contain the mean")
        if not isinstance(self.samples, list) or not self.samples:
            raise ValueError("samples must be a non-empty list")
        samples = []
        for i, value in enumerate(self.samples):
            sample = finite_float(value, f"samples[{i}]")
            if sample <= 0:
                raise ValueError(f"samples must be positive, got samples[{i}] = {sample}")
            samples.append(sample)
        self.samples = samples
        slack = 1e-9 * self.mean  # the mean of its own samples (a throughput's: batch / mean time) lies within them
        if not min(samples) - slack <= self.mean <= max(samples) + slack:
            raise ValueError(f"mean {self.mean:g} is outside its samples' range [{min(samples):g}, {max(samples):g}]")
        self.batch_size = positive_int(self.batch_size, "batch_size")
        self.input_size = positive_int(self.input_size, "input_size")
        if not _is_bool(self.precision_reached):
            raise ValueError(f"precision_reached must be a bool, got {_show(self.precision_reached)}")
        self.precision_reached = bool(self.precision_reached)
        if not isinstance(self.extra, dict) or not isinstance(self.provenance, dict):
            raise ValueError("extra and provenance must be dicts")
        self.extra, self.provenance = _plain(self.extra), _plain(self.provenance)
        json.dumps(self.extra, default=str)
        json.dumps(self.provenance, default=str)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def relative_ci(self) -> float:
        return (self.ci_high - self.ci_low) / 2 / self.mean
