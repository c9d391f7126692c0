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
