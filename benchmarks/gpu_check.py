"""Hardware check of the NVIDIA GPU plugin: real measurements of ``gpu/torch`` and ``gpu/tensorrt``.

Measures EfficientNet-B0 and ``--num-random`` seeded random architectures (20 by default) on
``gpu/torch`` (throughput at the batch size, latency at batch 1), then the same list on
``gpu/tensorrt`` where TensorRT imports, for as many architectures as the time budget allows
(engine builds take tens of seconds each; EfficientNet-B0 comes first). Everything goes through the
plugin hooks and the core campaign runner, as ``accelnas collect`` does, into an SQLite store beside
the JSON; the JSON is rewritten after every architecture, so a run cut short still leaves its results.

Normally started through ``benchmarks/gpu_check.sh`` (which installs the package without touching
torch); directly::

    python benchmarks/gpu_check.py --out gpu_check_out              # JSON: gpu_check_out/gpu_check.json
    python benchmarks/gpu_check.py --num-random 3 --budget 120      # a quick look
    python benchmarks/gpu_check.py --missing                        # pip names of missing requirements

It runs from an uninstalled checkout too (the repository root is put on ``sys.path`` as ``accelnas``).
Exit code: 0 when it ran (failed measurements are in the JSON), 2 on bad arguments, 3 when there is no
usable CUDA GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# module -> pip name of what the check needs besides torch
REQUIREMENTS = {
    "pluggy": "pluggy",
    "numpy": "numpy",
    "scipy": "scipy",
    "psutil": "psutil",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxconverter_common": "onnxconverter-common",
    "pynvml": "nvidia-ml-py",
}
TARGETS = ("gpu/torch", "gpu/tensorrt")
EXTRA_KEYS = (
    "gpu_compute_ms_mean",
    "host_wall_ms_mean",
    "enqueue_ms_mean",
    "host_images_per_s",
    "enqueue_bound",
    "gpu_compute_unstable",
    "n_samples",
    "warmup_seconds",
    "timed_seconds",
)
PROVENANCE_KEYS = ("engine_cache", "build_seconds", "first_call_seconds", "engine_bytes", "fp16_check")


def missing_requirements() -> list[str]:
    return [pip for module, pip in REQUIREMENTS.items() if importlib.util.find_spec(module) is None]


def ensure_importable() -> str:
    """Make ``import accelnas`` load this checkout: installed from here, or through a symlink on ``sys.path``.

    An accelnas installed from another folder is left alone; this checkout is put in front of it.
    """
    spec = importlib.util.find_spec("accelnas")
    installed = Path(spec.origin).resolve().parent if spec and spec.origin else None
    how = "installed from this checkout"
    if installed != REPO:
        shim = Path(tempfile.mkdtemp(prefix="accelnas-path-"))
        (shim / "accelnas").symlink_to(REPO, target_is_directory=True)
        sys.path.insert(0, str(shim))
        how = "this checkout through a path shim" + (f" (an accelnas at {installed} is ignored)" if installed else "")
    import accelnas

    if Path(accelnas.__file__).resolve().parent != REPO:
        raise RuntimeError(f"imported accelnas from {accelnas.__file__}, expected {REPO}")
    return how


def _row(row: dict[str, Any], label: str, variant: str = "main") -> dict[str, Any]:
    extra = row.get("extra") or {}
    prov = row.get("provenance") or {}
    out = {
        "target": row["target"],
        "variant": variant,
        "arch_id": row["arch_id"],
        "label": label,
        "metric": row["metric"],
        "status": row["status"],
        "value": row.get("value"),
        "unit": row.get("unit"),
        "ci_low": row.get("ci_low"),
        "ci_high": row.get("ci_high"),
        "batch_size": row.get("batch_size"),
        "precision_reached": bool(row["precision_reached"]) if row.get("precision_reached") is not None else None,
        "error": row.get("error"),
    }
    out |= {k: extra[k] for k in EXTRA_KEYS if k in extra}
    out |= {k: prov[k] for k in PROVENANCE_KEYS if k in prov}
    return out


def _kendall(a: dict[str, float], b: dict[str, float]) -> float | None:
    common = sorted(set(a) & set(b))
    if len(common) < 3:
        return None
    from scipy.stats import kendalltau

    return float(kendalltau([a[k] for k in common], [b[k] for k in common]).statistic)


def summarise(rows: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    values: dict[tuple[str, str], dict[str, float]] = {}
    for target in TARGETS:
        mine = [r for r in rows if r["target"] == target and r.get("variant", "main") == "main"]
        ok = [r for r in mine if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "ok": len(ok),
            "failed": len(mine) - len(ok),
            "skipped_architectures": sum(
                1 for s in skipped if s["target"] == target and s.get("variant", "main") == "main"
            ),
        }
        for metric in ("throughput", "latency"):
            got = {r["arch_id"]: r["value"] for r in ok if r["metric"] == metric}
            values[(target, metric)] = got
            if got:
                entry[f"{metric}_median"] = statistics.median(got.values())
                entry[f"{metric}_range"] = [min(got.values()), max(got.values())]
        entry["enqueue_bound"] = sum(1 for r in ok if r.get("enqueue_bound"))
        entry["precision_not_reached"] = sum(1 for r in ok if r.get("precision_reached") is False)
        summary[target] = entry
    summary["kendall_tau_torch_vs_tensorrt"] = {
        m: _kendall(values[("gpu/torch", m)], values[("gpu/tensorrt", m)]) for m in ("throughput", "latency")
    }
    variants: dict[str, Any] = {}
    for r in rows:
        if r.get("variant", "main") == "main":
            continue
        entry = variants.setdefault(f"{r['target']} {r['variant']}", {"ok": 0, "failed": 0, "throughput": {},
                                                                     "latency": {}, "engine_cache": []})  # fmt: skip
        entry["ok" if r["status"] == "ok" else "failed"] += 1
        if r["status"] == "ok" and r["metric"] in ("throughput", "latency"):
            entry[r["metric"]][r["label"]] = r["value"]
        if r.get("engine_cache"):
            entry["engine_cache"].append(r["engine_cache"])
    summary["variants"] = variants
    return summary


def plot(rows: list[dict[str, Any]], macs: dict[str, float], path: Path, input_size: int) -> Path | None:
    """Throughput against MACs for both targets (PNG)."""
    ok = [r for r in rows if r["status"] == "ok" and r["metric"] == "throughput" and r.get("variant", "main") == "main"]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for target, marker in zip(TARGETS, ("o", "s"), strict=True):
        mine = [r for r in ok if r["target"] == target]
        if mine:
            ax.scatter([macs[r["arch_id"]] for r in mine], [r["value"] for r in mine], marker=marker, label=target)
    ax.set_xlabel(f"MACs (millions, {input_size}x{input_size})")
    ax.set_ylabel("throughput (images/s)")
    ax.set_title("GPU throughput of EfficientNet-B0 and random architectures")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    where = ensure_importable()
    from accelnas.core.campaign import run_campaign
    from accelnas.core.errors import AccelnasError
    from accelnas.core.model import count_macs
    from accelnas.core.plugins import PluginRegistry
    from accelnas.core.provenance import host_provenance
    from accelnas.core.records import MeasureSettings
    from accelnas.core.space import EFFICIENTNET_B0, sample
    from accelnas.core.store import Store
    from accelnas.plugins.cuda_trt.engine_cache import cache_dir_from
    from accelnas.plugins.cuda_trt.plugin import CudaTrtPlugin

    out_dir = Path(args.out)
    try:  # what a GPU would only refuse mid-run
        if args.num_random < 0:
            raise ValueError(f"--num-random must be >= 0, got {args.num_random}")
        if not 0 <= args.seed < 2**31:  # as the other scripts' and the CLI's seeds
            raise ValueError(f"--seed must be within 0..2147483647, got {args.seed}")
        if not 0 < args.budget < float("inf"):  # none would leave every architecture skipped, and exit 0
            raise ValueError(f"--budget must be a positive number of seconds, got {args.budget}")
        MeasureSettings(input_size=args.input_size, batch_size=args.batch_size, precision=args.precision,
                        max_seconds=args.max_seconds, warmup_seconds=args.warmup_seconds)  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        logging.error("%s", exc if isinstance(exc, ValueError) else f"cannot use {out_dir} as --out: {exc.strerror}")
        return 2
    start = time.perf_counter()
    deadline = start + args.budget
    json_path = out_dir / "gpu_check.json"
    registry = PluginRegistry()
    cache = {} if args.engine_cache is None else {"cache_dir": cache_dir_from(args.engine_cache)}
    plugin = CudaTrtPlugin(**cache)
    registry.register(plugin, "cuda_trt")
    targets = registry.targets()
    archs = [EFFICIENTNET_B0, *sample(args.num_random, seed=args.seed, exclude={EFFICIENTNET_B0.id})]
    labels = {a.id: ("EfficientNet-B0" if a == EFFICIENTNET_B0 else f"random-{i}") for i, a in enumerate(archs)}
    macs = {a.id: count_macs(a, args.input_size) / 1e6 for a in archs}
    options: dict[str, tuple[tuple[str, Any], ...]] = {
        "gpu/torch": (("precision", args.precision_mode),),
        "gpu/tensorrt": (("cuda_graphs", args.cuda_graphs), ("precision", args.precision_mode)),
    }
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "accelnas": where,
        "host": host_provenance(),
        "availability": {name: t.reason or "available" for name, t in targets.items()},
        "missing_requirements": missing_requirements(),
        "settings": {
            "input_size": args.input_size,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "max_seconds": args.max_seconds,
            "warmup_seconds": args.warmup_seconds,
            "options": {k: dict(v) for k, v in options.items()},
            "budget_seconds": args.budget,
        },
        "architectures": [{"arch_id": a.id, "label": labels[a.id], "macs_m": macs[a.id]} for a in archs],
        "gpu": None,
        "results": [],
        "skipped": [],
    }

    def save() -> None:  # after every architecture: a run cut short keeps its JSON and plot
        report["elapsed_seconds"] = round(time.perf_counter() - start, 1)
        report["summary"] = summarise(report["results"], report["skipped"])
        png = plot(report["results"], macs, out_dir / "gpu_check_throughput.png", args.input_size)
        report["plot"] = str(png) if png else None
        from accelnas.core import files, jsonio  # importable by now: the registry above came from it

        files.write_text(json_path, jsonio.dumps(report, indent=1))  # whole: a kill leaves the last one

    if not targets["gpu/torch"].available:
        report["error"] = f"no usable CUDA GPU: {targets['gpu/torch'].reason}"
        save()
        logging.error("%s; wrote %s", report["error"], json_path)
        return 3
    from accelnas.plugins.cuda_trt.gpu_provenance import gpu_provenance

    report["gpu"] = gpu_provenance(0)
    db = out_dir / "gpu_check.sqlite"
    other = "fp32" if args.precision_mode == "fp16" else "fp16"
    graphs = f"cuda_graphs={not args.cuda_graphs}".lower()
    # (target, variant, options, architectures). Variants run on EfficientNet-B0 and the first random
    # architecture, before TensorRT's main pass takes the rest of the budget: TensorRT with CUDA
    # graphs flipped (the cache key leaves cuda_graphs out, so its engines are cache hits), then
    # the other precision (new engines, last)
    main_trt = (("cuda_graphs", args.cuda_graphs), ("precision", args.precision_mode))
    flipped = (("cuda_graphs", not args.cuda_graphs), ("precision", args.precision_mode))
    passes = [
        ("gpu/torch", "main", options["gpu/torch"], archs),
        ("gpu/tensorrt", "main", main_trt, archs[:2]),
        ("gpu/tensorrt", graphs, flipped, archs[:2]),
        ("gpu/torch", other, (("precision", other),), archs[:2]),
        ("gpu/tensorrt", "main", main_trt, archs[2:]),
        ("gpu/tensorrt", other, (("cuda_graphs", args.cuda_graphs), ("precision", other)), archs[:2]),
    ]
    # the slowest architecture so far per (target, variant): one is not started where it would
    # overrun the budget. A TensorRT engine build takes tens of seconds: until one is measured, a
    # minute is assumed; engines from the cache (the CUDA-graph variant) cost only their measuring
    assumed = {("gpu/tensorrt", "main"): 60.0, ("gpu/tensorrt", other): 60.0}
    longest: dict[tuple[str, str], float] = {}
    with Store(db) as store:
        for name, variant, opts, chosen in passes:
            target = targets[name]
            if not target.available:
                if variant == "main":
                    logging.warning("%s skipped: %s", name, target.reason)
                continue
            settings = MeasureSettings(
                input_size=args.input_size,
                batch_size=args.batch_size,
                precision=args.precision,
                max_seconds=args.max_seconds,
                warmup_seconds=args.warmup_seconds,
                options=tuple(sorted(opts)),
            )
            key = settings.key(target)
            for index, arch in enumerate(chosen, 1):
                estimate = longest.get((name, variant), assumed.get((name, variant), 0.0))
                if variant == other and name == "gpu/tensorrt":  # new engines, as slow as the main pass's
                    estimate = max(estimate, longest.get((name, "main"), 0.0))
                if time.perf_counter() + estimate > deadline:
                    report["skipped"].append(
                        {"target": name, "variant": variant, "arch_id": arch.id, "reason": "time budget spent"}
                    )
                    continue
                t0 = time.perf_counter()
                try:
                    run_campaign(registry, target, [arch], settings, store)
                except AccelnasError as exc:  # a campaign-level error; per-architecture ones are stored
                    failure = {"target": name, "variant": variant, "arch_id": arch.id, "label": labels[arch.id]}
                    report["results"].append(failure | {"metric": None, "status": "failed", "error": str(exc)})
                rows = [
                    r
                    for r in store.results(target=name, status=None)
                    if r["arch_id"] == arch.id and r["settings_key"] == key
                ]
                report["results"] += [_row(r, labels[arch.id], variant) for r in rows]
                logging.info(
                    "%s %s %2d/%d %s: %s in %.1f s",
                    name,
                    variant,
                    index,
                    len(chosen),
                    arch.id,
                    ", ".join(f"{r['metric']} {r['status']}" for r in rows) or "no result",
                    time.perf_counter() - t0,
                )
                elapsed = time.perf_counter() - t0
                longest[(name, variant)] = max(longest.get((name, variant), 0.0), elapsed)
                save()
    save()
    logging.info("wrote %s (%.0f s)", json_path, time.perf_counter() - start)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="output folder (JSON, SQLite store, PNG)")
    parser.add_argument("--num-random", type=int, default=20, help="random architectures besides EfficientNet-B0")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the random architectures")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None, help="throughput batch [target default, 256]")
    parser.add_argument("--precision", type=float, default=0.02, help="relative CI half-width to reach")
    parser.add_argument("--max-seconds", type=float, default=2.0, help="timed budget per metric")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="warm-up budget per metric")
    parser.add_argument("--precision-mode", choices=("fp16", "fp32"), default="fp16", help="numeric precision")
    parser.add_argument("--cuda-graphs", action="store_true", help="gpu/tensorrt: replay CUDA graphs")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds for all measurements")
    parser.add_argument(
        "--engine-cache", default=None, help="TensorRT engine cache folder, or off [ACCELNAS_TRT_CACHE]"
    )
    parser.add_argument("--missing", action="store_true", help="print pip names of missing requirements and exit")
    args = parser.parse_args(argv)
    if args.missing:
        print(" ".join(missing_requirements()))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
