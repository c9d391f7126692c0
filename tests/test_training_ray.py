"""Accuracy campaigns as Ray tasks on a private single-node Ray (CPU), with the store as single writer."""

import pytest

from accelnas.core.space import Architecture
from accelnas.core.store import Store
from accelnas.training.recipe import from_dict

pytest.importorskip("ray")

ARCHS = [Architecture.from_string("1310-1310-1310-1310-1310-1310-1310"),
         Architecture.from_string("1311-1310-1310-1310-1310-1310-1310")]  # fmt: skip
TINY = {"name": "tiny", "epochs": 1, "batch_size": 64, "optimizer": "adamw", "lr": 0.02, "resolution": 16,
        "data_fraction": 0.1, "label_smoothing": 0.0, "hflip": False}  # fmt: skip


def test_ray_campaign_trains_stores_and_resumes(tmp_path):
    from accelnas.training.ray_campaign import run_ray_accuracy_campaign

    recipe = from_dict(TINY)
    events = []
    with Store(tmp_path / "ray.sqlite") as store:
        report = run_ray_accuracy_campaign(
            ARCHS, recipe, "digits", store, image_size=16, gpus_per_task=0, cpus_per_task=1, workers=0,
            progress=lambda *e: events.append(e[3]),
        )  # fmt: skip
        assert (report.trained, report.failed) == (2, 0), report.errors
        rows = store.results(target="train/digits16")
        assert sorted(r["arch_id"] for r in rows) == sorted(a.id for a in ARCHS)
        assert all(r["metric"] == "accuracy" and r["extra"]["devices"] == 1 for r in rows)
        again = run_ray_accuracy_campaign(ARCHS, recipe, "digits", store, image_size=16, gpus_per_task=0)
        assert (again.trained, again.already_done) == (0, 2)  # resumed from the store without starting Ray
    assert events == ["ok", "ok"]


def test_unreachable_cluster_is_a_one_line_error(tmp_path):
    import socket

    from accelnas.core.errors import AccelnasError
    from accelnas.training.ray_campaign import run_ray_accuracy_campaign

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with Store(tmp_path / "ray.sqlite") as store, pytest.raises(AccelnasError, match="cannot reach the Ray cluster"):
        run_ray_accuracy_campaign(ARCHS, from_dict(TINY), "digits", store, image_size=16, gpus_per_task=0,
                                  cpus_per_task=1, workers=0, address=f"127.0.0.1:{port}")  # fmt: skip


def test_a_task_no_node_can_run_is_an_error_not_a_wait(tmp_path):
    from accelnas.core.errors import AccelnasError
    from accelnas.training.ray_campaign import run_ray_accuracy_campaign

    with Store(tmp_path / "ray.sqlite") as store:
        with pytest.raises(AccelnasError, match=r"no Ray node offers 1000 GPU\(s\) and 1 CPU\(s\) per task"):
            run_ray_accuracy_campaign(ARCHS, from_dict(TINY), "digits", store, image_size=16, gpus_per_task=1000,
                                      cpus_per_task=1, workers=0)  # fmt: skip
        assert store.results() == []  # nothing recorded, nothing failed
