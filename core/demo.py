"""``accelnas demo``: the whole flow on this machine's CPU in a few minutes.

Samples architectures (EfficientNet-B0 plus seeded random ones), measures throughput and latency
with the embedded CPU plugin, stores every result, exports the dataset, fits one surrogate per
metric on 75% of the architectures and reports Kendall τ and R² on the other 25%, with a
predicted-vs-measured plot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from accelnas.core import dataset, files, jsonio
from accelnas.core.campaign import run_campaign
from accelnas.core.errors import DatasetError, TargetUnavailableError
from accelnas.core.plugins import load_registry
from accelnas.core.progress import ProgressPrinter
from accelnas.core.records import MeasureSettings
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.core.store import Store
from accelnas.surrogates import artifact
from accelnas.surrogates.fit import fit_surrogate, fittable
from accelnas.surrogates.plots import ScatterPanel, predicted_vs_measured

DEMO_BATCH = 16
TEST_FRACTION = 0.25


def run_demo(
    out_dir: Path,
    *,
    num: int = 60,
    input_size: int = 64,
    seed: int = 0,
    target_name: str = "cpu/onnxruntime",
    echo: Callable[[str], None] = print,
) -> dict:
    """Run the demo into ``out_dir``; return the report (also written as report.json/report.md)."""
    start = time.perf_counter()
    registry = load_registry()
    target = registry.target(target_name)  # before anything is created: a wrong name leaves no trace
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = MeasureSettings(
        input_size=input_size, batch_size=DEMO_BATCH, precision=0.02, max_seconds=3.0, warmup_seconds=1.0
    )
    archs = [EFFICIENTNET_B0, *sample(num - 1, seed, exclude={EFFICIENTNET_B0.id})]
    db = out_dir / "campaign.sqlite"
    echo(f"accelnas demo: {num} architectures (EfficientNet-B0 + {num - 1} random, seed {seed}) on {target.name}")
    echo(
        f"  input {input_size}x{input_size} (reduced from 224 for speed), throughput at batch {DEMO_BATCH}, "
        f"latency at batch 1, 2% precision target, about {settings.warmup_seconds + settings.max_seconds:g}s at most "
        "per metric (warm-up and timing)"
    )
    echo(f"  store: {db} (re-running resumes)")
    with Store(db) as store:
        report = run_campaign(registry, target, archs, settings, store, progress=ProgressPrinter())
        if report.unavailable is not None:  # the device went away: fit nothing on what is left
            raise TargetUnavailableError(
                f"stopped, {target.name} is unavailable: {report.unavailable}; {report.pending} measurement(s) "
                "pending: run the same command again once it is back"
            )
        frame = dataset.from_store(store, target.name)
    # this run's architectures and settings only: earlier runs into the same folder (another --seed or
    # --num) stay in the store but do not enter the dataset, the surrogates or the report
    frame = frame[(frame["settings_key"] == report.settings_key) & frame["arch_id"].isin([a.id for a in archs])]
    for metric in target.metrics:  # enough of each metric to fit and test, before anything is written
        try:
            fittable(frame, target.name, metric)
        except DatasetError as exc:
            if not report.failed:
                raise
            raise DatasetError(f"{exc}: {report.failed} measurement(s) failed, first: {report.errors[0]}") from None
    data_files = dataset.write(frame, out_dir / "dataset")

    panels, results = [], {}
    for metric in target.metrics:
        fitted = fit_surrogate(frame, target.name, metric, test_fraction=TEST_FRACTION, seed=seed)
        where = artifact.save(fitted.artifact, out_dir / "surrogates" / dataset.file_stem(target.name) / metric)
        m = fitted.artifact.metrics["test"]
        results[metric] = {  # undefined τ / R² (constant predictions) are null in report.json
            "kendall_tau": None if math.isnan(m["kendall_tau"]) else m["kendall_tau"],
            "r2": None if math.isnan(m["r2"]) else m["r2"],
            "mae": m["mae"],
            "within_10pct": m["within_10pct"],
            "n_train": fitted.artifact.metrics["n_train"],
            "n_test": m["n"],
            "unit": fitted.artifact.unit,
            "surrogate": _inside(where, out_dir),
        }
        panels.append(
            ScatterPanel(
                f"{target.name} {metric} (held-out)",
                fitted.test_true,
                fitted.test_pred,
                fitted.artifact.unit or "",
                m["kendall_tau"],
                m["r2"],
            )
        )
    plot = predicted_vs_measured(panels, out_dir / "predicted_vs_measured.png")

    b0 = frame[frame["arch_id"] == EFFICIENTNET_B0.id].set_index("metric")["value"].to_dict()
    summary = {
        "target": target.name,
        "architectures": num,
        "input_size": input_size,
        "batch_size": DEMO_BATCH,
        "measured": report.measured,
        "already_stored": report.already_done,
        "failed": report.failed,
        "campaign_seconds": round(report.seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "efficientnet_b0": b0,
        "surrogates": results,
        # the report's paths are relative to its own folder, which may be moved or shared whole
        "store": _inside(db, out_dir),
        "dataset": [_inside(p, out_dir) for p in data_files],
        "plot": _inside(plot, out_dir),
    }
    files.write_text(out_dir / "report.json", jsonio.dumps(summary, indent=2) + "\n")
    files.write_text(out_dir / "report.md", _markdown(summary))
    echo("")
    echo(
        f"measured {report.measured} results ({report.already_done} already stored, {report.failed} failed) "
        f"in {report.seconds:.0f}s"
    )
    for metric, r in results.items():
        echo(
            f"  {metric:<10} surrogate on {r['n_test']} held-out architectures: Kendall τ = {_fmt(r['kendall_tau'])}, "
            f"R² = {_fmt(r['r2'])}, within ±10%: {100 * r['within_10pct']:.0f}%"
        )
    for metric, value in b0.items():
        unit = results.get(metric, {}).get("unit", "")
        echo(f"  EfficientNet-B0 {metric}: {value:.2f} {unit}")
    echo(f"  store:      {db}")
    echo(f"  dataset:    {out_dir / 'dataset'}")
    echo(f"  surrogates: {out_dir / 'surrogates'}")
    echo(f"  plot:       {plot}")
    echo(f"  report:     {out_dir / 'report.md'}")
    return summary


def _inside(path: Path, folder: Path) -> str:
    """``path`` (a file the demo wrote under ``folder``) relative to ``folder``, with forward slashes."""
    return Path(path).relative_to(folder).as_posix()


def _fmt(value: float | None) -> str:
    """A metric to three places; "n/a" where it is undefined (constant predictions on few held-out rows)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _markdown(s: dict) -> str:
    lines = [
        "# accelnas demo report",
        "",
        f"Target `{s['target']}`, {s['architectures']} architectures at {s['input_size']}x{s['input_size']}, "
        f"throughput batch {s['batch_size']}; {s['measured']} results measured in {s['campaign_seconds']} s.",
        "",
        "| metric | unit | held-out n | Kendall τ | R² | within ±10% |",
        "|---|---|---|---|---|---|",
    ]
    for metric, r in s["surrogates"].items():
        lines.append(
            f"| {metric} | {r['unit']} | {r['n_test']} | {_fmt(r['kendall_tau'])} | {_fmt(r['r2'])} | "
            f"{100 * r['within_10pct']:.0f}% |"
        )
    lines += [
        "",
        f"![predicted vs measured]({Path(s['plot']).name})",
        "",
        f"Store: `{s['store']}`; datasets: " + ", ".join(f"`{p}`" for p in s["dataset"]),
        "",
    ]
    return "\n".join(lines)
