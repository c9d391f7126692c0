"""Campaign commands beside ``collect``: ``merge`` and ``status``, and ``collect``'s reliability options."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from accelnas.core import jsonio
from accelnas.core.cli_options import named_file, writable_file
from accelnas.core.errors import AccelnasError, StoreError
from accelnas.core.executors import Executor, LocalExecutor
from accelnas.core.retry import RetryPolicy
from accelnas.core.space import Architecture


@dataclass(frozen=True)
class CampaignOptions:
    """How ``collect`` runs: executor, isolation, retries, time budget and shard."""

    executor: str = "local"
    address: str | None = None
    isolate: bool = False
    task_timeout: float = 900.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ray_max_retries: int = 3
    time_budget: float | None = None
    shard: tuple[int, int] | None = None

    def select(self, archs: Sequence[Architecture]) -> list[Architecture]:
        from accelnas.core.shards import select_shard

        if self.shard is None:
            return list(archs)
        return select_shard(archs, *self.shard)

    def make_executor(self) -> Executor:
        if self.executor == "ray":
            from accelnas.core.ray_executor import RayExecutor

            return RayExecutor(
                self.address,
                max_retries=self.ray_max_retries,
                isolate=self.isolate,
                task_timeout=self.task_timeout if self.isolate else None,
            )
        if self.isolate:
            from accelnas.core.isolation import IsolatedExecutor

            return IsolatedExecutor(self.task_timeout)
        return LocalExecutor()

    def describe(self) -> str:
        parts = []
        if self.executor == "ray":
            parts.append(f"executor: ray at {self.address or 'RAY_ADDRESS/local'}")
        if self.isolate:
            parts.append(f"isolated, task timeout {self.task_timeout:g} s")
        if self.shard:
            parts.append(f"shard {self.shard[0]}/{self.shard[1]}")
        if self.time_budget:
            parts.append(f"time budget {self.time_budget:g} s")
        return "".join(f"; {p}" for p in parts)


def campaign_options(
    *,
    executor: str,
    address: str | None,
    isolate: bool,
    task_timeout: float | None,
    retries: int,
    retry_backoff: float,
    ray_max_retries: int,
    time_budget: float | None,
    shard: str | None,
    active: bool,
) -> CampaignOptions:
    """Validate ``collect``'s reliability options (usage errors name the option)."""
    from accelnas.core.shards import parse_shard

    if address is not None and executor != "ray":
        raise click.UsageError("--address needs --executor ray")
    if address is not None and not address.strip():  # an unset shell variable, say: not a local Ray
        raise click.UsageError(f"--address {address!r} names no cluster (leave it out for RAY_ADDRESS or a local Ray)")
    ctx = click.get_current_context(silent=True)
    typed = ctx is not None and ctx.get_parameter_source("ray_max_retries") is click.core.ParameterSource.COMMANDLINE
    if typed and executor != "ray":  # a default map (a config file) may hold it; only the command line is checked
        raise click.UsageError("--ray-max-retries needs --executor ray")
    if task_timeout is not None and not isolate:
        raise click.UsageError("--task-timeout needs --isolate")
    if task_timeout is not None and task_timeout <= 0:
        raise click.UsageError("--task-timeout must be positive")
    if retries < 0 or retry_backoff < 0 or ray_max_retries < 0:
        raise click.UsageError("--retries, --retry-backoff and --ray-max-retries must be >= 0")
    if time_budget is not None and time_budget <= 0:
        raise click.UsageError("--time-budget must be positive")
    if shard is not None and active:
        raise click.UsageError("--shard cannot split --selection active (its rounds depend on all results)")
    if active and executor != "local":
        raise click.UsageError("--selection active runs with the local executor only")
    return CampaignOptions(
        executor=executor,
        address=address,
        isolate=isolate,
        task_timeout=task_timeout or 900.0,
        retry=RetryPolicy(max_attempts=retries + 1, backoff_seconds=retry_backoff),
        ray_max_retries=ray_max_retries,
        time_budget=time_budget,
        shard=parse_shard(shard) if shard is not None else None,
    )


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path), callback=writable_file)
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def merge(out: Path, sources: tuple[Path, ...]) -> None:
    """Merge campaign stores SOURCES (e.g. shards) into OUT, created when missing.

    Idempotent: merging again changes nothing. A measurement never replaces another one: the same key
    measured with different results is reported as a conflict (exit code 1) and OUT keeps its row.
    """
    from accelnas.core.merge import merge_stores

    report = merge_stores(out, sources)
    click.echo(
        f"merged {len(report.sources)} store(s) into {out}: {report.added} added, "
        f"{report.replaced_failures} failures replaced by measurements, {report.newer_failures} newer failures, "
        f"{report.unchanged} unchanged, {len(report.conflicts)} conflicts"
        + (f", {report.rounds_added} active-selection round(s) copied" if report.rounds_added else "")
    )
    for conflict in report.conflicts[:20]:
        click.echo(f"conflict: {conflict}", err=True)
    if len(report.conflicts) > 20:
        click.echo(f"... and {len(report.conflicts) - 20} more conflicts", err=True)
    if report.conflicts:
        raise AccelnasError(f"{len(report.conflicts)} conflicting measurement(s) kept as they were in {out}")


def _settings_label(settings: dict | None) -> str:
    if not settings:
        return "?"
    if isinstance(settings.get("recipe"), dict):  # a training campaign's: the recipe says what differs
        recipe, name = settings["recipe"], settings.get("recipe_name", "?")
        return f"recipe {name} ({recipe.get('epochs', '?')} epochs, batch {recipe.get('batch_size', '?')})"
    label = f"{settings.get('input_size', '?')}px"
    if settings.get("batch_size"):
        label += f" batch {settings['batch_size']}"
    label += f" threads {settings.get('threads') or 'all'}"
    if settings.get("options"):
        label += " " + json.dumps(settings["options"], sort_keys=True)
    return label


KEY_WIDTH = 8  # the start of a settings key that status shows; export/fit/build --settings take it


@click.command()
@click.argument("db", type=click.Path(dir_okay=False, path_type=Path), callback=named_file, required=False)
@click.option("--db", "db_option", type=click.Path(dir_okay=False, path_type=Path), callback=named_file, default=None,
              help="The store, as the other commands name it (or give it as DB).")  # fmt: skip
@click.option("--errors", "num_errors", type=click.IntRange(min=0), default=5, show_default=True,
              help="Most common errors shown per target.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(db: Path | None, db_option: Path | None, num_errors: int, as_json: bool) -> None:
    """Show done / failed / pending measurements per target and settings of campaign store DB, and the
    commonest errors. The key column starts each settings key (for --settings of export, fit and build)."""
    from accelnas.core.store import Store

    if (db is None) == (db_option is None):
        raise click.UsageError("give the store once: accelnas status DB, or --db DB")
    db = db or db_option
    with Store(db, readonly=True) as store:
        damage = store.damage()
        try:
            rows = store.summary()
            for row in rows:
                row["settings"] = store.settings_of(row["settings_key"])
            errors = store.common_errors(num_errors)
        except StoreError:
            if not damage:
                raise
            rows, errors = [], []  # the damage reaches the counts: the warning says it all
    if damage:  # the counts may still read: say so, and fail, since export, build and merge refuse it
        unread = "" if rows or errors else "; its counts cannot be read"
        click.echo(
            f"warning: {db} is damaged ({damage[0]}){unread}; export, surrogates build and merge refuse it", err=True
        )
    if as_json:
        click.echo(jsonio.dumps({"store": str(db), "progress": rows, "errors": errors, "damage": damage}, indent=2))
        sys.exit(1 if damage else 0)
    if not rows:
        if not damage:
            click.echo(f"{db}: no campaign recorded")
        sys.exit(1 if damage else 0)
    target_w = max(len("target"), *(len(r["target"]) for r in rows)) + 2
    labels = [_settings_label(r["settings"]) for r in rows]
    set_w = max(len("settings"), *(len(s) for s in labels)) + 2
    click.echo(
        f"{'target':<{target_w}}{'settings':<{set_w}}{'key':<{KEY_WIDTH + 2}}{'metric':<12}"
        f"{'done':>7}{'failed':>8}{'pending':>9}"
    )
    for row, label in zip(rows, labels, strict=True):
        click.echo(
            f"{row['target']:<{target_w}}{label:<{set_w}}{str(row['settings_key'])[:KEY_WIDTH]:<{KEY_WIDTH + 2}}"
            f"{row['metric']:<12}{row['ok']:>7}{row['failed']:>8}{row['pending']:>9}"
        )
    if errors:
        click.echo("most common errors:")
        for e in errors:
            text = " ".join(str(e["error"]).split())
            click.echo(f"  {e['target']}  {e['n']}x  {text[:160]}")
    if damage:
        sys.exit(1)
