"""Import torchax beside a PyTorch that dropped the named-tensor (``Dimname``) operator overloads.

torchax (0.0.13) builds tables keyed by ``torch.ops.aten.<op>.<overload>`` at import time: its
autocast policy (``torchax/amp.py``) and, on first use, its decomposition list
(``torchax/decompositions.py``). Recent PyTorch releases no longer define the named-tensor
overloads those tables mention (``aten.prod.dim_Dimname``, ``aten.index_copy.dimname``,
``aten.all.dimname``, ...), so the bare attribute lookup raises ``AttributeError`` and torchax
cannot be imported or instantiated.

:func:`install_overload_placeholders` sets, for each such overload that this PyTorch lacks, a
placeholder object on the operator's overload packet. The placeholders are inert dictionary keys:
no tensor operation ever dispatches to them (the overloads do not exist, so nothing can call
them), and ``torch._decomp.get_decompositions`` skips them because they are not operators.
Overloads that exist are never touched, so the shim does nothing on a PyTorch that still has them.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

# (operator, overload) pairs torchax 0.0.13 names and PyTorch 2.13 no longer defines.
REMOVED_OVERLOADS: tuple[tuple[str, str], ...] = (
    ("all", "dimname"),
    ("all", "dimname_out"),
    ("index_add", "dimname"),
    ("index_copy", "dimname"),
    ("index_copy_", "dimname"),
    ("index_fill", "Dimname_Scalar"),
    ("index_fill", "Dimname_Tensor"),
    ("index_fill_", "Dimname_Scalar"),
    ("index_fill_", "Dimname_Tensor"),
    ("norm", "names_ScalarOpt_dim"),
    ("norm", "names_ScalarOpt_dim_dtype"),
    ("norm", "names_dtype_out"),
    ("norm", "names_out"),
    ("prod", "dim_Dimname"),
    ("std", "correction_names"),
    ("std", "correction_names_out"),
    ("std", "names_dim"),
    ("std", "names_out"),
    ("std_mean", "correction_names"),
    ("std_mean", "names_dim"),
    ("unbind", "Dimname"),
)


class RemovedOverload:
    """Stand-in for an operator overload this PyTorch does not define (never dispatched to)."""

    def __init__(self, qualified_name: str) -> None:
        self.qualified_name = qualified_name

    def __repr__(self) -> str:
        return f"<removed overload aten.{self.qualified_name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"aten.{self.qualified_name} does not exist in this PyTorch")


def install_overload_placeholders() -> list[str]:
    """Register placeholders for the missing overloads of :data:`REMOVED_OVERLOADS`; return their names."""
    import torch

    added = []
    for op, overload in REMOVED_OVERLOADS:
        try:
            packet = getattr(torch.ops.aten, op)
        except AttributeError:
            continue  # the whole operator is gone; torchax does not reference it as a packet
        try:
            getattr(packet, overload)
        except AttributeError:
            setattr(packet, overload, RemovedOverload(f"{op}.{overload}"))
            added.append(f"{op}.{overload}")
    if added:
        log.debug("placeholders for overloads missing from torch %s: %s", torch.__version__, ", ".join(added))
    return added


def import_torchax() -> ModuleType:
    """``import torchax`` with the placeholders in place, its default environment created.

    Importing torchax renames PyTorch's ``privateuse1`` backend to ``jax`` and disables the
    multi-head-attention fast path, process-wide; neither affects the networks measured here.
    """
    install_overload_placeholders()
    import torchax

    torchax.default_env()  # builds the op tables (and imports torchax.decompositions) now
    return torchax
