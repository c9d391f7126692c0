"""The device support matrix: which DPUs the plugin knows, their defaults and their operator limits.

``fpga/zcu102`` and ``fpga/vck190`` follow the Accel-NASBench protocol (latency: one thread at the
DPU's smallest batch, 1 on ZCU102 and 6 on VCK190; throughput: 5 threads on ZCU102, 6 on VCK190).
``fpga/dpu`` is any DPU with an ``arch.json``, described entirely by its board entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from accelnas.core.space import Architecture

ARCH_ROOT = "/opt/vitis_ai/compiler/arch"


@dataclass(frozen=True)
class DpuFamily:
    """One DPU IP family: the boards it ships on and whether it runs hard-sigmoid (the SE gate)."""

    name: str
    platform: str
    hard_sigmoid: bool
    note: str = ""


# Alveo DPUs lack hard-sigmoid, so squeeze-excite gates fall back to the CPU there.
FAMILIES: dict[str, DpuFamily] = {
    f.name: f
    for f in (
        DpuFamily("DPUCZDX8G", "Zynq UltraScale+ MPSoC (ZCU102, ZCU104, Kria)", hard_sigmoid=True),
        DpuFamily("DPUCVDX8G", "Versal AI Core (VCK190)", hard_sigmoid=True),
        DpuFamily("DPUCV2DX8G", "Versal AI Edge (VEK280, V70)", hard_sigmoid=True),
        DpuFamily("DPUCAHX8H", "Alveo U50, U50LV, U55C, U280", hard_sigmoid=False, note="no hard-sigmoid"),
        DpuFamily("DPUCAHX8L", "Alveo U50, U280 (low latency)", hard_sigmoid=False, note="no hard-sigmoid"),
        DpuFamily("DPUCADF8H", "Alveo U200, U250", hard_sigmoid=False, note="no hard-sigmoid"),
    )
}


@dataclass(frozen=True)
class BoardProfile:
    """Defaults of a named target; a board entry may override each of them."""

    backend: str
    title: str
    dpu: str  # the DPU configuration the paper used
    arch: str | None  # arch.json inside the Vitis AI container
    batch: int  # the DPU's batch (the xmodel's batch after compilation)
    throughput_threads: int
    latency_threads: int = 1


PROFILES: dict[str, BoardProfile] = {
    "zcu102": BoardProfile(
        backend="zcu102",
        title="Xilinx ZCU102 (Zynq UltraScale+ MPSoC)",
        dpu="DPUCZDX8G_ISA1_B4096",
        arch=f"{ARCH_ROOT}/DPUCZDX8G/ZCU102/arch.json",
        batch=1,
        throughput_threads=5,
    ),
    "vck190": BoardProfile(
        backend="vck190",
        title="Xilinx VCK190 (Versal AI Core)",
        dpu="DPUCVDX8G_ISA3_C32B6",
        arch=f"{ARCH_ROOT}/DPUCVDX8G/VCK190/arch.json",
        batch=6,
        throughput_threads=6,
    ),
    "dpu": BoardProfile(
        backend="dpu",
        title="any Xilinx DPU with an arch.json (set 'arch' and 'dpu' in the board entry)",
        dpu="",
        arch=None,
        batch=1,
        throughput_threads=4,
    ),
}


def family_of(dpu: str) -> DpuFamily | None:
    """The family of a DPU name such as ``DPUCZDX8G_ISA1_B4096`` (None when unknown)."""
    prefix = dpu.split("_", 1)[0].upper()
    return FAMILIES.get(prefix)


def mapping_notes(architecture: Architecture, dpu: str) -> list[str]:
    """Why parts of ``architecture`` cannot run on ``dpu`` (empty when everything maps)."""
    family = family_of(dpu) if dpu else None
    if family is None or family.hard_sigmoid:
        return []
    se_stages = [i + 1 for i, s in enumerate(architecture.stages) if s.se]
    if not se_stages:
        return []
    stages = ", ".join(str(i) for i in se_stages)
    return [
        f"{family.name} ({family.platform}) has no hard-sigmoid: the squeeze-excite gates of stage(s) "
        f"{stages} run on the CPU, splitting the graph into several DPU subgraphs"
    ]


# what each timed job of xdputil's runner does besides running the DPU (Vitis AI 3.x's defaults, made
# explicit); part of the targets' measurement protocol, so results timed otherwise get other keys
XDPUTIL_JOB_ENV = {"COPY_INPUT": "1", "COPY_OUTPUT": "1", "ENABLE_MEMCMP": "0"}


_FINGERPRINT_SUFFIX = re.compile(r"_(?:0x)?([0-9A-Fa-f]{16})$")
_BATCH_TOKEN = re.compile(r"^C\d+B(\d+)$")  # DPUCVDX8G_ISA3_C32B6: 32 AIE cores, batch 6
BATCH_ONE_FAMILIES = ("DPUCZDX8G",)  # its B<n> (B4096, B1024, ...) is the parallelism, not a batch


def split_target(target: str) -> tuple[str, int | None]:
    """A compile target's DPU name and fingerprint: ``DPUCZDX8G_ISA1_B4096_0101000056010407`` gives
    (``DPUCZDX8G_ISA1_B4096``, 0x101000056010407); a name without the suffix has no fingerprint."""
    target = target.strip()
    m = _FINGERPRINT_SUFFIX.search(target)
    if m is None:
        return target, None
    return target[: m.start()], int(m.group(1), 16)


def parse_fingerprint(value: object) -> int | None:
    """A fingerprint (``0x101000056010407``, a hex string or an int) as an int; None for 0 or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value or None
    try:
        number = int(str(value).strip(), 16)
    except ValueError:
        return None
    return number or None


def name_tokens(name: str) -> list[str]:
    """The ``_``-separated tokens of a DPU name, upper case."""
    return [t for t in name.strip().upper().split("_") if t]


def same_dpu(a: str, b: str) -> bool:
    """Whether two DPU names agree token by token (one may name fewer tokens): ``B102`` is not ``B1024``."""
    ta, tb = name_tokens(split_target(a)[0]), name_tokens(split_target(b)[0])
    if not ta or not tb:
        return False
    n = min(len(ta), len(tb))
    return ta[:n] == tb[:n]


def target_batch(target: str | None) -> int | None:
    """The batch a DPU runs, from its name (``C32B6`` gives 6; DPUCZDX8G runs 1); None when the name does not say."""
    if not target:
        return None
    tokens = name_tokens(split_target(target)[0])
    for token in tokens[1:]:
        if m := _BATCH_TOKEN.match(token):
            return int(m.group(1))
    if tokens and tokens[0] in BATCH_ONE_FAMILIES:
        return 1
    return None
