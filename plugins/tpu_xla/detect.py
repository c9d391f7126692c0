"""Cheap TPU detection (no framework import), the CPU-platform switch and the paper's batch sizes.

Listing targets must stay fast and must not grab a TPU (a process that initialises libtpu holds
the chips), so presence is read from the PCI bus as JAX itself does (Google vendor id and the TPU
device ids). The exact device kind (``TPU v3``) is only known once a framework opens the device;
the measure hooks then use it to pick the paper's batch size.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from accelnas.core.errors import AccelnasError

ALLOW_CPU_ENV = "ACCELNAS_TPU_ALLOW_CPU"
# a TPU VM's metadata server names its accelerator type (v3-8): where JAX and torch_xla read it too
METADATA_URL = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/accelerator-type"
METADATA_TIMEOUT_S = 0.5
PCI_ROOT = Path("/sys/bus/pci/devices")
GOOGLE_PCI_VENDOR = "0x1ae0"
# PCI device id -> device kind as the frameworks name it; v2 and v3 share one id.
TPU_PCI_DEVICES: dict[str, str] = {
    "0x0027": "TPU v2 or v3",
    "0x005e": "TPU v4",
    "0x0062": "TPU v5",  # v5p, as the runtime names it
    "0x0063": "TPU v5 lite",
    "0x006f": "TPU v6 lite",
    "0x0076": "TPU7x",
}
V2_BATCH = 64  # the paper's throughput batch on TPUv2 (one core)
TPU_BATCH = 128  # the paper's batch on TPUv3; used for newer TPUs too, which the paper did not measure
CPU_BATCH = 8  # XLA's CPU platform: a small batch that keeps CI and local checks quick


class XlaPlatformError(AccelnasError):
    """No TPU is attached and running on XLA's CPU platform was not allowed."""

    exit_code = 3


@dataclass(frozen=True)
class TpuHost:
    """TPU chips seen on the PCI bus of this machine."""

    chips: int
    kind: str | None  # "TPU v4", or "TPU v2 or v3" when the PCI id cannot tell them apart

    @property
    def present(self) -> bool:
        return self.chips > 0


def scan_pci(root: Path | None = None) -> TpuHost:
    """Count Google TPU chips under ``root`` (default :data:`PCI_ROOT`, ``/sys/bus/pci/devices``)."""
    chips, kind = 0, None
    root = PCI_ROOT if root is None else root
    try:
        vendors = sorted(root.glob("*/vendor"))
    except OSError:
        return TpuHost(0, None)
    for vendor in vendors:
        try:
            if vendor.read_text().strip() != GOOGLE_PCI_VENDOR:
                continue
            device = (vendor.parent / "device").read_text().strip()
        except OSError:
            continue
        if device in TPU_PCI_DEVICES:
            chips += 1
            kind = TPU_PCI_DEVICES[device]
    if kind == TPU_PCI_DEVICES["0x0027"]:
        kind = _kind_from_accelerator_type() or kind
    return TpuHost(chips, kind)


def _kind_from_accelerator_type() -> str | None:
    """``TPU v2``/``TPU v3`` from ``TPU_ACCELERATOR_TYPE``/``ACCELERATOR_TYPE`` (e.g. ``v3-8``), else
    from the TPU VM's metadata server, which sets no such variable in a process's environment."""
    value = os.environ.get("TPU_ACCELERATOR_TYPE") or os.environ.get("ACCELERATOR_TYPE") or _metadata_accelerator_type()
    version = (value or "").strip().lower().split("-", 1)[0]
    return {"v2": "TPU v2", "v3": "TPU v3"}.get(version)


@functools.cache
def _metadata_accelerator_type() -> str | None:
    """The metadata server's ``accelerator-type`` (``v2-8``), or None where none answers in time."""
    request = urllib.request.Request(METADATA_URL, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=METADATA_TIMEOUT_S) as answer:
            return answer.read(64).decode("ascii", "replace")
    except (OSError, ValueError):  # no metadata server (not a TPU VM), a timeout, an HTTP error
        return None


def allow_cpu() -> bool:
    """Whether ``ACCELNAS_TPU_ALLOW_CPU`` lets the ``tpu/*`` targets run on XLA's CPU platform."""
    return os.environ.get(ALLOW_CPU_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def paper_batch(device_kind: str | None) -> int:
    """Throughput batch by device kind: 64 on TPU v2, 128 on v3 and newer TPUs, a small one on CPU."""
    kind = (device_kind or "").lower()
    if "tpu" not in kind:
        return CPU_BATCH
    if kind.startswith("tpu v2") and "or" not in kind:
        return V2_BATCH
    return TPU_BATCH


def no_tpu_reason() -> str:
    return f"no TPU attached (no Google TPU on the PCI bus); set {ALLOW_CPU_ENV}=1 to run on XLA's CPU platform"


def require_platform(platform: str) -> None:
    """Raise unless ``platform`` is a TPU or the CPU platform was allowed."""
    if platform != "tpu" and not allow_cpu():
        raise XlaPlatformError(f"no TPU found (XLA platform: {platform}); set {ALLOW_CPU_ENV}=1 to run there")
