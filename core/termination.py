"""SIGTERM, as schedulers send on preemption, stops a command the way Ctrl-C does.

:func:`catch_sigterm` turns SIGTERM into :class:`Terminated` (a ``KeyboardInterrupt``), so clean-up
code runs and the command says what is stored. A watchdog thread, woken through the signal wakeup
fd, ends the process a grace period later should the command not have ended (a plugin blocked in
native code, where Python runs no handler, or one that swallows the interrupt). Forked workers
neither keep the handler nor wake the parent's watchdog.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler preempting the job), raised like Ctrl-C so that clean-up code runs."""


TERM_GRACE_ENV = "ACCELNAS_TERM_GRACE"  # seconds a SIGTERM'd command has to clean up (default 20)


_RECEIVED = threading.Event()  # a SIGTERM reached the running command
_AT_HARD_EXIT: list[Callable[[], None]] = []  # run by the watchdog (its own thread) before it ends the process


def at_hard_exit(callback: Callable[[], None]) -> Callable[[], None]:
    """Have the watchdog run ``callback`` (from its thread; best effort) before it ends a process that
    did not stop within the grace period, whose ``finally`` blocks never run; returns the undo."""
    _AT_HARD_EXIT.append(callback)

    def forget() -> None:
        with contextlib.suppress(ValueError):
            _AT_HARD_EXIT.remove(callback)

    return forget


def _terminate(signum: int, frame: Any) -> None:
    _RECEIVED.set()
    raise Terminated()


def was_terminated(exc: BaseException) -> bool:
    """Whether an interrupt comes of SIGTERM: a :class:`Terminated`, or the plain ``KeyboardInterrupt``
    that a library raised in its place (Ray's ``ray.wait`` swallows the handler's exception)."""
    return isinstance(exc, Terminated) or _RECEIVED.is_set()


def _watchdog(fd: int, grace: float, done: threading.Event) -> None:
    """End the process ``grace`` seconds after a SIGTERM unless the command ended by then (a plugin
    stuck in native code, where Python runs no handler, or one that swallows the interrupt)."""
    while data := os.read(fd, 64):
        if signal.SIGTERM in data and not done.wait(grace):
            for callback in list(_AT_HARD_EXIT):
                with contextlib.suppress(Exception):
                    callback()
            os._exit(143)
    os.close(fd)


_TERM_PIPE: list[int] = []  # the write end of the running command's SIGTERM pipe, if any


def _after_fork_in_child() -> None:
    """A forked child (a multiprocessing or DataLoader worker) must not wake the parent's watchdog, and
    dies of SIGTERM as such workers expect."""
    _RECEIVED.clear()
    while _TERM_PIPE:
        with contextlib.suppress(OSError):
            os.close(_TERM_PIPE.pop())
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
            if signal.getsignal(signal.SIGTERM) is _terminate:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def catch_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into :class:`Terminated` where nothing else handles it; returns the undo."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return lambda: None
    grace = float(os.environ.get(TERM_GRACE_ENV) or 20.0)
    _RECEIVED.clear()
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write)
    _TERM_PIPE.append(write)
    signal.signal(signal.SIGTERM, _terminate)
    done = threading.Event()
    threading.Thread(target=_watchdog, args=(read, grace, done), daemon=True, name="accelnas-sigterm").start()

    def undo() -> None:
        done.set()  # the command ended: a watchdog counting down stands down
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.set_wakeup_fd(previous)
        if write in _TERM_PIPE:
            _TERM_PIPE.remove(write)
        os.close(write)  # the watchdog reads end-of-file and stops

    return undo
