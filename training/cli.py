"""Command-line entry points: ``accelnas train``, ``accelnas proxy-search``, ``accelnas proxy-analyse``."""

from __future__ import annotations

from pathlib import Path

import click

from accelnas.core import files, jsonio
from accelnas.core.cli_options import NON_NEGATIVE, SEED, named_file, output_clash, writable_file, writable_folder

DB_OPTION = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), callback=writable_file, required=True,
    help="Campaign store (SQLite); created if missing, resumed if present.",
)  # fmt: skip


def _set_threads(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    if value is not None:
        import torch

        torch.set_num_threads(value)
        ctx.meta["threads"] = value


THREADS_OPTION = click.option(
    "--threads", type=click.IntRange(min=1), default=None, expose_value=False, callback=_set_threads,
    help="Torch threads of this process [all cores]; fewer keep wall time steady on a shared host.",
)  # fmt: skip


def _list_recipes(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from accelnas.training.recipe import builtin_names, load_recipe, read_yaml

    for name in builtin_names():
        click.echo(f"{name:<24} {load_recipe(name).description}")
    for name in builtin_names(spaces=True):
        data, _ = read_yaml(name, kind="proxy space")
        click.echo(f"{name:<24} (proxy space) {data.get('description', '') if isinstance(data, dict) else ''}")
    ctx.exit(0)


def _architectures(arch_texts: tuple[str, ...], num: int | None, seed: int):
    from accelnas.core.space import parse_architecture, unique
    from accelnas.core.space import sample as draw

    archs = unique(parse_architecture(t) for t in arch_texts)
    if num is None and not archs:
        raise click.UsageError("give --num N and/or --arch ARCH")
    if num is not None:
        if num < 1:
            raise click.UsageError("--num must be >= 1")
        archs += draw(num, seed, exclude={a.id for a in archs})
    return archs


def _data_options(f):
    f = click.option("--split-seed", type=SEED, default=0, show_default=True,
                     help="Seed of the digits train/val split.")(f)  # fmt: skip
    f = click.option("--image-size", type=click.IntRange(8, 512), default=32, show_default=True,
                     help="Stored size of the digits images (8-512).")(f)  # fmt: skip
    f = click.option(
        "--data", "data_spec", default="digits", show_default=True,
        help="'digits' (scikit-learn, upsampled) or a directory with train/<class>/* and val/<class>/* (ImageNet).",
    )(f)  # fmt: skip
    return f


def _check_data_options(data_spec: str) -> None:
    """--image-size and --split-seed shape the digits data, --workers load an image folder: each would do
    nothing with the other kind of data."""
    ctx = click.get_current_context()

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE

    if data_spec == "digits":
        if given("workers"):
            raise click.UsageError("--workers applies to an image folder, not to --data digits (held in memory)")
        return
    for name in ("image_size", "split_seed"):
        if given(name):
            raise click.UsageError(f"--{name.replace('_', '-')} applies to --data digits, not to an image folder")


def _arch_options(f):
    f = click.option("--seed", type=SEED, default=0, show_default=True, help="Architecture sampling seed.")(f)
    f = click.option("--num", type=click.IntRange(min=1), default=None, help="Random architectures (with --seed).")(f)
    f = click.option("--arch", "arch_texts", multiple=True, help="Architecture id, b0 or JSON (repeatable).")(f)
    return f


@click.command()
@click.option("--recipe", "recipe_source", default="digits-reference", show_default=True,
              help="Recipe YAML file or built-in name (see --list-recipes).")  # fmt: skip
@click.option("--list-recipes", is_flag=True, expose_value=False, is_eager=True, callback=_list_recipes,
              help="List the built-in recipes and proxy spaces, then exit.")  # fmt: skip
@_arch_options
@_data_options
@DB_OPTION
@THREADS_OPTION
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda (torchrun: one GPU per rank) or cuda:N.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=0), default=4, show_default=True,
              help="DataLoader workers per rank for image folders.")  # fmt: skip
@click.option("--no-retry-failed", is_flag=True, help="Leave stored failures alone.")
@click.option("--ray", "ray_address", default=None,
              help="Train one architecture per Ray task on this cluster (auto, host:port, or 'local').")  # fmt: skip
@click.option("--gpus-per-task", type=NON_NEGATIVE, default=1.0, show_default=True,
              help="With --ray: GPUs per training task.")  # fmt: skip
@click.option("--cpus-per-task", type=NON_NEGATIVE, default=4.0, show_default=True,
              help="With --ray: CPUs per training task.")  # fmt: skip
@click.pass_context
def train(
    ctx: click.Context,
    recipe_source: str,
    arch_texts: tuple[str, ...],
    num: int | None,
    seed: int,
    data_spec: str,
    image_size: int,
    split_seed: int,
    db_path: Path,
    device: str,
    workers: int,
    no_retry_failed: bool,
    ray_address: str | None,
    gpus_per_task: float,
    cpus_per_task: float,
) -> None:
    """Train architectures under a recipe; store top-1/top-5, wall time and device-hours as accuracy results.

    Resumable like `collect`. Under torchrun (`torchrun --nproc-per-node N -m accelnas.core.cli -- train ...`)
    each architecture is trained with DistributedDataParallel over all ranks; rank 0 writes the store.
    """
    from accelnas.core.store import Store
    from accelnas.training.campaign import ProgressLines, accuracy_target, run_accuracy_campaign
    from accelnas.training.data import check_data, load_data
    from accelnas.training.distributed import init_from_env, shutdown
    from accelnas.training.recipe import load_recipe

    _check_data_options(data_spec)
    recipe = load_recipe(recipe_source)
    archs = _architectures(arch_texts, num, seed)
    if ray_address is None:
        for name in ("gpus_per_task", "cpus_per_task"):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{name.replace('_', '-')} applies to Ray tasks; add --ray ADDRESS")
    else:
        if not ray_address.strip():  # an unset shell variable, say: 'local' asks for a local Ray
            raise click.UsageError(f"--ray {ray_address!r} names no cluster (auto, host:port or 'local')")
        if ctx.meta.get("threads"):
            raise click.UsageError("--threads sets this process's threads; Ray tasks take --cpus-per-task")
        if ctx.get_parameter_source("device") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--device picks this process's device; Ray tasks train on their --gpus-per-task")
        check_data(data_spec)  # before the store is opened (and created), as is the cluster's address
        if ray_address != "local":
            from accelnas.core.ray_executor import check_reachable

            check_reachable(ray_address)
        _train_on_ray(ctx, recipe, archs, data_spec, image_size, split_seed, db_path, ray_address, gpus_per_task,
                      cpus_per_task, workers, not no_retry_failed)  # fmt: skip
        return
    check_data(data_spec)
    dctx = init_from_env(device)  # the device, the store, then the data (which may take minutes to read)
    finished = False
    try:
        store = Store(db_path) if dctx.is_main else None
        data = load_data(data_spec, image_size=image_size, seed=split_seed)
        echo = (lambda line: click.echo(line, err=True)) if dctx.is_main else None
        if echo:
            echo(f"training {len(archs)} architectures under {recipe.name} on {data.name} "
                 f"({len(data.train)} train / {len(data.val)} val images, {data.num_classes} classes) with "
                 f"{dctx.world_size} process(es) on {dctx.device}; store: {db_path}")  # fmt: skip
        report = run_accuracy_campaign(
            archs, recipe, data, store, ctx=dctx, retry_failed=not no_retry_failed, workers=workers,
            progress=ProgressLines(echo) if echo else None,
        )  # fmt: skip
        if store is not None:
            store.close()
        finished = True
    finally:
        shutdown(dctx, together=finished)
    if not dctx.is_main:
        return
    click.echo(
        f"done in {report.seconds:.1f}s: {report.tally()}; "
        f"target {accuracy_target(data)}, settings {report.settings_key}; store: {db_path}"
    )
    if report.failed:
        click.echo(f"error: {report.failed} training run(s) failed, first: {report.errors[0]}", err=True)
        ctx.exit(1)


def _train_on_ray(ctx: click.Context, recipe, archs, data_spec: str, image_size: int, split_seed: int, db_path: Path,
                  address: str, gpus: float, cpus: float, workers: int, retry_failed: bool) -> None:  # fmt: skip
    from accelnas.core.store import Store
    from accelnas.training.campaign import ProgressLines
    from accelnas.training.ray_campaign import run_ray_accuracy_campaign

    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    echo(f"training {len(archs)} architectures under {recipe.name} as Ray tasks ({gpus:g} GPU, {cpus:g} CPU each)")
    with Store(db_path) as store:
        report = run_ray_accuracy_campaign(
            archs, recipe, data_spec, store, address=None if address == "local" else address, image_size=image_size,
            split_seed=split_seed, gpus_per_task=gpus, cpus_per_task=cpus, workers=workers, retry_failed=retry_failed,
            progress=ProgressLines(echo),
        )  # fmt: skip
    click.echo(
        f"done in {report.seconds:.1f}s: {report.tally()}; target {report.target}, settings {report.settings_key}; "
        f"store: {db_path}"
    )
    if report.failed:
        click.echo(f"error: {report.failed} training run(s) failed, first: {report.errors[0]}", err=True)
        ctx.exit(1)


@click.command("proxy-search")
@click.option("--space", "space_source", default="digits-proxy-space", show_default=True,
              help="Proxy space YAML (base recipe + axes) or built-in name.")  # fmt: skip
@click.option("--reference", "reference_source", default=None,
              help="Reference recipe to train [the space's base recipe]; or use --reference-file.")  # fmt: skip
@click.option("--reference-file", type=click.Path(dir_okay=False, path_type=Path), callback=named_file, default=None,
              help="Reference accuracies: dataset export (metric accuracy) or CSV with arch_id,accuracy.")  # fmt: skip
@_arch_options
@_data_options
@DB_OPTION
@THREADS_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), callback=writable_folder,
              required=True,
              help="Directory for candidates.csv, comparison.csv, pareto.png, chosen.yaml, summary.json.")  # fmt: skip
@click.option("--strategy", "strategies", multiple=True, type=click.Choice(["grid", "halving", "optuna"]),
              help="Search strategies to run and compare (repeatable) [all three].")  # fmt: skip
@click.option("--threshold", default=0.8, show_default=True, help="Minimum Kendall τ of an acceptable proxy.")
@click.option("--eta", type=click.IntRange(min=2), default=3, show_default=True,
              help="Successive halving: keep 1/eta per rung.")  # fmt: skip
@click.option("--min-archs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Successive halving: architectures in rung 0.")  # fmt: skip
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Optuna trials [half the candidates, at least 3].")  # fmt: skip
@click.option("--cost", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="Run cost: wall-clock seconds or process CPU seconds (steadier on busy hosts).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=click.IntRange(min=0), default=4, show_default=True,
              help="DataLoader workers for image folders.")  # fmt: skip
def proxy_search(
    space_source: str,
    reference_source: str | None,
    reference_file: Path | None,
    arch_texts: tuple[str, ...],
    num: int | None,
    seed: int,
    data_spec: str,
    image_size: int,
    split_seed: int,
    db_path: Path,
    out_dir: Path,
    strategies: tuple[str, ...],
    threshold: float,
    eta: int,
    min_archs: int,
    trials: int | None,
    cost: str,
    device: str,
    workers: int,
) -> None:
    """Find the cheapest training proxy whose ranking agrees with the reference (Kendall τ >= threshold).

    Every training run is stored (target train/<data>), so an interrupted search resumes and the
    strategies share runs; each strategy's search cost counts the runs it needed.
    """
    from accelnas.core.store import Store
    from accelnas.training import proxy_search as ps
    from accelnas.training.campaign import accuracy_target
    from accelnas.training.data import check_data, load_data
    from accelnas.training.distributed import init_from_env
    from accelnas.training.recipe import load_recipe

    _check_data_options(data_spec)
    if reference_source is not None and reference_file is not None:
        raise click.UsageError("give --reference or --reference-file, not both")
    if not -1 <= threshold <= 1:
        raise click.UsageError("--threshold must be within [-1, 1]")
    source = click.get_current_context().get_parameter_source
    for name, strategy in (("eta", "halving"), ("min_archs", "halving"), ("trials", "optuna")):
        if strategies and strategy not in strategies and source(name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to --strategy {strategy}, which is not run")
    clash = output_clash(out_dir, SEARCH_OUTPUTS, [space_source, reference_source, reference_file])
    if clash is not None:
        raise click.UsageError(f"proxy-search writes {clash}, which is one of its inputs: pass --out another folder")
    space = ps.load_space(space_source)
    space.candidates()  # a space without a valid candidate fails now, not after the reference training
    ref_recipe = load_recipe(reference_source) if reference_source is not None else space.base
    archs = _architectures(arch_texts, num, seed)
    if len(archs) < 3:
        raise click.UsageError(f"proxy search ranks architectures: give at least 3 (have {len(archs)})")
    check_data(data_spec)  # before the store is opened (and created)
    dctx = init_from_env(device)
    if dctx.distributed:
        raise click.UsageError("proxy-search runs in one process; use `train` under torchrun for DDP")
    err = lambda line: click.echo(line, err=True)  # noqa: E731
    from_file = ps.read_reference(reference_file) if reference_file is not None else None
    with Store(db_path) as store:  # the inputs are checked before the data, which may take minutes to read
        data = load_data(data_spec, image_size=image_size, seed=split_seed)
        evaluator = ps.TrainingEvaluator(data, store, ctx=dctx, workers=workers, echo=err)
        reference_ledger = None
        if from_file is not None:
            from_file.check_dataset(accuracy_target(data))
            reference = from_file.accuracies
            err(f"reference: {len(reference)} accuracies from {reference_file}")
            missing = [a.id for a in archs if a.id not in reference]
            if missing:
                err(f"warning: {len(missing)} of the {len(archs)} architectures have no accuracy in {reference_file} "
                    f"and are left out of the search (first: {missing[0]})")  # fmt: skip
        else:
            err(f"reference: training {len(archs)} architectures under {ref_recipe.name}")
            evs = evaluator.evaluate(ref_recipe, archs)
            reference = {k: v.top1 for k, v in evs.items() if not v.failed}
            reference_ledger = ps.Ledger(cost=cost)
            reference_ledger.add(ref_recipe, evs)
        results = ps.run_strategies(
            strategies or ps.STRATEGIES, space, archs, reference, evaluator, threshold,
            eta=eta, min_archs=min_archs, trials=trials, seed=seed, cost=cost,
        )  # fmt: skip
    _write_search(out_dir, results, reference_ledger, threshold, space)


SEARCH_OUTPUTS = ("candidates.csv", "comparison.csv", "pareto.png", "summary.json", "chosen.yaml")


def _write_search(out_dir: Path, results, reference_ledger, threshold: float, space) -> None:
    import pandas as pd

    from accelnas.training import proxy_search as ps
    from accelnas.training.plots import cost_tau_front
    from accelnas.training.recipe import save_recipe

    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = pd.concat([r.frame() for r in results], ignore_index=True)
    files.write_csv(out_dir / "candidates.csv", candidates)
    table = ps.comparison(results)
    files.write_csv(out_dir / "comparison.csv", table)
    unit = "CPU-s" if results[0].ledger.cost == "cpu" else "s"  # what --cost counts
    png = cost_tau_front(results, out_dir / "pareto.png", cost_unit=unit)
    grid = next((r for r in results if r.strategy == "grid"), results[0])
    for r in results:
        failed = f" ({r.ledger.failed} failed)" if r.ledger.failed else ""
        click.echo(f"\n{r.strategy}: {len(r.final)} candidates fully scored, {r.ledger.trainings} trainings{failed}, "
                   f"search cost {r.ledger.seconds:.1f} {unit} ({r.ledger.device_hours:.4f} device-hours)")  # fmt: skip
        click.echo(f"  {'candidate':<36} {'tau':>6} {unit + '/arch':>10} {'top-1':>7}  pareto")
        front = {s.recipe_key for s in r.front}
        for s in sorted(r.final, key=lambda s: s.seconds_per_arch):
            mark = "*" if s.recipe_key in front else ""
            click.echo(f"  {s.name:<36} {s.tau:6.3f} {s.seconds_per_arch:10.2f} {s.mean_top1:7.2f}  {mark}")
        click.echo(f"  cheapest with τ >= {threshold:g}: " + (f"{r.chosen.name} (τ {r.chosen.tau:.3f}, "
                   f"{r.chosen.seconds_per_arch:.2f} {unit}/arch)" if r.chosen else "none"))  # fmt: skip
    chosen = grid.chosen or next((r.chosen for r in results if r.chosen), None)
    summary = {
        "threshold": threshold,
        "reference_seconds": reference_ledger.seconds if reference_ledger else None,
        "reference_device_hours": reference_ledger.device_hours if reference_ledger else None,
        "strategies": [r.summary() for r in results],
        "chosen": chosen.name if chosen else None,
    }
    if chosen is not None:
        recipe = next(c.recipe for c in space.candidates() if c.recipe.key() == chosen.recipe_key)
        save_recipe(recipe, out_dir / "chosen.yaml")
    elif (out_dir / "chosen.yaml").exists():  # an earlier run's choice is not this run's
        (out_dir / "chosen.yaml").unlink()
        click.echo(f"removed {out_dir / 'chosen.yaml'} of an earlier run: this run chose no proxy", err=True)
    files.write_text(out_dir / "summary.json", jsonio.dumps(summary, indent=2))
    click.echo(f"\nwrote {out_dir / 'candidates.csv'}, {out_dir / 'comparison.csv'}, {png}"
               + (f", {out_dir / 'chosen.yaml'}" if chosen else "") + f", {out_dir / 'summary.json'}")  # fmt: skip


def _tau_cell(value: float, width: int) -> str:
    """A τ right-aligned in ``width`` characters; "-" where there is none (a recipe against itself)."""
    return f"{value:{width}.3f}" if value == value else f"{'-':>{width}}"


@click.command("proxy-analyse")
@click.argument("ablations", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), callback=writable_folder,
              default=None,
              help="Write ablation_tau.csv, ablation_summary.csv and a seed-mean scatter PNG here.")  # fmt: skip
@click.option("--gpus-per-job", type=click.IntRange(min=1), default=4, show_default=True,
              help="GPUs behind each training time in the files (device-hours = seconds x GPUs / 3600).")  # fmt: skip
def proxy_analyse(ablations: Path, out_dir: Path | None, gpus_per_job: int) -> None:
    """τ between training recipes and across seeds from per-seed result files (<recipe>-seed<N>.csv).

    ABLATIONS is a directory such as Accel-NASBench's ablations/ (proxified-seed1.csv, fewproxy-seed1.csv, ...).
    """
    import pandas as pd

    from accelnas.training.ranking import ANALYSIS_FILES, analyse_ablations, read_ablations

    runs = read_ablations(ablations)
    analysis = analyse_ablations(runs, gpus_per_job=gpus_per_job)
    click.echo(f"{analysis.n_archs} architectures; recipes: {', '.join(analysis.recipes)}")
    click.echo(f"{'comparison':<32} {'τ(seed means)':>14} {'τ mean':>8} {'min':>7} {'max':>7}")
    table = analysis.table()
    for row in table.to_dict("records"):
        cells = [_tau_cell(row[c], w) for c, w in (("tau_seed_means", 14), ("tau_same_seed_mean", 8),
                                                     ("tau_same_seed_min", 7), ("tau_same_seed_max", 7))]  # fmt: skip
        click.echo(f"{row['comparison']:<32} " + " ".join(cells))
    for c in analysis.costs:
        click.echo(f"{c['recipe']:<12} {c['seconds_per_model']:9.0f} s/model = {c['gpu_hours_per_model']:.2f} "
                   f"GPU-hours/model ({gpus_per_job} GPUs), mean top-1 {c['mean_top1']:.2f}%")  # fmt: skip
    if len(analysis.costs) >= 2:
        cheap, dear = sorted(analysis.costs, key=lambda c: c["seconds_per_model"])[:2]
        ratio = dear["seconds_per_model"] / cheap["seconds_per_model"]
        click.echo(f"{cheap['recipe']} costs {1 / ratio:.3f}x {dear['recipe']} ({ratio:.1f}x cheaper)")
    if out_dir is not None:
        import numpy as np

        from accelnas.training.plots import recipe_scatter

        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [{"kind": "between", **r} for r in analysis.between]
        rows += [{"kind": "across_seeds", "recipe_a": r["recipe"], "recipe_b": r["recipe"], **r} for r in
                 analysis.across_seeds]  # fmt: skip
        columns = ["kind", "recipe_a", "recipe_b", "seed_a", "seed_b", "tau"]  # a header even with no pair of seeds
        paths = [out_dir / name for name in ANALYSIS_FILES]  # tau, summary
        files.write_csv(paths[0], pd.DataFrame(rows, columns=columns))
        costs = pd.DataFrame(analysis.costs)
        files.write_csv(paths[1], table.merge(costs, how="left", on="recipe"))
        if len(analysis.recipes) >= 2:
            a, b = analysis.recipes[:2]
            ra, rb = runs[a], runs[b]
            sa = np.std([ra.top1[s] for s in ra.top1], axis=0, ddof=1) if len(ra.top1) > 1 else None
            sb = np.std([rb.top1[s] for s in rb.top1], axis=0, ddof=1) if len(rb.top1) > 1 else None
            tau = next(r["tau"] for r in analysis.between if r["seed_a"] == "mean")
            paths.append(recipe_scatter(ra.mean_top1(), rb.mean_top1(), sa, sb, f"top-1 % ({a}, seed mean)",
                                        f"top-1 % ({b}, seed mean)", f"{a} vs {b}: τ = {tau:.3f} "
                                        f"(n={analysis.n_archs})", out_dir / "ablation_scatter.png"))  # fmt: skip
        click.echo("wrote " + ", ".join(str(p) for p in paths))
