"""Close the loop: measure found architectures on a real target and compare with the predictions.

The campaign machinery measures (and stores) the architectures; the report says which prediction
they were compared against. Surrogates of the paper's devices predict other hardware than the one
measured here, so only the ranking (Kendall τ, Spearman ρ) is comparable then; relative errors are
reported when the prediction is for the measured target itself (a surrogate fitted on its campaign).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accelnas.core.campaign import Progress, run_campaign
from accelnas.core.errors import AccelnasError, TargetUnavailableError
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.store import Store
from accelnas.search.objectives import Objective
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.benchmark import Benchmark
from accelnas.surrogates.metrics import regression_metrics


@dataclass(frozen=True)
class PredictionSource:
    """Predicted values of one metric for the architectures to verify, and where they come from."""

    metric: str  # throughput or latency: what gets measured
    target: str  # the target the prediction is for (e.g. a100/anb, cpu/onnxruntime)
    label: str  # human-readable origin
    mean: np.ndarray
    settings_key: str | None = None  # the settings the predicting surrogate was fitted under, where known


def _measurable(objective: Objective) -> None:
    if objective.metric == "accuracy":
        raise AccelnasError("accuracy cannot be measured on a device target; compare against a throughput or latency")
    if objective.device is None:
        raise AccelnasError(f"--against {objective.name}: name the device, e.g. {objective.metric}@a100")


def from_front_column(
    frame: pd.DataFrame, objective: Objective, target: str | None = None, settings_key: str | None = None
) -> PredictionSource:
    """The predictions stored in the front file's column for ``objective``.

    ``target`` is the benchmark target that predicted them and ``settings_key`` the settings its
    surrogate was fitted under (``front.json`` records both); without a target the device name
    stands in.
    """
    _measurable(objective)
    if objective.name not in frame.columns:
        raise AccelnasError(
            f"the front file has no column {objective.name!r}; give --benchmark DIR to predict it "
            f"(columns: {', '.join(c for c in frame.columns if '@' in c and not c.endswith('_std')) or 'none'})"
        )
    values = pd.to_numeric(frame[objective.name], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise AccelnasError(f"the front file's column {objective.name!r} has missing or non-numeric values")
    return PredictionSource(
        objective.metric, target or str(objective.device), f"{objective.name} (front file column)", values, settings_key
    )


def front_sources(front_json: Path) -> dict[str, tuple[str, str | None]]:
    """{column name: (benchmark target, settings key or None)} recorded in a ``front.json`` (empty when
    absent or unreadable)."""
    import json

    try:
        data = json.loads(front_json.read_text())
        sources: dict[str, tuple[str, str | None]] = {
            o["name"]: (o["target"], None) for o in data.get("objectives", [])
        }
        for name, p in data.get("predicted_by", {}).items():
            sources[name] = (p["target"], p.get("settings_key"))
        return sources
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def from_benchmark(bench: Benchmark, objective: Objective, archs: Sequence[Architecture]) -> PredictionSource:
    """Fresh predictions of a benchmark for ``objective``."""
    _measurable(objective)
    pred = bench.query(list(archs), device=objective.device, metric=objective.metric)
    fitted_under = bench.surrogate(objective.device, objective.metric).dataset.get("settings_key")
    return PredictionSource(
        objective.metric, pred.target, f"{objective.name} (benchmark target {pred.target})", pred.mean, fitted_under
    )


def from_surrogate(artifact: SurrogateArtifact, archs: Sequence[Architecture], where: str) -> PredictionSource:
    """Predictions of one surrogate (e.g. fitted on the user's own target)."""
    if artifact.metric not in ("throughput", "latency"):
        raise AccelnasError(f"surrogate {where} predicts {artifact.metric}, which a device target cannot measure")
    mean = np.asarray(artifact.predict(list(archs)), dtype=float)
    label = f"surrogate {where} ({artifact.target} {artifact.metric})"
    return PredictionSource(artifact.metric, artifact.target, label, mean, artifact.dataset.get("settings_key"))


@dataclass
class Verification:
    """Predicted against measured values of the verified architectures."""

    target: str
    metric: str
    unit: str | None
    against: str
    prediction_target: str
    settings_key: str
    ids: list[str]
    predicted: np.ndarray
    measured: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    prediction_settings_key: str | None = None  # what the predictions were fitted under, where known

    @property
    def same_target(self) -> bool:
        """Whether the predictions are for the measured target under the measured settings (where known)."""
        same_settings = self.prediction_settings_key in (None, self.settings_key)
        return self.prediction_target == self.target and same_settings

    def statistics(self) -> dict[str, float | None]:
        """Kendall τ and Spearman ρ; relative errors only when the prediction is for the measured target."""
        stats: dict[str, float | None] = {"kendall_tau": None, "spearman": None}
        if len(self.measured) >= 2:
            m = regression_metrics(self.measured, self.predicted)
            stats["kendall_tau"], stats["spearman"] = m["kendall_tau"], m["spearman"]
        if self.same_target and len(self.measured):
            rel = np.abs(self.predicted - self.measured) / np.abs(self.measured)
            stats["median_relative_error"] = float(np.median(rel))
            stats["mean_relative_error"] = float(np.mean(rel))
            stats["within_10pct"] = float(np.mean(rel <= 0.10))
        return stats

    def summary(self) -> str:
        s = self.statistics()
        tau = "n/a (fewer than 2 measured)" if s["kendall_tau"] is None else f"{s['kendall_tau']:.3f}"
        rho = "" if s["spearman"] is None else f", Spearman ρ {s['spearman']:.3f}"
        head = (
            f"{len(self.measured)} architectures measured on {self.target} ({self.metric}) vs predicted "
            f"{self.against}: Kendall τ {tau}{rho}"
        )
        if self.same_target:
            if "median_relative_error" in s:
                return (
                    f"{head}; relative error median {100 * s['median_relative_error']:.1f}%, mean "
                    f"{100 * s['mean_relative_error']:.1f}%, within ±10%: {100 * s['within_10pct']:.0f}%"
                )
            return head
        if self.prediction_target == self.target:
            return (
                f"{head}; relative error not comparable: the predictions were fitted under settings "
                f"{self.prediction_settings_key}, the measurements are under {self.settings_key}"
            )
        return f"{head}; relative error not comparable: predictions are for {self.prediction_target}, not {self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "metric": self.metric,
            "unit": self.unit,
            "against": self.against,
            "prediction_target": self.prediction_target,
            "same_target": self.same_target,
            "settings_key": self.settings_key,
            "prediction_settings_key": self.prediction_settings_key,
            "statistics": self.statistics(),
            "architectures": self.rows,
            "errors": self.errors,
        }


def spread(archs: Sequence[Architecture], limit: int | None) -> list[int]:
    """Indices of at most ``limit`` architectures evenly spaced along the (ordered) front."""
    n = len(archs)
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise AccelnasError("--limit must be >= 1")
    return sorted({round(float(i)) for i in np.linspace(0, n - 1, limit)})


def verify(
    registry: PluginRegistry,
    target: Target,
    archs: Sequence[Architecture],
    source: PredictionSource,
    settings: MeasureSettings,
    store: Store,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> Verification:
    """Measure ``archs`` on ``target`` (stored in ``store`` as they arrive) and pair them with ``source``."""
    if len(source.mean) != len(archs):
        raise ValueError("one prediction per architecture is needed")
    report = run_campaign(registry, target, archs, settings, store, metrics=[source.metric], progress=progress)
    if report.unavailable is not None:  # what was measured is stored; the same command goes on from it
        raise TargetUnavailableError(
            f"stopped, {target.name} is unavailable: {report.unavailable}; {report.pending} measurement(s) pending: "
            "run the same command again once it is back"
        )
    key = settings.key(target)
    stored = {
        r["arch_id"]: r
        for r in store.results(target=target.name, status="ok")
        if r["metric"] == source.metric and r["settings_key"] == key
    }
    ids, predicted, measured, rows = [], [], [], []
    unit = None
    for a, p in zip(archs, source.mean, strict=True):
        r = stored.get(a.id)
        if r is None:
            continue
        unit = r["unit"]
        ids.append(a.id)
        predicted.append(float(p))
        measured.append(float(r["value"]))
        rows.append(
            {
                "id": a.id,
                "predicted": float(p),
                "measured": float(r["value"]),
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "precision_reached": bool(r["precision_reached"]),
            }
        )
    return Verification(
        target=target.name,
        metric=source.metric,
        unit=unit,
        against=source.label,
        prediction_target=source.target,
        settings_key=key,
        prediction_settings_key=source.settings_key,
        ids=ids,
        predicted=np.array(predicted),
        measured=np.array(measured),
        rows=rows,
        errors=list(report.errors),
    )


OUTPUT_FILES = ("verify.json", "verify.csv", "verify.png")


def write_verification(v: Verification, out_dir: str | Path) -> list[Path]:
    """``verify.json``, ``verify.csv`` and (with two or more measured) ``verify.png`` under ``out_dir``; with
    fewer, a ``verify.png`` of an earlier verification there is removed, as it would describe other results."""
    from accelnas.core import files, jsonio
    from accelnas.search.plots import plot_verification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in OUTPUT_FILES[:2]]
    files.write_text(paths[0], jsonio.dumps(v.to_dict(), indent=2))
    columns = ["id", "predicted", "measured", "ci_low", "ci_high", "precision_reached"]
    files.write_csv(paths[1], pd.DataFrame(v.rows, columns=columns))
    if len(v.measured) >= 2:
        tau = v.statistics()["kendall_tau"]
        paths.append(
            plot_verification(
                v.measured,
                v.predicted,
                out / OUTPUT_FILES[2],
                title=f"{v.target} {v.metric}: measured vs predicted\nKendall τ = {tau:.3f} (n={len(v.measured)})",
                x_label=f"measured on {v.target} [{v.unit or ''}]",
                y_label=f"predicted {v.against}",
                same_scale=v.same_target,
            )
        )
    else:
        files.remove(out / OUTPUT_FILES[2], "plot of an earlier verification")
    return paths
