"""Stress test of campaign resume: SIGKILL the ``accelnas collect`` driver at random moments, resume, verify.

A small plugin (target ``bench/ledger``) is installed into a scratch directory the way pip installs
a distribution (module + ``.dist-info`` with an ``accelnas`` entry point), so the real command line
discovers it. Each measurement times a small matrix product with the core timing protocol and,
before returning, appends its value and a unique token to a ledger file (fsync'ed). After the kills
and a final run to completion the harness checks that

- every planned (architecture, target, metric) is stored exactly once, all ``ok``;
- what a campaign in its own process leaves failed after two kills while measuring one architecture
  (its crash guard: ``the process measuring it died 2 times``) is measured by ``collect --isolate``,
  as that error says;
- every stored value is one the plugin measured (its token and value are in the ledger);
- no value stored before a kill changed afterwards;
- ``PRAGMA integrity_check`` is ``ok``.

The ledger plugin can also inject faults, which the reliability tests use: ``ACCELNAS_FAULTS`` =
{arch id: "hang" | "abort" | "interrupt" | "flaky" | "broken" | "stubborn"}.

    python benchmarks/stress_resume.py --repeats 25 --num 16 --json stress.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from accelnas.core.cli_options import at_least_one, output_file, seed, write_output

PLUGIN_NAME = "ledger"
TARGET = "bench/ledger"

LEDGER_PLUGIN = '''
"""Stress-test plugin: times a small matrix product per architecture and logs every value it returns."""

import json
import os
import signal
import time
import uuid

import numpy as np

from accelnas import hookimpl
from accelnas.core.records import CompiledModel, ExportedModel, Target
from accelnas.core.timing import latency_measurement, measure_for, throughput_measurement

__version__ = "0.1"


def _ours(target):
    return target.name == "bench/ledger"


def _fault(arch_id, metric):
    mode = json.loads(os.environ.get("ACCELNAS_FAULTS", "{}")).get(arch_id)
    if mode is None or metric != "latency":
        return
    if mode == "hang":
        time.sleep(3600)
    elif mode == "abort":
        os.abort()
    elif mode == "interrupt":  # as a Ctrl-C that reached only the measuring process: Python exits of it
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(3600)
    elif mode == "stubborn":  # swallows every interrupt, as a plugin blocked in native code ignores them
        while True:
            try:
                time.sleep(3600)
            except BaseException:
                pass
    elif mode == "broken":
        raise RuntimeError("the device is gone")
    elif mode == "flaky":
        marker = os.path.join(os.environ["ACCELNAS_FAULT_DIR"], arch_id + ".flaky")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ConnectionResetError("connection reset by the device host")


def _log(arch_id, m):
    path = os.environ.get("ACCELNAS_LEDGER")
    if not path:
        return
    line = json.dumps({"arch": arch_id, "metric": m.metric, "value": m.mean, "token": m.provenance["token"]})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\\n")
        fh.flush()
        os.fsync(fh.fileno())


@hookimpl
def register_targets(register):
    register(Target("bench", "ledger", description="stress-test target: a small matrix product", default_batch_size=4))


@hookimpl
def export_model(target, architecture):
    if not _ours(target):
        return None
    return ExportedModel(format="none", info={"arch": architecture.id, "layers": architecture.num_layers})


@hookimpl
def compile(target, exported):
    if not _ours(target):
        return None
    n = 8 * exported.info["layers"]
    rng = np.random.default_rng(exported.info["layers"])
    return CompiledModel(handle=rng.standard_normal((n, n), dtype=np.float32), info=dict(exported.info))


def _measure(target, compiled, settings, metric):
    if not _ours(target):
        return None
    arch_id = compiled.info["arch"]
    _fault(arch_id, metric)
    a = compiled.handle
    result = measure_for(lambda: a @ a, settings)
    prov = {"token": uuid.uuid4().hex, "pid": os.getpid()}
    if metric == "latency":
        m = latency_measurement(result, input_size=settings.input_size, provenance=prov)
    else:
        m = throughput_measurement(result, batch_size=settings.batch_for(target), input_size=settings.input_size,
                                   provenance=prov)
    _log(arch_id, m)
    return m


@hookimpl
def measure_throughput(target, compiled, settings):
    return _measure(target, compiled, settings, "throughput")


@hookimpl
def measure_latency(target, compiled, settings):
    return _measure(target, compiled, settings, "latency")
'''

CRASH_GUARD = "the process measuring it died"  # error of what two deaths on one architecture leave failed
FAST = ["--input-size", "32", "--precision", "0.5", "--max-seconds", "0.05", "--warmup-seconds", "0.01"]


def install_plugin(root: Path) -> Path:
    """Write the ledger plugin as an installed distribution under ``root/site``; return that directory."""
    site = root / "site"
    dist = site / "accelnas_ledger_plugin-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (site / "accelnas_ledger_plugin.py").write_text(LEDGER_PLUGIN, encoding="utf-8")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: accelnas-ledger-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[accelnas]\n{PLUGIN_NAME} = accelnas_ledger_plugin\n")
    return site


def plugin_env(site: Path, ledger: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``collect`` that sees only the ledger plugin and logs to ``ledger``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["ACCELNAS_PLUGINS"] = PLUGIN_NAME
    env["ACCELNAS_LEDGER"] = str(ledger)
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # no BLAS thread pools to wake
        env[var] = "1"
    env.pop("ACCELNAS_DEBUG", None)
    return env | extra


def collect_command(db: Path, num: int, seed: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "accelnas.core.cli", "collect", "--target", TARGET, "--num", str(num),
            "--seed", str(seed), *FAST, "--db", str(db), *extra]  # fmt: skip


def read_ledger(path: Path) -> dict[str, tuple[str, str, float]]:
    """token -> (arch, metric, value) of every value the plugin returned (a torn last line is skipped)."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[d["token"]] = (d["arch"], d["metric"], d["value"])
    return out


def stored_rows(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        try:
            query = "SELECT arch_id, metric, status, value, provenance, error FROM results"
            return [dict(r) for r in conn.execute(query)]
        except sqlite3.OperationalError:  # killed before the schema existed
            return []


def verify(db: Path, ledger: Path, expected: set[tuple[str, str]]) -> dict[str, Any]:
    """Check the store against the plan and the ledger; returns figures, raises AssertionError on a violation."""
    rows = stored_rows(db)
    keys = [(r["arch_id"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate (arch, metric) rows"
    missing, extra = sorted(expected - set(keys)), sorted(set(keys) - expected)
    assert not missing and not extra, f"missing {missing[:3]}, extra {extra[:3]}"
    assert all(r["status"] == "ok" for r in rows), "not every measurement is ok"
    measured = read_ledger(ledger)
    for r in rows:
        token = json.loads(r["provenance"])["token"]
        assert token in measured, f"stored value of {r['arch_id']} {r['metric']} is not in the ledger"
        assert measured[token] == (r["arch_id"], r["metric"], r["value"]), f"ledger mismatch for {token}"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {"rows": len(rows), "ledger_values": len(measured), "discarded_values": len(measured) - len(rows)}


def complete(db: Path, num: int, seed: int, env: dict[str, str], extra: tuple[str, ...]) -> int:
    """Run ``collect`` to the end, unkilled. Measurements that a campaign in its own process left failed
    because it was killed twice on their architecture (its crash guard) are then measured with
    ``--isolate``, as the guard's error says; returns how many there were."""
    run = subprocess.run(collect_command(db, num, seed, *extra), env=env, capture_output=True, text=True, timeout=600)
    failed = [r for r in stored_rows(db) if r["status"] == "failed"]
    guarded = [r for r in failed if CRASH_GUARD in (r["error"] or "")]
    if run.returncode != 0 and failed and len(guarded) == len(failed) and "--isolate" not in extra:
        run = subprocess.run(collect_command(db, num, seed, *extra, "--isolate"), env=env, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"resume failed: {run.stderr[-2000:]}")
    return len(guarded)


def run_stress(
    workdir: Path, *, repeats: int, num: int = 12, seed: int = 7, rng_seed: int = 0, isolate: bool = False
) -> dict[str, Any]:
    """Kill ``collect`` ``repeats`` times at random moments, resume to completion, verify; return figures.

    With ``isolate`` the campaign measures in a child process (``--isolate``), which the kills orphan.
    """
    extra = ("--isolate",) if isolate else ()
    from accelnas.core.space import sample

    site = install_plugin(workdir)
    db, ledger = workdir / "stress.sqlite", workdir / "ledger.jsonl"
    env = plugin_env(site, ledger)
    expected = {(a.id, m) for a in sample(num, seed) for m in ("throughput", "latency")}
    rng = random.Random(rng_seed)
    # one clean run elsewhere tells how long starting and measuring take here, to spread the kills over both
    probe_db = workdir / "probe.sqlite"
    t0 = time.perf_counter()
    probe_env = plugin_env(site, workdir / "probe.jsonl")
    probe_log = workdir / "probe.log"  # not a pipe: unread, it fills after a few hundred progress lines
    with open(probe_log, "wb") as log_file:
        probe = subprocess.Popen(collect_command(probe_db, num, seed, *extra), env=probe_env,
                                 stdout=subprocess.DEVNULL, stderr=log_file)  # fmt: skip
        startup = None
        while probe.poll() is None:
            if startup is None and stored_rows(probe_db):
                startup = time.perf_counter() - t0
            time.sleep(0.02)
    if probe.returncode != 0:
        raise RuntimeError(f"collect failed: {probe_log.read_text(encoding='utf-8', errors='replace')[-2000:]}")
    full = time.perf_counter() - t0
    startup = startup if startup is not None else full
    kills = mid_campaign = rounds = stored = measured = guarded = 0
    snapshots: dict[tuple[str, str], float] = {}
    for i in range(repeats):
        before = len(stored_rows(db))
        proc = subprocess.Popen(collect_command(db, num, seed, *extra), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        if i % 2 == 0:  # anywhere: while starting, planning, measuring, committing or exiting
            time.sleep(rng.uniform(0.0, full))
        else:  # while measuring: soon after this run committed something
            while proc.poll() is None and len(stored_rows(db)) <= before:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, min(0.3, (full - startup) / 4)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        rows = stored_rows(db)
        if 0 < len(rows) < len(expected):
            mid_campaign += proc.returncode == -signal.SIGKILL
        for r in rows:  # what was measured before stays as it was
            key = (r["arch_id"], r["metric"])
            if r["status"] == "ok":
                assert snapshots.setdefault(key, r["value"]) == r["value"], f"stored value of {key} changed"
        if len(rows) == len(expected):  # finished: verify, then start the next round on a fresh store
            if any(r["status"] != "ok" for r in rows):
                guarded += complete(db, num, seed, env, extra)
            done = verify(db, ledger, expected)
            rounds += 1
            stored += done["rows"]
            measured += done["ledger_values"]
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), ledger):
                path.unlink(missing_ok=True)
            snapshots.clear()
    guarded += complete(db, num, seed, env, extra)
    done = verify(db, ledger, expected)
    rounds += 1
    stored += done["rows"]
    measured += done["ledger_values"]
    return {
        "repeats": repeats,
        "sigkills": kills,
        "kills_with_partial_store": mid_campaign,
        "archs": num,
        "isolated": isolate,
        "full_run_seconds": round(full, 2),
        "startup_seconds": round(startup, 2),
        "completed_rounds": rounds,
        "stored_rows_verified": stored,
        "values_measured": measured,
        "values_lost_in_flight": measured - stored,  # measured, killed before the commit, measured again
        "left_failed_by_crash_guard": guarded,  # killed twice on one architecture, then measured with --isolate
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats",
        type=at_least_one,
        default=25,
        help="Runs to SIGKILL at a random moment (one that finishes first is not killed); >= 20 for the report.",
    )
    parser.add_argument("--num", type=at_least_one, default=12, help="Architectures in the campaign.")
    parser.add_argument("--seed", type=seed, default=7)
    parser.add_argument("--rng-seed", type=int, default=0, help="Seed of the kill times.")
    parser.add_argument("--json", type=output_file, default=None, help="Write the figures here.")
    parser.add_argument("--isolate", action="store_true", help="Measure in a child process (collect --isolate).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="accelnas-stress-") as tmp:
        t0 = time.perf_counter()
        figures = run_stress(Path(tmp), repeats=args.repeats, num=args.num, seed=args.seed, rng_seed=args.rng_seed,
                             isolate=args.isolate)  # fmt: skip
        figures["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        write_output(args.json, text + "\n")


if __name__ == "__main__":
    main()
