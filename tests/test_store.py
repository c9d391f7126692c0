import sqlite3
from pathlib import Path

import pytest

from accelnas.core.errors import StoreError
from accelnas.core.records import Measurement
from accelnas.core.space import sample
from accelnas.core.store import Store


def _m(value=10.0, metric="latency"):
    unit = "ms" if metric == "latency" else "images/s"
    return Measurement(
        metric=metric,
        unit=unit,
        mean=value,
        std=0.1,
        ci_low=value - 0.1,
        ci_high=value + 0.1,
        samples=[value],
        batch_size=1,
        input_size=32,
        precision_reached=True,
    )


def test_ok_rows_are_unique_and_never_overwritten(tmp_path):
    arch = sample(1, 0)[0]
    with Store(tmp_path / "s.sqlite") as store:
        assert store.record_ok(arch, "cpu/x", "k", {}, _m(10.0))
        assert not store.record_ok(arch, "cpu/x", "k", {}, _m(99.0))
        store.record_failure(arch, "cpu/x", "latency", "k", {}, "boom")
        rows = store.results()
        assert len(rows) == 1 and rows[0]["value"] == 10.0 and rows[0]["status"] == "ok"
        # another settings key is another result
        store.record_ok(arch, "cpu/x", "k2", {}, _m(11.0))
        assert len(store.results()) == 2


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5.0, 0.0])
def test_a_value_no_reader_could_use_is_refused_and_nothing_is_written(tmp_path, value):
    arch = sample(1, 0)[0]
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match=f"refusing to store latency of {arch.id} on cpu/x"):
            store.record_ok(arch, "cpu/x", "k", {}, _m(value))
        assert store.results(status=None) == [] and store.summary() == []


def test_undefined_numbers_beside_a_value_are_stored_as_json_null(tmp_path):
    """A plugin's extra or provenance with NaN/inf is kept, as strict JSON SQLite's json functions read."""
    arch = sample(1, 0)[0]
    m = _m(10.0)
    m.extra = {"temperature": float("nan"), "clock": [1.5, float("inf")]}
    m.provenance = {"driver": "x", "power_w": float("-inf")}
    with Store(tmp_path / "s.sqlite") as store:
        store.record_ok(arch, "cpu/x", "k", {"budget": float("inf")}, m)
        (row,) = store.results()
        assert row["extra"] == {"temperature": None, "clock": [1.5, None]}
        assert row["provenance"] == {"driver": "x", "power_w": None}
    db = sqlite3.connect(tmp_path / "s.sqlite")
    got = db.execute("SELECT json_extract(extra, '$.clock[0]'), json_valid(provenance), json_valid(settings) "
                     "FROM results").fetchone()  # fmt: skip
    db.close()
    assert got == (1.5, 1, 1)


def test_a_plan_refuses_a_string_of_metrics(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(TypeError, match="not the string 'latency'"):
            store.record_plan(sample(1, 0), "cpu/x", "latency", "k", {})
        store.record_plan(sample(1, 0), "cpu/x", ["latency"], "k", {})
        assert [(r["metric"], r["pending"]) for r in store.summary()] == [("latency", 1)]


def test_failure_then_success_replaces_the_failure(tmp_path):
    arch = sample(1, 0)[0]
    with Store(tmp_path / "s.sqlite") as store:
        store.record_failure(arch, "cpu/x", "latency", "k", {}, "first")
        store.record_failure(arch, "cpu/x", "latency", "k", {}, "second")
        failed = store.results(status="failed")
        assert len(failed) == 1 and failed[0]["error"] == "second" and failed[0]["attempts"] == 2
        store.record_ok(arch, "cpu/x", "k", {}, _m())
        assert store.results(status="failed") == []
        ok = store.results()
        assert len(ok) == 1 and ok[0]["attempts"] == 3 and ok[0]["config"] == arch.to_config()
        assert store.status_of("cpu/x", "k") == {(arch.id, "latency"): "ok"}


def test_a_failed_transaction_rolls_back_and_keeps_its_error(tmp_path):
    arch = sample(1, 0)[0]
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match="midway"), store.transaction() as c:
            c.execute("DELETE FROM results")
            raise ValueError("midway")
        store.record_ok(arch, "cpu/x", "k", {}, _m())
        # SQLite may end a transaction itself (I/O error, disk full): the original error still surfaces
        with pytest.raises(ValueError, match="after an automatic rollback"), store.transaction() as c:
            c.execute("DELETE FROM results")
            c.execute("ROLLBACK")
            raise ValueError("after an automatic rollback")
        assert len(store.results()) == 1 and not store.conn.in_transaction


@pytest.mark.parametrize("error", ["database or disk is full", "disk I/O error"])
def test_a_store_that_cannot_be_created_on_a_full_disk_is_not_called_unusable(tmp_path, monkeypatch, error):
    def full(self, timeout=60.0):
        raise sqlite3.OperationalError(error)

    monkeypatch.setattr(Store, "_enable_wal", full)
    path = tmp_path / "new.sqlite"
    with pytest.raises(StoreError) as raised:
        Store(path)
    message = str(raised.value)
    assert (
        message.startswith(f"campaign store {path}: {error} while opening it (") and "KiB free on its disk" in message
    )
    assert "not a usable" not in message


def test_reopen_keeps_results(tmp_path):
    path = tmp_path / "s.sqlite"
    archs = sample(3, 1)
    with Store(path) as store:
        for a in archs:
            store.record_ok(a, "cpu/x", "k", {"input_size": 32}, _m())
    with Store(path, create=False) as store:
        assert {r["arch_id"] for r in store.results()} == {a.id for a in archs}
        assert store.counts() == [{"target": "cpu/x", "metric": "latency", "status": "ok", "n": 3}]
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        Store(tmp_path / "missing.sqlite", create=False)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable accelnas store"):
        Store(corrupt)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not an accelnas store"):
        Store(foreign)
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema 99"):
        Store(path)


@pytest.mark.parametrize("table", ["results", "architectures", "planned"])
def test_a_store_missing_a_table_is_refused_before_anything_is_written(tmp_path, table):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.record_plan(sample(2, 0), "t/x", ["latency"], "k", {"input_size": 32})
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")  # fold the log into the file, so its bytes tell any write
    conn.execute(f"DROP TABLE {table}")
    conn.close()
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=f"damaged accelnas store: table '{table}' is missing"):
            Store(path, readonly=readonly)
    assert path.read_bytes() == before and not (tmp_path / "s.sqlite-wal").exists()


def _open_and_report(path: str) -> str:
    try:
        with Store(path):
            return "ok"
    except StoreError as exc:
        return str(exc)


def test_many_processes_may_create_the_same_store_at_once(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        for i in range(8):
            path = str(tmp_path / f"s{i}.sqlite")
            assert pool.map(_open_and_report, [path] * 6) == ["ok"] * 6
            with Store(path) as store:
                assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


ROW_2_ARCH = "(SELECT arch_id FROM results WHERE id = 2)"
DAMAGE = {
    "samples not JSON": ("UPDATE results SET samples = 'notjson' WHERE id = 2", "column samples is not valid JSON"),
    "settings not JSON": ("UPDATE results SET settings = '[' WHERE id = 2", "not valid JSON"),
    "invalid architecture": (
        f"UPDATE architectures SET config = json_set(config, '$.block0_e', 9) WHERE arch_id = {ROW_2_ARCH}",
        "block0_e",
    ),
    "architecture row missing": (
        f"DELETE FROM architectures WHERE arch_id = {ROW_2_ARCH}",
        "has no architecture row",
    ),
    "negative value": ("UPDATE results SET value = -5 WHERE id = 2", "latency -5.0 is not positive"),
    "value missing": ("UPDATE results SET value = NULL WHERE id = 2", "value None is not a finite number"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_check_names_the_damaged_row(tmp_path, damage):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        for i, arch in enumerate(sample(3, 4)):
            store.record_ok(arch, "cpu/x", "k", {"input_size": 32}, _m(10.0 + i))
        store.check()  # a sound store passes
    sql, expected = DAMAGE[damage]
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute(sql)
    with Store(path) as store, pytest.raises(StoreError) as raised:
        store.check()
    message = str(raised.value)
    assert expected in message and "\n" not in message
    assert str(path) in message and ("result 2 " in message or "architecture " in message)


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root bypasses them unless capabilities go)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"]


def test_a_store_on_read_only_media_is_read_by_status_export_and_merge(tmp_path):
    import subprocess
    import sys

    archive = tmp_path / "archive"
    archive.mkdir()
    db = archive / "shard.sqlite"
    with Store(db) as store:
        store.record_ok(sample(1, 1)[0], "cpu/x", "k", {}, _m(3.0))
    assert not (archive / "shard.sqlite-wal").exists()  # checkpointed when the last connection closed
    prefix = _unprivileged()

    def cli(*args):
        return subprocess.run([*prefix, sys.executable, "-m", "accelnas.core.cli", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip

    db.chmod(0o444)
    archive.chmod(0o555)
    try:
        status = cli("status", str(db))
        assert status.returncode == 0 and "cpu/x" in status.stdout, status.stderr
        exported = cli("export", "--db", str(db), "--out", str(tmp_path / "data"))
        assert exported.returncode == 0, exported.stderr
        assert (tmp_path / "data" / "cpu__x.parquet").is_file()
        merged = cli("merge", str(tmp_path / "all.sqlite"), str(db))
        assert merged.returncode == 0 and "1 added" in merged.stdout, merged.stderr
        assert sorted(p.name for p in archive.iterdir()) == ["shard.sqlite"]  # nothing written beside it
    finally:
        archive.chmod(0o755)


def test_export_leaves_an_empty_file_as_it_was(tmp_path):
    from cli_helpers import run_cli

    empty = tmp_path / "empty.sqlite"
    empty.touch()
    result = run_cli("export", "--db", str(empty), "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "is an empty file, not an accelnas store" in result.stderr
    assert empty.stat().st_size == 0


def test_a_store_damaged_after_it_was_opened_gives_a_store_error_naming_it(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        for i, arch in enumerate(sample(300, 1)):
            store.record_ok(arch, "cpu/x", "k", {}, _m(1.0 + i))
    size = db.stat().st_size
    with db.open("r+b") as f:  # the file header and schema page stay intact; the rows do not
        f.seek(size // 4)
        f.write(bytes(range(256)) * (size // 512))
    with Store(db, readonly=True) as store, pytest.raises(StoreError, match=f"campaign store {db}: .*malformed"):
        store.results()
    with Store(db, readonly=True) as store:
        assert store.damage()  # SQLite's page check finds it even where counts still read
    from cli_helpers import run_cli

    shown = run_cli("status", str(db))  # the counts cannot be read either: still the one-line warning
    assert shown.returncode == 1 and shown.stderr.count("\n") == 1, shown.stderr
    assert shown.stderr.startswith(f"warning: {db} is damaged (") and "counts cannot be read" in shown.stderr
    for args in (
        ["export", "--db", str(db), "--out", str(tmp_path / "x")],
        ["merge", str(tmp_path / "o.sqlite"), str(db)],
    ):
        refused = run_cli(*args)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith(f"error: {db} is damaged (")
    assert not (tmp_path / "x").exists() and not (tmp_path / "o.sqlite").exists()
    # damage in the rows' pages only: the counts still read, with a warning
    with Store(tmp_path / "b.sqlite") as store:
        for i, arch in enumerate(sample(300, 1)):
            store.record_ok(arch, "cpu/x", "k", {}, _m(1.0 + i))
    size = (tmp_path / "b.sqlite").stat().st_size
    with (tmp_path / "b.sqlite").open("r+b") as f:
        f.seek(size // 2)
        f.write(bytes(range(256)) * 12)
    shown = run_cli("status", str(tmp_path / "b.sqlite"))
    assert shown.returncode == 1 and "is damaged (" in shown.stderr and "cpu/x" in shown.stdout, shown.stderr
    with Store(tmp_path / "sound.sqlite") as store:
        store.record_ok(sample(1, 2)[0], "cpu/x", "k", {}, _m(1.0))
        assert store.damage() == []


def test_a_copy_without_the_write_ahead_log_is_named_as_such(tmp_path):
    """A store file copied while its campaign runs (or after a kill) lacks the commits still in its -wal."""
    import shutil

    from accelnas.core.store import CHECKPOINT_EVERY

    path, copy = tmp_path / "shard.sqlite", tmp_path / "copy.sqlite"
    archs = sample(CHECKPOINT_EVERY + 5, 5)
    with Store(path) as store:
        for i, arch in enumerate(archs[:3]):
            store.record_ok(arch, "cpu/x", "k", {}, _m(1.0 + i))
        shutil.copyfile(path, copy)  # the results are all in shard.sqlite-wal yet
        with pytest.raises(
            StoreError,
            match=r"copy\.sqlite is an empty file.*-wal file beside the original: copy it too, renamed "
            r"copy\.sqlite-wal",
        ):
            Store(copy, readonly=True)
        for i, arch in enumerate(archs[3:], start=3):
            store.record_ok(arch, "cpu/x", "k", {}, _m(1.0 + i))
        copy.unlink()
        shutil.copyfile(path, copy)  # checkpointed every CHECKPOINT_EVERY commits
        with Store(copy, readonly=True) as copied:
            assert len(copied.results()) >= CHECKPOINT_EVERY - 1  # creating the store was a commit too
    Path(f"{copy}-wal").write_bytes(b"")  # a log beside the file: the hint would mislead
    copy.write_bytes(b"")
    with pytest.raises(StoreError) as raised:
        Store(copy, readonly=True)
    assert "is an empty file, not an accelnas store" in str(raised.value) and "-wal" not in str(raised.value)
    shutil.copyfile(path, copy)  # closed: every result is in the file
    with Store(copy, readonly=True) as copied:
        assert len(copied.results()) == len(archs)
