"""Merge campaign stores (e.g. the shards of a job array) into one, idempotently.

Per (architecture, target, metric, settings) key:

- absent from the output: the row is copied as it is;
- ``failed`` in the output, ``ok`` in the source: the measurement replaces the failure;
- ``ok`` in the output, ``failed`` in the source: the measurement stays;
- both ``failed``: the more recent failure is kept;
- both ``ok`` with the same measurement: nothing changes;
- both ``ok`` with different measurements: a **conflict**; the output keeps its row, the conflict is
  reported and nothing is overwritten.

The rounds an active selection recorded (per target, settings, judged metric and seed) are copied
where the output holds none of that selection or only its first rounds, so that a campaign resumed
from the output replays them; where the output's rounds differ, it keeps its own (logged).

Merging the same sources again changes nothing. Every source is opened and checked in full
(:meth:`Store.check`: SQLite's page check, the plan, every row; and the result columns) before the
output is created or touched, so a missing, unreadable or damaged one changes nothing and a refused
merge leaves no new output file; each source is merged in one transaction, so an interrupted merge
leaves the output as it was before that source. Results of one target and settings measured on
different hardware are logged as a warning (:mod:`accelnas.core.hardware`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelnas.core import files
from accelnas.core.errors import StoreError
from accelnas.core.hardware import mixed_hardware_in
from accelnas.core.store import ROUNDS_SCHEMA, SCHEMA, Store

log = logging.getLogger(__name__)

KEY = ("arch_id", "target", "metric", "settings_key")
# what makes two ok rows the same measurement
MEASURED = ("value", "std", "ci_low", "ci_high", "unit", "batch_size", "input_size", "samples")


@dataclass
class Conflict:
    """The same key measured twice with different results."""

    arch_id: str
    target: str
    metric: str
    settings_key: str
    kept: float | None
    other: float | None
    source: str

    def __str__(self) -> str:
        return (
            f"{self.target} {self.metric} {self.arch_id} [{self.settings_key}]: kept {self.kept!r}, "
            f"{self.source} has {self.other!r}"
        )


@dataclass
class MergeReport:
    sources: list[str] = field(default_factory=list)
    added: int = 0  # keys new to the output
    replaced_failures: int = 0  # failed rows replaced by a measurement
    newer_failures: int = 0  # failed rows replaced by a more recent failure
    unchanged: int = 0  # identical, or an ok row kept against a failure
    conflicts: list[Conflict] = field(default_factory=list)
    rounds_added: int = 0  # active-selection rounds copied (see _merge_rounds)

    @property
    def changed(self) -> int:
        return self.added + self.replaced_failures + self.newer_failures


def _columns(store: Store) -> list[str]:
    return [r[1] for r in store.conn.execute("PRAGMA table_info(results)") if r[1] != "id"]


def _schema_columns() -> list[str]:
    """The result columns of a store this accelnas creates."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        return [r[1] for r in conn.execute("PRAGMA table_info(results)") if r[1] != "id"]
    finally:
        conn.close()


def _check_source(source: str | Path, columns: list[str]) -> None:
    """Open ``source`` read-only and check it in full; a StoreError names it."""
    with Store(source, readonly=True) as src:
        src.check()
        try:
            have = _columns(src)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"campaign store {source}: {exc}") from None
    missing = [c for c in columns if c not in have]
    if missing:
        raise StoreError(f"{source} lacks result column {missing[0]!r}; not an accelnas store of this kind")


def _insert(out: Store, row: dict[str, Any], columns: list[str]) -> None:
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    out.conn.execute(f"INSERT INTO results ({names}) VALUES ({marks})", row)


def _replace(out: Store, row: dict[str, Any], columns: list[str]) -> None:
    sets = ", ".join(f"{c} = :{c}" for c in columns if c not in KEY)
    where = " AND ".join(f"{c} = :{c}" for c in KEY)
    out.conn.execute(f"UPDATE results SET {sets} WHERE {where}", row)


def merge_stores(out_path: str | Path, sources: Sequence[str | Path]) -> MergeReport:
    """Merge ``sources`` into the store at ``out_path`` (created when missing)."""
    out_path = Path(out_path)
    if not sources:
        raise StoreError("nothing to merge: give at least one source store")
    seen: dict[Path, str | Path] = {}
    for source in sources:
        if Path(source).exists() and out_path.exists() and Path(source).resolve() == out_path.resolve():
            raise StoreError(f"{source} is the output store; merge into another file")
        if (resolved := Path(source).resolve()) in seen:
            raise StoreError(f"{source} is given twice (also as {seen[resolved]}); name each source store once")
        seen[resolved] = source
    existed = out_path.exists()
    if existed and out_path.is_file() and out_path.stat().st_size > 0:  # merged into: read it first
        with Store(out_path, readonly=True) as out:
            if damage := out.damage(limit=1):
                raise StoreError(f"{out_path} is damaged ({damage[0]}); merge into another file")
            try:
                columns = _columns(out)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"campaign store {out_path}: {exc}") from None
    else:
        columns = _schema_columns()
    for source in sources:  # every source readable and sound before the output is created or changed
        _check_source(source, columns)
    report = MergeReport()
    try:
        with Store(out_path) as out:
            columns = _columns(out)
            for source in sources:
                with Store(source, readonly=True) as src:
                    try:
                        _merge_one(out, src, columns, str(source), report)
                    except sqlite3.DatabaseError as exc:
                        raise StoreError(f"merging {source} into {out_path}: {exc}") from None
                report.sources.append(str(source))
            for warning in mixed_hardware_in(out):
                log.warning("%s: %s", out_path, warning)
    except BaseException:
        if not existed and not report.sources:  # nothing merged: leave no empty output behind
            _remove_store(out_path)
        raise
    return report


def _merge_rounds(c: sqlite3.Connection, src: Store, name: str, report: MergeReport) -> None:
    """Copy ``src``'s recorded active-selection rounds that the output lacks (see the module docstring)."""
    if not src.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='active_rounds'").fetchone():
        return
    columns = "target, settings_key, metric, seed, round, position, arch_id, created_at"
    designs: dict[tuple[Any, ...], dict[int, list[tuple[Any, ...]]]] = {}
    for row in src.conn.execute(f"SELECT {columns} FROM active_rounds ORDER BY target, settings_key, metric, "
                                "seed, round, position"):  # fmt: skip
        designs.setdefault(tuple(row)[:4], {}).setdefault(row["round"], []).append(tuple(row))
    if not designs:
        return
    c.execute(ROUNDS_SCHEMA)
    for design, rounds in designs.items():
        ours: dict[int, list[str]] = {}
        for index, arch_id in c.execute(
            "SELECT round, arch_id FROM active_rounds WHERE target = ? AND settings_key = ? AND metric = ? "
            "AND seed = ? ORDER BY round, position",
            design,
        ):
            ours.setdefault(index, []).append(arch_id)
        theirs = {index: [row[6] for row in rows] for index, rows in rounds.items()}
        if any(ours[i] != theirs[i] for i in set(ours) & set(theirs)):
            log.warning("%s: active selection %s chose other rounds than the output's; the output keeps its own",
                        name, "/".join(map(str, design)))  # fmt: skip
            continue
        for index in sorted(set(theirs) - set(ours)):
            c.executemany(f"INSERT INTO active_rounds ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rounds[index])
            report.rounds_added += 1


def _remove_store(path: Path) -> None:
    """Delete a store file this merge created and its -wal/-shm files."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        files.remove(name, "store file")


def _merge_one(out: Store, src: Store, columns: list[str], name: str, report: MergeReport) -> None:
    with out.transaction() as c:
        for arch_id, config in src.conn.execute("SELECT arch_id, config FROM architectures"):
            c.execute("INSERT OR IGNORE INTO architectures (arch_id, config) VALUES (?, ?)", (arch_id, config))
        if src.has_plan:
            for row in src.conn.execute("SELECT * FROM planned"):
                c.execute(
                    "INSERT OR IGNORE INTO planned (arch_id, target, metric, settings_key, settings, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    tuple(row[k] for k in (*KEY, "settings", "created_at")),
                )
        select = "SELECT " + ", ".join(columns) + " FROM results ORDER BY id"
        for src_row in src.conn.execute(select):
            row = dict(src_row)
            existing = c.execute(
                "SELECT * FROM results WHERE arch_id = ? AND target = ? AND metric = ? AND settings_key = ?",
                tuple(row[k] for k in KEY),
            ).fetchone()
            if existing is None:
                _insert(out, row, columns)
                report.added += 1
            elif existing["status"] == "ok" and row["status"] == "ok":
                if all(existing[k] == row[k] for k in MEASURED):
                    report.unchanged += 1
                else:
                    conflict = Conflict(*(row[k] for k in KEY), existing["value"], row["value"], name)  # type: ignore[arg-type]
                    log.debug("merge conflict: %s", conflict)  # reported through MergeReport.conflicts
                    report.conflicts.append(conflict)
            elif existing["status"] == "failed" and row["status"] == "ok":
                _replace(out, row, columns)
                report.replaced_failures += 1
            elif existing["status"] == "failed" and row["updated_at"] > existing["updated_at"]:
                _replace(out, row, columns)
                report.newer_failures += 1
            else:
                report.unchanged += 1
        _merge_rounds(c, src, name, report)
