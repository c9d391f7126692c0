"""torchrun / DDP plumbing: process-group set-up from the environment, reductions, rank-0 decisions.

Under ``torchrun --nproc-per-node N accelnas train ...`` every process reads ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; the group uses NCCL when CUDA is present and Gloo otherwise (so the same code
runs on CPUs, as the tests do with two Gloo processes). Without those variables training is a single
process and nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available (or asked for), ``cuda:N`` as asked, else the CPU.

    Only the CPU and CUDA devices are trained on; anything else, or a CUDA device torch does not see,
    is a one-line error before any work.
    """
    from accelnas.core.errors import InvalidArgumentError, TargetUnavailableError

    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise InvalidArgumentError(f"unknown device {requested!r} (auto, cpu, cuda or cuda:N)")
    if device.type == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise TargetUnavailableError(f"--device {requested} asked for, but torch sees no CUDA device")
    if device.index is None:
        return torch.device("cuda", local_rank % count)
    if device.index >= count:
        raise TargetUnavailableError(f"--device {requested} asked for, but torch sees {count} CUDA device(s)")
    return device


def init_from_env(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the process group described by torchrun's variables, or return the single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("rank %d/%d on %s (%s)", rank, world, dev, backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity for one process)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def all_reduce_max(value: float, ctx: DistContext) -> float:
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext, together: bool = True) -> None:
    """Leave the process group: ``together`` (the normal end) after a barrier, as a rank that tears down
    while another still talks to it makes gloo abort the other process; a rank stopped by an error
    leaves at once, since the others may wait in another collective, where a barrier would hang."""
    if ctx.distributed and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()
