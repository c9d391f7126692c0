"""Proxy search strategies, Kendall τ, Pareto fronts, reference files and the paper's ablation files."""

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from accelnas.core.errors import AccelnasError, DatasetError
from accelnas.core.space import sample
from accelnas.training import proxy_search as ps
from accelnas.training.campaign import Evaluation
from accelnas.training.ranking import (
    ABLATION_COLUMNS,
    analyse_ablations,
    kendall_tau,
    pareto_front,
    read_ablation_csv,
    read_ablations,
)

ABLATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "accel-nasbench" / "ablations"
ARCHS = sample(16, seed=5)


def _space() -> ps.ProxySpace:
    return ps.space_from_dict(
        {
            "base": {"name": "base", "epochs": 8, "resolution": 64},
            "axes": {"epochs": [1, 2, 4, 8], "resolution": [32, 64]},
        }
    )


def _table(space: ps.ProxySpace) -> tuple[dict[str, float], ps.TableEvaluator]:
    """Accuracies whose rank noise shrinks with epochs and resolution; cost grows with both."""
    rng = np.random.default_rng(0)
    quality = {a.id: float(q) for a, q in zip(ARCHS, rng.normal(70, 3, len(ARCHS)), strict=True)}
    table = {}
    for cand in space.candidates():
        r = cand.recipe
        noise = 12.0 / (r.epochs * r.resolution[0][1] / 32)
        cost = r.epochs * (r.resolution[0][1] / 32) ** 2 * 10.0
        table[r.key()] = {
            a: Evaluation(a, q + rng.normal(0, noise), 90.0, cost, cost / 3600, cpu_seconds=cost / 2)
            for a, q in quality.items()
        }
    return quality, ps.TableEvaluator(table)


def test_kendall_tau_and_pareto_front():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau([1, 2, 3], [5, 5, 5]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])
    costs = [1.0, 2.0, 3.0, 2.5, 0.5]
    taus = [0.5, 0.8, 0.9, 0.7, float("nan")]
    assert pareto_front(costs, taus) == [0, 1, 2]  # (2.5, 0.7) is beaten by (2.0, 0.8); NaN is ignored


def test_grid_halving_and_optuna_find_a_feasible_cheap_proxy():
    space = _space()
    reference, evaluator = _table(space)
    results = ps.run_strategies(["grid", "halving", "optuna"], space, ARCHS, reference, evaluator, 0.7, trials=5)
    grid, halving, optuna = results
    assert len(grid.final) == len(space.candidates()) == 8
    assert grid.ledger.trainings == 8 * len(ARCHS)
    feasible = [s for s in grid.final if s.tau >= 0.7]
    assert grid.chosen is not None and grid.chosen.seconds_per_arch == min(s.seconds_per_arch for s in feasible)
    front = grid.front
    assert grid.chosen in front and all(front[i].tau < front[i + 1].tau for i in range(len(front) - 1))
    # halving trains less than the grid and still returns a candidate that passes on every architecture
    assert halving.ledger.trainings < grid.ledger.trainings
    assert halving.chosen is not None and halving.chosen.tau >= 0.7 and halving.chosen.n_archs == len(ARCHS)
    assert {s.rung for s in halving.scores} == {0, 1}
    assert optuna.ledger.trainings <= 5 * len(ARCHS)
    table = ps.comparison(results)
    assert list(table["strategy"]) == ["grid", "halving", "optuna"]
    assert table.loc[0, "cost_vs_grid"] == 1.0 and table.loc[1, "cost_vs_grid"] < 1.0
    frame = grid.frame()
    assert frame["chosen"].sum() == 1 and frame["pareto"].sum() == len(front)


def test_cpu_cost_model_and_unreachable_threshold():
    space = _space()
    reference, evaluator = _table(space)
    wall = ps.run_strategies(["grid"], space, ARCHS, reference, evaluator, 0.5)[0]
    cpu = ps.run_strategies(["grid"], space, ARCHS, reference, evaluator, 0.5, cost="cpu")[0]
    assert cpu.ledger.seconds == pytest.approx(wall.ledger.seconds / 2)
    none = ps.run_strategies(["grid"], space, ARCHS, reference, evaluator, 0.9999)[0]
    assert none.chosen is None and none.front
    with pytest.raises(AccelnasError, match="unknown strategy"):
        ps.run_strategies(["bayes"], space, ARCHS, reference, evaluator, 0.5)
    with pytest.raises(AccelnasError, match="unknown cost model"):
        ps.run_strategies(["grid"], space, ARCHS, reference, evaluator, 0.5, cost="joules")
    with pytest.raises(AccelnasError, match=">= 3 architectures"):
        ps.run_strategies(["grid"], space, ARCHS, {ARCHS[0].id: 1.0}, evaluator, 0.5)


def test_a_candidate_whose_runs_failed_is_not_chosen(caplog):
    """The cheapest candidate ranks perfectly on the two architectures it trained; the runs on the
    others failed, so its τ does not speak for them and a complete candidate is chosen."""
    space = _space()
    reference, evaluator = _table(space)
    cheapest = min(space.candidates(), key=lambda c: c.recipe.epochs * c.recipe.resolution[0][1])
    evaluator.table[cheapest.recipe.key()] = {
        a.id: Evaluation(a.id, reference[a.id], 90.0, 0.1, 0.1 / 3600, cpu_seconds=0.1) for a in ARCHS[:2]
    }
    with caplog.at_level("WARNING", logger="accelnas.training.proxy_search"):
        grid, halving = ps.run_strategies(["grid", "halving"], space, ARCHS, reference, evaluator, 0.5)
    for result in (grid, halving):
        assert result.chosen is not None and result.chosen.name != cheapest.name
        assert result.chosen.n_archs == len(ARCHS) and cheapest.name not in {s.name for s in result.front}
    assert f"candidate {cheapest.name} has results on 2 of the {len(ARCHS)} architectures other" in caplog.text
    assert cheapest.name in {s.name for s in grid.final}  # still reported, with its n_archs
    assert cheapest.name not in {s.name for s in halving.final}  # ranked last in the first rung
    # an architecture that fails under every recipe drops out of the comparison instead of excluding all
    for evaluations in evaluator.table.values():
        evaluations.pop(ARCHS[-1].id, None)
    grid = ps.run_strategies(["grid"], space, [*ARCHS, ARCHS[0]], reference, evaluator, 0.5)[0]
    assert grid.n_archs == len(ARCHS)  # an architecture named twice counts once
    assert grid.chosen is not None and grid.chosen.n_archs == len(ARCHS) - 1 and grid.front


def test_failed_runs_cost_but_are_not_scored():
    """A run that failed took time: it counts in the search's cost (and in failed_trainings), not in τ."""
    space = _space()
    reference, evaluator = _table(space)
    clean = ps.run_strategies(["grid"], space, ARCHS, reference, evaluator, 0.5)[0]
    victim = space.candidates()[0].recipe.key()
    lost = evaluator.table[victim][ARCHS[0].id]
    evaluator.table[victim][ARCHS[0].id] = Evaluation(
        ARCHS[0].id, math.nan, math.nan, 7.0, 7.0 / 3600, cpu_seconds=3.0, failed=True
    )
    grid = ps.run_strategies(["grid"], space, ARCHS, reference, evaluator, 0.5)[0]
    assert grid.ledger.trainings == clean.ledger.trainings and grid.ledger.failed == 1
    assert grid.ledger.seconds == pytest.approx(clean.ledger.seconds - lost.wall_seconds + 7.0)
    assert grid.summary()["failed_trainings"] == 1 and clean.summary()["failed_trainings"] == 0
    hit = next(s for s in grid.final if s.recipe_key == victim)
    assert hit.n_archs == len(ARCHS) - 1 and math.isfinite(hit.tau) and math.isfinite(hit.mean_top1)


def test_read_reference_files(tmp_path, caplog):
    ids = [a.id for a in ARCHS[:4]]
    simple = tmp_path / "ref.csv"
    pd.DataFrame({"arch_id": ids, "top1": [70.0, 71.5, 69.0, 72.0]}).to_csv(simple, index=False)
    plain = ps.read_reference(simple)
    assert plain.accuracies == dict(zip(ids, [70.0, 71.5, 69.0, 72.0], strict=True)) and plain.target is None
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"arch_id": ["1-2-3"], "accuracy": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(DatasetError, match="row 0"):
        ps.read_reference(bad)
    repeated = tmp_path / "repeated.csv"
    pd.DataFrame({"arch_id": [*ids, ids[1]], "top1": [70.0, 71.5, 69.0, 72.0, 10.0]}).to_csv(repeated, index=False)
    with pytest.raises(DatasetError, match=f"row 4: architecture {ids[1]} has an accuracy in an earlier row"):
        ps.read_reference(repeated)
    nocol = tmp_path / "nocol.csv"
    pd.DataFrame({"arch": ids}).to_csv(nocol, index=False)
    with pytest.raises(DatasetError, match="needs an arch_id column"):
        ps.read_reference(nocol)
    with pytest.raises(DatasetError, match="not found"):
        ps.read_reference(tmp_path / "missing.csv")
    export = tmp_path / "export.csv"
    rows = [{"arch_id": a.id, **a.to_config(), "target": "train/x", "metric": "accuracy", "value": 60.0 + i,
             "settings_key": "k"} for i, a in enumerate(ARCHS[:3])]  # fmt: skip
    pd.DataFrame(rows).to_csv(export, index=False)
    reference = ps.read_reference(export)
    assert sorted(reference.accuracies.values()) == [60.0, 61.0, 62.0] and reference.target == "train/x"
    with caplog.at_level(logging.WARNING, logger="accelnas.training.proxy_search"):
        reference.check_dataset("train/x")
        assert not caplog.records
        reference.check_dataset("train/digits32")
    assert [r.getMessage() for r in caplog.records] == [
        f"{export} holds accuracies on train/x, but the proxies train on train/digits32: τ compares rankings on the two"
    ]
    rows += [{**rows[0], "arch_id": ARCHS[3].id, **ARCHS[3].to_config(), "target": "train/y"}]
    pd.DataFrame(rows).to_csv(export, index=False)
    with pytest.raises(DatasetError, match=r"accuracy rows of 2 datasets \(train/x, train/y\); keep one"):
        ps.read_reference(export)


def _ablation_rows(n: int, seed: int, scale: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(ARCHS[:n]):
        s = a.stages
        rows.append([i, 1, i, 0, 60 + i * scale + rng.normal(0, 0.3), 85.0, 400.0, 5.0, 1000.0 * scale,
                     *[x.e for x in s], *[x.k for x in s], *[x.l for x in s], *[x.se for x in s]])  # fmt: skip
    return pd.DataFrame(rows)


def test_ablation_analysis_on_synthetic_files(tmp_path):
    for seed in (1, 2):
        _ablation_rows(10, seed, 1.0).to_csv(tmp_path / f"cheap-seed{seed}.csv", header=False, index=False)
        _ablation_rows(10, seed + 10, 2.0).to_csv(tmp_path / f"full-seed{seed}.csv", header=False, index=False)
    runs = read_ablations(tmp_path)
    assert sorted(runs) == ["cheap", "full"] and sorted(runs["cheap"].top1) == [1, 2]
    analysis = analyse_ablations(runs, gpus_per_job=4)
    table = analysis.table().set_index("comparison")
    assert table.loc["cheap vs full", "tau_seed_means"] > 0.8
    costs = {c["recipe"]: c for c in analysis.costs}
    assert costs["full"]["gpu_hours_per_model"] == pytest.approx(2000 * 4 / 3600)
    assert len(analysis.across_seeds) == 2 and len(analysis.between) == 4 + 1


def test_ablation_recipe_names_may_hold_hyphens(tmp_path, caplog):
    for seed in (1, 2):
        _ablation_rows(4, seed, 1.0).to_csv(tmp_path / f"few-proxy-seed{seed}.csv", header=False, index=False)
        _ablation_rows(4, seed, 2.0).to_csv(tmp_path / f"proxified-seed{seed}.csv", header=False, index=False)
    (tmp_path / "notes.csv").write_text("a,b\n")
    with caplog.at_level("WARNING"):
        runs = read_ablations(tmp_path)
    assert sorted(runs) == ["few-proxy", "proxified"] and sorted(runs["few-proxy"].top1) == [1, 2]
    assert "notes.csv is not named <recipe>-seed<N>.csv and is left out" in caplog.text


def test_proxy_analyse_outputs_in_the_ablation_folder_are_not_warned_about(tmp_path, caplog):
    from click.testing import CliRunner

    from accelnas.core.cli import cli

    for seed in (1, 2):
        _ablation_rows(4, seed, 1.0).to_csv(tmp_path / f"fewproxy-seed{seed}.csv", header=False, index=False)
        _ablation_rows(4, seed, 2.0).to_csv(tmp_path / f"proxified-seed{seed}.csv", header=False, index=False)
    first = CliRunner().invoke(cli, ["proxy-analyse", str(tmp_path), "--out", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "ablation_tau.csv").is_file() and (tmp_path / "ablation_summary.csv").is_file()
    with caplog.at_level("WARNING"):
        runs = read_ablations(tmp_path)  # as a second run over the folder reads it
    assert sorted(runs) == ["fewproxy", "proxified"] and "left out" not in caplog.text


def test_malformed_ablation_files(tmp_path):
    short = tmp_path / "x-seed1.csv"
    short.write_text("1,2,3\n")
    with pytest.raises(DatasetError, match=f"expected {len(ABLATION_COLUMNS)} columns"):
        read_ablation_csv(short)
    rows = _ablation_rows(3, 0, 1.0)
    rows.iloc[1, 9] = 5  # expansion 5 is outside the space
    rows.to_csv(short, header=False, index=False)
    with pytest.raises(DatasetError, match="row 1: invalid architecture: block0_e=5"):
        read_ablation_csv(short)
    rows = _ablation_rows(3, 0, 1.0)
    rows.to_csv(short, header=False, index=False)
    _ablation_rows(3, 0, 1.0).iloc[::-1].to_csv(tmp_path / "x-seed2.csv", header=False, index=False)
    with pytest.raises(DatasetError, match="different architectures"):
        read_ablations(tmp_path)
    with pytest.raises(DatasetError, match=r"no <recipe>-seed<N>\.csv"):
        read_ablations(tmp_path / "nothing")


@pytest.mark.skipif(not ABLATIONS.is_dir(), reason=f"Accel-NASBench ablations not found at {ABLATIONS}")
def test_published_ablations_rank_agreement_and_cost():
    runs = read_ablations(ABLATIONS)
    assert sorted(runs) == ["fewproxy", "proxified"]
    assert all(sorted(r.top1) == [1, 2, 3] for r in runs.values())
    analysis = analyse_ablations(runs)
    table = analysis.table().set_index("comparison")
    between = table.loc["fewproxy vs proxified", "tau_seed_means"]
    proxified_seeds = table.loc["proxified seed vs seed", "tau_same_seed_mean"]
    fewproxy_seeds = table.loc["fewproxy seed vs seed", "tau_same_seed_mean"]
    # the chosen proxy ranks like the few-proxy recipe almost as well as reruns of either recipe agree
    assert 0.85 < between < min(fewproxy_seeds, 1.0)
    assert 0.85 < proxified_seeds < 1.0
    costs = {c["recipe"]: c for c in analysis.costs}
    ratio = costs["fewproxy"]["seconds_per_model"] / costs["proxified"]["seconds_per_model"]
    assert 3 < ratio < 10  # the proxy is several times cheaper
    assert costs["proxified"]["mean_top1"] < costs["fewproxy"]["mean_top1"]  # and under-trains, as intended
