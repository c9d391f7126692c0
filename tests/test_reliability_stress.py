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
