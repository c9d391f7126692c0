"""Human-readable progress lines for campaigns (to stderr, one line per result)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from accelnas.core.campaign import Progress


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# what the line of an architecture left unmeasured says, by event status
_NOT_MEASURED = {"skipped": "already stored", "kept-failure": "stored failure, not retried"}


class ProgressPrinter:
    """Callable for :func:`~accelnas.core.campaign.run_campaign` that prints progress and an ETA."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.worked_archs: set[str] = set()
        self.skipped = 0

    def __call__(self, event: Progress) -> None:
        width = len(str(event.total))
        head = f"[{event.index:>{width}}/{event.total}] {event.arch.id}"
        if note := _NOT_MEASURED.get(event.status):
            self.skipped += 1
            print(f"{head}  {note}", file=self.stream, flush=True)
            return
        self.worked_archs.add(event.arch.id)
        elapsed = time.perf_counter() - self.start
        # architectures left to measure: the campaign reports every stored one before it measures any
        remaining = max(0, event.total - self.skipped - len(self.worked_archs))
        eta = elapsed / len(self.worked_archs) * remaining
        if event.status == "ok" and event.measurement is not None:
            m = event.measurement
            flag = "" if m.precision_reached else " (precision not reached)"
            body = f"{event.metric:<10} {m.mean:10.2f} {m.unit:<8} ±{100 * m.relative_ci:.1f}%{flag}"
        else:
            body = f"{event.metric:<10} FAILED: {event.error}"
        print(f"{head}  {body}  [{_duration(event.elapsed)}, eta {_duration(eta)}]", file=self.stream, flush=True)
