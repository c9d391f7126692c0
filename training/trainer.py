"""Train one architecture under a recipe and measure top-1/top-5, wall time and device-hours.

Single process or one rank of a torchrun/DDP job (see :mod:`accelnas.training.distributed`): the
model is wrapped in ``DistributedDataParallel`` when the world is larger than one, each rank trains
on its shard, and evaluation sums correct counts over ranks. Mixed precision is bf16 autocast on CPU
and fp16 autocast with loss scaling on CUDA; ``channels_last``, an EMA of the weights and progressive
resizing follow the recipe.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from accelnas.core.errors import AccelnasError
from accelnas.core.model import build_model
from accelnas.core.space import Architecture
from accelnas.training.data import DataSplits, Loader, subset_indices
from accelnas.training.distributed import DistContext, all_reduce_max, all_reduce_sum
from accelnas.training.recipe import Recipe

log = logging.getLogger(__name__)


class TrainingError(AccelnasError):
    """Training diverged or could not run."""


@dataclass
class TrainResult:
    """What training one architecture produced (accuracies in percent)."""

    top1: float
    top5: float
    val_loss: float
    wall_seconds: float  # training + evaluation, slowest rank
    cpu_seconds: float  # CPU time of each rank (all its threads and its data-loading workers), summed
    train_seconds: float
    devices: int
    device: str
    epochs: int
    images_seen: int  # training images processed, all ranks
    final_train_loss: float
    ema: bool
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def device_hours(self) -> float:
        return self.wall_seconds * self.devices / 3600.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "device_hours": self.device_hours}


def lr_at(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate of optimiser ``step`` (0-based): linear warm-up, then cosine, step or constant."""
    peak = recipe.peak_lr
    total = recipe.epochs * steps_per_epoch
    warm = round(recipe.warmup_epochs * steps_per_epoch)
    if step < warm:
        return peak * (step + 1) / warm
    if recipe.schedule == "constant":
        return peak
    if recipe.schedule == "step":
        return peak * recipe.step_gamma ** math.floor(step / steps_per_epoch / recipe.step_every)
    progress = (step - warm) / max(1, total - warm)
    floor = peak * recipe.min_lr_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimiser; no weight decay on BatchNorm and bias parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.peak_lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    if recipe.optimizer == "rmsprop":  # EfficientNet/MnasNet style: decay 0.9, eps 1e-3, TensorFlow's semantics
        from accelnas.training.rmsprop_tf import RMSpropTF

        return RMSpropTF(groups, lr=recipe.peak_lr, alpha=0.9, eps=1e-3, momentum=recipe.momentum)
    return torch.optim.AdamW(groups, lr=recipe.peak_lr)


def _autocast(recipe: Recipe, device: torch.device):
    if not recipe.mixed_precision:
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Loader, size: int, ctx: DistContext, recipe: Recipe
) -> tuple[float, float, float]:
    """Top-1 %, top-5 % and mean loss over the whole split (summed over ranks)."""
    model.eval()
    correct1 = correct5 = loss_sum = 0.0
    count = 0
    for x, y in loader.epoch(0, size):
        with _autocast(recipe, ctx.device):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top.eq(y.unsqueeze(1))
        correct1 += float(hit[:, 0].sum())
        correct5 += float(hit.any(dim=1).sum())
        count += int(y.shape[0])
    c1, c5, ls, n = all_reduce_sum([correct1, correct5, loss_sum, float(count)], ctx)
    if n == 0:
        raise TrainingError("the validation set is empty")
    return 100.0 * c1 / n, 100.0 * c5 / n, ls / n


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Loader, size: int, images: int, ctx: DistContext,
                          recipe: Recipe) -> int:  # fmt: skip
    """ "Precise BN": replace BatchNorm running statistics by their average over ``images`` training images.

    The running averages kept during a short training lag the quickly changing weights, so a proxy
    evaluated with them can be far below what its weights reach; re-estimating them with the final
    weights (un-augmented images, evaluation resolution; averaged over ranks) removes that lag.
    Returns the number of images used on this rank.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or images <= 0:
        return 0
    saved = [m.momentum for m in bns]
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    used = 0
    for x, _ in loader.epoch(0, size):
        if x.shape[0] < 2:  # a last batch of one image: weighed like a full one, and no batch at 1 x 1
            continue
        with _autocast(recipe, ctx.device):
            model(x)
        used += int(x.shape[0])
        if used * ctx.world_size >= images:
            break
    # each rank's statistics weighed by its images: a rank that used none (its shard's only batch held one
    # image) has reset ones; where no rank used any, the statistics from training stay
    (total,) = all_reduce_sum([float(used)], ctx)
    for m, momentum, (mean, var) in zip(bns, saved, before, strict=True):
        m.momentum = momentum
        for buf, old in ((m.running_mean, mean), (m.running_var, var)):
            if ctx.distributed:
                buf.mul_(used)
                torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM)
                buf.div_(max(total, 1.0))
            if total == 0:
                buf.copy_(old)
    return used


def train(
    arch: Architecture,
    recipe: Recipe,
    data: DataSplits,
    *,
    ctx: DistContext | None = None,
    workers: int = 0,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``arch`` from scratch under ``recipe`` on ``data``; evaluate on the validation split."""
    ctx = ctx or DistContext()
    device = ctx.device
    torch.manual_seed(recipe.seed)
    start = time.perf_counter()
    cpu_start = process_cpu_seconds()
    train_idx = subset_indices(data.train.targets(), recipe.data_fraction, recipe.seed)
    common = {"mean": data.mean, "std": data.std, "rank": ctx.rank, "world_size": ctx.world_size,
              "device": device, "workers": workers, "channels_last": recipe.channels_last}  # fmt: skip
    per_rank_batch = max(1, recipe.batch_size // ctx.world_size)
    train_loader = Loader(
        data.train, batch_size=per_rank_batch, train=True, indices=train_idx, seed=recipe.seed,
        scale=recipe.crop_scale, hflip=recipe.hflip, **common,
    )  # fmt: skip
    val_loader = Loader(data.val, batch_size=max(per_rank_batch, 64), train=False, **common)

    model = build_model(arch, num_classes=data.num_classes, dropout=recipe.dropout).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = None
    if recipe.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
    opt = make_optimizer(recipe, net)
    scaler = torch.amp.GradScaler("cuda", enabled=recipe.mixed_precision and device.type == "cuda")
    steps = len(train_loader)
    history: list[dict[str, float]] = []
    step = 0
    seen = 0
    loss_value = float("nan")
    for epoch in range(recipe.epochs):
        size = recipe.size_at(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum = 0.0
        epoch_images = 0
        for x, y in train_loader.epoch(epoch, size):
            for group in opt.param_groups:
                group["lr"] = lr_at(recipe, step, steps)
            with _autocast(recipe, device):
                loss = F.cross_entropy(net(x), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            loss_value = float(loss.detach())
            diverged = not math.isfinite(loss_value)
            if ctx.distributed:  # every rank must stop on the same step, or the next collective hangs
                diverged = all_reduce_max(float(diverged), ctx) > 0
            if diverged:
                raise TrainingError(
                    f"{arch.id}: training loss became non-finite in epoch {epoch + 1} (rank {ctx.rank}: {loss_value})"
                )
            loss_sum += loss_value * int(y.shape[0])
            epoch_images += int(y.shape[0])
            step += 1
            seen += int(y.shape[0])
        epoch_loss = loss_sum / max(1, epoch_images)  # the mean over this rank's images, not over batches
        row = {"epoch": epoch + 1, "size": size, "train_loss": epoch_loss,
               "lr": lr_at(recipe, max(0, step - 1), steps), "seconds": time.perf_counter() - t0}  # fmt: skip
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        log.info("%s epoch %d/%d size %d loss %.4f", arch.id, epoch + 1, recipe.epochs, size, row["train_loss"])
    train_seconds = time.perf_counter() - start
    scored = ema.module if ema is not None else model
    if recipe.bn_recalibration_images > 0:
        shuffled = np.random.default_rng(recipe.seed).permutation(train_idx)  # class-mixed, un-augmented images
        calib = Loader(data.train, batch_size=max(per_rank_batch, 64), train=False, indices=shuffled, **common)
        recalibrate_batchnorm(scored, calib, recipe.final_eval_resolution, recipe.bn_recalibration_images, ctx, recipe)
    top1, top5, val_loss = evaluate(scored, val_loader, recipe.final_eval_resolution, ctx, recipe)
    wall = all_reduce_max(time.perf_counter() - start, ctx)
    cpu = all_reduce_sum([process_cpu_seconds() - cpu_start], ctx)[0]
    images = int(all_reduce_sum([float(seen)], ctx)[0])
    return TrainResult(
        top1=top1, top5=top5, val_loss=val_loss, wall_seconds=wall, cpu_seconds=cpu, train_seconds=train_seconds,
        devices=ctx.world_size, device=_device_name(device), epochs=recipe.epochs, images_seen=images,
        final_train_loss=history[-1]["train_loss"] if history else loss_value, ema=ema is not None, history=history,
    )  # fmt: skip


def process_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (DataLoader workers end with
    each pass over the data), so a run's CPU cost does not depend on how many workers decode images."""
    try:
        import resource
    except ImportError:  # Windows: this process's own time
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from accelnas.core.provenance import cpu_model

    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"
