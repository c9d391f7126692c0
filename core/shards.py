"""Deterministic partition of a campaign's architectures into shards, for scheduler job arrays.

``--shard i/n`` keeps the architectures whose id hashes to ``i`` modulo ``n`` (0 <= i < n). The
partition depends only on each architecture's id, so it is the same on every machine, in every
order, and for any list the shards are disjoint and together cover it. Each array job writes its own
store; ``accelnas merge`` joins them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from accelnas.core.errors import AccelnasError
from accelnas.core.space import Architecture

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(AccelnasError):
    """A malformed ``--shard`` value."""

    exit_code = 2


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> (2, 8); raises :class:`ShardError` unless 0 <= i < n."""
    match = _SHARD.match(text or "")
    if not match:
        raise ShardError(f"--shard must look like i/n (e.g. 0/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"--shard {text}: need 0 <= i < n")
    return index, count


def shard_of(arch: Architecture, count: int) -> int:
    """The shard (0..count-1) that owns ``arch``."""
    digest = hashlib.sha256(arch.id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(archs: Sequence[Architecture], index: int, count: int) -> list[Architecture]:
    """The architectures of shard ``index`` of ``count``, in their original order."""
    return [a for a in archs if shard_of(a, count) == index]
