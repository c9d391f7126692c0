"""The hardware a result was measured on, read from its provenance, and mixes of it under one settings key.

A settings key says how a model was measured (input size, batch, threads as asked, options), not on
which machine: ``threads`` unset keys every machine's default alike, and shards of one campaign may run
on different machine types. :func:`mixed_hardware` finds the (target, settings key) groups whose
timing results come from more than one kind of hardware, so that export, ``surrogates build`` and
``merge`` can say so.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from accelnas.core.errors import StoreError

if TYPE_CHECKING:
    from accelnas.core.store import Store

# metrics whose value depends on the machine (an accuracy does not)
TIMED_METRICS = ("throughput", "latency")
UNKNOWN = "unknown hardware"


def hardware_of(provenance: Mapping[str, Any] | None) -> str:
    """The hardware a result was measured on: the accelerator's identity where the plugin gives one
    (GPU name, TPU device kind, FPGA DPU), else the CPU model and the thread count used."""
    if not isinstance(provenance, Mapping):
        return UNKNOWN
    if provenance.get("gpu_name"):
        return str(provenance["gpu_name"])
    if provenance.get("device_kind") and provenance.get("on_tpu", True):
        return str(provenance["device_kind"])
    board = provenance.get("board")
    dpu = board.get("dpu") if isinstance(board, Mapping) else None
    if not dpu:
        identity = provenance.get("board_identity")
        query = identity.get("xdputil_query") if isinstance(identity, Mapping) else None
        arch = query.get("dpu_arch") if isinstance(query, Mapping) else None
        dpu = ", ".join(map(str, arch)) if isinstance(arch, list) else arch
    if dpu:
        return f"DPU {dpu}"
    cpu = str(provenance.get("cpu_model") or "unknown CPU")
    threads = provenance.get("threads")
    if isinstance(threads, int) and not isinstance(threads, bool):
        return f"{cpu}, {threads} thread{'' if threads == 1 else 's'}"
    return cpu


def mixed_hardware(rows: Iterable[tuple[str, str, str, Mapping[str, Any] | None]]) -> list[str]:
    """One message per (target, settings key) whose timing rows come from more than one kind of hardware.

    ``rows``: (target, settings_key, metric, provenance) of measured results.
    """
    counts: dict[tuple[str, str], Counter[str]] = {}
    for target, key, metric, provenance in rows:
        if metric in TIMED_METRICS:
            counts.setdefault((str(target), str(key)), Counter())[hardware_of(provenance)] += 1
    messages = []
    for (target, key), kinds in sorted(counts.items()):
        if len(kinds) > 1:
            listed = "; ".join(f"{name}: {n} rows" for name, n in kinds.most_common())
            messages.append(
                f"{target} [{key[:8]}]: measured on {len(kinds)} kinds of hardware ({listed}); "
                "pass --threads N and measure on one kind of machine"
            )
    return messages


def mixed_hardware_in(store: Store) -> list[str]:
    """:func:`mixed_hardware` of the measured timing results in ``store``."""
    query = (
        "SELECT target, settings_key, metric, provenance FROM results "
        f"WHERE status = 'ok' AND metric IN ({', '.join('?' for _ in TIMED_METRICS)})"
    )
    try:
        rows = [(r[0], r[1], r[2], _decoded(r[3])) for r in store.conn.execute(query, TIMED_METRICS)]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"campaign store {store.path}: {exc}") from None
    return mixed_hardware(rows)


def _decoded(text: str | None) -> Mapping[str, Any] | None:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
