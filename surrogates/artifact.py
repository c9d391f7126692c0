"""Saving and loading surrogates without pickle.

A surrogate is a directory: ``surrogate.json`` (format version, target, metric, unit, the model's
family, parameters and fitted state as JSON, fidelity metrics, dataset hash, library versions,
creation time) and the native model files it names (XGBoost JSON, LightGBM text), each with its
SHA-256 so that a corrupt or swapped file is detected before use.

Model files are stored under names that carry their checksum (``xgboost.json`` as
``xgboost.<12 hex digits>.json``; ``stored_as`` in ``surrogate.json`` maps one to the other), and
``surrogate.json`` is replaced last: a surrogate saved over an older one and killed midway leaves the
older one whole and loadable; the older one's model files are removed once the new one is in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accelnas.core import files as files_
from accelnas.core import jsonio
from accelnas.core.errors import SurrogateError, describe
from accelnas.core.provenance import package_version
from accelnas.core.records import is_whole
from accelnas.core.space import EFFICIENTNET_B0
from accelnas.surrogates import models
from accelnas.surrogates.features import ENCODINGS
from accelnas.surrogates.models import BlendSurrogate, SeedEnsemble, Surrogate

log = logging.getLogger(__name__)

FORMAT = "accelnas-surrogate"
FORMAT_VERSION = 2  # 2: model files stored under names carrying their checksum (``stored_as``)
METADATA_FILE = "surrogate.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class SurrogateArtifact:
    """A fitted model and what is known about it."""

    model: Surrogate | SeedEnsemble
    target: str
    metric: str
    unit: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def predict(self, archs) -> np.ndarray:
        return self.model.predict(archs)

    def predict_dist(self, archs) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (over seed-ensemble or blend members; zero for a single model)."""
        if isinstance(self.model, SeedEnsemble | BlendSurrogate):
            return self.model.predict_dist(archs)
        mean = self.model.predict(archs)
        return mean, np.zeros_like(mean)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _state_sha256(state: Any) -> str:
    """Checksum of a model state as stored (JSON with sorted keys), so edited coefficients are caught."""
    canonical = json.dumps(json.loads(json.dumps(state, default=_json_default)), sort_keys=True, separators=(",", ":"))
    return _sha256(canonical.encode())


def save(artifact: SurrogateArtifact, out_dir: str | Path) -> Path:
    """Write ``artifact`` into ``out_dir`` (created); return the directory.

    What :func:`load` would refuse (no target or metric, an unfitted model) is refused before writing.
    """
    if not isinstance(artifact, SurrogateArtifact):
        raise TypeError(f"save takes a SurrogateArtifact, got {type(artifact).__name__}")
    for key in ("target", "metric"):
        if not isinstance(getattr(artifact, key), str) or not getattr(artifact, key):
            raise SurrogateError(f"cannot save a surrogate without a {key} (got {getattr(artifact, key)!r})")
    if not getattr(artifact.model, "fitted_", False):
        raise SurrogateError("cannot save an unfitted surrogate: fit it first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state, files = artifact.model.to_state()
    for name in files:
        if not _SAFE_NAME.match(name):
            raise SurrogateError(f"refusing model file name {name!r}")
    digests = {name: _sha256(data) for name, data in files.items()}
    stored_as = {name: _stored_name(name, digests[name]) for name in files}
    replaced = _stored_files(out)
    for name, data in files.items():
        files_.write_bytes(out / stored_as[name], data)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": artifact.target,
        "metric": artifact.metric,
        "unit": artifact.unit,
        "model": state,
        "model_sha256": _state_sha256(state),
        "files": digests,
        "stored_as": stored_as,
        "metrics": artifact.metrics,
        "dataset": artifact.dataset,
        "extra": artifact.extra,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {name: package_version(name) for name in ("accelnas", "xgboost", "lightgbm", "numpy")},
    }
    # the model state is written as it is (its checksum covers it); the rest as strict JSON (NaN as null)
    meta = {key: value if key == "model" else jsonio.plain(value) for key, value in meta.items()}
    # written last, and whole: a save that fails midway never leaves metadata naming half-written files
    files_.write_text(out / METADATA_FILE, json.dumps(meta, default=_json_default) + "\n")
    keep = set(stored_as.values())
    for stale in sorted((replaced | _leftovers(out, files)) - keep):
        if (out / stale).is_file():  # the new surrogate is in place; an old file that stays is harmless
            files_.remove(out / stale, "old model file")
    return out


def _stored_name(name: str, digest: str) -> str:
    """``xgboost.json`` stored as ``xgboost.<first 12 hex digits of its SHA-256>.json``."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{digest[:12]}.{suffix}" if dot and stem else f"{name}.{digest[:12]}"


def _stored_pattern(name: str) -> re.Pattern[str]:
    """What :func:`_stored_name` makes of ``name`` under any checksum."""
    stem, dot, suffix = name.rpartition(".")
    if dot and stem:
        return re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{12}}\.{re.escape(suffix)}")
    return re.compile(rf"{re.escape(name)}\.[0-9a-f]{{12}}")


def _stored_files(directory: Path) -> set[str]:
    """Model files the surrogate now in ``directory`` uses (none when there is none, or it is not one)."""
    if not (directory / METADATA_FILE).is_file():
        return set()
    try:
        _, meta = _read_metadata(directory)
        disk = {_disk_name(meta, name) for name in meta.get("files") or {}}
    except (SurrogateError, OSError, TypeError, AttributeError):  # not an accelnas surrogate: remove nothing
        return set()
    return {name for name in disk if _SAFE_NAME.match(name) and name != METADATA_FILE}


def _leftovers(directory: Path, names: Iterable[str]) -> set[str]:
    """Files of a save killed before its ``surrogate.json``: ``names`` stored under another checksum."""
    patterns = [_stored_pattern(name) for name in names]
    return {p.name for p in directory.iterdir() if any(pattern.fullmatch(p.name) for pattern in patterns)}


def _disk_name(meta: dict[str, Any], name: str) -> str:
    """The file that holds model file ``name`` (format 1 stored each under its own name)."""
    stored = meta.get("stored_as") or {}
    return stored.get(name, name) if isinstance(stored, dict) else name


def model_file(path: str | Path, name: str) -> Path:
    """Path of model file ``name`` (as the model's state names it) in surrogate directory ``path``."""
    meta_path, meta = _read_metadata(path)
    return meta_path.parent / _disk_name(meta, name)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _encodings(state: dict[str, Any]) -> list[str]:
    if "members" in state:  # a seed ensemble
        return [e for m in state["members"] for e in _encodings(m)]
    own = state.get("state")
    members = own.get("members") if isinstance(own, dict) else None  # a blend
    nested = [e for m in members if isinstance(m, dict) for e in _encodings(m)] if isinstance(members, list) else []
    return [state.get("params", {}).get("encoding"), *nested]


def _read_metadata(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``surrogate.json`` of a surrogate directory, checked for format, version and field types."""
    path = Path(path)
    meta_path = path if path.name == METADATA_FILE else path / METADATA_FILE
    if not meta_path.is_file():
        raise SurrogateError(f"no surrogate at {path} ({METADATA_FILE} not found)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SurrogateError(f"corrupt surrogate metadata {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SurrogateError(f"{meta_path} is not an accelnas surrogate")
    version = meta.get("format_version")
    if not is_whole(version) or not 1 <= version <= FORMAT_VERSION:
        raise SurrogateError(
            f"{meta_path} has surrogate format {version!r}; this accelnas reads formats 1 to {FORMAT_VERSION}"
        )
    _check_fields(meta, meta_path)
    return meta_path, meta


def identity(path: str | Path) -> tuple[str, str]:
    """(target, metric) of a surrogate directory, read without loading its model."""
    _, meta = _read_metadata(path)
    return meta["target"], meta["metric"]


def load(path: str | Path) -> SurrogateArtifact:
    """Load a surrogate directory (or its ``surrogate.json``); raise :class:`SurrogateError` if unusable."""
    meta_path, meta = _read_metadata(path)
    state = meta.get("model")
    if not isinstance(state, dict):
        raise SurrogateError(f"{meta_path}: no model state")
    try:
        unknown = [e for e in _encodings(state) if e not in ENCODINGS]
    except (AttributeError, TypeError):
        raise SurrogateError(f"{meta_path}: malformed model state (its parameters are not an object)") from None
    if unknown:
        raise SurrogateError(f"{meta_path}: unknown feature encoding {unknown[0]!r}")
    digest = meta.get("model_sha256")
    if digest is None:  # surrogates written before it was recorded
        log.warning("%s records no model_sha256: its model state is loaded unchecked", meta_path)
    elif digest != _state_sha256(state):
        raise SurrogateError(f"{meta_path}: the model state does not match its recorded checksum (corrupt?)")
    files: dict[str, bytes] = {}
    for name, digest in (meta.get("files") or {}).items():
        disk = _disk_name(meta, name)
        file = meta_path.parent / disk
        if not (_SAFE_NAME.match(name) and _SAFE_NAME.match(disk)) or not file.is_file():
            raise SurrogateError(f"surrogate model file missing: {file}")
        data = file.read_bytes()
        if _sha256(data) != digest:
            raise SurrogateError(f"surrogate model file {file} does not match its recorded checksum (corrupt?)")
        files[name] = data
    try:
        model = models.from_state(state, files)
    except SurrogateError as exc:
        raise SurrogateError(f"{meta_path}: {exc}") from None
    except KeyError as exc:
        missing = str(exc.args[0]) if exc.args else "?"
        if _SAFE_NAME.match(missing) and "." in missing:  # a native model file the state names
            reason = f"the model needs file {missing!r}, which 'files' does not list"
        else:
            reason = f"the model state lacks {missing!r}"
        raise SurrogateError(f"{meta_path}: {reason}") from None
    except Exception as exc:
        # describe: a native library's message can go on with its stack trace, one frame a line
        raise SurrogateError(f"cannot load surrogate {meta_path}: {describe(exc)}") from None
    _check_predicts(model, meta_path)
    return SurrogateArtifact(
        model=model,
        target=meta["target"],
        metric=meta["metric"],
        unit=meta.get("unit"),
        metrics=meta.get("metrics") or {},
        dataset=meta.get("dataset") or {},
        extra=meta.get("extra") or {},
    )


def _check_predicts(model: Any, meta_path: Path) -> None:
    """A loaded model must predict a finite value for EfficientNet-B0 (a state edited out of shape does not)."""
    try:
        value = np.asarray(model.predict([EFFICIENTNET_B0]), dtype=float)
    except Exception as exc:
        reason = describe(exc)
        raise SurrogateError(f"{meta_path}: the model state is malformed ({reason})") from None
    if value.shape != (1,) or not np.isfinite(value).all():
        raise SurrogateError(f"{meta_path}: the model state is malformed (it predicts {value.tolist()!r})")


def _check_fields(meta: dict[str, Any], meta_path: Path) -> None:
    """Raise :class:`SurrogateError` naming the first metadata field of the wrong type."""
    for key in ("target", "metric"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise SurrogateError(f"{meta_path}: '{key}' must be a non-empty string, got {meta.get(key)!r}")
    if meta.get("unit") is not None and not isinstance(meta["unit"], str):
        raise SurrogateError(f"{meta_path}: 'unit' must be a string or null, got {meta['unit']!r}")
    for key in ("metrics", "dataset", "extra"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise SurrogateError(f"{meta_path}: '{key}' must be an object, got {type(meta[key]).__name__}")
    files = meta.get("files")
    if files is not None and not (
        isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise SurrogateError(f"{meta_path}: 'files' must map file names to SHA-256 checksums")
    stored = meta.get("stored_as")
    if stored is not None and not (
        isinstance(stored, dict)
        and set(stored) == set(files or {})
        and all(isinstance(v, str) and _SAFE_NAME.match(v) for v in stored.values())
    ):
        raise SurrogateError(f"{meta_path}: 'stored_as' must map each of 'files' to a plain file name")
