"""The ``accelnas`` command line."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from accelnas.core import jsonio
from accelnas.core.cli_options import (
    FINITE,
    FRACTION,
    NON_NEGATIVE,
    SEED,
    named_file,
    parse_options,
    writable_file,
    writable_folder,
)
from accelnas.core.errors import AccelnasError, InvalidArchitectureError, InvalidArgumentError, TargetUnavailableError
from accelnas.core.termination import catch_sigterm, was_terminated

DEFAULT_TARGET = "cpu/onnxruntime"
PUBLIC_ANB = "\0"  # --from-anb given alone: no command-line argument can hold a NUL, so none is taken for it


def _registry():
    from accelnas.core.plugins import load_registry

    return load_registry()


def _settings(**kwargs: Any):
    from accelnas.core.records import MeasureSettings

    try:
        return MeasureSettings(**{k: v for k, v in kwargs.items() if v is not None})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


SETTINGS_OPTION = click.option(
    "--settings", "settings_keys", multiple=True, metavar="[TARGET=]KEY",
    help="Keep only the rows measured under this settings key (a unique start of one: the key column of status), "
    "for TARGET or every target measured under it; other targets keep all theirs. Repeatable.",
)  # fmt: skip


def _arch_list(texts: tuple[str, ...]):
    from accelnas.core.space import parse_architecture

    return [parse_architecture(t) for t in texts]


# Commands that live beside the code they drive, imported only when invoked (or listed by --help):
# name -> "module:attribute" of a click command or group.
LAZY_COMMANDS: dict[str, str] = {
    "train": "accelnas.training.cli:train",
    "search": "accelnas.search.cli:search",
    "verify": "accelnas.search.cli:verify",
    "search-space": "accelnas.search.cli:search_space",
    "merge": "accelnas.core.cli_campaigns:merge",
    "status": "accelnas.core.cli_campaigns:status",
    "proxy-search": "accelnas.training.cli:proxy_search",
    "proxy-analyse": "accelnas.training.cli:proxy_analyse",
}


class _LazyGroup(click.Group):
    """A click group whose commands in :data:`LAZY_COMMANDS` import on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            import importlib

            module_name, attr = LAZY_COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="accelnas")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Accelerator-aware NAS benchmarks: measure architectures on devices, fit surrogates, query them."""
    _running["command"] = ctx.invoked_subcommand  # what a Ctrl-C message says is kept
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# -- search space ----------------------------------------------------------------------------------
@cli.command()
@click.argument("arch")
@click.option("--input-size", type=click.IntRange(min=1), default=224, show_default=True,
              help="Input resolution for the MAC count.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(arch: str, input_size: int, as_json: bool) -> None:
    """Show an architecture's encodings, parameters and MACs.

    ARCH is a string id (e.g. 1311-6321-6521-6331-6531-6541-6311), ``b0`` for EfficientNet-B0, a JSON
    config (``{"block0_e": ...}``) or a path to a JSON file (a config, an
    Accel-NASBench result, or what ``info --json`` writes).
    """
    from accelnas.core.model import count_macs, count_params
    from accelnas.core.space import parse_architecture

    a = parse_architecture(arch)
    data = {
        "id": a.id,
        "config": a.to_config(),
        "vector": a.to_vector(),
        "layers": a.num_layers,
        "params": count_params(a),
        "macs": count_macs(a, input_size),
        "input_size": input_size,
    }
    if as_json:
        click.echo(jsonio.dumps(data, indent=2))
        return
    click.echo(f"id           {a.id}")
    click.echo("stages       " + "  ".join(f"e{s.e}k{s.k}l{s.l}{'+se' if s.se else ''}" for s in a.stages))
    click.echo(f"layers       {a.num_layers}")
    click.echo(f"params       {data['params'] / 1e6:.6f} M")
    click.echo(f"MACs         {data['macs'] / 1e6:.6f} M at {input_size}x{input_size} (thop convention)")
    click.echo(f"vector       {[int(v) for v in data['vector']]}")
    click.echo(f"config       {json.dumps(data['config'])}")


@cli.command()
@click.option("--num", type=click.IntRange(min=1), default=5, show_default=True, help="How many architectures.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed (the same seed, the same ids).")
def sample(num: int, seed: int) -> None:
    """Print seeded random architecture ids, one per line."""
    from accelnas.core.space import iter_sample

    for a in iter_sample(num, seed):  # printed as drawn: a long list shows progress
        click.echo(a.id)


# -- plugins and targets ---------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List loaded plugins with their version and hooks (ACCELNAS_PLUGINS restricts loading)."""
    registry = _registry()
    registry.targets()  # a plugin that fails to register its targets is listed as not loaded
    infos = registry.plugins()
    if as_json:
        click.echo(jsonio.dumps([vars(i) for i in infos], indent=2))
        return
    if not infos:
        click.echo("no plugins loaded")
    for i in infos:
        click.echo(f"{i.name}  {i.distribution or '?'} {i.version or '?'}  ({i.module})")
        if i.error:
            click.echo(f"    NOT LOADED: {i.error}")
        else:
            click.echo(f"    hooks: {', '.join(i.hooks) or 'none (are its functions marked @accelnas.hookimpl?)'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def targets(as_json: bool) -> None:
    """List measurement targets (device/backend), their plugin and availability."""
    found = _registry().targets()
    if as_json:
        rows = [{k: v for k, v in vars(t).items() if k != "check_values"} | {"name": t.name} for t in found.values()]
        click.echo(jsonio.dumps(rows, indent=2, default=list))
        return
    if not found:
        click.echo("no targets registered")
        return
    name_width = max(len(t.name) for t in found.values()) + 2
    plugin_width = max(len(t.plugin or "") for t in found.values()) + 2
    for t in found.values():
        state = "available" if t.available else f"unavailable: {t.reason}"
        click.echo(
            f"{t.name:<{name_width}}{t.plugin or '':<{plugin_width}}batch {t.default_batch_size:<5}"
            f"{','.join(t.metrics):<20} {state}"
        )
        if t.description:
            click.echo(f"{'':<{name_width}}{t.description}")
        if t.options:
            click.echo(f"{'':<{name_width}}options: {', '.join(t.options)}")


# -- campaigns -------------------------------------------------------------------------------------
@cli.command()
@click.option("--target", "target_name", default=DEFAULT_TARGET, show_default=True, help="device/backend.")
@click.option("--num", type=int, default=None, help="Random architectures to measure (with --seed).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed.")
@click.option("--arch", "arch_texts", multiple=True, help="Measure this architecture (repeatable; also b0).")
@click.option("--input-size", type=int, default=224, show_default=True, help="Input resolution.")
@click.option("--batch-size", type=int, default=None, help="Throughput batch size [target default].")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(["throughput", "latency"]),
    help="Metric to measure (repeatable) [all the target supports].",
)
@click.option(
    "--precision",
    type=FINITE,
    default=0.02,
    show_default=True,
    help="Stop when the 95% CI half-width is within this fraction of the mean.",
)
@click.option("--max-seconds", type=FINITE, default=30.0, show_default=True, help="Timed budget per metric.")
@click.option("--warmup-seconds", type=FINITE, default=5.0, show_default=True, help="Warm-up budget.")
@click.option("--threads", type=int, default=None, help="Intra-op threads [the physical cores this process may use].")
@click.option(
    "--option",
    "option_texts",
    multiple=True,
    metavar="KEY=VALUE",
    help=(
        "Backend option of the target (repeatable), e.g. graph_optimization=basic on cpu/onnxruntime; "
        "`accelnas targets` lists each target's options. Part of each result's identity."
    ),
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=writable_file,
    required=True,
    help="Campaign store (SQLite); created if missing, resumed if present.",
)
@click.option("--no-retry-failed", is_flag=True, help="Leave stored failures alone instead of retrying them.")
@click.option(
    "--selection",
    type=click.Choice(["random", "space-filling", "active"]),
    default="random",
    show_default=True,
    help="How --num architectures are chosen: uniformly, a farthest-point design, or in rounds where a "
    "seed ensemble fitted on the measured ones disagrees most.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Measure in this process, or on the hosts of a Ray cluster that advertise the resource "
    "accelnas/<target> (see docs/reliability.md).",
)
@click.option("--address", default=None, help="Ray cluster address (host:port) [RAY_ADDRESS, else a local Ray].")
@click.option("--isolate", is_flag=True, help="Run each architecture's measurements in a child process.")
@click.option(
    "--task-timeout",
    type=FINITE,
    default=None,
    help="With --isolate: seconds one architecture may take before its child is killed [900].",
)
@click.option("--retries", type=int, default=1, show_default=True, help="Retries of transient failures per run.")
@click.option("--retry-backoff", type=FINITE, default=2.0, show_default=True, help="Seconds before the first retry.")
@click.option("--ray-max-retries", type=int, default=3, show_default=True, help="Ray retries after a worker dies.")
@click.option("--time-budget", type=FINITE, default=None, help="Stop after this many seconds; the rest stays pending.")
@click.option("--shard", default=None, help="Measure only shard i/n of the architectures (0 <= i < n).")
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    default=None,
    help="Stop once this many measurements have failed (e.g. a plugin bug); the rest stays pending.",
)
@click.pass_context
def collect(
    ctx: click.Context,
    target_name: str,
    num: int | None,
    seed: int,
    arch_texts: tuple[str, ...],
    input_size: int,
    batch_size: int | None,
    metrics: tuple[str, ...],
    precision: float,
    max_seconds: float,
    warmup_seconds: float,
    threads: int | None,
    option_texts: tuple[str, ...],
    db_path: Path,
    no_retry_failed: bool,
    selection: str,
    executor: str,
    address: str | None,
    isolate: bool,
    task_timeout: float | None,
    retries: int,
    retry_backoff: float,
    ray_max_retries: int,
    time_budget: float | None,
    shard: str | None,
    max_failures: int | None,
) -> None:
    """Measure architectures on a target, committing each result to the store as it arrives.

    Re-running the same command resumes: stored results are skipped, failures are retried.
    """
    from accelnas.core.campaign import CampaignReport, run_campaign
    from accelnas.core.cli_campaigns import campaign_options
    from accelnas.core.progress import ProgressPrinter
    from accelnas.core.space import sample as draw
    from accelnas.core.space import unique
    from accelnas.core.store import Store

    archs = unique(_arch_list(arch_texts))  # each measured once, however often named
    if num is None and not archs:
        raise click.UsageError("give --num N and/or --arch ARCH")
    if selection != "random" and (num is None or archs):
        raise click.UsageError(f"--selection {selection} chooses --num architectures itself; drop --arch")
    if num is not None:
        if num < 1:
            raise click.UsageError("--num must be >= 1")
        from accelnas.core.space import space_size

        if num > space_size() - len(archs):
            raise click.UsageError(
                f"--num {num} exceeds the {space_size() - len(archs):,} architectures the space has left"
            )
        if selection == "space-filling":
            from accelnas.surrogates.active import select

            archs = select("space-filling", num, seed=seed)
        elif selection == "random":
            seen = {a.id for a in archs}
            archs += draw(num, seed, exclude=seen)
    options = campaign_options(
        executor=executor,
        address=address,
        isolate=isolate,
        task_timeout=task_timeout,
        retries=retries,
        retry_backoff=retry_backoff,
        ray_max_retries=ray_max_retries,
        time_budget=time_budget,
        shard=shard,
        active=selection == "active",
    )
    archs = options.select(archs)
    settings = _settings(
        input_size=input_size,
        batch_size=batch_size,
        precision=precision,
        max_seconds=max_seconds,
        warmup_seconds=warmup_seconds,
        threads=threads,
        options=parse_options(option_texts),
    )
    registry = _registry()
    target = registry.target(target_name, require_available=executor == "local")
    target.check_options(settings)
    if address is not None:  # an address that answers no Ray cluster fails before the store is created
        from accelnas.core.ray_executor import check_reachable

        check_reachable(address)
    with Store(db_path) as store:
        click.echo(
            f"measuring {num if selection == 'active' else len(archs)} architectures "
            f"({'named' if num is None else f'{selection} selection'}{' and named' if num and arch_texts else ''}) on "
            f"{target.name} at {input_size}x{input_size}, throughput batch {settings.batch_for(target)}; "
            f"store: {db_path}{options.describe()}",
            err=True,
        )
        if selection == "active":
            from accelnas.surrogates.active import active_campaign

            rounds = active_campaign(
                registry,
                target,
                settings,
                store,
                num=num,
                seed=seed,
                progress=ProgressPrinter(),
                metrics=metrics or None,
                executor=options.make_executor(),
                retry=options.retry,
                retry_failed=not no_retry_failed,
                time_budget=options.time_budget,
                max_failures=max_failures,
            )
            report = CampaignReport(target=target.name, settings_key=rounds[0].settings_key, planned=num)
            for r in rounds:
                report.measured += r.measured
                report.already_done += r.already_done
                report.failed += r.failed
                report.failures_kept += r.failures_kept
                report.errors += r.errors
                report.seconds += r.seconds
                report.pending += r.pending
            report.budget_exhausted = rounds[-1].budget_exhausted
            report.failure_limit_reached = rounds[-1].failure_limit_reached
            report.unavailable = rounds[-1].unavailable
        else:
            report = run_campaign(
                registry,
                target,
                archs,
                settings,
                store,
                metrics=metrics or None,
                retry_failed=not no_retry_failed,
                progress=ProgressPrinter(),
                executor=options.make_executor(),
                retry=options.retry,
                time_budget=options.time_budget,
                max_failures=max_failures,
            )
    kept = f", {report.failures_kept} stored failure(s) not retried" if report.failures_kept else ""
    click.echo(
        f"done in {report.seconds:.1f}s: {report.measured} measured, {report.already_done} already stored, "
        f"{report.failed} failed{kept}; store: {db_path}"
    )
    if report.budget_exhausted:
        click.echo(
            f"time budget spent: {report.pending} measurement(s) pending; run the same command again to continue",
            err=True,
        )
    if report.failure_limit_reached:
        click.echo(
            f"stopped after {report.failed} failed measurement(s) (--max-failures {max_failures}): "
            f"{report.pending} measurement(s) pending; fix the cause and run the same command again",
            err=True,
        )
    if report.unavailable is not None:
        click.echo(
            f"error: stopped, {target.name} is unavailable: {report.unavailable}; {report.pending} measurement(s) "
            "pending: run the same command again once it is back",
            err=True,
        )
        ctx.exit(TargetUnavailableError.exit_code)
    if report.failed:
        click.echo(f"error: {report.failed} measurement(s) failed, first: {report.errors[0]}", err=True)
        ctx.exit(1)


@cli.command()
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), callback=named_file, required=True,
    help="Campaign store to export.",
)  # fmt: skip
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    callback=writable_folder,
    required=True,
    help="Directory for <device>__<backend>.parquet/.csv files.",
)
@click.option("--target", "target_name", default=None,
              help="Only this target (device/backend, or a device that has one target) [all].")  # fmt: skip
@SETTINGS_OPTION
def export(db_path: Path, out_dir: Path, target_name: str | None, settings_keys: tuple[str, ...]) -> None:
    """Write the per-device datasets (Parquet and CSV) of a campaign store."""
    from accelnas.core import dataset
    from accelnas.core.store import Store

    with Store(db_path, readonly=True) as store:
        store.check()  # a damaged row is an error, not a silently wrong or missing dataset row
        known = store.targets()
        if target_name is not None:
            target_name = dataset.resolve_target(target_name, known)
        frame = dataset.from_store(store, target_name)
    if not frame.empty:
        frame = dataset.with_settings(frame, settings_keys, target=target_name)
    if frame.empty:
        if target_name is not None and target_name not in known:  # an empty name too: it names no target
            has = ", ".join(known) or "nothing"
            raise InvalidArgumentError(f"{db_path} has no results for target {target_name} (has: {has})")
        raise AccelnasError(f"no successful measurements in {db_path}" + (f" for {target_name}" if target_name else ""))
    for path in dataset.write(frame, out_dir):
        click.echo(str(path))


def _check_image(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """A usage error (exit 2) for a figure path whose format cannot be written, before any work."""
    from accelnas.core.figures import check_image_path

    if value is not None:
        try:
            check_image_path(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return writable_file(_ctx, _param, value)


def _check_anb_source(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A usage error (exit 2) for an empty Accel-NASBench source (an unset shell variable, say), which would
    otherwise be taken for the public archive and downloaded."""
    if value is not None and not value.strip():
        raise click.BadParameter(f"{value!r} names no source (leave it out for the public archive)")
    return value


def _check_family(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A usage error (exit 2) for a surrogate family that does not exist."""
    from accelnas.surrogates.models import FAMILIES

    usable = ["auto", *(f for f in FAMILIES if f != "blend")]  # a blend needs members: Python only
    if value is not None and value not in usable:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(usable)}")
    return value


# -- surrogates ------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Dataset file (.parquet/.csv) or directory of .parquet files.",
)
@click.option("--target", "target_name", required=True,
              help="device/backend, e.g. cpu/onnxruntime (a device alone where it has one target).")  # fmt: skip
@click.option("--metric", type=click.Choice(["throughput", "latency", "accuracy"]), required=True,
              help="The metric to fit.")  # fmt: skip
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    callback=writable_folder,
    required=True,
    help="Directory for the surrogate (surrogate.json + native model files).",
)
@click.option(
    "--family",
    default="auto",
    show_default=True,
    callback=_check_family,
    help="auto (best on a validation split), xgboost, lightgbm, random_forest, svr, gp, additive or hybrid.",
)
@click.option("--ensemble", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Seed-ensemble size, 1-100 (>1 gives a spread if the family's fit uses its seed).")  # fmt: skip
@click.option(
    "--drift",
    type=click.Choice(["none", "sequence", "auto"]),
    default="none",
    show_default=True,
    help="Divide out measurement-session factors estimated from the 'sequence' column (auto: if known).",
)
@click.option("--test-fraction", type=FRACTION, default=0.2,
              show_default=True, help="Held-out share for the metrics.")  # fmt: skip
@click.option("--seed", type=SEED, default=0, show_default=True, help="Split and model seed.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_check_image,
    help="Write the predicted-vs-measured plot here (.png, .pdf, .svg, ...) [OUT/predicted_vs_measured.png].",
)
@SETTINGS_OPTION
def fit(
    data_path: Path,
    target_name: str,
    metric: str,
    out_dir: Path,
    family: str,
    ensemble: int,
    drift: str,
    test_fraction: float,
    seed: int,
    plot_path: Path | None,
    settings_keys: tuple[str, ...],
) -> None:
    """Fit a surrogate for one target and metric; report τ and R² on held-out architectures."""
    from accelnas.core import dataset
    from accelnas.surrogates import artifact
    from accelnas.surrogates.fit import fit_surrogate
    from accelnas.surrogates.plots import ScatterPanel, drift_plot, predicted_vs_measured

    frame = dataset.read(data_path)
    target_name = dataset.resolve_target(target_name, frame["target"])
    if (frame["target"] == target_name).any():
        frame = dataset.with_settings(frame, settings_keys, target=target_name)
    if not ((frame["target"] == target_name) & (frame["metric"] == metric)).any():
        have = ", ".join(sorted({f"{t}:{m}" for t, m in zip(frame["target"], frame["metric"], strict=True)}))
        have = have or "no rows"
        raise InvalidArgumentError(f"no {metric} rows for target {target_name} in {data_path} (has: {have})")
    result = fit_surrogate(
        frame, target_name, metric, test_fraction=test_fraction, seed=seed, family=family, ensemble=ensemble,
        drift=drift,
    )  # fmt: skip
    artifact.save(result.artifact, out_dir)
    m = result.artifact.metrics["test"]
    png = predicted_vs_measured(
        [
            ScatterPanel(
                f"{target_name} {metric}",
                result.test_true,
                result.test_pred,
                result.artifact.unit or "",
                m["kendall_tau"],
                m["r2"],
            )
        ],
        plot_path or out_dir / "predicted_vs_measured.png",
    )
    click.echo(
        f"{target_name} {metric}: held-out n={m['n']}  Kendall τ={m['kendall_tau']:.3f}  R²={m['r2']:.3f}  "
        f"MAE={m['mae']:.3g}  within±10%={100 * m['within_10pct']:.0f}%"
    )
    drift_png = drift_plot(result.drift, f"{target_name} {metric}", out_dir / "drift.png")
    if result.drift is not None:
        click.echo(f"drift corrected: ±{result.drift.summary()['spread_pct']:.1f}%   plot: {drift_png}")
    click.echo(f"surrogate: {out_dir}   plot: {png}")


@cli.command()
@click.argument("archs", nargs=-1, required=True)
@click.option(
    "--surrogate",
    "surrogate_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Surrogate directory (repeatable).",
)
@click.option(
    "--benchmark", "benchmark_dir", type=click.Path(path_type=Path), help="Benchmark directory (surrogates build)."
)
@click.option("--device", default=None, help="With --benchmark: device or target, e.g. zcu102 [all].")
@click.option("--metric", type=click.Choice(["accuracy", "throughput", "latency"], case_sensitive=False),
              default=None, help="With --benchmark: this metric only [all].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def query(
    archs: tuple[str, ...],
    surrogate_dirs: tuple[Path, ...],
    benchmark_dir: Path | None,
    device: str | None,
    metric: str | None,
    as_json: bool,
) -> None:
    """Predict metrics of architectures (ids, b0, JSON configs) with surrogates or a benchmark."""
    from accelnas.core.errors import SurrogateError
    from accelnas.surrogates import artifact
    from accelnas.surrogates.benchmark import Benchmark

    twice = [d for i, d in enumerate(surrogate_dirs) if d.resolve() in {e.resolve() for e in surrogate_dirs[:i]}]
    if twice:
        raise click.UsageError(f"--surrogate {twice[0]} is given twice")
    if bool(surrogate_dirs) == bool(benchmark_dir):
        raise click.UsageError("give either --surrogate DIR (repeatable) or --benchmark DIR")
    if surrogate_dirs and (device or metric):
        raise click.UsageError("--device and --metric choose among a --benchmark's surrogates")
    from accelnas.surrogates.build import INDEX_FILE

    for d in surrogate_dirs:
        if not (d / artifact.METADATA_FILE).is_file() and (d / INDEX_FILE).is_file():
            raise click.UsageError(f"{d} is a benchmark directory (it holds {INDEX_FILE}): give it with --benchmark")
    parsed = _arch_list(archs)
    if benchmark_dir:
        bench = Benchmark.load(benchmark_dir)
        pairs = bench.find_pairs(device, metric)
        if not pairs:
            raise bench.not_found(device, metric)
        loaders = [(f"{t}:{m}", lambda t=t, m=m: bench.get(t, m)) for t, m in pairs]
    else:
        loaders = [(str(d), lambda d=d: artifact.load(d)) for d in surrogate_dirs]
    rows, failures = [], []
    for label, load in loaders:  # a damaged surrogate fails its own rows, not the others'
        try:
            s = load()
        except SurrogateError as exc:
            failures.append(f"{label}: {_one_line(exc)}")
            continue
        mean, std = s.predict_dist(parsed)
        source = {} if benchmark_dir else {"surrogate": label}  # which directory, when several are given
        for a, mu, sd in zip(parsed, mean, std, strict=True):
            rows.append(
                {
                    "arch": a.id,
                    "target": s.target,
                    "metric": s.metric,
                    "mean": float(mu),
                    "std": float(sd),
                    "unit": s.unit,
                }
                | source
            )
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
    else:
        answered = {(r["target"], r["metric"], r.get("surrogate")) for r in rows}
        twice = len({(t, m) for t, m, _ in answered}) < len(answered)  # name the directories apart
        for r in rows:
            spread = f" ± {r['std']:.3f}" if r["std"] else ""
            where = f"  [{r['surrogate']}]" if twice else ""
            click.echo(
                f"{r['arch']}  {r['target']:<18} {r['metric']:<10} {r['mean']:12.3f}{spread} {r['unit'] or ''}{where}"
            )
    if failures:
        for line in failures[1:]:
            click.echo(f"error: {line}", err=True)
        first = failures[0] if len(failures) == 1 else f"{len(failures)} surrogates failed, first: {failures[0]}"
        raise SurrogateError(first)


@cli.command("import-anb")
@click.argument("source", required=False, callback=_check_anb_source)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), callback=writable_folder, required=True,
    help="Directory for the per-target dataset files.",
)  # fmt: skip
def import_anb_command(source: str | None, out_dir: Path) -> None:
    """Import the public Accel-NASBench dataset into per-target Parquet/CSV files.

    SOURCE is a directory of result_*.json files (or one holding the archive), the
    anb_dataset_jsons.tar.gz archive, or its URL (downloaded once into accelnas/ under
    $ACCELNAS_CACHE, $XDG_CACHE_HOME or ~/.cache); default: the archive of the public repository.
    """
    from accelnas.core import dataset
    from accelnas.surrogates.anb_dataset import ANB_URL, import_anb

    frame, report = import_anb(ANB_URL if source is None else source)
    click.echo(report.summary(), err=True)
    for path in dataset.write(frame, out_dir):
        click.echo(str(path))


@cli.group()
def surrogates() -> None:
    """Build benchmark directories of surrogates."""


@surrogates.command("build")
@click.option(
    "--from-anb", "anb_source", default=None, is_flag=False, flag_value=PUBLIC_ANB, callback=_check_anb_source,
    help="Accel-NASBench directory, archive or URL [given alone: the public archive, downloaded once].",
)  # fmt: skip
@click.option("--from-db", "db_path", type=click.Path(dir_okay=False, path_type=Path), callback=named_file,
              default=None, help="A campaign store.")  # fmt: skip
@click.option("--from-data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Dataset file(s) from export or import-anb.")  # fmt: skip
@click.option("--target", "target_names", multiple=True,
              help="Only these targets (repeatable; a device alone: each of its targets) [all].")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), callback=writable_folder,
              required=True, help="Benchmark directory (surrogates, plots, benchmark.json).")  # fmt: skip
@click.option("--test-fraction", type=FRACTION, default=0.1,
              show_default=True, help="Held-out share for the reported metrics.")  # fmt: skip
@click.option("--seed", type=SEED, default=0, show_default=True, help="Split and model seed.")
@click.option("--ensemble", type=click.IntRange(1, 100), default=None,
              help="Seed-ensemble size, 1-100 (a spread if the family's fit uses its seed) [recipe].")  # fmt: skip
@click.option("--family", default=None, callback=_check_family,
              help="Force one family (auto, xgboost, lightgbm, gp, ...) [recipe].")  # fmt: skip
@click.option("--train-only", is_flag=True, help="Keep the models fitted without the held-out rows.")
@click.option(
    "--drift",
    type=click.Choice(["none", "sequence", "auto"]),
    default=None,
    help="Divide out measurement-session factors estimated from the 'sequence' column [recipe].",
)
@click.option(
    "--tune-seconds", type=NON_NEGATIVE, default=0.0, show_default=True,
    help="Optuna search of the hyperparameters per target for about this long (on a validation split; "
    "no trial starts that would end past it, bar the first). Families without a search space "
    "(additive, gp, blend) keep their recipe, with a warning.",
)  # fmt: skip
@SETTINGS_OPTION
def surrogates_build(
    anb_source: str | None,
    db_path: Path | None,
    data_path: Path | None,
    target_names: tuple[str, ...],
    out_dir: Path,
    test_fraction: float,
    seed: int,
    ensemble: int | None,
    family: str | None,
    train_only: bool,
    drift: str | None,
    tune_seconds: float,
    settings_keys: tuple[str, ...],
) -> None:
    """Fit, evaluate (held-out τ, R²), save and plot surrogates for every target of a dataset."""
    from accelnas.core import dataset
    from accelnas.core.records import names_target
    from accelnas.core.store import Store
    from accelnas.surrogates.build import build_all, check_earlier_index, pairs

    sources = [x for x in (anb_source, db_path, data_path) if x is not None]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --from-anb, --from-db, --from-data")
    check_earlier_index(out_dir)  # before the source is read (--from-anb downloads by default)
    if anb_source is not None:
        from accelnas.surrogates.anb_dataset import ANB_URL, import_anb, is_url

        anb_source = ANB_URL if anb_source == PUBLIC_ANB else anb_source
        frame, report = import_anb(anb_source)
        click.echo(report.summary(), err=True)
        where = anb_source if is_url(anb_source) else os.path.abspath(anb_source)  # the index may be read elsewhere
        source = {"anb": where, "import": report.summary()}
    elif db_path is not None:
        with Store(db_path, readonly=True) as store:
            store.check()
            frame = dataset.from_store(store)
        source = {"db": os.path.abspath(db_path)}  # the index may be read from another folder
    else:
        frame = dataset.read(data_path)
        source = {"data": os.path.abspath(data_path)}
    unmatched = [name for name in target_names if not any(names_target(name, t) for t in frame.get("target", ()))]
    if unmatched:
        have = ", ".join(sorted(set(frame.get("target", ())))) or "nothing"
        raise InvalidArgumentError(f"no data for target {unmatched[0]} (have: {have})")
    if not frame.empty:
        selected = {t for t in frame["target"] if not target_names or any(names_target(n, t) for n in target_names)}
        frame = dataset.with_settings(frame, settings_keys, selected=selected)
    available = pairs(frame)
    if not available:
        raise AccelnasError("no measurements to fit surrogates on")
    chosen = [p for p in available if not target_names or any(names_target(name, p[0]) for name in target_names)]
    index = build_all(
        frame, out_dir, targets=chosen, test_fraction=test_fraction, seed=seed, ensemble=ensemble,
        refit_all=not train_only, family=family, drift=drift, tune_seconds=tune_seconds, source=source,
        echo=click.echo, starting=lambda line: click.echo(line, err=True),
    )  # fmt: skip
    kept = len(index["surrogates"]) - len(chosen)
    also = f" ({kept} built earlier kept in the index)" if kept else ""
    plural = "s" if len(chosen) != 1 else ""
    click.echo(f"built {len(chosen)} surrogate{plural} in {index['build_seconds']:.0f}s: {out_dir}{also}")


# -- the end-to-end demo ---------------------------------------------------------------------------
@cli.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    callback=writable_folder,
    default=Path("accelnas-demo"),
    show_default=True,
    help="Where the store, datasets, surrogates, plot and report go.",
)
@click.option("--num", type=click.IntRange(min=12), default=60, show_default=True,
              help="Architectures to measure (EfficientNet-B0 + random; at least 12, so that surrogates "
                   "can be fitted and tested).")  # fmt: skip
@click.option("--input-size", type=click.IntRange(16, 1024), default=64, show_default=True,
              help="Input resolution (small, for speed).")  # fmt: skip
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the architectures and the split.")
@click.option("--target", "target_name", default=DEFAULT_TARGET, show_default=True,
              help="device/backend to measure (see accelnas targets).")  # fmt: skip
def demo(out_dir: Path, num: int, input_size: int, seed: int, target_name: str) -> None:
    """Measure, store, export, fit and report end to end on this machine's CPU (a few minutes)."""
    from accelnas.core.demo import run_demo

    run_demo(out_dir, num=num, input_size=input_size, seed=seed, target_name=target_name, echo=click.echo)


def _one_line(exc: object) -> str:
    """An exception's message on one line (plugins' messages may span several)."""
    return " / ".join(line.strip() for line in str(exc).splitlines() if line.strip())


_running: dict[str, str | None] = {"command": None}
# what a stopped command keeps, where it is not the campaign store's measurements ("" for nothing to say)
STOPPED_NOTES: dict[str, str] = {
    "surrogates": "; every surrogate built so far is saved and in the index",
    "search": "; nothing was written: a search writes its front once every run has finished",
    "merge": "; the sources merged so far are in the output, the one being merged is not",
    **dict.fromkeys(("fit", "query", "info", "sample", "export", "import-anb", "search-space", "proxy-analyse"), ""),
    **dict.fromkeys(("plugins", "targets", "status"), ""),
}


def _stopped(exc: BaseException) -> None:
    """The message and exit status of a run stopped by Ctrl-C (130) or SIGTERM (143)."""
    how, code = ("terminated", 143) if was_terminated(exc) else ("interrupted", 130)
    note = STOPPED_NOTES.get(_running["command"] or "", "; every result measured so far is stored")
    click.echo(f"{how}{note}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit; SIGTERM stops a
    command like Ctrl-C (exit status 143)."""
    undo = catch_sigterm()
    try:
        _run(argv)
    finally:
        undo()


def _run(argv: list[str] | None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="accelnas", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _stopped(exc.__cause__)
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # usage errors too: one line, like every other error
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except (AccelnasError, InvalidArchitectureError) as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt as exc:
        _stopped(exc)
    except OSError as exc:  # a path that cannot be created, read or written
        if os.environ.get("ACCELNAS_DEBUG"):
            raise
        click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except sqlite3.DatabaseError as exc:  # a campaign store damaged or out of space while in use
        if os.environ.get("ACCELNAS_DEBUG"):
            raise
        click.echo(f"error: campaign store: {_one_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("ACCELNAS_DEBUG"):
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (set ACCELNAS_DEBUG=1 for a traceback)",
                   err=True)  # fmt: skip
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
