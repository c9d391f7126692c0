"""RMSprop as TensorFlow 1 computes it, which MnasNet and EfficientNet were trained with.

It differs from ``torch.optim.RMSprop`` in two places that matter with EfficientNet's ε = 1e-3: the
mean square starts at 1 (not 0), and ε is added under the square root (not after it). The learning
rate enters the momentum buffer, as in TensorFlow: ``buf = momentum * buf + lr * g / sqrt(ms + ε)``,
then ``p -= buf``. Weight decay is added to the gradient (an L2 term of the loss, as the reference
implementations add it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class RMSpropTF(torch.optim.Optimizer):
    """TensorFlow-style RMSprop: ``alpha`` is TF's ``decay``, ``eps`` its ``epsilon``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.016,
        alpha: float = 0.9,
        eps: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or not 0 <= alpha < 1 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid RMSpropTF settings: lr={lr}, alpha={alpha}, eps={eps}, momentum={momentum}")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum,
                                  "weight_decay": weight_decay})  # fmt: skip

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)
                    state["momentum_buffer"] = torch.zeros_like(p)
                square_avg = state["square_avg"]
                square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
                step = grad / square_avg.add(group["eps"]).sqrt_()
                if group["momentum"] > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(group["momentum"]).add_(step, alpha=group["lr"])
                    p.sub_(buf)
                else:
                    p.sub_(step, alpha=group["lr"])
        return loss
