"""Datasets for accuracy training: image folders (ImageNet layout) and in-memory tensors.

Both kinds hand out batches through :class:`Loader`, which draws its indices from a
``DistributedSampler`` (one shard per rank under torchrun, the whole set otherwise) and resizes
to the epoch's resolution, so progressive resizing works the same for both. Augmentation is plain
torch/PIL: random-resized crop and horizontal flip for training, resize + centre crop for evaluation.

* :class:`FolderImages` reads ``root/<class>/*.jpeg`` (ImageNet layout) with PIL in DataLoader workers.
* :class:`TensorImages` keeps every image in one tensor and augments whole batches with
  ``affine_grid``/``grid_sample`` (no per-image Python), e.g. scikit-learn's digits (:func:`digits`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from accelnas.core.errors import AccelnasError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP = 0.875  # evaluation resizes to size / 0.875, then centre-crops ``size``


class DataError(AccelnasError):
    """A training dataset is missing, empty or unreadable."""


# -- random-resized-crop geometry (shared by both dataset kinds) --------------------------------------
def crop_boxes(
    n: int,
    scale: tuple[float, float],
    gen: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    image_aspect: float = 1.0,
) -> torch.Tensor:
    """``n`` random crop boxes as (cx, cy, w, h) fractions of an image of width/height ``image_aspect``.

    Each box covers a share of the image's area drawn from ``scale`` and has a pixel aspect ratio
    (width/height) drawn log-uniformly from ``ratio``; a side that would leave the image is clamped.
    """
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    aspect = torch.exp(log_ratio) / image_aspect  # the box's width/height in fractions of the image
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = w / 2 + torch.rand(n, generator=gen) * (1 - w)
    cy = h / 2 + torch.rand(n, generator=gen) * (1 - h)
    return torch.stack([cx, cy, w, h], dim=1)


def batch_random_resized_crop(
    x: torch.Tensor, size: int, scale: tuple[float, float], hflip: bool, gen: torch.Generator
) -> torch.Tensor:
    """Random-resized crop (and flip) of a whole NCHW float batch to ``size`` with one ``grid_sample``."""
    n = x.shape[0]
    boxes = crop_boxes(n, scale, gen, image_aspect=x.shape[3] / x.shape[2])
    sx = boxes[:, 2]
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = boxes[:, 3]
    theta[:, 0, 2] = boxes[:, 0] * 2 - 1
    theta[:, 1, 2] = boxes[:, 1] * 2 - 1
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Evaluation transform of an NCHW batch: resize to ``size / 0.875``, centre-crop ``size``."""
    big = max(size, round(size / EVAL_CROP))
    if x.shape[-1] != big or x.shape[-2] != big:
        x = F.interpolate(x, size=(big, big), mode="bilinear", align_corners=False, antialias=True)
    top = (big - size) // 2
    return x[..., top : top + size, top : top + size]


# -- datasets ---------------------------------------------------------------------------------------
class TensorImages:
    """Images held in memory: ``images`` NCHW float in [0, 1], ``labels`` int64."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], name: str = "tensor"):
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"{name}: images must be N x 3 x H x W, got {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images.float().contiguous()
        self.labels = labels.long()
        self.classes = list(classes)
        self.name = name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def targets(self) -> np.ndarray:
        return self.labels.numpy()

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


class FolderImages(Dataset):
    """``root/<class>/<image>`` (ImageNet layout), decoded with PIL; classes sorted by folder name."""

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.classes = list(classes) if classes is not None else found
        if not self.classes:
            raise DataError(f"{self.root}: no class folders (expected root/<class>/*.jpeg)")
        index = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for c in found:
            if c not in index:
                raise DataError(f"{self.root}: class folder {c!r} is not among the training classes")
            for dirpath, _, files in os.walk(self.root / c):
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_SUFFIXES):
                        self.samples.append((os.path.join(dirpath, f), index[c]))
        if not self.samples:
            raise DataError(f"{self.root}: no images ({', '.join(IMAGE_SUFFIXES)}) under the class folders")
        self.name = self.root.name
        self.size = 224
        self.train = True
        self.scale: tuple[float, float] = (0.08, 1.0)
        self.hflip = True
        self.seed = 0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, label in self.samples:
            h.update(f"{os.path.relpath(path, self.root)}:{label}\n".encode())
        return h.hexdigest()[:16]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                img.draft("RGB", (self.size * 2, self.size * 2))  # JPEG: decode at a reduced scale
                img = img.convert("RGB")
                w, h = img.size
                if self.train:
                    gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
                    cx, cy, bw, bh = crop_boxes(1, self.scale, gen, image_aspect=w / h)[0].tolist()
                    box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
                    img = img.resize((self.size, self.size), Image.BILINEAR, box=box)
                    if self.hflip and torch.rand(1, generator=gen).item() < 0.5:
                        img = img.transpose(Image.FLIP_LEFT_RIGHT)
                else:
                    big = max(self.size, round(self.size / EVAL_CROP))
                    short = min(w, h)
                    side = short * self.size / big
                    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
                    img = img.resize((self.size, self.size), Image.BILINEAR, box=box)
                data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        return data.view(self.size, self.size, 3).permute(2, 0, 1), label


@dataclass
class DataSplits:
    """A training and a validation set with the normalisation to apply."""

    name: str
    train: TensorImages | FolderImages
    val: TensorImages | FolderImages
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    def identity(self) -> dict[str, Any]:
        """What identifies the data in a result's settings."""
        return {
            "dataset": self.name,
            "train": len(self.train),
            "val": len(self.val),
            "classes": self.num_classes,
            "train_fingerprint": self.train.fingerprint(),
            "val_fingerprint": self.val.fingerprint(),
            **self.info,
        }


def subset_indices(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A class-stratified, seeded ``fraction`` of the indices (at least one image per class)."""
    if fraction >= 1.0:
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        k = max(1, round(len(idx) * fraction))
        keep.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(keep))


class Loader:
    """Batches of one split for one rank: ``for x, y in loader.epoch(e, size): ...``."""

    def __init__(
        self,
        data: TensorImages | FolderImages,
        *,
        batch_size: int,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        indices: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        device: torch.device | str = "cpu",
        workers: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.data = data
        self.indices = np.arange(len(data)) if indices is None else np.asarray(indices)
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.seed = seed
        self.scale = scale
        self.hflip = hflip
        self.workers = workers
        self.channels_last = channels_last
        self.rank = rank
        # padding to equal shards matters for training (equal step counts across ranks); evaluation
        # must count every image once, so it shards without padding
        self.sampler = DistributedSampler(
            range(len(self.indices)), num_replicas=world_size, rank=rank, shuffle=train, seed=seed, drop_last=False
        )
        if not train and world_size > 1:
            self.sampler.num_samples = len(range(rank, len(self.indices), world_size))
            self.sampler.total_size = len(self.indices)
        if isinstance(data, TensorImages):
            self._images = data.images.to(self.device)
            self._labels = data.labels.to(self.device)

    def _images_per_epoch(self) -> int:
        """Images of this rank per epoch. Training leaves out a last batch of a single image: BatchNorm
        cannot train on one image once its feature map has shrunk to 1 x 1 (inputs of 32 px and less)."""
        n = self.sampler.num_samples
        return n - 1 if self.train and n > 1 and n % self.batch_size == 1 else n

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(self._images_per_epoch() / self.batch_size)

    def _positions(self, epoch: int) -> np.ndarray:
        self.sampler.set_epoch(epoch)
        return self.indices[np.fromiter(iter(self.sampler), dtype=np.int64)][: self._images_per_epoch()]

    def epoch(self, epoch: int, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` at image ``size``, normalised, on the loader's device."""
        idx = self._positions(epoch)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if isinstance(self.data, TensorImages):
            # each rank crops its images its own way (rank 0 as a single process does)
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch + self.rank * 7_919_993)
            for start in range(0, len(idx), self.batch_size):
                sel = torch.from_numpy(idx[start : start + self.batch_size]).to(self.device)
                x = self._images.index_select(0, sel)
                if self.train:
                    x = batch_random_resized_crop(x, size, self.scale, self.hflip, gen)
                else:
                    x = resize_center_crop(x, size)
                x = ((x - self.mean) / self.std).contiguous(memory_format=fmt)
                yield x, self._labels.index_select(0, sel)
            return
        ds = self.data
        ds.size, ds.train, ds.scale, ds.hflip, ds.seed, ds.epoch = (
            size,
            self.train,
            self.scale,
            self.hflip,
            self.seed,
            epoch,
        )
        loader = DataLoader(
            torch.utils.data.Subset(ds, idx.tolist()),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        try:
            for x, y in loader:
                x = x.to(self.device, non_blocking=True).float().div_(255)
                x = ((x - self.mean) / self.std).contiguous(memory_format=fmt)
                yield x, y.to(self.device, non_blocking=True)
        except DataError as exc:  # from a worker, DataLoader puts the worker's traceback before the message
            last = str(exc).strip().splitlines()[-1]
            raise DataError(last.removeprefix(f"{DataError.__module__}.{DataError.__name__}: ")) from None


# -- ready-made datasets -------------------------------------------------------------------------------
def digits(image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), upsampled to RGB ``image_size``.

    The train/validation split is stratified and fixed by ``seed``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 8 <= image_size <= 512:
        raise DataError(f"digits image size must be within 8..512, got {image_size}")
    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = images.clamp_(0, 1).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    tr, va = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=bunch.target)
    classes = [str(c) for c in bunch.target_names]
    train = TensorImages(images[tr], labels[tr], classes, name="digits-train")
    val = TensorImages(images[va], labels[va], classes, name="digits-val")
    mean = tuple(float(v) for v in train.images.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in train.images.std(dim=(0, 2, 3)))
    return DataSplits(
        f"digits{image_size}", train, val, mean=mean, std=std,  # type: ignore[arg-type]
        info={"image_size": image_size, "split_seed": seed, "val_fraction": val_fraction},
    )  # fmt: skip


def _check_layout(root: Path) -> None:
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise DataError(f"{root}: expected {part}/ with one folder per class (ImageNet layout)")


def image_folder(root: str | Path, name: str | None = None) -> DataSplits:
    """``root/train/<class>/*`` and ``root/val/<class>/*`` (the ImageNet layout)."""
    root = Path(root)
    _check_layout(root)
    train = FolderImages(root / "train")
    val = FolderImages(root / "val", classes=train.classes)
    name = name or Path(os.path.abspath(root)).name  # `--data .` is named after its folder; links are kept
    if not name:
        raise DataError(f"{root}: name the dataset (a folder at the file system's root has no name)")
    return DataSplits(name, train, val)


def check_data(spec: str) -> None:
    """Refuse a ``spec`` that :func:`load_data` would refuse without reading a single image: neither
    ``digits`` nor a directory with ``train/`` and ``val/`` (a quick check before opening a store)."""
    if spec == "digits":
        return
    path = Path(spec)
    if not path.exists():
        raise DataError(f"unknown dataset {spec!r}: give 'digits' or a directory with train/ and val/")
    _check_layout(path)


def load_data(spec: str, image_size: int = 32, seed: int = 0) -> DataSplits:
    """``digits`` (built in, at ``image_size``) or a directory in ImageNet layout."""
    if spec == "digits":
        return digits(image_size=image_size, seed=seed)
    check_data(spec)
    return image_folder(spec)
