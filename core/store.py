"""The campaign store: an SQLite (WAL) ledger with one row per (architecture, target, metric, settings).

Every result is committed in its own transaction as soon as it exists, so a process killed at any
moment loses at most the measurement in flight; the unique key makes re-runs idempotent. A row is
``ok`` (measured) or ``failed`` (with the error); an ``ok`` row is never overwritten. Campaigns also
record what they plan to measure, so :meth:`Store.summary` can tell done, failed and pending apart.

Several processes may write one store at once (each write is an ``IMMEDIATE`` transaction and waits
for the others); the store must then live on a local disk, as SQLite's WAL mode needs shared memory.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

from accelnas.core import jsonio
from accelnas.core.errors import StoreError, first_line
from accelnas.core.records import Measurement
from accelnas.core.space import Architecture

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the planned table
# commits between passive checkpoints (SQLite's own comes about every 250 results): a store file copied
# without its -wal file while a campaign runs, or after it was killed, lacks at most the commits since
CHECKPOINT_EVERY = 100
APPLICATION_ID = 0x41434E53  # "ACNS"
POSITIVE_METRICS = ("throughput", "latency")


def value_problem(metric: str, value: Any) -> str | None:
    """Why ``value`` cannot be a measurement of ``metric`` (None when it can)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"value {value!r} is not a finite number"
    if metric in POSITIVE_METRICS and value <= 0:
        return f"{metric} {value!r} is not positive"
    if metric == "accuracy" and not 0 <= value <= 100:
        return f"accuracy {value!r} is not a percentage"
    return None


SCHEMA = """
CREATE TABLE IF NOT EXISTS architectures (
    arch_id TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    arch_id TEXT NOT NULL REFERENCES architectures(arch_id),
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    value REAL,
    std REAL,
    ci_low REAL,
    ci_high REAL,
    unit TEXT,
    batch_size INTEGER,
    input_size INTEGER,
    precision_reached INTEGER,
    samples TEXT,
    extra TEXT,
    provenance TEXT,
    plugin TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (arch_id, target, metric, settings_key)
);
CREATE INDEX IF NOT EXISTS results_by_target ON results(target, metric, status);
"""

ROUNDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS active_rounds (
    target TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    metric TEXT NOT NULL,
    seed INTEGER NOT NULL,
    round INTEGER NOT NULL,
    position INTEGER NOT NULL,
    arch_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (target, settings_key, metric, seed, round, position)
)
"""  # active selection's rounds, made on first use: stores without it (and older accelnas) read as before


_MEASURING_SCHEMA = """
CREATE TABLE IF NOT EXISTS measuring (
    arch_id TEXT NOT NULL,
    target TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    process TEXT NOT NULL,  -- who measures it: machine (boot id), pid and the pid's start time; '' when none
    started_at REAL NOT NULL,
    deaths INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (arch_id, target, settings_key)
)
"""  # what a campaign's own process is measuring: what a crash of it leaves behind; made on first use


PLAN_SCHEMA = """
CREATE TABLE IF NOT EXISTS planned (
    arch_id TEXT NOT NULL REFERENCES architectures(arch_id),
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (arch_id, target, metric, settings_key)
)
"""

_SUMMARY = """
WITH keys AS (
    SELECT arch_id, target, metric, settings_key FROM planned
    UNION SELECT arch_id, target, metric, settings_key FROM results
)
SELECT k.target, k.settings_key, k.metric,
       COALESCE(SUM(r.status = 'ok'), 0) AS ok,
       COALESCE(SUM(r.status = 'failed'), 0) AS failed,
       COALESCE(SUM(r.status IS NULL), 0) AS pending,
       COUNT(*) AS total
FROM keys k LEFT JOIN results r USING (arch_id, target, metric, settings_key)
GROUP BY k.target, k.settings_key, k.metric
ORDER BY k.target, k.settings_key, k.metric
"""

_UPSERT_OK = """
INSERT INTO results (arch_id, target, metric, settings_key, settings, status, value, std, ci_low, ci_high,
                     unit, batch_size, input_size, precision_reached, samples, extra, provenance, plugin,
                     error, attempts, created_at, updated_at)
VALUES (:arch_id, :target, :metric, :settings_key, :settings, 'ok', :value, :std, :ci_low, :ci_high,
        :unit, :batch_size, :input_size, :precision_reached, :samples, :extra, :provenance, :plugin,
        NULL, 1, :now, :now)
ON CONFLICT (arch_id, target, metric, settings_key) DO UPDATE SET
    status = 'ok', value = excluded.value, std = excluded.std, ci_low = excluded.ci_low,
    ci_high = excluded.ci_high, unit = excluded.unit, batch_size = excluded.batch_size,
    input_size = excluded.input_size, precision_reached = excluded.precision_reached,
    samples = excluded.samples, extra = excluded.extra, provenance = excluded.provenance,
    plugin = excluded.plugin, error = NULL, attempts = results.attempts + 1, updated_at = excluded.updated_at
WHERE results.status != 'ok'
"""

_UPSERT_FAILED = """
INSERT INTO results (arch_id, target, metric, settings_key, settings, status, plugin, error, provenance,
                     attempts, created_at, updated_at)
VALUES (:arch_id, :target, :metric, :settings_key, :settings, 'failed', :plugin, :error, :provenance, 1, :now,
        :now)
ON CONFLICT (arch_id, target, metric, settings_key) DO UPDATE SET
    error = excluded.error, plugin = excluded.plugin, provenance = excluded.provenance,
    attempts = results.attempts + 1, updated_at = excluded.updated_at
WHERE results.status != 'ok'
"""


def _naming_the_store(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with SQLite's errors (a damaged file, a full disk) raised as a StoreError naming the file."""

    @wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"campaign store {self.path}: {exc}") from exc

    return wrapper


def release_marks(conn: sqlite3.Connection, target: str, settings_key: str, process: str) -> None:
    """Unmark what ``process`` measures (its architectures' earlier deaths kept); also run on its own
    connection by a process the SIGTERM watchdog is about to end."""
    conn.execute(
        "DELETE FROM measuring WHERE target = ? AND settings_key = ? AND process = ? AND deaths = 0",
        (target, settings_key, process),
    )
    conn.execute(
        "UPDATE measuring SET process = '' WHERE target = ? AND settings_key = ? AND process = ?",
        (target, settings_key, process),
    )


class Store:
    """Open (or create) a campaign store at ``path``."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._commits = 0
        self._had_wal = Path(f"{self.path}-wal").exists()  # before opening, which may create one
        if readonly:
            create = False
        if not self.path.exists() and not create:
            raise StoreError(f"campaign store not found: {self.path}")
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"campaign store path is a directory: {self.path}")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open("ro" if readonly else None)
        except sqlite3.OperationalError as exc:
            # a WAL store on read-only media: SQLite cannot create its shared-memory file, but a store
            # with no write-ahead log left is complete in its main file and reads as immutable
            wal = Path(f"{self.path}-wal")
            cannot_write = "readonly" in str(exc) or "unable to open" in str(exc)
            if not readonly or not cannot_write or (wal.exists() and wal.stat().st_size > 0):
                raise self._unusable(exc) from None
            self.conn.close()
            try:
                self._open("ro&immutable=1")
            except sqlite3.DatabaseError as again:
                raise self._unusable(again) from None
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: sqlite3.DatabaseError) -> StoreError:
        """Why the store cannot be opened: a full disk (or a disk error) is no fault of the file."""
        if "disk is full" in str(exc) or "disk I/O error" in str(exc):
            free = shutil.disk_usage(self.path.parent).free
            return StoreError(
                f"campaign store {self.path}: {exc} while opening it ({free // 1024} KiB free on its disk)"
            )
        return StoreError(f"{self.path} is not a usable accelnas store: {exc}")

    def _open(self, mode: str | None) -> None:
        """Connect (``mode``: None to read and write, else the URI's ``mode=`` value) and check the file."""
        if mode is not None:
            uri = f"{self.path.resolve().as_uri()}?mode={mode}"
            self.conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
        else:
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self._init()

    def _inspect(self) -> tuple[int, int, set[str]]:
        """application_id, user_version and table names, read together (in one transaction)."""
        c = self.conn
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return app_id, version, tables

    def _check(self, app_id: int, version: int, tables: set[str]) -> None:
        if tables and app_id != APPLICATION_ID:
            raise StoreError(f"{self.path} is an SQLite file but not an accelnas store")
        if app_id == APPLICATION_ID and version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema {version}; this accelnas reads up to {SCHEMA_VERSION} "
                "(upgrade accelnas to read it)"
            )
        missing = sorted({"architectures", "results"} - tables) if tables else []
        if version >= SCHEMA_VERSION and tables and "planned" not in tables:
            missing.append("planned")
        if missing:  # refused before anything is written to it
            raise StoreError(f"{self.path} is a damaged accelnas store: table {missing[0]!r} is missing")

    def _wal_hint(self) -> str:
        """Why a store file may look empty or short: its recent commits are in a ``-wal`` file not beside it."""
        if self._had_wal:
            return ""
        return (
            f" (a store copied while its campaign ran or after it was killed keeps recent results in the "
            f"-wal file beside the original: copy it too, renamed {self.path.name}-wal, or copy after the "
            "campaign has ended)"
        )

    def _init(self) -> None:
        c = self.conn
        # validate before writing anything: a foreign or newer file is left exactly as it was
        c.execute("BEGIN")
        try:
            app_id, version, tables = self._inspect()
        finally:
            c.execute("COMMIT")
        self._check(app_id, version, tables)
        if self.readonly:
            if not tables:
                raise StoreError(f"{self.path} is an empty file, not an accelnas store{self._wal_hint()}")
            self.has_plan = "planned" in tables
            return
        self.has_plan = True
        self._enable_wal()
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA foreign_keys=ON")
        if tables and version >= SCHEMA_VERSION:
            return
        # several processes may open a new store at once: the first to take the write lock creates
        # (or upgrades) it, the others find it done
        with self.transaction():
            app_id, version, tables = self._inspect()
            self._check(app_id, version, tables)
            if not tables:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(PLAN_SCHEMA)
                c.execute(f"PRAGMA application_id={APPLICATION_ID}")
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version < SCHEMA_VERSION:  # additive upgrade of an older store
                c.execute(PLAN_SCHEMA)
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _enable_wal(self, timeout: float = 60.0) -> None:
        # switching to WAL needs a moment alone with the file; SQLite may report "locked" at once
        # instead of waiting when another connection is doing the same, so wait here
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                transient = "locked" in str(exc) or "busy" in str(exc)
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy committed pages from the write-ahead log into the store file without waiting for readers
        (``PRAGMA wal_checkpoint(PASSIVE)``); a checkpoint that cannot run loses nothing (the log keeps it)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.DatabaseError as exc:
            log.debug("checkpoint of %s skipped: %s", self.path, exc)

    def close(self) -> None:
        """Checkpoint (a store written to) and close; a campaign's store file then holds its results."""
        if not self.readonly and self._commits:
            self.checkpoint()
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------------------
    def _ensure_arch(self, arch: Architecture) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO architectures (arch_id, config) VALUES (?, ?)",
            (arch.id, json.dumps(arch.to_config())),
        )

    @_naming_the_store
    def record_ok(
        self,
        arch: Architecture,
        target: str,
        settings_key: str,
        settings: dict[str, Any],
        measurement: Measurement,
        plugin: str | None = None,
    ) -> bool:
        """Commit a measurement; False when an ``ok`` row for the same key already existed.

        A value that no reader could use (not finite, a throughput or latency <= 0, an accuracy outside
        0-100) raises ``ValueError`` and nothing is written.
        """
        if problem := value_problem(measurement.metric, measurement.mean):
            raise ValueError(f"refusing to store {measurement.metric} of {arch.id} on {target}: {problem}")
        params = {
            "arch_id": arch.id,
            "target": target,
            "metric": measurement.metric,
            "settings_key": settings_key,
            "settings": jsonio.dumps(settings, sort_keys=True),
            "value": measurement.mean,
            "std": measurement.std,
            "ci_low": measurement.ci_low,
            "ci_high": measurement.ci_high,
            "unit": measurement.unit,
            "batch_size": measurement.batch_size,
            "input_size": measurement.input_size,
            "precision_reached": int(measurement.precision_reached),
            "samples": json.dumps(measurement.samples),
            "extra": jsonio.dumps(measurement.extra),
            "provenance": jsonio.dumps(measurement.provenance),
            "plugin": plugin,
            "now": time.time(),
        }
        with self.transaction() as c:
            self._ensure_arch(arch)
            return c.execute(_UPSERT_OK, params).rowcount > 0

    @_naming_the_store
    def record_failure(
        self,
        arch: Architecture,
        target: str,
        metric: str,
        settings_key: str,
        settings: dict[str, Any],
        error: str,
        plugin: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Commit a failure (never replaces an ``ok`` row); ``provenance`` says where it happened."""
        params = {
            "arch_id": arch.id,
            "target": target,
            "metric": metric,
            "settings_key": settings_key,
            "settings": jsonio.dumps(settings, sort_keys=True),
            "plugin": plugin,
            "error": error,
            "provenance": jsonio.dumps(provenance, sort_keys=True) if provenance else None,
            "now": time.time(),
        }
        with self.transaction() as c:
            self._ensure_arch(arch)
            c.execute(_UPSERT_FAILED, params)

    @_naming_the_store
    def record_plan(
        self,
        archs: Iterable[Architecture],
        target: str,
        metrics: Iterable[str],
        settings_key: str,
        settings: dict[str, Any],
    ) -> None:
        """Note that a campaign means to measure ``metrics`` of ``archs`` (idempotent, one transaction)."""
        if isinstance(metrics, str):  # a str iterates as letters: a metric named 'l', 'a', 't'...
            raise TypeError(f"metrics must be a list of metric names, not the string {metrics!r}")
        now = time.time()
        text = jsonio.dumps(settings, sort_keys=True)
        metrics = list(metrics)
        with self.transaction() as c:
            for arch in archs:
                self._ensure_arch(arch)
                c.executemany(
                    "INSERT OR IGNORE INTO planned (arch_id, target, metric, settings_key, settings, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(arch.id, target, metric, settings_key, text, now) for metric in metrics],
                )

    @_naming_the_store
    def rekey(self, target: str, old_key: str, new_key: str, settings: dict[str, Any]) -> int:
        """Move ``target``'s results, plan and active-selection rounds from settings key ``old_key`` to
        ``new_key`` (the same settings, keyed anew). Where both keys hold a row, a measurement beats a
        failure and, of two measurements, the new key's stays (as ``merge`` keeps its output's).
        Returns the results moved."""
        text = jsonio.dumps(settings, sort_keys=True)
        same = "o.arch_id = n.arch_id AND o.metric = n.metric AND o.target = n.target"
        with self.transaction() as c:
            c.execute(  # a failure under the new key gives way to a measurement under the old one
                f"DELETE FROM results AS n WHERE n.target = ? AND n.settings_key = ? AND n.status != 'ok' AND EXISTS "
                f"(SELECT 1 FROM results AS o WHERE {same} AND o.settings_key = ? AND o.status = 'ok')",
                (target, new_key, old_key),
            )
            moved = c.execute(
                "UPDATE OR IGNORE results SET settings_key = ?, settings = ? WHERE target = ? AND settings_key = ?",
                (new_key, text, target, old_key),
            ).rowcount
            c.execute("DELETE FROM results WHERE target = ? AND settings_key = ?", (target, old_key))
            if self.has_plan:
                c.execute(
                    "UPDATE OR IGNORE planned SET settings_key = ?, settings = ? WHERE target = ? AND settings_key = ?",
                    (new_key, text, target, old_key),
                )
                c.execute("DELETE FROM planned WHERE target = ? AND settings_key = ?", (target, old_key))
            if self._has_table("active_rounds"):
                c.execute(
                    "UPDATE OR IGNORE active_rounds SET settings_key = ? WHERE target = ? AND settings_key = ?",
                    (new_key, target, old_key),
                )
                c.execute("DELETE FROM active_rounds WHERE target = ? AND settings_key = ?", (target, old_key))
        return moved

    @_naming_the_store
    def mark_measuring(self, arch_id: str, target: str, settings_key: str, process: str) -> None:
        """Note that ``process`` starts measuring ``arch_id`` (its earlier deaths kept)."""
        with self.transaction() as c:
            c.execute(_MEASURING_SCHEMA)
            c.execute(
                "INSERT INTO measuring (arch_id, target, settings_key, process, started_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (arch_id, target, settings_key) DO UPDATE SET process = excluded.process, "
                "started_at = excluded.started_at",
                (arch_id, target, settings_key, process, time.time()),
            )

    @_naming_the_store
    def done_measuring(self, target: str, settings_key: str, arch_id: str) -> None:
        """Forget ``arch_id``: measured (or failed on its own), its deaths with it."""
        if self._has_table("measuring"):
            with self.transaction() as c:
                c.execute(
                    "DELETE FROM measuring WHERE arch_id = ? AND target = ? AND settings_key = ?",
                    (arch_id, target, settings_key),
                )

    @_naming_the_store
    def released_by(self, target: str, settings_key: str, process: str) -> None:
        """What ``process`` leaves unfinished without dying (stopped, interrupted) is no death."""
        if self._has_table("measuring"):
            with self.transaction() as c:
                release_marks(c, target, settings_key, process)

    @_naming_the_store
    def died_measuring(self, target: str, settings_key: str, alive: Callable[[str], bool | None]) -> dict[str, int]:
        """{arch_id: times a process died measuring it} for ``target`` and settings. A marked process
        that ``alive`` says is gone (False; None: it cannot tell, another machine's) counts one death."""
        if not self._has_table("measuring"):
            return {}
        with self.transaction() as c:
            rows = c.execute(
                "SELECT arch_id, process FROM measuring WHERE target = ? AND settings_key = ? AND process != ''",
                (target, settings_key),
            ).fetchall()
            for r in rows:
                if alive(r["process"]) is False:
                    c.execute(
                        "UPDATE measuring SET deaths = deaths + 1, process = '' "
                        "WHERE arch_id = ? AND target = ? AND settings_key = ?",
                        (r["arch_id"], target, settings_key),
                    )
            died = c.execute(
                "SELECT arch_id, deaths FROM measuring WHERE target = ? AND settings_key = ? AND deaths > 0",
                (target, settings_key),
            )
            return {r["arch_id"]: r["deaths"] for r in died}

    def _has_table(self, name: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
            is not None
        )

    @_naming_the_store
    def record_round(
        self, target: str, settings_key: str, metric: str, seed: int, index: int, archs: Iterable[Architecture]
    ) -> None:
        """Note round ``index`` of an active selection before it is measured; a round already noted is kept."""
        key = (target, settings_key, metric, int(seed), index)
        with self.transaction() as c:
            c.execute(ROUNDS_SCHEMA)
            if c.execute(
                "SELECT 1 FROM active_rounds WHERE target = ? AND settings_key = ? AND metric = ? AND seed = ? "
                "AND round = ?",
                key,
            ).fetchone():
                return
            now = time.time()
            c.executemany(
                "INSERT INTO active_rounds (target, settings_key, metric, seed, round, position, arch_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key, i, a.id, now) for i, a in enumerate(archs)],
            )

    @_naming_the_store
    def recorded_rounds(self, target: str, settings_key: str, metric: str, seed: int) -> list[list[Architecture]]:
        """The rounds an active selection of this target, settings, judged metric and seed chose, in order."""
        if not self._has_table("active_rounds"):
            return []
        rows = self.conn.execute(
            "SELECT round, arch_id FROM active_rounds "
            "WHERE target = ? AND settings_key = ? AND metric = ? AND seed = ? ORDER BY round, position",
            (target, settings_key, metric, int(seed)),
        )
        rounds: dict[int, list[Architecture]] = {}
        for r in rows:
            rounds.setdefault(r["round"], []).append(Architecture.from_string(r["arch_id"]))
        return [rounds[i] for i in sorted(rounds)]

    # -- reads -----------------------------------------------------------------------------------
    @_naming_the_store
    def status_of(self, target: str, settings_key: str) -> dict[tuple[str, str], str]:
        """{(arch_id, metric): status} for one target and settings."""
        rows = self.conn.execute(
            "SELECT arch_id, metric, status FROM results WHERE target = ? AND settings_key = ?",
            (target, settings_key),
        )
        return {(r["arch_id"], r["metric"]): r["status"] for r in rows}

    @_naming_the_store
    def looser_than(
        self, target: str, settings_key: str, precision: float, wanted: set[tuple[str, str]] | None = None
    ) -> int:
        """How many stored measurements of one target and settings (of the (arch_id, metric) pairs in
        ``wanted``, if given) are less precise than ``precision`` (the precision is not part of the
        settings key): their interval's relative half-width is wider, or, where they do not record
        one, they did not reach their own precision."""
        rows = self.conn.execute(
            "SELECT arch_id, metric, precision_reached, json_extract(extra, '$.relative_ci') AS width "
            "FROM results WHERE target = ? AND settings_key = ? AND status = 'ok'",
            (target, settings_key),
        )
        return sum(
            1
            for r in rows
            if (wanted is None or (r["arch_id"], r["metric"]) in wanted)
            and (r["width"] > precision * (1 + 1e-9) if isinstance(r["width"], float) else not r["precision_reached"])
        )

    @_naming_the_store
    def results(self, target: str | None = None, status: str | None = "ok") -> list[dict[str, Any]]:
        """Result rows joined with the architecture config, decoded.

        A row whose JSON does not decode, or whose architecture row is missing, raises
        :class:`StoreError` naming it.
        """
        query = "SELECT r.*, a.config FROM results r LEFT JOIN architectures a USING (arch_id) WHERE 1=1"
        args: list[Any] = []
        if target is not None:
            query += " AND r.target = ?"
            args.append(target)
        if status is not None:
            query += " AND r.status = ?"
            args.append(status)
        out = []
        for row in self.conn.execute(query + " ORDER BY r.id", args):
            d = dict(row)
            if d["config"] is None:
                raise StoreError(f"{self._row_name(d)} has no architecture row")
            for key in ("config", "settings", "samples", "extra", "provenance"):
                if d.get(key) is not None:
                    try:
                        d[key] = json.loads(d[key])
                    except (TypeError, ValueError) as exc:
                        raise StoreError(f"{self._row_name(d)}: column {key} is not valid JSON ({exc})") from None
            out.append(d)
        return out

    def _row_name(self, row: dict[str, Any]) -> str:
        return f"{self.path}: result {row['id']} ({row['arch_id']}, {row['target']}, {row['metric']})"

    @_naming_the_store
    def check(self) -> None:
        """Raise :class:`StoreError` naming the store's damage or the first row a reader could not use.

        The file's pages must pass SQLite's own check (:meth:`damage`; about 0.04 s for 40,000 results);
        planned rows must hold valid JSON settings; architecture rows a valid architecture with their id;
        results must have their architecture row and valid JSON; ``ok`` results a finite value in range
        (positive throughput and latency, accuracy within 0-100).
        """
        if damage := self.damage(limit=1):
            raise StoreError(f"{self.path} is damaged ({damage[0]}); restore it from a copy or collect it again")
        if self.has_plan:
            for row in self.conn.execute("SELECT arch_id, target, metric, settings_key, settings FROM planned"):
                try:
                    json.loads(row["settings"])
                except (TypeError, ValueError) as exc:
                    raise StoreError(
                        f"{self.path}: planned {row['arch_id']} ({row['target']}, {row['metric']}): "
                        f"settings are not valid JSON ({exc})"
                    ) from None
        for arch_id, config in self.conn.execute("SELECT arch_id, config FROM architectures"):
            try:
                arch = Architecture.from_config(json.loads(config))
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{self.path}: architecture {arch_id}: {first_line(exc)}") from None
            if arch.id != arch_id:
                raise StoreError(f"{self.path}: architecture {arch_id}: its config is architecture {arch.id}")
        for row in self.results(status=None):
            if row["status"] == "ok" and (problem := value_problem(row["metric"], row["value"])):
                raise StoreError(f"{self._row_name(row)}: {problem}")

    @_naming_the_store
    def targets(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT target FROM results ORDER BY target")]

    @_naming_the_store
    def summary(self) -> list[dict[str, Any]]:
        """Per (target, settings_key, metric): ok, failed, pending (planned, no result yet) and total."""
        query = (
            _SUMMARY
            if self.has_plan
            else _SUMMARY.replace("SELECT arch_id, target, metric, settings_key FROM planned\n    UNION ", "")
        )
        return [dict(r) for r in self.conn.execute(query)]

    @_naming_the_store
    def common_errors(self, limit: int = 5) -> list[dict[str, Any]]:
        """The most frequent error texts of failed rows, per target: (target, error, n)."""
        rows = self.conn.execute(
            "SELECT target, error, COUNT(*) AS n FROM results WHERE status = 'failed' "
            "GROUP BY target, error ORDER BY target, n DESC, error"
        )
        out: list[dict[str, Any]] = []
        per_target: dict[str, int] = {}
        for row in rows:
            if per_target.get(row["target"], 0) < limit:
                per_target[row["target"]] = per_target.get(row["target"], 0) + 1
                out.append(dict(row))
        return out

    @_naming_the_store
    def settings_of(self, settings_key: str) -> dict[str, Any] | None:
        """The settings (identity) stored under ``settings_key``."""
        row = self.conn.execute(
            "SELECT settings FROM results WHERE settings_key = ? LIMIT 1", (settings_key,)
        ).fetchone()
        if row is None and self.has_plan:
            row = self.conn.execute(
                "SELECT settings FROM planned WHERE settings_key = ? LIMIT 1", (settings_key,)
            ).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: settings {settings_key} are not valid JSON ({exc})") from None

    def damage(self, limit: int = 3) -> list[str]:
        """SQLite's own check of the file's pages (``PRAGMA quick_check``): [] when sound, else its findings,
        one line each."""
        try:
            found = [str(r[0]) for r in self.conn.execute(f"PRAGMA quick_check({int(limit)})")]
        except sqlite3.DatabaseError as exc:  # too damaged for the check to finish: that is the finding
            return [str(exc)]
        if found == ["ok"]:
            return []
        # a finding may start with a '*** in database main ***' line: keep what names the damage
        lines = [[x.strip() for x in f.splitlines() if x.strip() and not x.startswith("***")] for f in found]
        return [x[0] for x in lines if x] or found

    @_naming_the_store
    def counts(self) -> list[dict[str, Any]]:
        """Rows of (target, metric, status, n)."""
        rows = self.conn.execute(
            "SELECT target, metric, status, COUNT(*) AS n FROM results GROUP BY target, metric, status "
            "ORDER BY target, metric, status"
        )
        return [dict(r) for r in rows]
