"""SIGKILL of the ``collect`` driver at random moments, then resume: nothing lost, nothing duplicated.

The same harness as benchmarks/stress_resume.py (which repeats it >= 20 times); fewer kills on CI.
"""

from __future__ import annotations

import os

import pytest
from conftest import load_benchmark


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_random_sigkills_then_resume(tmp_path, isolate):
    stress = load_benchmark("stress_resume")
    repeats = 4 if os.environ.get("CI") else 6
    figures = stress.run_stress(tmp_path, repeats=repeats, num=8, seed=11, rng_seed=1, isolate=isolate)
    assert figures["sigkills"] + figures["completed_rounds"] >= repeats
    assert figures["sigkills"] >= 1 and figures["kills_with_partial_store"] >= 1
    assert figures["stored_rows_verified"] == 16 * figures["completed_rounds"]
    assert figures["values_lost_in_flight"] >= 0


def test_what_two_kills_left_failed_in_process_is_finished_with_isolate(tmp_path):
    """A campaign in its own process leaves an architecture failed after its process died twice on it;
    the harness finishes that with --isolate instead of reporting a failed resume."""
    import json
    import subprocess

    from accelnas.core.space import sample

    stress = load_benchmark("stress_resume")
    site = stress.install_plugin(tmp_path)
    db, ledger = tmp_path / "s.sqlite", tmp_path / "ledger.jsonl"
    archs = sample(3, 5)
    crashing = stress.plugin_env(site, ledger, ACCELNAS_FAULTS=json.dumps({archs[1].id: "abort"}))
    for _ in range(2):  # the process dies on the same architecture twice
        died = subprocess.run(stress.collect_command(db, 3, 5), env=crashing, capture_output=True, timeout=300)
        assert died.returncode == -6
    # the fault aborts its latency; its throughput was stored before
    assert stress.complete(db, 3, 5, stress.plugin_env(site, ledger), ()) == 1
    expected = {(a.id, m) for a in archs for m in ("throughput", "latency")}
    assert stress.verify(db, ledger, expected)["rows"] == 6


def test_a_probe_run_that_writes_much_to_stderr_does_not_stall_the_harness(tmp_path):
    """The clean probe run's progress lines (about 200 bytes an architecture) once went to a pipe
    nobody read: past 64 KiB (a few hundred architectures) collect waited on it, and the harness on
    collect, forever. Its stderr now goes to a file, whose tail a failure still shows."""
    import subprocess
    import sys
    from pathlib import Path

    writer = "import sys; sys.stderr.write('x' * 300_000 + ' the end'); sys.exit(1)"
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from conftest import load_benchmark\n"
        "stress = load_benchmark('stress_resume')\n"
        f"stress.collect_command = lambda *args: [sys.executable, '-c', {writer!r}]\n"
        "try:\n"
        "    stress.run_stress(Path(sys.argv[2]), repeats=1, num=2)\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.stdout.startswith("collect failed: ") and run.stdout.rstrip().endswith("x the end"), run.stderr
