"""Active selection: space-filling designs and campaigns in rounds of ensemble disagreement."""

from __future__ import annotations

import pytest
from conftest import exact_measurement

from accelnas import hookimpl
from accelnas.core.errors import AccelnasError
from accelnas.core.plugins import load_registry
from accelnas.core.records import CompiledModel, ExportedModel, MeasureSettings, Target
from accelnas.core.space import sample
from accelnas.core.store import Store
from accelnas.surrogates.active import (
    active_campaign,
    active_rounds,
    disagreement_ensemble,
    most_uncertain,
    space_filling,
)

FAST = MeasureSettings(input_size=32, batch_size=2, precision=0.05, max_seconds=0.5, warmup_seconds=0.2, threads=1)


class Formula:
    """A device whose latency is a formula of the architecture: fast to 'measure', learnable."""

    def __init__(self):
        self.measured: list[tuple[str, str]] = []

    @hookimpl
    def register_targets(self, register):
        register(Target("fake", "formula", default_batch_size=2))

    @hookimpl
    def export_model(self, target, architecture):
        if target.name != "fake/formula":
            return None
        return ExportedModel(format="none", info={"arch": architecture})

    @hookimpl
    def compile(self, target, exported):
        return CompiledModel(handle=exported.info["arch"]) if target.name == "fake/formula" else None

    def _value(self, arch) -> float:
        return 1.0 + sum(s.l * s.e * s.k**2 * (1.2 if s.se else 1.0) for s in arch.stages) / 50

    @hookimpl
    def measure_latency(self, target, compiled, settings):
        if target.name != "fake/formula":
            return None
        self.measured.append((compiled.handle.id, "latency"))
        return exact_measurement("latency", self._value(compiled.handle), batch=1, input_size=settings.input_size)

    @hookimpl
    def measure_throughput(self, target, compiled, settings):
        if target.name != "fake/formula":
            return None
        self.measured.append((compiled.handle.id, "throughput"))
        return exact_measurement(
            "throughput", 1000.0 / self._value(compiled.handle), batch=2, input_size=settings.input_size
        )


@pytest.fixture()
def formula():
    registry = load_registry([])
    plugin = Formula()
    registry.register(plugin, "formula")
    return registry, plugin, registry.target("fake/formula")


def test_space_filling_never_repeats_and_stops_when_the_pool_is_spent():
    pool = sample(10, seed=2)
    picked = space_filling(pool + pool[:3], 25, seed=1)  # more asked than there are, and duplicates
    assert sorted(a.id for a in picked) == sorted(a.id for a in pool)
    rest = space_filling(pool, 8, chosen=pool[:6])
    assert {a.id for a in rest} == {a.id for a in pool[6:]}
    assert space_filling(pool, 0) == [] and space_filling([], 3) == []


def test_active_campaign_measures_num_distinct_architectures_even_from_a_small_pool(formula, tmp_path):
    registry, plugin, target = formula
    with Store(tmp_path / "a.sqlite") as store:
        events = []
        reports = active_campaign(registry, target, FAST, store, num=14, pool_size=5, initial=6, batch=4,
                                  metrics=["latency"], progress=events.append)  # fmt: skip
        rows = store.results(status="ok")
    assert len(reports) == 3  # 6, then 4 and 4 chosen by disagreement
    # progress counts over the campaign, not per round
    assert [(e.index, e.total) for e in events] == [(i, 14) for i in range(1, 15)]
    assert sum(r.measured for r in reports) == 14
    assert len({r["arch_id"] for r in rows}) == 14 and {r["metric"] for r in rows} == {"latency"}
    assert len(plugin.measured) == 14 and all(m == "latency" for _, m in plugin.measured)


def test_active_campaign_resumes_without_measuring_again(formula, tmp_path):
    registry, plugin, target = formula
    with Store(tmp_path / "a.sqlite") as store:
        active_campaign(registry, target, FAST, store, num=12, initial=8, batch=4, seed=3, metrics=["latency"])
        first = sorted(plugin.measured)
        again = active_campaign(registry, target, FAST, store, num=12, initial=8, batch=4, seed=3,
                                metrics=["latency"])  # fmt: skip
    assert sorted(plugin.measured) == first  # the same rounds are re-derived, nothing is measured twice
    assert sum(r.already_done for r in again) == 12 and sum(r.measured for r in again) == 0


def test_active_campaign_time_budget_covers_all_rounds(formula, tmp_path, monkeypatch):
    registry, _, target = formula
    # every look at the clock is 1000 s later: the first round has a budget no real run spends, the
    # next look finds the budget nearly spent, the round after it gets what is left (under a second)
    clock = iter(range(0, 10**6, 1000))
    monkeypatch.setattr("accelnas.surrogates.active.time.monotonic", lambda: float(next(clock)))
    with Store(tmp_path / "a.sqlite") as store:
        reports = active_campaign(registry, target, FAST, store, num=20, initial=8, batch=4, time_budget=2500)
    assert reports[-1].budget_exhausted
    measured = sum(r.measured for r in reports)  # measurements: two metrics per architecture
    assert 16 <= measured < 40 and sum(r.pending for r in reports) == 40 - measured


class Broken(Formula):
    @hookimpl
    def measure_latency(self, target, compiled, settings):
        raise RuntimeError("the device is gone")


def test_active_campaign_stops_at_max_failures_across_rounds(tmp_path):
    registry = load_registry([])
    registry.register(Broken(), "broken")
    target = registry.target("fake/formula")
    with Store(tmp_path / "a.sqlite") as store:  # the first round ends exactly at the limit
        reports = active_campaign(registry, target, FAST, store, num=20, initial=2, batch=4, max_failures=2,
                                  metrics=["latency"])  # fmt: skip
        assert sum(r.failed for r in reports) == 2 and len(reports) == 1
        assert reports[-1].failure_limit_reached and reports[-1].pending == 18
        assert len(store.results(status="failed")) == 2


def test_active_campaign_refuses_a_judged_metric_it_does_not_measure(formula, tmp_path):
    registry, _, target = formula
    with Store(tmp_path / "a.sqlite") as store, pytest.raises(AccelnasError, match="not among the measured"):
        active_campaign(registry, target, FAST, store, num=10, metric="throughput", metrics=["latency"])


def test_collect_active_measures_only_the_metric_asked_for(tmp_path):
    from cli_helpers import run_cli

    db = tmp_path / "a.sqlite"
    args = ["collect", "--num", "9", "--selection", "active", "--metric", "latency", "--input-size", "32",
            "--max-seconds", "0.2", "--warmup-seconds", "0.05", "--precision", "0.2", "--threads", "1",
            "--time-budget", "300", "--db", str(db)]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "9 measured" in result.stdout and "time budget 300" in result.stderr
    with Store(db) as store:
        rows = store.results(status="ok")
    assert len({r["arch_id"] for r in rows}) == 9 and {r["metric"] for r in rows} == {"latency"}


class FailsOnce(Formula):
    """A device on which one architecture fails until ``fixed`` is set."""

    def __init__(self, bad: str):
        super().__init__()
        self.bad, self.fixed = bad, False

    @hookimpl
    def measure_latency(self, target, compiled, settings):
        if target.name == "fake/formula" and compiled.handle.id == self.bad and not self.fixed:
            raise RuntimeError("flaky")
        return super().measure_latency(target, compiled, settings)


def test_a_rerun_after_a_failure_replays_the_recorded_rounds(tmp_path):
    bad = space_filling(sample(5000, 0), 8, seed=0)[3].id  # in the first round
    registry, plugin = load_registry([]), FailsOnce(bad)
    registry.register(plugin, "formula")
    target = registry.target("fake/formula")
    with Store(tmp_path / "a.sqlite") as store:
        first = active_campaign(registry, target, FAST, store, num=16, metrics=["latency"])
        assert sum(r.measured for r in first) == 15 and sum(r.failed for r in first) == 1

        def rounds_now():
            return [[a.id for a in r] for r in store.recorded_rounds("fake/formula", FAST.key(target), "latency", 0)]

        rounds = rounds_now()
        plugin.fixed, before = True, len(plugin.measured)
        again = active_campaign(registry, target, FAST, store, num=16, metrics=["latency"])
        assert plugin.measured[before:] == [(bad, "latency")]  # only the failed one, nothing new chosen
        assert sum(r.measured for r in again) == 1 and sum(r.already_done for r in again) == 15
        assert [
            [a.id for a in r] for r in store.recorded_rounds("fake/formula", FAST.key(target), "latency", 0)
        ] == rounds
        assert len({r["arch_id"] for r in store.results(status="ok")}) == 16
    assert [len(r) for r in rounds] == [8, 4, 4]


def test_a_larger_num_continues_the_recorded_design(formula, tmp_path):
    registry, plugin, target = formula
    with Store(tmp_path / "a.sqlite") as store:
        active_campaign(registry, target, FAST, store, num=20, metrics=["latency"])
        first = [a for a, _ in plugin.measured]
        more = active_campaign(registry, target, FAST, store, num=40, metrics=["latency"])
        assert sum(r.already_done for r in more) == 20 and sum(r.measured for r in more) == 20
        assert len(set(a for a, _ in plugin.measured)) == 40 and len(plugin.measured) == 40
        assert [a for a, _ in plugin.measured[:20]] == first
        fewer = active_campaign(registry, target, FAST, store, num=12, metrics=["latency"])
        assert sum(r.measured for r in fewer) == 0 and sum(r.already_done for r in fewer) == 12


@pytest.mark.parametrize("bad", [{"num": 0}, {"num": -5}, {"initial": 0}, {"batch": 0}, {"batch": -1}, {"num": 2.5}])
def test_active_campaign_refuses_counts_below_one(formula, tmp_path, bad):
    registry, plugin, target = formula
    name = next(iter(bad))
    with Store(tmp_path / "a.sqlite") as store, pytest.raises(AccelnasError, match=f"{name} to be a whole number >= 1"):
        active_campaign(registry, target, FAST, store, **({"num": 20, "pool_size": 60} | bad))
    assert plugin.measured == []


def test_most_uncertain_returns_nothing_for_n_below_one():
    archs = sample(12, 1)
    ensemble = disagreement_ensemble(0).fit(archs, [Formula()._value(a) for a in archs])
    pool = sample(30, 2)
    assert most_uncertain(ensemble, pool, 0) == [] and most_uncertain(ensemble, pool, -1) == []
    assert len(most_uncertain(ensemble, pool, 5)) == 5


def test_active_rounds_fit_on_every_observation_and_skip_observed_architectures():
    pool = sample(200, 4)
    extra = sample(30, 9)  # measured before, outside the design: fitted on, never chosen
    value = Formula()._value
    sizes, chosen_ids = [], set()

    def measure(index, archs):
        sizes.append(len(archs))
        chosen_ids.update(a.id for a in archs)
        return [(a, value(a)) for a in extra]  # the design's own results are not even needed

    chosen = active_rounds(pool + extra, 30, measure, seed=1)
    assert sizes == [8, 4, 4, 4, 4, 4, 2] and len(chosen) == 30  # the campaign's default round sizes
    assert not chosen_ids & {a.id for a in extra}


def test_a_store_without_recorded_rounds_rederives_the_same_ones(formula, tmp_path):
    """Stores of versions that did not record rounds."""
    registry, plugin, target = formula
    with Store(tmp_path / "a.sqlite") as store:
        active_campaign(registry, target, FAST, store, num=16, seed=2, metrics=["latency"])
        with store.transaction() as c:
            c.execute("DROP TABLE active_rounds")
        again = active_campaign(registry, target, FAST, store, num=16, seed=2, metrics=["latency"])
        assert sum(r.measured for r in again) == 0 and sum(r.already_done for r in again) == 16
        assert (
            len(plugin.measured) == 16
            and len(store.recorded_rounds("fake/formula", FAST.key(target), "latency", 2)) > 1
        )


def test_merge_copies_the_rounds_so_a_design_grown_by_two_runs_resumes_from_the_merged_store(formula, tmp_path, caplog):
    """Re-derived rounds would take this run's sizes (a first round of 10 for --num 40, not the 8 of
    --num 20) and measure another design."""
    from accelnas.core.merge import merge_stores

    registry, plugin, target = formula
    key = FAST.key(target)

    def rounds_of(store):
        return [[a.id for a in r] for r in store.recorded_rounds("fake/formula", key, "latency", 0)]

    with Store(tmp_path / "a.sqlite") as store:
        for num in (20, 40):
            active_campaign(registry, target, FAST, store, num=num, metrics=["latency"])
        rounds = rounds_of(store)
    merged = tmp_path / "m.sqlite"
    assert merge_stores(merged, [tmp_path / "a.sqlite"]).rounds_added == len(rounds)
    assert merge_stores(merged, [tmp_path / "a.sqlite"]).rounds_added == 0  # merging again changes nothing
    before = len(plugin.measured)
    with Store(merged) as store:
        again = active_campaign(registry, target, FAST, store, num=40, metrics=["latency"])
        assert plugin.measured[before:] == [] and sum(r.already_done for r in again) == 40
        assert rounds_of(store) == rounds
    with Store(tmp_path / "b.sqlite") as other:  # the same selection, other rounds: the output keeps its own
        other.record_round("fake/formula", key, "latency", 0, 0, sample(8, 7))
    assert merge_stores(merged, [tmp_path / "b.sqlite"]).rounds_added == 0
    assert "chose other rounds than the output's" in caplog.text
    with Store(merged) as store:
        assert rounds_of(store) == rounds
