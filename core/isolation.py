"""Measurements in a child process with a timeout, so a crash or hang in a vendor runtime fails one task.

:class:`IsolatedExecutor` keeps one warm child (``python -m accelnas.core.isolation``) that rebuilds
the plugin registry once and then measures task after task. Requests and outcomes travel as JSON
lines over pipes (the child's own stdout is redirected to stderr, so plugin prints cannot garble the
channel). When the child dies (segfault, ``abort()``, out-of-memory kill) or a task runs past its
timeout, the child is killed, the task's missing metrics are failed with the reason, and a fresh
child serves the next task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any

from accelnas.core.errors import AccelnasError
from accelnas.core.executors import (
    Executor,
    Outcome,
    Task,
    cached_registry,
    failed,
    measure_outcomes,
    registry_spec,
    settings_from_dict,
    settings_to_dict,
    worker_info,
)
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.workdirs import WorkFolder

log = logging.getLogger(__name__)

EXIT_GRACE = 5.0  # seconds a child whose channel closed has to end by itself before it is killed


def describe_exit(returncode: int | None) -> str:
    """'killed by SIGABRT' / 'exit code 3' for a child's return code."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class _Child:
    """One child process and the line-buffered JSON channel to it."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "accelnas.core.isolation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
        self._buffer = b""
        self.send(init)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, None on timeout; raises EOFError when the child is gone."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + max(0.0, timeout)
        while b"\n" not in self._buffer:
            wait = end - time.monotonic()
            if wait <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], wait)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self, grace: float = 0.0) -> str:
        """Kill the child, first giving it ``grace`` seconds to end by itself (one that closed its channel
        may still be exiting: its own cause of death, not SIGKILL, is the one to report)."""
        if grace and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process stuck in the kernel
            log.warning("child %d did not exit after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return describe_exit(self.proc.returncode)


class IsolatedExecutor(Executor):
    """Runs each task in a (reused) child process; ``timeout`` bounds one task, None means no bound."""

    name = "isolated"

    def __init__(self, timeout: float | None = 900.0, *, start_timeout: float = 300.0, label: str = "isolated") -> None:
        if timeout is not None and not 0 < timeout < float("inf"):
            raise ValueError(f"the task timeout must be a positive number of seconds, got {timeout}")
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.label = label
        self._queue: deque[Task] = deque()
        self._current: Task | None = None
        self._remaining: set[str] = set()
        self._sent = 0  # numbers the requests; an outcome carries its request's number
        self._deadline = 0.0
        self._child: _Child | None = None
        self._init: dict[str, Any] | None = None
        self._tmp: WorkFolder | None = None
        self._plugin: str | None = None  # the target's plugin, named in the failures of a killed child

    def open(self, registry: PluginRegistry, target: Target, settings: MeasureSettings) -> None:
        self._plugin = target.plugin
        self._tmp = WorkFolder("isolated-")
        self._init = {
            "tmp": self._tmp.name,
            "spec": [list(entry) for entry in registry_spec(registry)],
            "target": target.name,
            "settings": settings_to_dict(settings),
            "sys_path": list(sys.path),
            "label": self.label,
        }

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def _start_child(self) -> str | None:
        """Start a child and wait until it is ready; the error text when it died or timed out starting.

        An AccelnasError when the child reports that it cannot set up (a plugin that does not import
        there, an unknown target): every architecture would fail alike, so the campaign stops.
        """
        if self._init is None:
            raise RuntimeError("IsolatedExecutor.open() was not called")
        child = _Child(self._init)
        died = False
        try:
            message = child.receive(self.start_timeout)
        except EOFError:
            died = True
            message = {"kind": "init-failed", "error": f"child process died while starting ({child.kill(EXIT_GRACE)})"}
        if message is None:
            child.kill()
            return f"child process timed out while starting ({self.start_timeout:.0f} s)"
        if message.get("kind") != "ready":
            child.kill()
            if message.get("kind") == "init-failed" and not died:  # it would fail so for every architecture
                raise AccelnasError(f"the --isolate child process cannot measure: {message.get('error')}")
            return str(message.get("error"))
        self._child = child
        return None

    def _finish(self, reason: str) -> list[tuple[Task, Outcome]]:
        task = self._current
        assert task is not None
        where = worker_info(self.label)
        out = [(task, o) for o in failed(sorted(self._remaining), reason, self._plugin, **where)]
        self._current, self._remaining = None, set()
        return out

    def poll(self, timeout: float | None) -> list[tuple[Task, Outcome]]:
        if self._current is None:
            if not self._queue:
                return []
            task = self._queue.popleft()
            self._current, self._remaining = task, set(task.metrics)
            self._sent += 1
            if self._child is None:
                error = self._start_child()
                if error is not None:
                    return self._finish(error)
            request = {
                "kind": "task",
                "id": self._sent,
                "arch": task.arch.id,
                "metrics": list(dict.fromkeys(task.metrics)),
            }
            try:
                assert self._child is not None
                self._child.send(request)
            except (OSError, ValueError):  # the idle child died since the last task: start another
                how = self._child.kill() if self._child else "gone"
                log.warning("idle measurement child died (%s); starting a new one", how)
                self._child = None
                error = self._start_child()
                if error is not None:
                    return self._finish(error)
                assert self._child is not None
                self._child.send(request)
            self._deadline = time.monotonic() + self.timeout if self.timeout else float("inf")
        assert self._child is not None and self._current is not None
        now = time.monotonic()
        wait = self._deadline - now if timeout is None else min(timeout, self._deadline - now)
        try:
            message = self._child.receive(min(wait, 1e6))
        except (EOFError, OSError, ValueError):
            child, self._child = self._child, None
            how = child.kill(EXIT_GRACE)
            log.warning("measurement child of %s died (%s)", self._current.arch.id, how)
            return self._finish(f"child process died ({how}) while measuring")
        if message is None:
            if time.monotonic() >= self._deadline:
                child, self._child = self._child, None
                child.kill()
                log.warning("measurement of %s timed out; child killed", self._current.arch.id)
                return self._finish(f"measurement timed out after {self.timeout:g} s (child process killed)")
            return []
        if message.get("id") != self._sent:  # left over from an earlier task: never the current one's
            log.warning("ignoring an outcome of an earlier request (%s) from the measurement child", message.get("id"))
            return []
        outcome = Outcome.from_dict(message["outcome"])
        task = self._current
        if outcome.metric not in self._remaining:  # a metric already answered for this task
            log.warning("ignoring a second %s outcome for %s", outcome.metric, task.arch.id)
            return []
        self._remaining.discard(outcome.metric)
        if not self._remaining:
            self._current = None
        return [(task, outcome)]

    def cancel(self) -> None:
        self._queue.clear()
        if self._current is not None and self._child is not None:
            self._child.kill()
            self._child = None
        self._current, self._remaining = None, set()

    def close(self) -> None:
        self.cancel()
        if self._child is not None:
            try:
                self._child.send({"kind": "stop"})
                self._child.proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self._child.kill()
            self._child = None
        if self._tmp is not None:  # work files a killed child could not remove
            self._tmp.cleanup()
            self._tmp = None


def _serve() -> None:
    """The child's loop: read requests on stdin, write outcomes as JSON lines on the saved stdout."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a plugin prints goes to stderr, never into the channel
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message, default=str) + "\n")
        channel.flush()

    parent = os.getppid()

    def watch_parent() -> None:  # an orphaned child (its executor's process died) must not linger
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()
    init = json.loads(sys.stdin.readline() or "{}")
    if init.get("tmp"):
        tempfile.tempdir = init["tmp"]
    for entry in init.get("sys_path", []):
        if entry not in sys.path:
            sys.path.append(entry)
    try:
        registry = cached_registry([tuple(entry) for entry in init["spec"]])
        target = registry.target(init["target"], require_available=False)
        settings = settings_from_dict(init["settings"])
        import accelnas.core.model  # noqa: F401 - load torch before the first task's clock starts
    except Exception as exc:
        send({"kind": "init-failed", "error": f"{type(exc).__name__}: {exc}"})
        return
    send({"kind": "ready"})
    label = init.get("label", "isolated")
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("kind") == "stop":
            return
        metrics = list(dict.fromkeys(request["metrics"]))
        done: set[str] = set()
        reply = {"kind": "outcome", "id": request.get("id")}
        try:
            arch = Architecture.from_string(request["arch"])
            for outcome in measure_outcomes(registry, target, arch, metrics, settings, executor=label):
                done.add(outcome.metric)
                send(reply | {"outcome": outcome.to_dict()})
        except Exception as exc:  # a failure outside the plugin hooks still ends only this task
            error = f"{type(exc).__name__}: {exc}"
            for outcome in failed([m for m in metrics if m not in done], error, **worker_info(label)):
                send(reply | {"outcome": outcome.to_dict()})


if __name__ == "__main__":
    _serve()
