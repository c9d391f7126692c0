"""The on-demand benchmark scripts refuse arguments out of range before any work, as the CLI does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script",
    ["cpu_measurement", "fp16_agreement", "model_file_fuzz", "proxy_search_digits", "stress_resume",
     "surrogate_fidelity"],
)  # fmt: skip
def test_a_negative_seed_is_refused(script):
    """-1 would draw what 1 draws (numpy takes the magnitude): a seed is 0..2**31-1 as `accelnas --seed`."""
    proc = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), "--seed", "-1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("argument --seed: must be within 0..2147483647, got -1")
