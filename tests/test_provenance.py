"""Facts about the host: the usable core count of CPU targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelnas.core import provenance


def fake_topology(root: Path, layout: dict[int, tuple[int, int]]) -> None:
    for cpu, (package, core) in layout.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")


def test_smt_siblings_count_as_one_core(tmp_path: Path) -> None:
    # cpus 0-3 are two cores with two hardware threads each; cpu 4 is a core of another package
    fake_topology(tmp_path, {0: (0, 0), 1: (0, 0), 2: (0, 1), 3: (0, 1), 4: (1, 0)})
    assert provenance.cores_of({0, 1}, str(tmp_path)) == 1
    assert provenance.cores_of({0, 1, 2, 3}, str(tmp_path)) == 2
    assert provenance.cores_of({0, 2, 4}, str(tmp_path)) == 3


def test_unreadable_topology_is_unknown(tmp_path: Path) -> None:
    fake_topology(tmp_path, {0: (0, 0)})
    assert provenance.cores_of({0, 1}, str(tmp_path)) is None
    assert provenance.cores_of(set(), str(tmp_path)) is None


@pytest.mark.skipif(not hasattr(provenance.os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_usable_cores_counts_the_cores_of_the_affinity_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # an affinity mask of four hardware threads on two SMT cores gives two usable cores, not four
    monkeypatch.setattr(provenance, "physical_cores", lambda: 16)
    monkeypatch.setattr(provenance.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(provenance, "cores_of", lambda cpus: 2)
    monkeypatch.setattr(provenance, "cgroup_cpu_quota", lambda: None)
    assert provenance.usable_cores() == 2
    monkeypatch.setattr(provenance, "cores_of", lambda cpus: None)  # no topology files: count the threads
    assert provenance.usable_cores() == 4
    monkeypatch.setattr(provenance, "cgroup_cpu_quota", lambda: 1.5)
    assert provenance.usable_cores() == 2
