"""A ``collect`` process killed with SIGKILL mid-measurement resumes without losing or duplicating results."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from accelnas.core.space import sample
from accelnas.core.store import Store

NUM = 5
ARGS = ["--num", str(NUM), "--seed", "4", "--input-size", "32", "--batch-size", "4", "--threads", "1",
        "--max-seconds", "0.8", "--warmup-seconds", "0.2", "--precision", "0.005"]  # fmt: skip


def _ok_rows(db):
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _collect(db):
    return [sys.executable, "-m", "accelnas.core.cli", "collect", *ARGS, "--db", str(db)]


def test_sigkill_mid_campaign_then_resume(tmp_path):
    db = tmp_path / "campaign.sqlite"
    rng = random.Random(0)
    proc = subprocess.Popen(_collect(db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    try:
        while _ok_rows(db) < 3:  # at least one architecture done, the next one in flight
            assert proc.poll() is None, f"collect ended early: {proc.stderr.read()}"
            assert time.time() < deadline, "no results within 300 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.1, 0.6))  # inside the next measurement
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    with Store(db, create=False) as store:
        before = {(r["arch_id"], r["metric"]): r["value"] for r in store.results()}
    assert 3 <= len(before) < 2 * NUM

    rerun = subprocess.run(_collect(db), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "already stored" in rerun.stderr

    with Store(db, create=False) as store:
        rows = store.results(status=None)
    keys = [(r["arch_id"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * NUM  # exactly N x 2 metrics, no duplicates
    assert all(r["status"] == "ok" for r in rows)
    assert {r["arch_id"] for r in rows} == {a.id for a in sample(NUM, 4)}
    after = {(r["arch_id"], r["metric"]): r["value"] for r in rows}
    assert all(after[k] == v for k, v in before.items())  # nothing measured before the kill changed
