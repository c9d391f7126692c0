"""Saving and loading surrogates without pickle.

A surrogate is a directory holding the model in its library's native format (XGBoost JSON) and
``surrogate.json``: format version, family, parameters, feature encoding, target and metric, the
dataset's hash, library versions, fidelity metrics, seed, and the model file's SHA-256 (so a
corrupt or swapped file is detected before use).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelnas.core.errors import SurrogateError
from accelnas.core.provenance import package_version
from accelnas.surrogates.features import ENCODINGS
from accelnas.surrogates.xgboost_model import XGBoostSurrogate

FORMAT = "accelnas-surrogate"
FORMAT_VERSION = 1
METADATA_FILE = "surrogate.json"
MODEL_FILES = {"xgboost": "model.json"}


@dataclass
class SurrogateArtifact:
    """A fitted model and what is known about it."""

    model: XGBoostSurrogate
    target: str
    metric: str
    unit: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def predict(self, archs):
        return self.model.predict(archs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(artifact: SurrogateArtifact, out_dir: str | Path) -> Path:
    """Write ``artifact`` into ``out_dir`` (created); return the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = artifact.model
    model_path = out / MODEL_FILES[model.family]
    model.booster_.save_model(str(model_path))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "params": model.get_params(),
        "encoding": model.encoding,
        "target": artifact.target,
        "metric": artifact.metric,
        "unit": artifact.unit,
        "metrics": artifact.metrics,
        "dataset": artifact.dataset,
        "extra": artifact.extra,
        "model_file": model_path.name,
        "model_sha256": _sha256(model_path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {name: package_version(name) for name in ("accelnas", "xgboost", "numpy")},
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return out


def load(path: str | Path) -> SurrogateArtifact:
    """Load a surrogate directory (or its ``surrogate.json``); raise :class:`SurrogateError` if unusable."""
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
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise SurrogateError(
            f"{meta_path} has surrogate format {meta.get('format_version')}; this accelnas reads up to {FORMAT_VERSION}"
        )
    family = meta.get("family")
    if family not in MODEL_FILES:
        raise SurrogateError(f"{meta_path}: unknown model family {family!r}")
    if meta.get("encoding") not in ENCODINGS:
        raise SurrogateError(f"{meta_path}: unknown feature encoding {meta.get('encoding')!r}")
    model_path = meta_path.parent / str(meta.get("model_file", MODEL_FILES[family]))
    if not model_path.is_file():
        raise SurrogateError(f"surrogate model file missing: {model_path}")
    if _sha256(model_path) != meta.get("model_sha256"):
        raise SurrogateError(f"surrogate model file {model_path} does not match its recorded checksum (corrupt?)")
    try:
        import xgboost as xgb

        model = XGBoostSurrogate(**meta.get("params", {}))
        booster = xgb.Booster()
        booster.load_model(str(model_path))
        model.booster_ = booster
    except Exception as exc:
        raise SurrogateError(f"cannot load surrogate model {model_path}: {type(exc).__name__}: {exc}") from None
    return SurrogateArtifact(
        model=model,
        target=meta["target"],
        metric=meta["metric"],
        unit=meta.get("unit"),
        metrics=meta.get("metrics", {}),
        dataset=meta.get("dataset", {}),
        extra=meta.get("extra", {}),
    )
