"""Training architectures for real (tiny: digits at 16 px), accuracy campaigns in the store, DDP with Gloo."""

import math
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from accelnas.core import dataset
from accelnas.core.space import Architecture
from accelnas.core.store import Store
from accelnas.training import campaign as campaign_module
from accelnas.training.campaign import ProgressLines, accuracy_target, run_accuracy_campaign, settings_for
from accelnas.training.data import DataSplits, TensorImages, digits, subset_indices
from accelnas.training.recipe import from_dict
from accelnas.training.trainer import train

SMALL = Architecture.from_string("1310-1310-1310-1310-1310-1310-1310")
SMALL_SE = Architecture.from_string("1311-4310-1310-1311-1310-1310-1310")
TINY = {
    "name": "tiny", "epochs": 2, "batch_size": 64, "optimizer": "adamw", "lr": 0.02, "weight_decay": 0.05,
    "resolution": 16, "label_smoothing": 0.0, "crop_scale": [0.6, 1.0], "hflip": False,
    "warmup_epochs": 0.2, "bn_recalibration_images": 512, "data_fraction": 0.5,
}  # fmt: skip


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return digits(image_size=16, seed=0)


def test_training_learns_and_reports_costs(data):
    recipe = from_dict(TINY)
    result = train(SMALL, recipe, data)
    assert result.top1 > 40.0  # far above the 10% of guessing after two short epochs
    assert result.top5 >= result.top1 and result.top5 <= 100.0
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert result.wall_seconds > 0 and result.cpu_seconds > 0 and result.devices == 1
    assert math.isclose(result.device_hours, result.wall_seconds / 3600)
    assert result.images_seen == 2 * round(len(data.train) * 0.5)
    assert result.device.startswith("cpu")


def test_recipe_features_run_together(data):
    """bf16 autocast, channels_last, EMA, RMSprop, step schedule and progressive resizing in one run."""
    recipe = from_dict({
        **TINY, "epochs": 2, "data_fraction": 0.15, "optimizer": "rmsprop", "lr": 0.016, "schedule": "step",
        "step_every": 1, "mixed_precision": True, "channels_last": True, "ema_decay": 0.9,
        "resolution": [[0, 12], [1, 16]], "eval_resolution": 16, "hflip": True, "label_smoothing": 0.1,
    })  # fmt: skip
    result = train(SMALL_SE, recipe, data)
    assert [h["size"] for h in result.history] == [12, 16]
    assert result.ema and math.isfinite(result.top1) and 0 <= result.top1 <= 100
    assert result.history[1]["lr"] < result.history[0]["lr"]


def test_a_last_batch_of_one_image_is_left_out(data):
    """At 16 px the last feature map is 1 x 1, where BatchNorm cannot train on one image: 65 images in
    batches of 16 (and of 64 for the recalibration) leave one over, which is skipped."""
    train_set = TensorImages(data.train.images[:65], data.train.labels[:65], data.train.classes)
    odd = DataSplits("odd", train_set, data.val, mean=data.mean, std=data.std)
    recipe = from_dict({**TINY, "epochs": 1, "batch_size": 16, "data_fraction": 1.0, "bn_recalibration_images": 512})
    result = train(SMALL, recipe, odd)
    assert result.images_seen == 64 and math.isfinite(result.top1)


def test_accuracy_campaign_stores_resumes_and_exports(data, tmp_path, monkeypatch):
    recipe = from_dict({**TINY, "epochs": 1, "data_fraction": 0.1})
    corrupt = digits(image_size=16, seed=0)
    corrupt.train.images[::7] = float("nan")  # corrupt pixels make the loss NaN: a failed run, not a crash
    with Store(tmp_path / "acc.sqlite") as store:
        report = run_accuracy_campaign([SMALL, SMALL_SE, SMALL], recipe, data, store)  # SMALL named twice
        assert (report.planned, report.trained, report.already_done, report.failed) == (2, 2, 0, 0)
        again = run_accuracy_campaign([SMALL, SMALL_SE], recipe, data, store)
        assert (again.trained, again.already_done) == (0, 2)
        assert again.evaluations[SMALL.id].top1 == report.evaluations[SMALL.id].top1
        assert again.evaluations[SMALL.id].cached
        bad = run_accuracy_campaign([SMALL], recipe, corrupt, store)
        assert bad.failed == 1 and "loss became non-finite in epoch 1" in bad.errors[0]
        lost = bad.failures[SMALL.id]  # what the failed run cost is kept, its accuracy is not
        assert lost.failed and math.isnan(lost.top1) and SMALL.id not in bad.evaluations
        assert lost.wall_seconds > 0 and lost.cpu_seconds > 0 and lost.device_hours == lost.wall_seconds / 3600
        failed = store.results(target=accuracy_target(data), status="failed")
        assert len(failed) == 1 and "loss became non-finite in epoch 1" in failed[0]["error"]
        seen = []
        kept = run_accuracy_campaign([SMALL], recipe, corrupt, store, retry_failed=False,
                                     progress=lambda *args: seen.append(args[3]))  # fmt: skip
        assert (kept.trained, kept.failed, kept.failures_kept, seen) == (0, 0, 1, ["kept-failure"])
        assert (
            kept.tally()
            == "0 trained (0.0000 device-hours), 0 already stored, 0 failed, 1 stored failure(s) not retried"
        )
        lines = []
        with Store(tmp_path / "epochs.sqlite") as other:
            run_accuracy_campaign(
                [SMALL], recipe.replace(epochs=2), data, other, progress=ProgressLines(lines.append, every=0)
            )
        assert [line.split()[:3] for line in lines[:2]] == [[SMALL.id, "epoch", "1/2"], [SMALL.id, "epoch", "2/2"]]
        assert lines[2].startswith(f"[1/1] {SMALL.id}  top-1") and len(lines) == 3
        rows = store.results(target=accuracy_target(data), status=None)
        assert len(rows) == 3
        ok = [r for r in rows if r["status"] == "ok"]
        key, settings = settings_for(recipe, data)
        assert {r["settings_key"] for r in ok} == {key} and settings["recipe_name"] == "tiny"
        for r in ok:
            assert r["metric"] == "accuracy" and r["unit"] == "%" and 0 <= r["value"] <= 100
            assert r["extra"]["top5"] >= r["value"] and r["extra"]["device_hours"] > 0
            assert r["input_size"] == 16 and r["plugin"] == "accelnas.training"
        frame = dataset.from_store(store, accuracy_target(data))
        part = dataset.select(frame, "train/digits16", "accuracy")
        assert sorted(part["arch_id"]) == sorted([SMALL.id, SMALL_SE.id])
    assert key != settings_for(recipe.replace(seed=1), data)[0]
    monkeypatch.setattr(campaign_module, "TRAINER_REVISION", campaign_module.TRAINER_REVISION + 1)
    newer_key, newer = settings_for(recipe, data)
    assert newer_key != key and newer["trainer_revision"] == campaign_module.TRAINER_REVISION
    with Store(tmp_path / "acc.sqlite") as store:  # results of the older trainer are not resumed
        again = run_accuracy_campaign([SMALL], recipe, data, store)
        assert not again.evaluations[SMALL.id].cached


def test_progress_eta_counts_the_architectures_left_in_any_order(monkeypatch):
    """Ray reports architectures as they finish, not in their order: the ETA is for those not yet reported."""
    clock = iter(range(0, 1000, 10))  # every reading of the clock is 10 s after the last
    monkeypatch.setattr(campaign_module, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    lines: list[str] = []
    progress = ProgressLines(lines.append)
    ev = campaign_module.Evaluation(SMALL.id, 50.0, 90.0, 10.0, 0.01)
    for index in (3, 1, 2):
        progress(index, 3, SMALL, "ok", ev, None)
    assert [line.rsplit("[eta ", 1)[1] for line in lines] == ["40s]", "20s]", "0s]"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, db: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from accelnas.training.distributed import init_from_env, shutdown

    ctx = init_from_env("cpu")
    d = digits(image_size=16, seed=0)
    recipe = from_dict({**TINY, "epochs": 1, "data_fraction": 0.2})
    store = Store(db) if ctx.is_main else None
    report = run_accuracy_campaign([SMALL], recipe, d, store, ctx=ctx)
    ev = report.evaluations[SMALL.id]
    with open(f"{out}.{rank}", "w") as fh:
        fh.write(f"{ev.top1} {ev.top5} {report.trained} {ctx.world_size}")
    shutdown(ctx)


def test_ddp_with_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp

    db, out = str(tmp_path / "ddp.sqlite"), str(tmp_path / "result")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), db, out), nprocs=2, join=True, start_method="spawn")
    results = [Path(f"{out}.{r}").read_text().split() for r in range(2)]
    assert results[0] == results[1]  # both ranks evaluated the same (reduced) accuracy
    assert results[0][2:] == ["1", "2"]
    with Store(db, create=False) as store:
        rows = store.results(target="train/digits16")
    assert len(rows) == 1 and rows[0]["extra"]["devices"] == 2
    assert math.isclose(rows[0]["value"], float(results[0][0]))
    # each rank trained half of the 20% subset (padded to equal shards); images_seen counts both
    subset = len(subset_indices(digits(16).train.targets(), 0.2, 0))
    assert rows[0]["extra"]["images_seen"] == 2 * math.ceil(subset / 2)


def _train_on_two_ranks(*args: str) -> list[tuple[int, str]]:
    """`accelnas train ARGS` as ranks 0 and 1 of a Gloo group on this CPU: (exit code, stderr) of each."""
    import subprocess
    import sys

    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank), "WORLD_SIZE": "2",
                            "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}  # fmt: skip
        env.pop("ACCELNAS_DEBUG", None)
        cmd = [sys.executable, "-m", "accelnas.core.cli", "train", *args, "--device", "cpu", "--threads", "1"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True)]


def test_ddp_ranks_stop_on_an_unusable_store_instead_of_hanging(tmp_path):
    """Rank 0 cannot open the store while the other rank waits for its list of architectures: both end
    (no barrier against a rank in another collective), and rank 0 says why in one line."""
    db = tmp_path / "bad.sqlite"
    db.write_text("not a database\n")
    ranks = _train_on_two_ranks("--arch", SMALL.id, "--image-size", "8", "--db", str(db))
    assert all(code != 0 for code, _ in ranks)
    assert ranks[0][1].strip() == f"error: {db} is not a usable accelnas store: file is not a database"


def test_ddp_ranks_stop_on_an_image_one_rank_cannot_read(tmp_path):
    """One rank's shard holds an unreadable image while the other rank trains on: every rank ends, the
    one that met it with its one-line error, and no failure is stored for architectures not trained."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for c in ("cat", "dog"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / c / f"{i}.jpg")
    bad = tmp_path / "imgs" / "train" / "cat" / "bad.jpg"  # in one rank's shard of the shuffled 13 images
    bad.write_bytes(b"not a jpeg")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("epochs: 1\nbatch_size: 4\noptimizer: adamw\nlr: 0.02\nresolution: 16\nhflip: false\n")
    db = tmp_path / "acc.sqlite"
    ranks = _train_on_two_ranks("--recipe", str(recipe), "--data", str(tmp_path / "imgs"), "--workers", "0",
                                "--arch", SMALL.id, "--arch", SMALL_SE.id, "--db", str(db))  # fmt: skip
    assert all(code != 0 for code, _ in ranks)
    assert any(line.startswith(f"error: cannot read image {bad}: ") for _, err in ranks for line in err.splitlines())
    with Store(db, create=False) as store:
        assert store.results(status=None) == []


def test_device_choice():
    from accelnas.core.errors import AccelnasError
    from accelnas.training.distributed import pick_device

    assert pick_device("cpu").type == "cpu"
    with pytest.raises(AccelnasError, match="unknown device 'nosuch'") as unknown:
        pick_device("nosuch")
    assert unknown.value.exit_code == 2  # an invalid argument
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        for asked in ("cuda", "cuda:7"):
            with pytest.raises(AccelnasError, match="no CUDA device") as missing:
                pick_device(asked)
            assert missing.value.exit_code == 3  # known, but not here
    else:
        with pytest.raises(AccelnasError, match="CUDA device") as missing:
            pick_device(f"cuda:{torch.cuda.device_count()}")
        assert missing.value.exit_code == 3
    for unsupported in ("xpu", "mps", "meta", "cpu:1", "cuda:-1"):  # torch parses most; training runs on neither
        with pytest.raises(AccelnasError, match=f"unknown device '{unsupported}'"):
            pick_device(unsupported)


def test_rmsprop_follows_tensorflow():
    """TF's RMSProp: mean square from 1, ε under the root, lr inside the momentum (torch's differs ~1000x here)."""
    import numpy as np

    from accelnas.training.rmsprop_tf import RMSpropTF

    lr, momentum, decay, eps, g = 0.016, 0.9, 0.9, 1e-3, 1e-4
    ms, mom, w, expected = 1.0, 0.0, 0.0, []
    for _ in range(3):  # tf.compat.v1.train.RMSPropOptimizer's update, written out
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        w -= mom
        expected.append(w)
    for cls, kwargs in ((RMSpropTF, {}), (torch.optim.RMSprop, {})):
        p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = cls([p], lr=lr, alpha=decay, eps=eps, momentum=momentum, **kwargs)
        got = []
        for _ in range(3):
            p.grad = torch.full_like(p, g)
            opt.step()
            got.append(p.item())
        if cls is RMSpropTF:
            assert got == pytest.approx(expected, rel=1e-9)
        else:
            assert abs(got[0]) > 100 * abs(expected[0])  # why torch's own RMSprop is not used


def test_a_proxy_evaluator_counts_a_failed_run_and_does_not_pay_for_it_twice(tmp_path, monkeypatch):
    from accelnas.training import proxy_search as ps

    corrupt = digits(image_size=16, seed=0)
    corrupt.train.images[::7] = float("nan")
    recipe = from_dict({**TINY, "epochs": 1, "data_fraction": 0.1})
    calls = []
    monkeypatch.setattr(campaign_module, "train", lambda arch, *a, **k: calls.append(arch.id) or train(arch, *a, **k))
    with Store(tmp_path / "ps.sqlite") as store:
        evaluator = ps.TrainingEvaluator(corrupt, store)
        first = evaluator.evaluate(recipe, [SMALL])
        again = evaluator.evaluate(recipe, [SMALL])  # the next strategy: the same failure, not a new run
        assert calls == [SMALL.id] and first[SMALL.id].failed and again[SMALL.id].failed
        assert again[SMALL.id].wall_seconds == first[SMALL.id].wall_seconds > 0 and again[SMALL.id].cached
        ps.TrainingEvaluator(corrupt, store).evaluate(recipe, [SMALL])  # a new search retries it
        assert calls == [SMALL.id, SMALL.id]


def test_stored_results_with_undefined_costs_read_back_as_nan(tmp_path):
    from accelnas.core.records import Measurement
    from accelnas.training.campaign import METRIC, stored_evaluations

    extra = {"top5": 90.0, "wall_seconds": 3.0, "device_hours": 3.0 / 3600, "cpu_seconds": math.nan}
    m = Measurement(METRIC, "%", 50.0, 0.0, 50.0, 50.0, [50.0], 64, 16, True, extra=extra)
    with Store(tmp_path / "s.sqlite") as store:
        store.record_ok(SMALL, "train/x", "k", {}, m)
        (ev,) = stored_evaluations(store, "train/x", "k").values()  # NaN was stored as null
    assert ev.top1 == 50.0 and ev.wall_seconds == 3.0 and math.isnan(ev.cpu_seconds) and ev.cached


class _Batches:
    """A loader whose every epoch gives the same batches (images only; labels are not read)."""

    def __init__(self, *sizes: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.batches = [(torch.randn(n, 3, 4, 4, generator=gen) * (1 + seed), torch.zeros(n)) for n in sizes]

    def epoch(self, epoch: int, size: int):
        return iter(self.batches)


def _bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))


def _recalibrated(loader: _Batches, ctx=None) -> torch.nn.BatchNorm2d:
    from accelnas.training.distributed import DistContext
    from accelnas.training.trainer import recalibrate_batchnorm

    model = _bn_model()
    recalibrate_batchnorm(model, loader, 4, 1000, ctx or DistContext(), from_dict(TINY))
    return model[1]


def test_batchnorm_recalibration_without_a_usable_batch_keeps_the_statistics():
    """Only a batch of one image (skipped): the running statistics stay, they are not reset to 0 / 1."""
    bn = _bn_model()[1]
    bn.running_mean.fill_(0.25)
    bn.running_var.fill_(2.0)
    from accelnas.training.distributed import DistContext
    from accelnas.training.trainer import recalibrate_batchnorm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), bn)
    assert recalibrate_batchnorm(model, _Batches(1), 4, 1000, DistContext(), from_dict(TINY)) == 0
    assert torch.equal(bn.running_mean, torch.full((4,), 0.25)) and torch.equal(bn.running_var, torch.full((4,), 2.0))
    used = _recalibrated(_Batches(3, 1))
    assert not torch.equal(used.running_mean, torch.zeros(4))  # a usable batch recalibrates


def _recalibration_worker(rank: int, port: int, sizes: list[tuple[int, ...]], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from accelnas.training.distributed import init_from_env, shutdown

    ctx = init_from_env("cpu")
    bn = _recalibrated(_Batches(*sizes[rank], seed=rank), ctx)
    torch.save({"mean": bn.running_mean, "var": bn.running_var}, f"{out}.{rank}")
    shutdown(ctx)


@pytest.mark.parametrize("sizes", [[(4, 2), (1,)], [(4, 2), (3,)]], ids=["one-rank-without-images", "unequal"])
def test_ranks_average_batchnorm_statistics_weighed_by_their_images(tmp_path, sizes):
    """A rank whose shard held no usable batch adds nothing (not reset statistics); others count by images."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "bn")
    mp.start_processes(_recalibration_worker, args=(_free_port(), sizes, out), nprocs=2, join=True,
                       start_method="spawn")  # fmt: skip
    got = [torch.load(f"{out}.{r}") for r in range(2)]
    alone = [_recalibrated(_Batches(*sizes[r], seed=r)) for r in range(2)]
    images = [sum(n for n in s if n >= 2) for s in sizes]
    for key, attr in (("mean", "running_mean"), ("var", "running_var")):
        want = sum(n * getattr(bn, attr) for n, bn in zip(images, alone, strict=True)) / sum(images)
        for rank in range(2):
            torch.testing.assert_close(got[rank][key], want)
