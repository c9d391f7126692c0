"""Per-device datasets: the long-format table surrogates are fitted on.

One row per (architecture, target, metric, settings): the architecture's config columns
(``block{i}_e/_k/_l/_se``), then ``target``, ``metric``, ``value`` (mean), ``std``, CI, ``unit``,
batch and input size, ``settings_key``, ``source`` and ``sequence`` (when the row was measured, as a
sortable number: the measurement's timestamp, or a record number; drift correction uses it).
Campaign exports and imports of the public Accel-NASBench files share this schema; files are
Parquet (with a CSV copy for people).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from accelnas.core import files
from accelnas.core.errors import DatasetError, InvalidArchitectureError, InvalidArgumentError
from accelnas.core.hardware import mixed_hardware
from accelnas.core.records import names_target
from accelnas.core.space import FEATURE_NAMES, Architecture
from accelnas.core.store import Store, value_problem

COLUMNS: tuple[str, ...] = (
    "arch_id",
    *FEATURE_NAMES,
    "target",
    "metric",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "unit",
    "batch_size",
    "input_size",
    "precision_reached",
    "settings_key",
    "source",
    "sequence",
)
REQUIRED: tuple[str, ...] = ("arch_id", *FEATURE_NAMES, "target", "metric", "value")
# read from CSV as text even when they look like numbers (a settings key may be all digits)
TEXT_COLUMNS: tuple[str, ...] = ("arch_id", "target", "metric", "unit", "settings_key", "source")

log = logging.getLogger(__name__)


def from_store(store: Store, target: str | None = None) -> pd.DataFrame:
    """The ``ok`` results of ``store`` (one target or all) as a dataset frame.

    Logs a warning for each (target, settings key) with measurements still pending (planned, not
    measured) and for each whose timing results were measured on more than one kind of hardware
    (:func:`accelnas.core.hardware.mixed_hardware`). ``frame.attrs["settings"]`` maps each settings
    key to its settings.
    """
    results = store.results(target=target, status="ok")
    for warning in pending_warnings(store, target):
        log.warning("%s: %s", store.path, warning)
    for warning in mixed_hardware((r["target"], r["settings_key"], r["metric"], r["provenance"]) for r in results):
        log.warning("%s: %s", store.path, warning)
    rows = []
    settings: dict[str, dict] = {}
    for r in results:
        if isinstance(r["settings"], dict):
            settings.setdefault(r["settings_key"], r["settings"])
        rows.append(
            {
                "arch_id": r["arch_id"],
                **r["config"],
                "target": r["target"],
                "metric": r["metric"],
                "value": r["value"],
                "std": r["std"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "unit": r["unit"],
                "batch_size": r["batch_size"],
                "input_size": r["input_size"],
                "precision_reached": bool(r["precision_reached"]),
                "settings_key": r["settings_key"],
                "source": f"store:{store.path.name}",
                "sequence": r["updated_at"],
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["settings"] = settings
    return frame


def pending_warnings(store: Store, target: str | None = None) -> list[str]:
    """One message per (target, settings key) of ``store`` with planned measurements not yet made."""
    pending: dict[tuple[str, str], int] = {}
    for row in store.summary():
        if row["pending"] and (target is None or row["target"] == target):
            key = (row["target"], str(row["settings_key"]))
            pending[key] = pending.get(key, 0) + row["pending"]
    return [
        f"{name} [{key[:8]}]: {n} planned measurement{'s' if n != 1 else ''} not made yet (left out); "
        "run the campaign again to measure them (accelnas status shows them)"
        for (name, key), n in sorted(pending.items())
    ]


def file_stem(target: str) -> str:
    """File name for a target's dataset: ``cpu/onnxruntime`` -> ``cpu__onnxruntime``."""
    return target.replace("/", "__")


def check_file_stems(targets: Iterable[str]) -> None:
    """Raise :class:`DatasetError` if two targets would write to one file name (``a_/b`` and ``a/_b``)."""
    seen: dict[str, str] = {}
    for target in targets:
        other = seen.setdefault(file_stem(target), target)
        if other != target:
            raise DatasetError(f"targets {other!r} and {target!r} share the file name {file_stem(target)!r}")


def write(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write one Parquet and one CSV file per target under ``out_dir``; return the paths.

    The frame is validated first (:func:`validate`): what is written always reads back.
    """
    frame = validate(frame, "dataset to write")
    out = Path(out_dir)
    check_file_stems(str(t) for t in frame["target"].unique())
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for target, part in frame.groupby("target", sort=True):
        stem = out / file_stem(str(target))
        part = part.reset_index(drop=True)
        # both written before either replaces its old file: a failed or killed export leaves the old pair
        with files.replacing(stem.with_suffix(".parquet")) as parquet, files.replacing(stem.with_suffix(".csv")) as csv:
            part.to_parquet(parquet, index=False)
            part.to_csv(csv, index=False)
        paths += [stem.with_suffix(".parquet"), stem.with_suffix(".csv")]
    return paths


def read(path: str | Path) -> pd.DataFrame:
    """Read a dataset file (Parquet or CSV) or every ``*.parquet`` of a directory, and validate it."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DatasetError(f"no *.parquet dataset files in {path}")
        return pd.concat([read(f) for f in files], ignore_index=True)
    return validate(read_table(path), str(path))


def read_table(path: str | Path, what: str = "dataset") -> pd.DataFrame:
    """A Parquet (by suffix or magic bytes) or CSV file as a frame, unvalidated; unreadable files raise
    ``DatasetError``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path}")
    try:
        with path.open("rb") as fh:
            parquet = path.suffix == ".parquet" or fh.read(4) == b"PAR1"
        if parquet:
            return pd.read_parquet(path)
        _check_csv_rows(path, what)
        return pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str))
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None


def _check_csv_rows(path: Path, what: str) -> None:
    """Every CSV row has as many fields as the header (a short row is a cut-off file, not missing data)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        for row in reader:
            if header is not None and row and len(row) != len(header):
                raise DatasetError(
                    f"{what} {path}: line {reader.line_num} has {len(row)} fields, the header {len(header)}"
                )


def validate(frame: pd.DataFrame, where: str = "dataset") -> pd.DataFrame:
    """Check columns, architectures, values (finite; positive throughput and latency, accuracy within
    0-100) and that no key repeats; raise :class:`DatasetError` naming the first problem."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DatasetError(f"{where}: missing column {missing[0]!r}")
    for i, row in enumerate(frame[list(FEATURE_NAMES)].to_dict("records")):
        try:
            arch = Architecture.from_config(row)
        except InvalidArchitectureError as exc:
            raise DatasetError(f"{where}: row {i}: {exc}") from None
        if arch.id != frame["arch_id"].iloc[i]:
            raise DatasetError(f"{where}: row {i}: arch_id {frame['arch_id'].iloc[i]!r} does not match its config")
    for column in ("target", "metric"):
        blank = [i for i, v in enumerate(frame[column]) if not isinstance(v, str) or not v.strip()]
        if blank:
            raise DatasetError(f"{where}: row {blank[0]}: no {column}")
    raw = frame["value"]
    flags = raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)  # True/False are not measurements
    values = pd.to_numeric(raw.mask(flags), errors="coerce").astype(float)
    for i, (metric, value) in enumerate(zip(frame["metric"], values, strict=True)):
        if problem := value_problem(metric, float(value)):
            if not math.isfinite(value):  # name the value as the file gives it
                shown = raw.iloc[i]
                problem = f"value {shown.item() if isinstance(shown, np.generic) else shown!r} is not a finite number"
            raise DatasetError(f"{where}: row {i}: {problem}")
    if "unit" in frame.columns:
        _check_units(frame, where)
    keys = frame[[c for c in ("arch_id", "target", "metric", "settings_key") if c in frame.columns]].fillna("")
    later = keys.duplicated(keep="first").to_numpy()
    if later.any():
        j = int(later.argmax())
        i = int((keys == keys.iloc[j]).all(axis=1).to_numpy().argmax())
        raise DatasetError(f"{where}: rows {i} and {j} hold the same architecture, target, metric and settings")
    return frame.assign(value=values)


def _check_units(frame: pd.DataFrame, where: str) -> None:
    """One unit per target and metric (rows without a unit aside): a surrogate records one unit."""
    first: dict[tuple[str, str], tuple[int, str]] = {}
    for i, (target, metric, unit) in enumerate(zip(frame["target"], frame["metric"], frame["unit"], strict=True)):
        if not isinstance(unit, str) or not unit:
            continue
        seen = first.setdefault((target, metric), (i, unit))
        if seen[1] != unit:
            raise DatasetError(
                f"{where}: rows {seen[0]} and {i} give {target}:{metric} in different units ({seen[1]!r}, {unit!r})"
            )


def select(frame: pd.DataFrame, target: str, metric: str) -> pd.DataFrame:
    """Rows of one target and metric measured under a single settings key."""
    part = frame[(frame["target"] == target) & (frame["metric"] == metric)]
    if part.empty:
        have = ", ".join(sorted({f"{t}:{m}" for t, m in zip(frame["target"], frame["metric"], strict=True)}))
        raise DatasetError(f"no {metric} rows for target {target} (dataset has: {have or 'nothing'})")
    if "settings_key" in part.columns and part["settings_key"].nunique() > 1:
        raise DatasetError(
            f"{target}:{metric} was measured under {part['settings_key'].nunique()} different settings "
            f"({describe_settings(part, frame)}); choose one with --settings KEY (repeatable: one per target)"
        )
    return part.reset_index(drop=True)


def describe_settings(part: pd.DataFrame, frame: pd.DataFrame | None = None) -> str:
    """'KEY: 224 px, batch 16, threads 2, 180 rows; ...' for each settings key of ``part``, most rows first.

    The batch is the throughput batch the key was measured with (from ``frame``'s throughput rows of
    the same target and key, where there are any). Threads and backend options come from the
    settings a store export records (``attrs["settings"]``); where the data does not hold them and two
    keys read alike, the description says where to look.
    """
    known: dict = (frame if frame is not None else part).attrs.get("settings") or part.attrs.get("settings") or {}
    parts, alike = [], set()
    for key, rows in sorted(part.groupby("settings_key", dropna=False), key=lambda kv: (-len(kv[1]), str(kv[0]))):
        facts = [f"{int(rows['input_size'].iloc[0])} px"] if _single_value(rows, "input_size") else []
        source = frame if frame is not None else part
        batches = source[
            (source["settings_key"] == key) & (source["metric"] == "throughput") & source["target"].isin(rows["target"])
        ]
        if _single_value(batches, "batch_size"):
            facts.append(f"batch {int(batches['batch_size'].iloc[0])}")
        settings = known.get(key)
        if isinstance(settings, dict):
            facts.append(f"threads {settings.get('threads') or 'all'}")
            if settings.get("options"):
                facts.append(f"options {json.dumps(settings['options'], sort_keys=True)}")
        if tuple(facts) in alike or not facts:
            alike.add(None)
        alike.add(tuple(facts))
        parts.append(f"{key}: {', '.join([*facts, f'{len(rows)} rows'])}")
    text = "; ".join(parts)
    if None in alike:  # the data cannot tell the keys apart: threads or options differ
        text += "; they differ in settings the data does not record (threads, options): accelnas status shows them"
    return text


def _single_value(rows: pd.DataFrame, column: str) -> bool:
    return column in rows.columns and len(rows) > 0 and rows[column].notna().all() and rows[column].nunique() == 1


def resolve_target(name: str, targets: Iterable[str]) -> str:
    """The one of ``targets`` that ``name`` names (``cpu`` for ``cpu/onnxruntime``), else ``name`` itself.

    An InvalidArgumentError when a device name fits several targets.
    """
    matches = sorted({t for t in targets if names_target(name, t)})
    if name in matches or not matches:
        return name
    if len(matches) > 1:
        raise InvalidArgumentError(f"target {name} could be {', '.join(matches)}: give one in full")
    return matches[0]


def with_settings(
    frame: pd.DataFrame,
    choices: Sequence[str],
    *,
    target: str | None = None,
    selected: Iterable[str] | None = None,
) -> pd.DataFrame:
    """``frame`` with the settings each target is kept under chosen by ``choices``.

    A choice is ``TARGET=KEY`` or a bare ``KEY`` (for every target measured under it that no
    ``TARGET=KEY`` names); a key may be any unique start of one. Targets no choice reaches keep all
    their rows. With ``target``, choices must be keys that target was measured under. With
    ``selected`` (the targets a command works on; ``target`` alone where given), a ``TARGET=KEY``
    for any other target, or a bare ``KEY`` of other targets only, is an error rather than a choice
    without effect.
    """
    if not choices:
        return frame
    if "settings_key" not in frame.columns:
        raise InvalidArgumentError("the data has no settings keys to choose from")
    allowed = sorted({target} if target is not None else selected if selected is not None else set(frame["target"]))
    keys_of = frame.groupby("target")["settings_key"].agg(lambda k: sorted({str(x) for x in k.dropna()})).to_dict()
    explicit: dict[str, str] = {}
    bare: list[tuple[str, str]] = []  # (as given, the key it names)
    for choice in choices:
        name, sep, key = choice.rpartition("=")
        if sep and name:
            if name not in keys_of:
                raise InvalidArgumentError(f"--settings {choice}: no target {name} in the data")
            if name not in allowed:
                raise InvalidArgumentError(
                    f"--settings {choice}: {name} is not a target this command works on ({', '.join(allowed)})"
                )
            _choose(explicit, name, _one_key(key, keys_of[name], f" of {name}"))
        elif target is not None:
            _choose(explicit, target, _one_key(key, keys_of.get(target, []), f" of {target}"))
        else:
            bare.append((key, _one_key(key, sorted({k for ks in keys_of.values() for k in ks}), " of the data")))
    chosen = dict(explicit)
    for given, key in bare:
        owners = [name for name, ks in keys_of.items() if key in ks]
        if not set(owners) & set(allowed):
            raise InvalidArgumentError(
                f"--settings {given}: a key of {', '.join(owners)}, not of a target this command works on "
                f"({', '.join(allowed)})"
            )
        for name, ks in keys_of.items():
            if key in ks and name not in explicit:
                _choose(chosen, name, key, hint=f": use {name}=KEY to choose one")
    keep = ~frame["target"].isin(set(chosen))
    for name, key in chosen.items():
        keep |= (frame["target"] == name) & (frame["settings_key"] == key)
    return frame[keep].reset_index(drop=True)


def _choose(chosen: dict[str, str], name: str, key: str, hint: str = "") -> None:
    """Note ``key`` as the settings of target ``name``; an InvalidArgumentError if another key is noted."""
    if chosen.get(name, key) != key:
        raise InvalidArgumentError(f"--settings names two keys of {name} ({chosen[name]}, {key}){hint}")
    chosen[name] = key


def _one_key(start: str, keys: Sequence[str], whose: str) -> str:
    """The one key of ``keys`` that starts with ``start``; an InvalidArgumentError otherwise."""
    matches = [k for k in keys if k.startswith(start)] if start else []
    if len(matches) != 1:
        what = "matches no" if not matches else f"matches {len(matches)}"
        raise InvalidArgumentError(f"settings {start!r} {what} settings key{whose} (have: {', '.join(keys) or 'none'})")
    return matches[0]
