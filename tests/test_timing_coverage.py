"""benchmarks/timing_coverage.py refuses simulated call times and durations it cannot simulate."""

from __future__ import annotations

import pytest
from conftest import load_benchmark


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--call-ms", "0"], "argument --call-ms: 0.0 is not in the range x>0."),
     (["--call-ms", "nan"], "argument --call-ms: 'nan' is not a finite number"),
     (["--min-seconds", "0,-1"], "argument --min-seconds: -1.0 is not in the range x>=0."),
     (["--min-seconds", ","], "argument --min-seconds: give at least one duration")],
)  # fmt: skip
def test_bad_call_times_and_durations_are_usage_errors(capsys, args, expected):
    with pytest.raises(SystemExit) as raised:
        load_benchmark("timing_coverage").main(["--runs", "1", *args])
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected)


def test_a_valid_run_prints_every_case_at_each_duration(capsys):
    bench = load_benchmark("timing_coverage")
    assert bench.main(["--runs", "2", "--min-seconds", "0,0.01", "--call-ms", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 2 * len(bench.CASES)
