"""``accelnas search``, ``accelnas verify`` and ``accelnas search-space``."""

from __future__ import annotations

from pathlib import Path

import click

from accelnas.core.cli_options import (
    FINITE,
    SEED,
    named_file,
    output_clash,
    parse_options,
    writable_file,
    writable_folder,
)
from accelnas.search.objectives import MNASNET_W


def _split(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


@click.command()
@click.option(
    "--benchmark", "benchmark_dir", type=click.Path(path_type=Path), required=True,
    help="Benchmark directory (accelnas surrogates build).",
)  # fmt: skip
@click.option(
    "--objectives", required=True,
    help="Comma-separated: accuracy, throughput@DEVICE, latency@DEVICE (e.g. accuracy,throughput@zcu102).",
)  # fmt: skip
@click.option("--budget", default=2000, show_default=True, help="Unique architectures each run may query.")
@click.option(
    "--optimizer", "optimizers", multiple=True,
    help="random, evolution or nsga2 (or a registered one); comma-separated or repeated to compare [nsga2]",
)  # fmt: skip
@click.option(
    "--seeds", "num_seeds", default=1, show_default=True, help="Runs per optimizer (seeds SEED, SEED+1, ...)."
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="First seed.")
@click.option("--constraint", "constraints", multiple=True, help="e.g. latency@zcu102<=5 (repeatable).")
@click.option(
    "--reward", default=None,
    help="Single-objective MnasNet reward accuracy*(T/T0)^w, given as OBJECTIVE=T0, e.g. latency@zcu102=5.",
)  # fmt: skip
@click.option(
    "--reward-w", type=FINITE, default=MNASNET_W, show_default=True,
    help="Reward exponent in the latency convention (its sign flips for a throughput).",
)  # fmt: skip
@click.option("--population", type=int, default=None, help="Population of evolution / NSGA-II [100 / 50].")
@click.option("--sample-size", type=int, default=None, help="Tournament sample of evolution [population // 4].")
@click.option("--batch", type=int, default=None, help="Children evolution breeds per step [1: sequential].")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), callback=writable_folder, required=True,
    help="Directory for front.csv, front.json, front.png and hypervolume.png.",
)  # fmt: skip
@click.pass_context
def search(
    ctx: click.Context,
    benchmark_dir: Path,
    objectives: str,
    budget: int,
    optimizers: tuple[str, ...],
    num_seeds: int,
    seed: int,
    constraints: tuple[str, ...],
    reward: str | None,
    reward_w: float,
    population: int | None,
    sample_size: int | None,
    batch: int | None,
    out_dir: Path,
) -> None:
    """Search the benchmark for the Pareto front of the objectives; compare optimizers and EfficientNet-B0.

    Prints the front (ids, predicted values ± surrogate spread), the hypervolume per optimizer and
    how the found architectures compare with EfficientNet-B0, and writes OUT/front.csv (id, config
    keys, one column per objective), OUT/front.json, OUT/front.png and OUT/hypervolume.png.
    """
    from accelnas.search.objectives import parse_constraint, parse_objectives, parse_reward
    from accelnas.search.plots import plot_anytime, plot_front
    from accelnas.search.problem import SearchProblem
    from accelnas.search.report import write_outcome
    from accelnas.search.run import search as run_search
    from accelnas.surrogates.benchmark import Benchmark

    if budget < 1:
        raise click.UsageError("--budget must be >= 1")
    if reward is None and ctx.get_parameter_source("reward_w") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--reward-w goes with --reward (e.g. --reward latency@zcu102=5)")
    if num_seeds < 1:
        raise click.UsageError("--seeds must be >= 1")
    if seed + num_seeds - 1 > SEED.max:
        raise click.UsageError(f"--seed {seed} with --seeds {num_seeds} passes the largest seed, {SEED.max}")
    names = _split(optimizers)
    if optimizers and not names:
        raise click.UsageError(f"--optimizer {optimizers[0]!r} names no optimizer (random, evolution, nsga2, ...)")
    names = names or ["nsga2"]
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise click.UsageError(f"--optimizer names {repeated[0]!r} twice (more runs of one optimizer: --seeds)")
    problem = SearchProblem(
        Benchmark.load(benchmark_dir),
        parse_objectives(objectives),
        [parse_constraint(c) for c in constraints],
        parse_reward(reward, reward_w) if reward is not None else None,
    )
    seeds = list(range(seed, seed + num_seeds))

    def progress(run, done: int, total: int) -> None:
        click.echo(
            f"[{done}/{total}] {run.optimizer} seed {run.seed}: {run.queries} queries, "
            f"hypervolume {run.hypervolume:.4f} ({run.seconds:.1f}s)",
            err=True,
        )

    options = {"population": population, "sample_size": sample_size, "batch": batch}
    outcome = run_search(problem, names, budget, seeds, options, progress=progress)
    facts = {"benchmark": str(benchmark_dir), "optimizers": names, "seeds": seeds}
    csv_path, json_path = write_outcome(outcome, out_dir, **facts)
    front_png = plot_front(outcome, out_dir / "front.png")
    hv_png = plot_anytime(outcome.runs, out_dir / "hypervolume.png", title=", ".join(problem.names))
    _echo_outcome(outcome)
    click.echo(f"wrote {csv_path}, {json_path}, {front_png}, {hv_png}")


def _echo_outcome(outcome) -> None:
    problem = outcome.problem
    b0 = outcome.b0
    click.echo(f"Pareto front: {len(outcome.front)} architectures ({', '.join(problem.names)})")
    labels = [f"{o.name} [{problem.unit(o)}]" for o in problem.objectives]
    widths = [max(30, len(label) + 2) for label in labels]  # long target names keep their columns apart
    first = len("EfficientNet-B0 ") + len(b0.arch.id) + 2
    click.echo(f"{'id':<{first}}" + "".join(f"{label:>{w}}" for label, w in zip(labels, widths, strict=True))
               + "  found by")  # fmt: skip

    def cells(e) -> str:
        out = ""
        for o, w in zip(problem.objectives, widths, strict=True):
            j = problem.column(o)
            out += f"{e.mean[j]:>{w - 11}.4g} ± {e.std[j]:<8.2g}"
        return out

    for f in outcome.front:
        click.echo(f"{f.evaluation.arch.id:<{first}}{cells(f.evaluation)}  {f.found_by}")
    click.echo(f"{'EfficientNet-B0 ' + b0.arch.id:<{first}}{cells(b0)}")
    best = outcome.best_reward()
    if best is not None:
        click.echo(f"best reward {problem.reward.name}: {best.evaluation.arch.id} = {best.evaluation.reward:.4g}")
    if not outcome.front:
        click.echo("no feasible architecture found: relax the constraints or raise the budget")
    points = outcome.summary_points()
    click.echo("hypervolume (normalized objectives, reference point 1.1; mean ± std over seeds):")
    click.echo(f"{'optimizer':<12}" + "".join(f"{'@' + str(n):>22}" for n in points))
    for name, per in outcome.hypervolume_table(points).items():
        click.echo(f"{name:<12}" + "".join(f"{m:>13.4f} ± {s:<6.4f}" for m, s, _ in per.values()))
    for c in outcome.comparisons:
        click.echo(c.summary())


@click.command()
@click.argument("front_csv", type=click.Path(dir_okay=False, path_type=Path), callback=named_file)
@click.option(
    "--target", "target_name", default="cpu/onnxruntime", show_default=True, help="device/backend to measure."
)
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), callback=writable_file, required=True,
    help="Campaign store (SQLite) the measurements go to; created if missing, resumed if present.",
)  # fmt: skip
@click.option(
    "--against", default=None,
    help="Compare with this prediction, e.g. throughput@a100 (the front's column, or --benchmark's).",
)  # fmt: skip
@click.option(
    "--benchmark", "benchmark_dir", type=click.Path(path_type=Path), default=None,
    help="With --against: predict it with this benchmark instead of reading the front's column.",
)  # fmt: skip
@click.option(
    "--surrogate", "surrogate_dir", type=click.Path(path_type=Path), default=None,
    help="Compare with this surrogate (e.g. fitted on the measured target by accelnas fit).",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Measure at most N architectures, spread along the front.")  # fmt: skip
@click.option("--input-size", type=int, default=224, show_default=True, help="Input resolution.")
@click.option("--batch-size", type=int, default=None, help="Throughput batch size [target default].")
@click.option("--precision", type=FINITE, default=0.02, show_default=True, help="Target 95% CI half-width (fraction).")
@click.option("--max-seconds", type=FINITE, default=30.0, show_default=True, help="Timed budget per metric.")
@click.option("--warmup-seconds", type=FINITE, default=5.0, show_default=True, help="Warm-up budget.")
@click.option("--threads", type=int, default=None, help="Intra-op threads [the physical cores this process may use].")
@click.option(
    "--option", "option_texts", multiple=True, metavar="KEY=VALUE",
    help="Backend option of the target (repeatable), e.g. graph_optimization=basic; as for collect.",
)  # fmt: skip
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), callback=writable_folder, default=None,
    help="Where verify.json/.csv/.png go [the front file's directory].",
)  # fmt: skip
@click.pass_context
def verify(
    ctx: click.Context,
    front_csv: Path,
    target_name: str,
    db_path: Path,
    against: str | None,
    benchmark_dir: Path | None,
    surrogate_dir: Path | None,
    limit: int | None,
    input_size: int,
    batch_size: int | None,
    precision: float,
    max_seconds: float,
    warmup_seconds: float,
    threads: int | None,
    option_texts: tuple[str, ...],
    out_dir: Path | None,
) -> None:
    """Measure the architectures of a front on a target and report predicted vs measured (τ, error).

    The prediction is either a benchmark objective (--against throughput@a100: another device than
    the measured one, so only the ranking is compared) or a surrogate of the measured target itself
    (--surrogate DIR from accelnas fit or surrogates build --from-db: errors are reported too).
    Every measurement is stored in --db as it arrives.
    """
    from accelnas.core.plugins import load_registry
    from accelnas.core.progress import ProgressPrinter
    from accelnas.core.records import MeasureSettings
    from accelnas.core.store import Store
    from accelnas.search import verify as v
    from accelnas.search.objectives import parse_objective
    from accelnas.search.report import read_front
    from accelnas.surrogates import artifact
    from accelnas.surrogates.benchmark import Benchmark

    if (against is None) == (surrogate_dir is None):
        raise click.UsageError("give either --against OBJECTIVE (e.g. throughput@a100) or --surrogate DIR")
    if benchmark_dir is not None and against is None:
        raise click.UsageError("--benchmark goes with --against")
    try:
        settings = MeasureSettings(
            input_size=input_size, batch_size=batch_size, precision=precision, max_seconds=max_seconds,
            warmup_seconds=warmup_seconds, threads=threads, options=parse_options(option_texts),
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = out_dir or front_csv.parent
    if out_dir is None:  # checked before measuring, as --out is
        try:
            writable_folder(ctx, None, out)
        except click.BadParameter as exc:
            raise click.UsageError(f"{exc.message}: verify writes its report beside the front; pass --out") from None
    clash = output_clash(out, v.OUTPUT_FILES, [front_csv, front_csv.with_suffix(".json")])
    if clash is not None:
        raise click.UsageError(f"verify writes {clash}, which is its input: pass --out another folder")
    archs, frame = read_front(front_csv)
    chosen = v.spread(archs, limit)
    archs = [archs[i] for i in chosen]
    frame = frame.iloc[chosen].reset_index(drop=True)
    if surrogate_dir is not None:
        source = v.from_surrogate(artifact.load(surrogate_dir), archs, str(surrogate_dir))
    elif benchmark_dir is not None:
        source = v.from_benchmark(Benchmark.load(benchmark_dir), parse_objective(against), archs)
    else:
        objective = parse_objective(against)
        target_of, settings_of = v.front_sources(front_csv.with_suffix(".json")).get(objective.name, (None, None))
        source = v.from_front_column(frame, objective, target_of, settings_of)
    registry = load_registry()
    target = registry.target(target_name)
    target.check_options(settings)
    click.echo(
        f"verifying {len(archs)} architectures of {front_csv} on {target.name} ({source.metric}, "
        f"{input_size}x{input_size}) against {source.label}; store: {db_path}",
        err=True,
    )
    with Store(db_path) as store:
        result = v.verify(registry, target, archs, source, settings, store, progress=ProgressPrinter())
    paths = v.write_verification(result, out)
    click.echo(result.summary())
    for row in result.rows:
        click.echo(f"  {row['id']}  predicted {row['predicted']:10.4g}  measured {row['measured']:10.4g} {result.unit}")
    click.echo(f"wrote {', '.join(str(p) for p in paths)}")
    if result.errors:
        click.echo(f"error: {len(result.errors)} measurement(s) failed, first: {result.errors[0]}", err=True)
        ctx.exit(1)


@click.command("search-space")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), callback=writable_file, default=None,
    help="Write the ConfigSpace JSON here [print it].",
)  # fmt: skip
def search_space(out_path: Path | None) -> None:
    """Export the search space as a ConfigSpace ConfigurationSpace (JSON) for SMAC/NASLib-style optimizers."""
    from accelnas.search.configspace import configuration_space, write_space

    if out_path is None:
        import json

        from ConfigSpace.read_and_write import json as cs_json

        click.echo(json.dumps(json.loads(cs_json.write(configuration_space())), indent=2))
        return
    click.echo(str(write_space(out_path)))
