"""``--shard i/n`` partitions and ``accelnas merge``: idempotent, conflict-reporting, never overwriting."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run_cli
from conftest import load_benchmark

from accelnas.core.errors import StoreError
from accelnas.core.merge import merge_stores
from accelnas.core.records import Measurement
from accelnas.core.shards import ShardError, parse_shard, select_shard, shard_of
from accelnas.core.space import sample
from accelnas.core.store import Store


def _m(value: float) -> Measurement:
    return Measurement("latency", "ms", value, 0.1, value - 0.1, value + 0.1, [value], 1, 32, True)


def _dump(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM results ORDER BY arch_id, target, metric, settings_key").fetchall()
        return [r[1:] for r in rows]  # without the row id


def test_shards_partition_deterministically():
    archs = sample(200, 2)
    parts = [select_shard(archs, i, 4) for i in range(4)]
    ids = [a.id for part in parts for a in part]
    assert sorted(ids) == sorted(a.id for a in archs) and len(ids) == len(set(ids))
    assert all(20 < len(p) < 80 for p in parts)
    # independent of order and of the rest of the list
    assert select_shard(list(reversed(archs)), 1, 4) == list(reversed(parts[1]))
    assert all(shard_of(a, 4) == 1 for a in parts[1])
    assert parse_shard(" 3/8 ") == (3, 8)
    for bad in ("3", "8/8", "-1/2", "a/b", "1/0"):
        with pytest.raises(ShardError):
            parse_shard(bad)


def test_merge_rules_idempotence_and_conflicts(tmp_path):
    a, b, c, d = sample(4, 6)
    left, right, out = tmp_path / "l.sqlite", tmp_path / "r.sqlite", tmp_path / "out.sqlite"
    with Store(left) as s:
        s.record_ok(a, "cpu/x", "k", {}, _m(1.0))
        s.record_ok(b, "cpu/x", "k", {}, _m(2.0))
        s.record_failure(c, "cpu/x", "latency", "k", {}, "old failure")
        s.record_plan([d], "cpu/x", ["latency"], "k", {})
    with Store(right) as s:
        s.record_ok(a, "cpu/x", "k", {}, _m(1.0))  # the same measurement
        s.record_ok(b, "cpu/x", "k", {}, _m(2.5))  # measured twice, differently
        s.record_ok(c, "cpu/x", "k", {}, _m(3.0))  # measured where the other shard failed
        s.record_failure(d, "cpu/x", "latency", "k", {}, "newer failure")

    report = merge_stores(out, [left, right])
    assert (report.added, report.unchanged, report.replaced_failures) == (4, 1, 1)
    assert [(x.arch_id, x.kept, x.other) for x in report.conflicts] == [(b.id, 2.0, 2.5)]
    with Store(out, create=False) as s:
        values = {r["arch_id"]: r["value"] for r in s.results()}
        assert values == {a.id: 1.0, b.id: 2.0, c.id: 3.0}  # the conflict kept the first value
        failed = s.results(status="failed")
        assert [(r["arch_id"], r["error"]) for r in failed] == [(d.id, "newer failure")]
        assert sum(r["total"] for r in s.summary()) == 4
    before = _dump(out)

    again = merge_stores(out, [left, right])
    assert again.changed == 0 and len(again.conflicts) == 1
    assert _dump(out) == before
    # the sources were only read
    with Store(left, readonly=True) as s:
        assert {r["arch_id"] for r in s.results(status=None)} == {a.id, b.id, c.id}

    with pytest.raises(StoreError, match="output store"):
        merge_stores(left, [left])
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable accelnas store"):
        merge_stores(out, [corrupt])
    assert _dump(out) == before


def test_sharded_collect_then_merge_cli(tmp_path):
    stress = load_benchmark("stress_resume")
    site = stress.install_plugin(tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    env = stress.plugin_env(site, ledger)
    shards = [tmp_path / f"shard{i}.sqlite" for i in range(2)]
    for i, db in enumerate(shards):
        cmd = [*stress.collect_command(db, 9, 4), "--shard", f"{i}/2"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert f"shard {i}/2" in proc.stderr
    sizes = [len(_dump(db)) for db in shards]
    assert sum(sizes) == 18 and all(n < 18 for n in sizes)

    out = tmp_path / "merged.sqlite"
    first = run_cli("merge", str(out), *map(str, shards))
    assert first.returncode == 0, first.stderr
    assert "18 added" in first.stdout and "0 conflicts" in first.stdout
    expected = {(a.id, m) for a in sample(9, 4) for m in ("throughput", "latency")}
    stress.verify(out, ledger, expected)
    before = _dump(out)
    second = run_cli("merge", str(out), *map(str, shards))
    assert second.returncode == 0 and "0 added" in second.stdout and "18 unchanged" in second.stdout
    assert _dump(out) == before

    # a shard measured again elsewhere conflicts: reported, exit 1, nothing overwritten
    redo = tmp_path / "redo.sqlite"
    proc = subprocess.run(
        [*stress.collect_command(redo, 9, 4), "--shard", "0/2"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    clash = run_cli("merge", str(out), str(redo))
    assert clash.returncode == 1
    assert f"error: {sizes[0]} conflicting measurement(s)" in clash.stderr and "conflict: bench/ledger" in clash.stderr
    assert _dump(out) == before
    bad = run_cli("collect", "--target", "bench/ledger", "--num", "2", "--shard", "2/2", "--db", str(redo), env=env)
    assert bad.returncode == 2 and "--shard 2/2" in bad.stderr


def test_schema_1_store_is_read_and_upgraded(tmp_path):
    db = tmp_path / "v1.sqlite"
    arch = sample(1, 0)[0]
    with Store(db) as s:
        s.record_ok(arch, "cpu/x", "k", {"input_size": 32, "batch_size": 4}, _m(1.0))
    with sqlite3.connect(db) as conn:  # what a store written before the plan table looks like
        conn.execute("DROP TABLE planned")
        conn.execute("PRAGMA user_version=1")
    with Store(db, readonly=True) as s:
        assert not s.has_plan and [r["ok"] for r in s.summary()] == [1]
    shown = run_cli("status", str(db))
    assert shown.returncode == 0 and "32px batch 4 threads all" in shown.stdout
    merged = merge_stores(tmp_path / "out.sqlite", [db])
    assert merged.added == 1
    with Store(db) as s:  # opened for writing: upgraded in place
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == 2
        s.record_plan([arch], "cpu/x", ["throughput"], "k", {})
        assert {r["metric"]: r["pending"] for r in s.summary()} == {"latency": 0, "throughput": 1}


def test_an_unreadable_source_changes_nothing(tmp_path):
    (a,) = sample(1, 7)
    good, junk, out = tmp_path / "good.sqlite", tmp_path / "junk.sqlite", tmp_path / "out.sqlite"
    with Store(good) as s:
        s.record_ok(a, "cpu/x", "k", {}, _m(1.0))
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError):
        merge_stores(out, [good, junk])
    assert not out.exists()  # not even created
    with pytest.raises(StoreError):
        merge_stores(out, [good, tmp_path / "missing.sqlite"])
    assert not out.exists()
    merge_stores(out, [good])
    before = _dump(out)
    with pytest.raises(StoreError):
        merge_stores(out, [good, junk])
    assert _dump(out) == before


def test_a_source_named_twice_is_refused(tmp_path):
    (a,) = sample(1, 7)
    good, out = tmp_path / "good.sqlite", tmp_path / "out.sqlite"
    with Store(good) as s:
        s.record_ok(a, "cpu/x", "k", {}, _m(1.0))
    with pytest.raises(StoreError, match="given twice"):  # its rows were counted twice in the summary
        merge_stores(out, [good, tmp_path / "." / "good.sqlite"])
    with pytest.raises(StoreError, match="given twice"):
        merge_stores(out, [good, good])
    assert not out.exists()
    assert merge_stores(out, [good]).added == 1


def test_a_damaged_source_is_refused_by_merge_export_and_status(tmp_path):
    archs = sample(3, 8)
    good, damaged, out = tmp_path / "good.sqlite", tmp_path / "damaged.sqlite", tmp_path / "out.sqlite"
    for path in (good, damaged):
        with Store(path) as s:
            for i, a in enumerate(archs):
                s.record_ok(a, "cpu/x", "k", {"input_size": 32}, _m(1.0 + i))
    with sqlite3.connect(damaged) as conn:
        conn.execute("UPDATE results SET samples = 'notjson', settings = '[' WHERE id = 2")
    with pytest.raises(StoreError, match=r"result 2 .*not valid JSON"):
        merge_stores(out, [good, damaged])
    assert not out.exists()
    commands = [
        ["merge", str(out), str(good), str(damaged)],
        ["export", "--db", str(damaged), "--out", str(tmp_path / "x")],
    ]
    for args in commands:
        result = run_cli(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert str(damaged) in lines[0] and "not valid JSON" in lines[0]
    assert not out.exists() and not (tmp_path / "x").exists()
    with sqlite3.connect(damaged) as conn:  # status reads one row's settings per settings key
        conn.execute("UPDATE results SET settings = '['")
    status = run_cli("status", str(damaged))
    assert status.returncode == 1 and status.stderr.count("\n") == 1
    assert "settings k are not valid JSON" in status.stderr


def _damage_table(path: Path, table: str) -> None:
    """Overwrite the first page of ``table`` with 0xff, as a bad disk block or a torn copy would."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    conn.close()
    with path.open("r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * page_size)


def test_a_damaged_page_is_refused_before_the_output_is_created_or_changed(tmp_path):
    archs = sample(4, 9)
    good, damaged, out = tmp_path / "good.sqlite", tmp_path / "damaged.sqlite", tmp_path / "out.sqlite"
    for path in (good, damaged):
        with Store(path) as s:
            s.record_plan(archs, "cpu/x", ["latency"], "k", {"input_size": 32})
            for i, a in enumerate(archs[:3]):
                s.record_ok(a, "cpu/x", "k", {"input_size": 32}, _m(1.0 + i))
    _damage_table(damaged, "planned")  # Store.check's reads of architectures and results still pass
    for sources in ([good, damaged], [damaged]):
        with pytest.raises(StoreError, match=f"{damaged} is damaged"):
            merge_stores(out, sources)
        assert not out.exists() and not Path(f"{out}-wal").exists()  # the good one not merged, no empty file
    merge_stores(out, [good])
    before = _dump(out)
    with pytest.raises(StoreError, match=f"{damaged} is damaged"):
        merge_stores(out, [good, damaged])
    assert _dump(out) == before
    fresh = tmp_path / "fresh.sqlite"
    for args in (
        ["merge", str(fresh), str(good), str(damaged)],
        ["export", "--db", str(damaged), "--out", str(tmp_path / "ds")],
        ["surrogates", "build", "--from-db", str(damaged), "--out", str(tmp_path / "bench")],
    ):
        result = run_cli(*args)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (args, result.stderr)
        assert result.stderr.startswith(f"error: {damaged} is damaged ("), (args, result.stderr)
    assert not fresh.exists() and not (tmp_path / "ds").exists() and not (tmp_path / "bench").exists()
    shown = run_cli("status", str(damaged))
    assert shown.returncode == 1 and shown.stderr.startswith(f"warning: {damaged} is damaged (")
    assert "export, surrogates build and merge refuse it" in shown.stderr


def test_a_source_lacking_a_column_is_refused_before_the_output_is_created(tmp_path):
    (a,) = sample(1, 10)
    good, old, out = tmp_path / "good.sqlite", tmp_path / "old.sqlite", tmp_path / "out.sqlite"
    for path in (good, old):
        with Store(path) as s:
            s.record_ok(a, "cpu/x", "k", {}, _m(1.0))
    with sqlite3.connect(old) as conn:
        conn.execute("ALTER TABLE results DROP COLUMN plugin")
    conn.close()
    with pytest.raises(StoreError, match=f"{old} lacks result column 'plugin'"):
        merge_stores(out, [good, old])
    assert not out.exists()


def _cpu(model: str, threads: int) -> dict:
    return {"host": "h", "cpu_model": model, "threads": threads}


def test_merge_warns_when_one_settings_key_mixes_hardware(tmp_path, caplog):
    archs = sample(5, 11)
    left, right, out = tmp_path / "l.sqlite", tmp_path / "r.sqlite", tmp_path / "out.sqlite"
    for path, part, prov in ((left, archs[:3], _cpu("Xeon X", 2)), (right, archs[3:], _cpu("Xeon X", 1))):
        with Store(path) as s:
            for a in part:
                m = _m(1.0)
                m.provenance = prov
                s.record_ok(a, "cpu/x", "08f9c083ffff", {"threads": None}, m)
    with caplog.at_level("WARNING", logger="accelnas.core.merge"):
        merge_stores(out, [left, right])
    assert (
        "cpu/x [08f9c083]: measured on 2 kinds of hardware (Xeon X, 2 threads: 3 rows; Xeon X, 1 thread: 2 rows); "
        "pass --threads N" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="accelnas.core.merge"):
        merge_stores(tmp_path / "one.sqlite", [left])
    assert "kinds of hardware" not in caplog.text
    shown = run_cli("merge", str(tmp_path / "cli.sqlite"), str(left), str(right))
    assert shown.returncode == 0 and "measured on 2 kinds of hardware" in shown.stderr
