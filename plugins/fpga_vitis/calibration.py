"""Calibration images for quantization: a user's ``.npy`` file or seeded random-normal images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from accelnas.core.records import MeasureSettings
from accelnas.plugins.fpga_vitis.errors import CalibrationError

ENV_CALIBRATION = "ACCELNAS_FPGA_CALIBRATION"
OPTION_CALIBRATION = "fpga_calibration"
OPTION_COUNT = "fpga_calibration_images"
DEFAULT_COUNT = 16


def check_calibration_file(path: Path, input_size: int) -> None:
    """Cheap check of a calibration file before a campaign: it exists and holds NCHW numbers (header only)."""
    load_calibration(path, input_size, header_only=True)


def load_calibration(path: Path, input_size: int, *, header_only: bool = False) -> np.ndarray:
    """Images of shape (N, 3, input_size, input_size) from a ``.npy`` file (no pickled objects)."""
    try:
        images = np.load(Path(path).expanduser(), allow_pickle=False, mmap_mode="r" if header_only else None)
    except FileNotFoundError:
        raise CalibrationError(f"calibration file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"calibration file {path} is not a numeric .npy array: {exc}") from None
    expected = (3, input_size, input_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] < 1:
        raise CalibrationError(
            f"calibration file {path} holds shape {tuple(images.shape)}; expected (N, {', '.join(map(str, expected))})"
            " images in NCHW layout"
        )
    if not np.issubdtype(images.dtype, np.number):
        raise CalibrationError(f"calibration file {path} holds {images.dtype} values, not numbers")
    if header_only:
        return images
    images = images.astype(np.float32, copy=False)
    if not np.isfinite(images).all():
        raise CalibrationError(f"calibration file {path} contains NaN or infinite values")
    return np.ascontiguousarray(images)


def random_calibration(input_size: int, count: int = DEFAULT_COUNT, seed: int = 0) -> np.ndarray:
    """``count`` standard-normal images (the distribution BatchNorm was calibrated on)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, input_size, input_size), dtype=np.float32)


def calibration_count(settings: MeasureSettings) -> int:
    """The number of random calibration images asked for; raise :class:`CalibrationError` if not positive."""
    count = settings.option(OPTION_COUNT, DEFAULT_COUNT)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise CalibrationError(f"option {OPTION_COUNT} must be a positive integer, got {count!r}")
    return count


def calibration_source(settings: MeasureSettings) -> str | None:
    """The calibration file named by the option or ``ACCELNAS_FPGA_CALIBRATION``; None for random images."""
    return settings.option(OPTION_CALIBRATION) or os.environ.get(ENV_CALIBRATION) or None


def calibration_for(settings: MeasureSettings) -> tuple[np.ndarray, dict[str, Any]]:
    """The calibration images a measurement asks for, and a description for provenance."""
    source = calibration_source(settings)
    if source:
        images = load_calibration(Path(source), settings.input_size)
        return images, {"source": str(source), "count": int(images.shape[0])}
    count = calibration_count(settings)
    return random_calibration(settings.input_size, count), {"source": "random-normal, seed 0", "count": count}
