"""Training data: digits, image folders (ImageNet layout), augmentation, sharding, subsets."""

import numpy as np
import pytest
import torch

from accelnas.training.data import (
    DataError,
    FolderImages,
    Loader,
    TensorImages,
    batch_random_resized_crop,
    crop_boxes,
    digits,
    image_folder,
    load_data,
    resize_center_crop,
    subset_indices,
)


@pytest.fixture(scope="module")
def digits16():
    return digits(image_size=16, seed=0)


def test_digits_split_is_stratified_and_seeded(digits16):
    d = digits16
    assert d.name == "digits16" and d.num_classes == 10
    assert len(d.train) + len(d.val) == 1797
    assert tuple(d.train.images.shape[1:]) == (3, 16, 16)
    counts = np.bincount(d.val.targets(), minlength=10)
    assert counts.min() >= 30  # every class present in validation
    again = digits(image_size=16, seed=0)
    assert torch.equal(again.val.labels, d.val.labels)
    other = digits(image_size=16, seed=1)
    assert not torch.equal(other.val.labels, d.val.labels)
    assert d.identity()["train_fingerprint"] != other.identity()["train_fingerprint"]


def test_subset_indices_keeps_every_class():
    targets = np.repeat(np.arange(5), [40, 30, 20, 10, 2])
    idx = subset_indices(targets, 0.25, seed=3)
    counts = np.bincount(targets[idx], minlength=5)
    assert list(counts) == [10, 8, 5, 2, 1]
    assert np.array_equal(idx, subset_indices(targets, 0.25, seed=3))
    assert len(subset_indices(targets, 1.0, seed=0)) == len(targets)


def test_batch_augmentation_shapes_and_determinism():
    x = torch.rand(6, 3, 32, 32)
    a = batch_random_resized_crop(x, 24, (0.3, 1.0), True, torch.Generator().manual_seed(1))
    b = batch_random_resized_crop(x, 24, (0.3, 1.0), True, torch.Generator().manual_seed(1))
    c = batch_random_resized_crop(x, 24, (0.3, 1.0), True, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    # a horizontal ramp stays increasing without flips; with flips some images decrease
    ramp = torch.linspace(0, 1, 32).expand(8, 3, 32, 32).contiguous()
    kept = batch_random_resized_crop(ramp, 16, (0.5, 1.0), False, torch.Generator().manual_seed(0))
    assert bool((kept.diff(dim=-1) >= -1e-6).all())
    flipped = batch_random_resized_crop(ramp, 16, (0.5, 1.0), True, torch.Generator().manual_seed(0))
    slopes = flipped[:, 0, 8, -1] - flipped[:, 0, 8, 0]
    assert (slopes > 0).any() and (slopes < 0).any()
    assert resize_center_crop(x, 16).shape == (6, 3, 16, 16)


def test_crop_boxes_keep_their_pixel_aspect_on_a_landscape_image():
    w, h = 500, 375
    boxes = crop_boxes(20_000, (0.08, 1.0), torch.Generator().manual_seed(0), image_aspect=w / h)
    inside = (boxes[:, 2] < 1) & (boxes[:, 3] < 1)  # boxes clamped to the image lose their drawn aspect
    pixel_aspect = (boxes[inside, 2] * w) / (boxes[inside, 3] * h)
    assert float(pixel_aspect.median()) == pytest.approx(1.0, abs=0.08)  # 1.33 when drawn on the unit square
    assert float(pixel_aspect.min()) >= 0.75 - 1e-4 and float(pixel_aspect.max()) <= 4 / 3 + 1e-4
    area = boxes[inside, 2] * boxes[inside, 3]
    assert float(area.min()) >= 0.08 - 1e-6 and float(area.max()) <= 1.0
    # a portrait image: the same drawn shapes, now as pixels of a taller image
    tall = crop_boxes(20_000, (0.08, 1.0), torch.Generator().manual_seed(0), image_aspect=h / w)
    fit = (tall[:, 2] < 1) & (tall[:, 3] < 1)
    assert float(((tall[fit, 2] * h) / (tall[fit, 3] * w)).median()) == pytest.approx(1.0, abs=0.08)


def test_each_rank_augments_its_images_its_own_way():
    same = TensorImages(torch.rand(1, 3, 16, 16).repeat(8, 1, 1, 1), torch.zeros(8, dtype=torch.long), ["a"])
    first = []
    for rank in range(2):
        loader = Loader(same, batch_size=4, train=True, mean=(0.5,) * 3, std=(0.5,) * 3, rank=rank, world_size=2)
        first.append(next(iter(loader.epoch(0, 12)))[0])
    assert not torch.equal(first[0], first[1])  # identical images, different crops


def test_loader_shards_evaluation_exactly_once(digits16):
    d = digits16
    seen = []
    for rank in range(2):
        loader = Loader(d.val, batch_size=50, train=False, mean=d.mean, std=d.std, rank=rank, world_size=2)
        for _, y in loader.epoch(0, 16):
            seen.append(len(y))
    assert sum(seen) == len(d.val)  # no padding, no overlap
    train = Loader(d.train, batch_size=64, train=True, mean=d.mean, std=d.std, rank=1, world_size=2, seed=0)
    x, y = next(iter(train.epoch(0, 12)))
    assert x.shape == (64, 3, 12, 12) and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1.0  # normalised


def _write_folder(root, classes=("cat", "dog"), per_class=3, size=(20, 14)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpeg")


def test_image_folder_reads_imagenet_layout(tmp_path):
    pytest.importorskip("PIL")
    _write_folder(tmp_path)
    data = load_data(str(tmp_path))
    assert data.num_classes == 2 and len(data.train) == 6 and len(data.val) == 6
    assert data.train.classes == ["cat", "dog"] and data.name == tmp_path.name
    assert image_folder(tmp_path / "train" / "..").name == tmp_path.name  # e.g. `--data .`: the folder's name
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path, target_is_directory=True)
    assert image_folder(link).name == link.name  # a link keeps its own name: results stay under its target
    for train in (True, False):
        loader = Loader(data.train, batch_size=4, train=train, mean=data.mean, std=data.std)
        batches = list(loader.epoch(0, 16))
        assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 16, 16), (2, 3, 16, 16)]
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0, 0, 0, 1, 1, 1]


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    with pytest.raises(DataError, match="expected train/"):
        image_folder(tmp_path)
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        image_folder(tmp_path)
    (tmp_path / "train" / "a" / "x.jpeg").write_bytes(b"not a jpeg")
    (tmp_path / "val" / "a" / "y.jpeg").write_bytes(b"not a jpeg")
    ds = FolderImages(tmp_path / "train")
    with pytest.raises(DataError, match="cannot read image"):
        ds[0]
    for workers in (0, 1):  # from a DataLoader worker too: the message, not the worker's traceback
        loader = Loader(ds, batch_size=1, train=True, mean=(0, 0, 0), std=(1, 1, 1), workers=workers)
        with pytest.raises(DataError) as raised:
            list(loader.epoch(0, 8))
        message = str(raised.value)
        assert message.startswith(f"cannot read image {tmp_path / 'train' / 'a' / 'x.jpeg'}: ") and "\n" not in message
    (tmp_path / "val" / "b").mkdir()
    (tmp_path / "val" / "b" / "z.jpeg").write_bytes(b"x")
    with pytest.raises(DataError, match="class folder 'b' is not among the training classes"):
        image_folder(tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        load_data(str(tmp_path / "missing"))
