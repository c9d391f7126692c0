"""benchmarks/sample_efficiency.py fits what the default build fits, noise weighting included."""

from __future__ import annotations

import numpy as np
from conftest import load_benchmark

from accelnas.core.model import count_macs
from accelnas.core.space import sample


def _load():
    return load_benchmark("sample_efficiency")


def _fake_anb(monkeypatch, bench, num: int):
    """Make ``bench`` read ``num`` architectures' ZCU102 latencies (a function of their MACs) as its data."""
    import pandas as pd

    frame = pd.DataFrame(
        [{**a.to_config(), "target": "zcu102/anb", "metric": "latency", "value": 1.0 + count_macs(a, 224) / 1e8}
         for a in sample(num, 5)]
    )  # fmt: skip
    monkeypatch.setattr(bench, "import_anb", lambda source: (frame, type("R", (), {"summary": lambda self: ""})()))
    return frame


def test_default_fit_weights_rows_by_their_measurement_noise():
    """With the TPUv3 recipe, rows measured badly (large std) hardly move the fit."""
    bench = _load()
    archs = sample(700, 3)
    truth = np.array([4e5 / (count_macs(a, 224) / 1e6) for a in archs])
    train, test = archs[:600], archs[600:]
    rng = np.random.default_rng(0)
    bad = rng.random(600) < 0.25
    y = np.where(bad, 0.6, 1.0) * truth[:600]
    std = np.where(bad, 0.3, 0.005) * y
    errors = {}
    for name, stds in {"reported": std, "uniform": np.full(600, 0.01) * y}.items():
        model = bench.fit_default("tpuv3/anb", "throughput", train, y, stds, np.full(600, np.nan), seed=0)
        errors[name] = np.sqrt(np.mean((model.predict(test) / truth[600:] - 1.0) ** 2))
    assert errors["reported"] < 0.5 * errors["uniform"], errors


def test_active_chooses_what_an_active_campaign_measures(tmp_path):
    """The benchmark's active selection is the campaign's loop: same round sizes (a tenth of 40 = 4, not
    an eighth), same architectures."""
    from test_active import FAST, Formula

    from accelnas.core.plugins import load_registry
    from accelnas.core.store import Store
    from accelnas.surrogates.active import active_campaign

    registry, plugin = load_registry([]), Formula()
    registry.register(plugin, "formula")
    with Store(tmp_path / "a.sqlite") as store:
        active_campaign(registry, registry.target("fake/formula"), FAST, store, num=40, metrics=["latency"])
    pool = sample(5000, 0)
    chosen = _load().choose("active", pool, {a.id: plugin._value(a) for a in pool}, 40, 0)
    assert [a.id for a in chosen] == [arch for arch, _ in plugin.measured]


def test_cells_show_the_sample_standard_deviation_and_none_from_one_seed():
    cell = _load().cell
    assert cell([0.8, 0.9]) == "0.8500 ± 0.0707"  # ddof=1: the population std would be 0.0500
    assert cell([0.8]) == "0.8000 ±      -"


def test_a_size_larger_than_the_pool_is_reported_not_skipped_silently(monkeypatch, capsys):

    from accelnas.core.space import FEATURE_NAMES

    bench = _load()
    frame = _fake_anb(monkeypatch, bench, 40)
    assert set(FEATURE_NAMES) <= set(frame.columns)
    assert bench.main(["--targets", "latency_zcu102", "--sizes", "100,all", "--seeds", "2",
                       "--strategies", "random"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "100  skipped: larger than the pool of 32 architectures" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("all"))
    assert row.count("±      -") == 2  # one seed: no spread, not ± 0.0000


def test_sizes_too_small_to_choose_a_family_are_refused_before_anything_is_read(monkeypatch, capsys):
    import pytest

    bench = _load()
    monkeypatch.setattr(bench, "import_anb", lambda source: pytest.fail("read the data"))
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sizes", "3,25", "--seeds", "1"])
    assert exc.value.code == 2
    assert "--sizes takes counts >= 4 and 'all', got '3'" in capsys.readouterr().err
    for option, value in (("--targets", "latency_zcu102,accuracy,latency_zcu102"), ("--sizes", "25,all,25"),
                          ("--strategies", "random,random")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:  # each would be fitted and reported twice
            bench.main([option, value, "--seeds", "1"])
        assert exc.value.code == 2
        assert f"{option} names '{value.split(',')[0]}' twice" in capsys.readouterr().err


def test_the_curves_are_written_as_json_and_a_plot(monkeypatch, tmp_path, capsys):
    import json

    bench = _load()
    _fake_anb(monkeypatch, bench, 40)
    png, out = tmp_path / "curves.png", tmp_path / "curves.json"
    assert bench.main(["--targets", "latency_zcu102", "--sizes", "8,16,all", "--seeds", "2",
                       "--strategies", "random,space-filling", "--png", str(png), "--json", str(out)]) == 0  # fmt: skip
    curves = json.loads(out.read_text())["latency_zcu102"]
    assert set(curves) == {"random", "space-filling", "all"}
    assert [r["n"] for r in curves["random"]] == [r["n"] for r in curves["space-filling"]] == [8, 16]
    assert all(r["seeds"] == 2 and r["kendall_tau_std"] is not None for r in curves["random"])
    assert curves["all"] == [{**curves["all"][0], "n": 32, "seeds": 1, "kendall_tau_std": None, "r2_std": None}]
    # the printed table and the file agree
    row = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("16"))
    assert f"{curves['random'][1]['kendall_tau_mean']:.4f}" in row
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_curve_to_draw_is_said_not_a_traceback(monkeypatch, tmp_path, capsys):
    """Every size larger than the pool: the table says so, and --png draws nothing instead of failing."""

    bench = _load()
    _fake_anb(monkeypatch, bench, 20)
    png = tmp_path / "curves.png"
    assert bench.main(["--targets", "latency_zcu102", "--sizes", "100", "--seeds", "1", "--png", str(png)]) == 0
    assert "plot: not drawn, no size was fitted" in capsys.readouterr().err
    assert not png.exists()


def test_json_to_a_pipe_is_written_through_it_not_replaced(monkeypatch, tmp_path):
    """--json /dev/stdout, /dev/null or a named pipe: the figures go through it, and it stays what it was
    (replaced by a new file, root's /dev/null became a regular file)."""
    import json
    import os
    import stat
    import threading

    bench = _load()
    _fake_anb(monkeypatch, bench, 40)
    pipe = tmp_path / "figures"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    assert bench.main(["--targets", "latency_zcu102", "--sizes", "8", "--seeds", "1", "--strategies", "random",
                       "--json", str(pipe)]) == 0  # fmt: skip
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    reader.join(60)
    assert json.loads(received[0])["latency_zcu102"]["random"][0]["n"] == 8


def test_the_whole_pool_is_fitted_whichever_strategies_are_compared(monkeypatch, tmp_path, capsys):
    """``all`` is one fit on the whole pool: without random among the strategies it is still fitted (it was a
    row of dashes and no figure), in the first strategy's column."""
    import json

    bench = _load()
    _fake_anb(monkeypatch, bench, 40)
    out = tmp_path / "curves.json"
    assert bench.main(["--targets", "latency_zcu102", "--sizes", "8,all", "--seeds", "1",
                       "--strategies", "space-filling,active", "--json", str(out)]) == 0  # fmt: skip
    whole = json.loads(out.read_text())["latency_zcu102"]["all"]
    assert [(r["n"], r["seeds"]) for r in whole] == [(32, 1)]
    row = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("all"))
    assert row.split()[1] == f"{whole[0]['kendall_tau_mean']:.4f}"
