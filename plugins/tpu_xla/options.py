"""Backend options of the ``tpu/*`` targets, read from ``MeasureSettings.options``.

* ``dtype``: ``"float32"`` (default) or ``"bfloat16"`` (weights, activations and input in bf16).
* ``devices``: ``1`` (default: one device, i.e. one TPU core on v2/v3 and one chip from v4 on, as
  the paper measured) or ``"all"`` (every local device; the throughput batch is split across them
  and must divide evenly). Latency always runs at batch 1 on one device.

Both are part of a result's identity in the form :func:`canonical_options` gives them (``bf16``,
``BFLOAT16`` and ``bfloat16`` key alike, and so do ``dtype=float32`` and no ``dtype``).
"""

from __future__ import annotations

from dataclasses import dataclass

from accelnas.core.errors import AccelnasError
from accelnas.core.records import MeasureSettings

OPTION_DTYPE = "dtype"
OPTION_DEVICES = "devices"
OPTION_KEYS = (OPTION_DTYPE, OPTION_DEVICES)
DTYPES = ("float32", "bfloat16")
_DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "f32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


class XlaOptionError(AccelnasError, ValueError):
    """A ``tpu/*`` backend option has an invalid value."""


@dataclass(frozen=True)
class XlaOptions:
    dtype: str = "float32"
    all_devices: bool = False

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    def canonical(self) -> dict[str, str]:
        """The options in one spelling, defaults left out: what results are keyed by."""
        values = {}
        if self.dtype != XlaOptions.dtype:
            values[OPTION_DTYPE] = self.dtype
        if self.all_devices:
            values[OPTION_DEVICES] = "all"
        return values


def parse_options(settings: MeasureSettings) -> XlaOptions:
    """Validated :class:`XlaOptions` from ``settings.options``."""
    raw_dtype = str(settings.option(OPTION_DTYPE, "float32")).strip().lower()
    if raw_dtype not in _DTYPE_ALIASES:
        raise XlaOptionError(f"option dtype={raw_dtype!r} is not one of {', '.join(DTYPES)}")
    raw_devices = settings.option(OPTION_DEVICES, 1)
    text = str(raw_devices).strip().lower()
    if text not in ("1", "all"):
        raise XlaOptionError(f"option devices={raw_devices!r} must be 1 or 'all'")
    return XlaOptions(dtype=_DTYPE_ALIASES[raw_dtype], all_devices=text == "all")


def canonical_options(settings: MeasureSettings) -> dict[str, str]:
    """Validate ``settings.options`` and give them as results are keyed by (``Target.check_values``)."""
    return parse_options(settings).canonical()


def split_batch(batch: int, devices: int) -> int:
    """Per-device batch when ``batch`` is spread over ``devices``; it must divide evenly."""
    if batch % devices:
        raise XlaOptionError(f"batch {batch} does not split evenly over {devices} devices (option devices=all)")
    return batch // devices
