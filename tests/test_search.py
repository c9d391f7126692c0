"""Search on a benchmark: objectives, budget, optimizers, Pareto fronts, hypervolume, B0 comparison, CLI."""

import errno
import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

from accelnas.core.model import count_macs
from accelnas.core.space import EFFICIENTNET_B0, FEATURE_NAMES, Architecture, sample
from accelnas.search.compare import compare_with_b0
from accelnas.search.configspace import BenchmarkObjective, configuration_space, from_configuration, to_configuration
from accelnas.search.encoding import decode, encode
from accelnas.search.evaluator import Evaluation, Evaluator, evaluate_free
from accelnas.search.evolution import mutate
from accelnas.search.objectives import (
    SearchSpecError,
    parse_constraint,
    parse_objective,
    parse_objectives,
    parse_reward,
)
from accelnas.search.optimizers import run_optimizer
from accelnas.search.pareto import Normalizer, anytime_hypervolume, front, hypervolume, non_dominated
from accelnas.search.problem import SearchProblem
from accelnas.search.run import search
from accelnas.surrogates.benchmark import Benchmark
from accelnas.surrogates.build import build_all


def _synthetic_frame(n=150):
    """Accuracy grows with MACs, throughput falls with them: a real trade-off on two devices."""
    rows = []
    for a in sample(n, 11):
        macs = count_macs(a, 224) / 1e6
        se = sum(s.se for s in a.stages)
        base = {"arch_id": a.id, **a.to_config(), "settings_key": "k"}
        rows += [
            base | {"target": "imagenet/sim", "metric": "accuracy", "value": 30 + 5 * math.log(macs) + 0.5 * se},
            base | {"target": "dev/sim", "metric": "throughput", "value": 1e5 / macs, "unit": "images/s"},
            base | {"target": "dev/sim", "metric": "latency", "value": 0.01 * macs + 0.2 * a.num_layers, "unit": "ms"},
            base | {"target": "edge/sim", "metric": "throughput", "value": 1e5 / (macs + 20 * a.num_layers)},
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    build_all(_synthetic_frame(), out, test_fraction=0.2, family="additive", echo=lambda line: None)
    return out


@pytest.fixture(scope="module")
def bench(bench_dir):
    return Benchmark.load(bench_dir)


@pytest.fixture(scope="module")
def problem(bench):
    return SearchProblem(bench, parse_objectives("accuracy,throughput@dev"))


# -- specifications --------------------------------------------------------------------------------
def test_parse_objectives_constraints_and_rewards():
    objs = parse_objectives("accuracy, throughput@zcu102,latency@vck190")
    assert [o.name for o in objs] == ["accuracy", "throughput@zcu102", "latency@vck190"]
    assert [o.maximize for o in objs] == [True, True, False]
    assert parse_objective("throughput@cpu/onnxruntime").device == "cpu/onnxruntime"
    c = parse_constraint("latency@zcu102<=5")
    assert (c.objective.name, c.op, c.bound) == ("latency@zcu102", "<=", 5.0)
    assert c.violation(np.array([4.0, 6.0])).tolist() == [0.0, pytest.approx(0.2)]
    assert parse_constraint("throughput@a100 >= 1e3").violation(np.array([500.0]))[0] == pytest.approx(0.5)
    for bad in ("speed@zcu102", "throughput@", ""):
        with pytest.raises(SearchSpecError):
            parse_objectives(bad)
    with pytest.raises(SearchSpecError, match="given twice"):
        parse_objectives("accuracy,accuracy")
    for bad in ("latency@zcu102<5", "latency@zcu102<=x", "latency@zcu102"):
        with pytest.raises(SearchSpecError, match="malformed constraint"):
            parse_constraint(bad)
    with pytest.raises(SearchSpecError, match="throughput or latency"):
        parse_reward("accuracy=70")
    with pytest.raises(SearchSpecError, match="positive"):
        parse_reward("latency@zcu102=0")
    from accelnas.search.objectives import Constraint, Objective

    with pytest.raises(SearchSpecError, match="unknown metric 'speed'"):
        Objective("speed")
    with pytest.raises(SearchSpecError, match="operator must be '<=' or '>='"):
        Constraint(Objective("latency", "zcu102"), "<", 5.0)
    with pytest.raises(SearchSpecError, match="finite number"):
        Constraint(Objective("latency", "zcu102"), "<=", float("nan"))


def test_mnasnet_reward_sign_follows_the_metric():
    latency = parse_reward("latency@zcu102=5")
    assert latency.exponent == -0.07
    assert latency(np.array([70.0]), np.array([10.0]))[0] == pytest.approx(70 * 2**-0.07)
    assert latency(np.array([70.0]), np.array([2.5]))[0] > 70  # faster than the target: rewarded
    throughput = parse_reward("throughput@zcu102=200", w=-0.07)
    assert throughput.exponent == 0.07
    assert throughput(np.array([70.0]), np.array([400.0]))[0] == pytest.approx(70 * 2**0.07)


def test_problem_names_unknown_objectives(bench):
    with pytest.raises(SearchSpecError, match=r"zcu102:throughput.*available: .*dev/sim:throughput"):
        SearchProblem(bench, parse_objectives("accuracy,throughput@zcu102"))


# -- budget ----------------------------------------------------------------------------------------
def test_evaluator_counts_unique_architectures_and_caches(bench, problem):
    a, b, *rest = sample(8, 3)
    ev = Evaluator(problem, budget=5)
    first = ev.evaluate([a, a, b])
    assert ev.used == 2 and first[0] is first[1] and [e.query for e in ev.history] == [1, 2]
    answers = ev.evaluate(rest)  # 6 new ones, 3 left in the budget
    assert [x is None for x in answers] == [False] * 3 + [True] * 3 and ev.remaining == 0
    assert ev.evaluate_one(a) is first[0]  # known ones stay free after the budget is spent
    again = ev.evaluate([a.id, b.to_config()])  # ids and configs as well as architectures
    assert again[0] is first[0] and again[1] is first[2]
    with pytest.raises(ValueError, match="invalid architecture"):
        ev.evaluate([{"block0_e": 2}])
    expected = bench.query([a, b], device="dev", metric="throughput").mean
    column = problem.column(parse_objective("throughput@dev"))
    assert [e.mean[column] for e in first[1:]] == pytest.approx(expected.tolist())
    with pytest.raises(ValueError):
        Evaluator(problem, budget=0)


def test_encoding_and_mutation():
    for a in [EFFICIENTNET_B0, *sample(20, 4)]:
        assert decode(encode(a)) == a
        child = mutate(a, random.Random(a.id))
        assert int(np.sum(encode(child) != encode(a))) == 1
    with pytest.raises(ValueError, match="outside"):
        decode([9] * 28)


# -- optimizers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "evolution", "nsga2"])
def test_optimizers_spend_the_budget_on_unique_architectures_reproducibly(problem, name):
    def ids(seed):
        ev = Evaluator(problem, budget=150)
        run_optimizer(name, ev, seed, {"population": 20, "sample_size": 5})
        return [e.arch.id for e in ev.history]

    first = ids(1)
    assert len(first) == 150 == len(set(first))
    assert ids(1) == first
    assert ids(2) != first


def test_an_optimizer_of_ones_own_runs_with_its_options_and_unused_options_are_refused(problem, monkeypatch):
    from accelnas.search import optimizers

    monkeypatch.setattr(optimizers, "OPTIMIZERS", dict(optimizers.OPTIMIZERS))
    monkeypatch.setattr(optimizers, "OPTIONS", dict(optimizers.OPTIONS))
    seen = {}

    def first_stages(evaluator, seed, population=4):  # queries B0 with stage 0 varied, a population at a time
        seen["population"] = population
        archs = [a for a in sample(200, seed) if a.id != EFFICIENTNET_B0.id]
        for i in range(0, len(archs), population):
            if evaluator.remaining <= 0:
                break
            evaluator.evaluate(archs[i : i + population])

    optimizers.register_optimizer("mine", first_stages, options="population")  # one name, not its letters
    assert optimizers.OPTIONS["mine"] == ("population",)
    with pytest.raises(SearchSpecError, match="'random' is a built-in optimizer"):
        optimizers.register_optimizer("random", first_stages)
    with pytest.raises(TypeError, match="options are the names"):
        optimizers.register_optimizer("other", first_stages, options=5)
    outcome = search(problem, ["mine", "evolution"], 30, [0], {"population": 6, "sample_size": 2})
    assert seen == {"population": 6} and [r.queries for r in outcome.runs] == [30, 30]
    with pytest.raises(SearchSpecError, match=r"option 'populaton' is taken by none of the optimizers run "
                       r"\(mine: population; random: none\)"):  # fmt: skip
        search(problem, ["mine", "random"], 30, [0], {"populaton": 6})
    with pytest.raises(SearchSpecError, match="option 'batch' is taken by none"):
        search(problem, ["nsga2"], 30, [0], {"batch": 5})  # --batch is evolution's
    assert search(problem, ["nsga2"], 30, [0], {"batch": None, "population": 10}).runs[0].queries == 30
    with pytest.raises(SearchSpecError, match=r"mine/seed0 has no hypervolume at 31 queries; pass it in search"):
        outcome.hypervolume_table(at=[31])  # beyond the 30-query budget


def test_guided_search_beats_random_search(problem):
    outcome = search(problem, ["random", "evolution", "nsga2"], 600, [0, 1], {"population": 30, "sample_size": 8})
    table = outcome.hypervolume_table([600])
    assert table["evolution"][600][0] > table["random"][600][0]
    assert table["nsga2"][600][0] > table["random"][600][0]
    for run in outcome.runs:  # anytime hypervolume never falls and ends at the full history's
        values = [hv for _, hv in run.curve]
        assert values == sorted(values) and run.curve[-1][0] == 600
        assert run.hypervolume == pytest.approx(hypervolume(_normalized(problem, outcome.normalizer, run.history)))
    # the front merges every run: nothing queried dominates it
    all_values = _min_values(problem, [e for r in outcome.runs for e in r.history])
    for f in outcome.front:
        mine = _min_values(problem, [f.evaluation])[0]
        assert not np.any(np.all(all_values <= mine, axis=1) & np.any(all_values < mine, axis=1))


def _min_values(problem, evaluations):
    return problem.minimization(problem.objective_values(np.array([e.mean for e in evaluations])))


def _normalized(problem, normalizer, evaluations):
    return normalizer(_min_values(problem, evaluations))


def test_constraints_keep_the_front_feasible(bench):
    lat = bench.query(sample(200, 9), device="dev", metric="latency").mean
    bound = float(np.quantile(lat, 0.3))
    problem = SearchProblem(
        bench, parse_objectives("accuracy,throughput@edge"), [parse_constraint(f"latency@dev<={bound}")]
    )
    outcome = search(problem, ["evolution", "nsga2"], 300, [0], {"population": 30, "sample_size": 8})
    column = problem.column(parse_objective("latency@dev"))
    assert outcome.front and all(f.evaluation.mean[column] <= bound for f in outcome.front)
    for run in outcome.runs:
        assert any(not e.feasible for e in run.history)  # the constraint was active
        assert sum(e.feasible for e in run.history[-100:]) > sum(e.feasible for e in run.history[:100])
    objectives = parse_objectives("accuracy,throughput@edge")
    for other in ("latency@dev", "latency@dev/sim"):  # the device or the full target: one surrogate
        disjoint = [parse_constraint(f"latency@dev<={bound}"), parse_constraint(f"{other}>={bound * 2}")]
        with pytest.raises(SearchSpecError, match="leave no value of latency@dev"):
            SearchProblem(bench, objectives, disjoint)
    touching = [parse_constraint(f"latency@dev<={bound}"), parse_constraint(f"latency@dev>={bound}")]
    assert len(SearchProblem(bench, objectives, touching).constraints) == 2  # one value still meets both
    typed = SearchProblem(bench, ["accuracy", "throughput@edge"], [f"latency@dev<={bound}"])  # as users type them
    assert typed.names == ["accuracy", "throughput@edge"] and typed.constraints[0].name == f"latency@dev<={bound:g}"
    one = SearchProblem(bench, ["accuracy"], f"latency@dev<={bound}", reward="latency@dev=5")  # one of each, typed
    assert [c.name for c in one.constraints] == [f"latency@dev<={bound:g}"] and one.reward == parse_reward(
        "latency@dev=5"
    )
    with pytest.raises(SearchSpecError, match="got int 5"):
        SearchProblem(bench, ["accuracy"], reward=5)
    with pytest.raises(SearchSpecError, match="objectives throughput@dev and throughput@dev/sim are the same"):
        SearchProblem(bench, parse_objectives("accuracy,throughput@dev,throughput@dev/sim"))
    with pytest.raises(SearchSpecError, match="a list of at least one objective"):
        SearchProblem(bench, "accuracy")
    problem = SearchProblem(bench, objectives)
    for budget, seeds, message in ((2.5, [0], "budget must be a whole number"), (10, [None], "seeds must be whole"),
                                   (10, [-1], "seeds must be whole"), (10, [1.5], "seeds must be whole")):  # fmt: skip
        with pytest.raises(SearchSpecError, match=message):
            search(problem, ["random"], budget, seeds)
    by_numpy = search(problem, ["random"], np.int64(20), [np.int64(3)])  # seeds drawn by numpy, say
    assert by_numpy.runs[0].seed == 3 and by_numpy.runs[0].queries == 20
    assert sample(3, np.int64(5)) == sample(3, 5)


def test_mnasnet_reward_search(bench):
    lat = bench.query(sample(200, 9), device="dev", metric="latency").mean
    reward = parse_reward(f"latency@dev={float(np.median(lat))}")
    problem = SearchProblem(bench, parse_objectives("accuracy,latency@dev"), reward=reward)
    outcome = search(problem, ["random", "evolution", "nsga2"], 300, [0], {"population": 30, "sample_size": 8})
    best = {r.optimizer: max(e.reward for e in r.history) for r in outcome.runs}
    assert best["evolution"] > best["random"] and best["nsga2"] > best["random"]
    top = outcome.best_reward().evaluation
    acc, perf = top.mean[problem.column(reward.accuracy)], top.mean[problem.column(reward.performance)]
    assert top.reward == pytest.approx(acc * (perf / reward.target) ** -0.07)


# -- fronts, hypervolume, B0 -----------------------------------------------------------------------
def test_non_dominated_and_hypervolume():
    points = np.array([[0.2, 0.5], [0.5, 0.2], [0.6, 0.6], [0.2, 0.5], [1.0, 0.1]])
    assert non_dominated(points).tolist() == [True, True, False, False, True]
    assert hypervolume([[0.2, 0.5], [0.5, 0.2]]) == pytest.approx(0.9 * 0.6 + 0.6 * 0.9 - 0.6 * 0.6)
    assert hypervolume([[1.2, 0.0]]) == 0.0 and hypervolume(np.empty((0, 2))) == 0.0


def test_normalizer_and_anytime_hypervolume(problem):
    norm = Normalizer.for_problem(problem)
    ev = Evaluator(problem, budget=60)
    run_optimizer("random", ev, 0)
    curve = anytime_hypervolume(problem, norm, ev.history, [10, 30, 60])
    for n, hv in curve:
        assert hv == pytest.approx(hypervolume(_normalized(problem, norm, ev.history[:n])))
    assert norm.describe(problem)["reference_point_normalized"] == 1.1
    ref = norm.reference_values(problem)
    assert ref[0] < norm.describe(problem)["worst"]["accuracy"]  # beyond the worst sampled accuracy


def _evaluation(arch, acc, value):
    return Evaluation(arch, np.array([acc, value]), np.zeros(2), 0.0, None, 1)


@pytest.mark.parametrize("metric", ["throughput", "latency"])
def test_b0_comparison(bench, metric):
    problem = SearchProblem(bench, parse_objectives(f"accuracy,{metric}@dev"))
    better = 1.0 if metric == "throughput" else -1.0
    b0_value = 100.0
    archs = sample(4, 5)
    evaluations = [
        _evaluation(archs[0], 71.0, b0_value * (1 + 0.2 * better)),  # dominates: +1 point, 20% better
        _evaluation(archs[1], 72.0, b0_value * (1 - 0.1 * better)),  # more accurate, slower
        _evaluation(archs[2], 70.0, b0_value * (1 + 0.5 * better)),  # as accurate, 50% better
        _evaluation(archs[3], 69.0, b0_value * (1 + 2.0 * better) if better > 0 else 1.0),  # less accurate
    ]
    [c] = compare_with_b0(problem, evaluations, _evaluation(EFFICIENTNET_B0, 70.0, b0_value))
    assert c.dominating == 2 and c.objective == f"{metric}@dev"
    assert c.most_accurate.arch_id == archs[0].id and c.most_accurate.accuracy_gain == pytest.approx(1.0)
    assert c.most_accurate.value_change_pct == pytest.approx(20.0 * better)
    assert c.best_value.arch_id == archs[2].id and c.best_value.value_change_pct == pytest.approx(50.0 * better)
    assert "2 found architectures dominate EfficientNet-B0" in c.summary() and "breaks" not in c.summary()
    infeasible_b0 = Evaluation(EFFICIENTNET_B0, np.array([70.0, b0_value]), np.zeros(2), 0.3, None, 0)
    [c] = compare_with_b0(problem, evaluations, infeasible_b0)
    assert not c.b0_feasible and f"{c.unit}) (EfficientNet-B0 itself breaks the constraints)" in c.summary()


# -- ConfigSpace -----------------------------------------------------------------------------------
def test_configspace_roundtrip_and_objective(tmp_path, bench, problem):
    from ConfigSpace import ConfigurationSpace

    from accelnas.search.configspace import write_space

    cs = configuration_space(seed=3)
    assert len(list(cs.values())) == 28
    assert from_configuration(cs.get_default_configuration()) == EFFICIENTNET_B0
    configs = cs.sample_configuration(20)
    archs = [from_configuration(c) for c in configs]
    assert len({a.id for a in archs}) > 15
    for a in sample(10, 6):
        assert from_configuration(to_configuration(a, cs)) == a
    assert ConfigurationSpace.from_json(write_space(tmp_path / "space.json")) == configuration_space()
    objective = BenchmarkObjective(problem)
    values = objective.evaluate(configs[:3])
    expected = problem.objective_values(problem.predict(archs[:3]).mean)
    got = [[v["accuracy"], v["throughput@dev"]] for v in values]
    assert np.allclose(got, expected)
    assert objective.costs(configs[0]) == pytest.approx([-values[0]["accuracy"], -values[0]["throughput@dev"]])
    assert objective.calls == 4
    with pytest.raises(ValueError, match="invalid architecture"):
        from_configuration({"block0_e": 2})
    assert to_configuration(archs[0].id, cs) == to_configuration(archs[0].to_config(), cs) == configs[0]
    bound = float(np.median(expected[:, 1]))
    limited = SearchProblem(bench, problem.objectives, [f"throughput@dev>={bound}"])
    constrained = BenchmarkObjective(limited)
    for config, throughput in zip(configs[:3], expected[:, 1], strict=True):
        signed = constrained.constraints(config)
        assert signed == pytest.approx([(bound - throughput) / bound])  # <= 0 where it holds
        assert constrained.violation(config) == pytest.approx(max(0.0, signed[0]))
    assert BenchmarkObjective(problem).constraints(configs[0]) == []


# -- command line ----------------------------------------------------------------------------------
def test_search_cli_writes_front_json_and_plots(tmp_path, bench_dir, bench):
    out = tmp_path / "run"
    result = run_cli(
        "search", "--benchmark", str(bench_dir), "--objectives", "accuracy,throughput@dev", "--budget", "200",
        "--optimizer", "nsga2,evolution", "--optimizer", "random", "--seeds", "2", "--population", "20",
        "--constraint", "latency@dev<=1000", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "EfficientNet-B0" in result.stdout and "hypervolume" in result.stdout
    assert result.stderr.count("queries, hypervolume") == 6
    frame = pd.read_csv(out / "front.csv")
    assert list(frame.columns[:29]) == ["id", *FEATURE_NAMES]
    assert {"accuracy", "throughput@dev", "accuracy_std", "latency@dev", "found_by"} <= set(frame.columns)
    archs = [Architecture.from_config({k: row[k] for k in FEATURE_NAMES}) for row in frame.to_dict("records")]
    assert [a.id for a in archs] == frame["id"].tolist()
    assert frame["accuracy"].tolist() == pytest.approx(bench.query(archs, metric="accuracy").mean.tolist())
    values = np.column_stack([-frame["accuracy"], -frame["throughput@dev"]])
    assert non_dominated(values).all()
    data = json.loads((out / "front.json").read_text())
    assert set(data["hypervolume"]["per_optimizer"]) == {"nsga2", "evolution", "random"}
    assert data["hypervolume"]["per_optimizer"]["nsga2"]["200"]["seeds"] == 2
    assert len(data["runs"]) == 6 and all(r["queries"] == 200 for r in data["runs"])
    assert data["efficientnet_b0"]["id"] == EFFICIENTNET_B0.id and len(data["front"]) == len(frame)
    assert data["b0_comparison"][0]["objective"] == "throughput@dev"
    for png in ("front.png", "hypervolume.png"):
        assert (out / png).stat().st_size > 10_000


def test_a_search_whose_front_json_cannot_be_written_leaves_the_last_pair(tmp_path, problem, monkeypatch):
    from accelnas.search.report import write_outcome

    out = tmp_path / "run"
    write_outcome(search(problem, ["random"], 30, [0], {}), out, seeds=[0])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name.startswith(".front.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        write_outcome(search(problem, ["random"], 40, [1], {}), out, seeds=[1])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # front.csv still front.json's pair


def test_search_cli_errors_are_one_line(tmp_path, bench_dir):
    base = ("search", "--benchmark", str(bench_dir), "--budget", "20", "--out", str(tmp_path / "x"))
    cases = [
        (("--objectives", "accuracy,throughput@zcu102"), "no surrogate for zcu102:throughput"),
        (("--objectives", "accuracy", "--optimizer", "annealing"), "unknown optimizer 'annealing'"),
        (("--objectives", "accuracy", "--optimizer", "nsga2,random,nsga2"), "--optimizer names 'nsga2' twice"),
        (("--objectives", "accuracy", "--optimizer", " , "), "--optimizer ' , ' names no optimizer"),
        (("--objectives", "accuracy", "--seed", "-3"), "Invalid value for '--seed'"),
        (("--objectives", "accuracy", "--seed", "2147483647", "--seeds", "2"), "passes the largest seed, 2147483647"),
        (("--objectives", "accuracy", "--reward-w", "-0.5"), "--reward-w goes with --reward"),
        (("--objectives", "accuracy", "--budget", str(2**70)), "exceeds the 104,485,552,128 architectures"),
        (("--objectives", "accuracy", "--reward", ""), "malformed reward ''"),
    ]
    for args, fragment in cases:
        result = run_cli(*base, *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert fragment in lines[0]
    missing = run_cli("search", "--benchmark", str(tmp_path / "nope"), "--objectives", "accuracy", "--out", "x")
    assert missing.returncode != 0 and "no benchmark" in missing.stderr


def test_an_interrupted_search_says_nothing_was_written(tmp_path, bench_dir, capsys):
    from accelnas.core.cli import main
    from accelnas.search.optimizers import OPTIMIZERS, OPTIONS, register_optimizer

    def interrupted(evaluator, seed):
        evaluator.evaluate(sample(5, seed))
        raise KeyboardInterrupt

    register_optimizer("interrupted", interrupted)
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["search", "--benchmark", str(bench_dir), "--objectives", "accuracy", "--optimizer", "interrupted",
                  "--out", str(tmp_path / "run")])  # fmt: skip
    finally:
        del OPTIMIZERS["interrupted"], OPTIONS["interrupted"]
    assert stopped.value.code == 130
    assert (
        capsys.readouterr().err.strip()
        == "interrupted; nothing was written: a search writes its front once every run has finished"
    )
    assert not (tmp_path / "run" / "front.csv").exists()


def test_optimizer_comparison_script_reports_the_budget_and_checks_part_two_first(bench_dir, capsys):
    from conftest import load_benchmark

    script = load_benchmark("optimizers")
    base = ["--benchmark", str(bench_dir), "--objectives", "accuracy,throughput@dev", "--seeds", "1"]
    assert script.main([*base, "--budget", "30", "--b0-devices", "dev", "--b0-budget", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("optimizer"))
    assert header.split()[1:] == ["@30", "s/run"]  # below every checkpoint: the budget is the column
    assert any(line.startswith("throughput@dev:") for line in lines)
    with pytest.raises(SearchSpecError, match="no surrogate for nope:throughput"):
        script.main([*base, "--budget", "30", "--b0-devices", "nope"])
    with pytest.raises(SearchSpecError, match="unknown optimizer 'annealing'"):
        script.main([*base, "--budget", "30", "--b0-devices", "dev", "--b0-optimizer", "annealing"])
    assert "hypervolume" not in capsys.readouterr().err  # refused before part 1 ran
    for bad in (["--checkpoints", "0,20"], ["--b0-budget", "0"]):
        with pytest.raises(SystemExit):
            script.main([*base, "--budget", "30", *bad])


def test_optimizer_comparison_script_runs_evolution_batch_where_evolution_runs(bench_dir, capsys, monkeypatch):
    """--evolution-batch reaches evolution in part 2 too, and is refused where neither part runs evolution
    (it was dropped without a word)."""
    from conftest import load_benchmark

    script = load_benchmark("optimizers")
    calls = []
    real = script.search

    def search(problem, names, budget, seeds, options=None, **kwargs):
        calls.append((names, options or {}))
        return real(problem, names, budget, seeds, options, **kwargs)

    monkeypatch.setattr(script, "search", search)
    base = ["--benchmark", str(bench_dir), "--objectives", "accuracy,throughput@dev", "--seeds", "1", "--budget", "30"]
    part2 = ["--b0-devices", "dev", "--b0-budget", "30", "--b0-optimizer", "evolution"]
    assert script.main([*base, "--optimizers", "random", *part2, "--evolution-batch", "3"]) == 0
    assert calls == [(["random"], {}), (["evolution"], {"batch": 3})]
    with pytest.raises(SystemExit) as raised:
        script.main([*base, "--optimizers", "random", "--b0-devices", "", "--evolution-batch", "3"])
    assert raised.value.code == 2
    assert "--evolution-batch is for the evolution optimizer, which neither part runs" in capsys.readouterr().err


def test_search_space_cli(tmp_path):
    result = run_cli("search-space", "--out", str(tmp_path / "space.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "space.json").read_text())
    assert [h["name"] for h in data["hyperparameters"]] == sorted(FEATURE_NAMES)


# -- the public Accel-NASBench data ----------------------------------------------------------------
def test_found_architectures_dominate_b0_on_real_data(tmp_path, anb_records):
    from accelnas.surrogates.anb_dataset import import_anb

    records = tmp_path / "records"
    records.mkdir()
    for i, r in enumerate(anb_records[:600]):
        (records / f"result_{i}.json").write_text(json.dumps(r))
    frame, _ = import_anb(records)
    out = tmp_path / "anb"
    build_all(frame, out, targets=[("imagenet/anb", "accuracy"), ("zcu102/anb", "throughput")], family="additive",
              echo=lambda line: None)  # fmt: skip
    problem = SearchProblem(Benchmark.load(out), parse_objectives("accuracy,throughput@zcu102"))
    outcome = search(problem, ["nsga2"], 400, [0])
    [c] = outcome.comparisons
    assert c.dominating > 0 and c.best_value.value_change_pct > 0 and c.most_accurate.accuracy_gain >= 0
    b0 = evaluate_free(problem, [EFFICIENTNET_B0])[0]
    assert outcome.b0.mean.tolist() == b0.mean.tolist()
    assert front(problem, outcome.runs[0].history)


def test_verification_predictions_come_from_the_named_source(bench):
    from accelnas.core.errors import AccelnasError
    from accelnas.search.verify import from_benchmark, from_front_column

    archs = sample(4, 12)
    source = from_benchmark(bench, parse_objective("throughput@dev"), archs)
    assert source.target == "dev/sim" and source.metric == "throughput"
    assert source.mean.tolist() == bench.query(archs, device="dev", metric="throughput").mean.tolist()
    frame = pd.DataFrame({"id": [a.id for a in archs], "latency@dev": [1.0, 2.0, 3.0, 4.0]})
    column = from_front_column(frame, parse_objective("latency@dev"))
    assert column.metric == "latency" and column.target == "dev" and column.mean.tolist() == [1, 2, 3, 4]
    frame.loc[1, "latency@dev"] = None
    with pytest.raises(AccelnasError, match="missing or non-numeric"):
        from_front_column(frame, parse_objective("latency@dev"))
    with pytest.raises(AccelnasError, match="name the device"):
        from_benchmark(bench, parse_objective("throughput"), archs)


def test_no_search_seed_redraws_the_hypervolume_reference_sample():
    from accelnas.core.cli_options import SEED
    from accelnas.search.pareto import REFERENCE_SAMPLE, REFERENCE_SEED

    reference = {a.id for a in sample(REFERENCE_SAMPLE, REFERENCE_SEED)}
    for seed in (SEED.min, 1, SEED.max):  # the sample a random search (or a population) starts with
        assert len(reference & {a.id for a in sample(300, seed)}) < 3


def test_search_takes_seeds_and_checkpoints_as_numpy_arrays_or_generators(problem):
    outcome = search(problem, ("random",), 40, np.arange(2), checkpoints=np.array([10, 20]))
    assert [r.seed for r in outcome.runs] == [0, 1] and outcome.checkpoints == [10, 20, 40]
    table = outcome.hypervolume_table(at=np.array([20, 40]))
    assert list(table["random"]) == [20, 40] and table["random"][40][2] == 2
    again = search(problem, (name for name in ["random"]), 40, (s for s in [0, 1]), checkpoints=[10, 20])
    assert [r.seed for r in again.runs] == [0, 1]
    assert again.hypervolume_table() == outcome.hypervolume_table()
    with pytest.raises(SearchSpecError, match="at least one optimizer and one seed"):
        search(problem, ["random"], 40, np.array([], dtype=int))


def test_a_missing_hypervolume_point_lists_each_recorded_count_once(problem):
    outcome = search(problem, ["random"], 40, [0], checkpoints=[10, 20])
    with pytest.raises(
        SearchSpecError, match=r"at 30 queries; pass it in search's checkpoints \(recorded: 10, 20, 40\)$"
    ):
        outcome.hypervolume_table(at=[30])
    long = search(problem, ["random"], 40, [0], checkpoints=range(1, 41))
    with pytest.raises(SearchSpecError, match=r"\(recorded: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, \.\.\., 40\)$"):
        long.hypervolume_table(at=[0])
