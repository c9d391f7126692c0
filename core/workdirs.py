"""Work folders of measurements, locked while in use, so that those of a killed process are removed.

A measurement exports and compiles into a temporary folder that is removed when it ends; a process
killed with SIGKILL cannot remove it (an exported model: tens of megabytes). Each folder, named
``accelnas-[KIND]<host>-<pid>-<random>``, holds a lock file that its process keeps locked
(``flock``) for as long as it uses the folder; the kernel releases the lock when the process dies,
however it dies, and in whatever PID namespace it ran. The first folder a process makes sweeps the
folders of this host whose lock nobody holds.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "accelnas-"
LOCK_FILE = ".accelnas-lock"
UNLOCKED_GRACE_S = 60.0  # a folder without its lock file yet is left alone this long after it was made
_swept: set[str] = set()  # temporary directories this process has swept

try:
    import fcntl
except ImportError:  # Windows: no flock, no sweep
    fcntl = None  # type: ignore[assignment]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


class WorkFolder:
    """A temporary folder (``kind`` such as ``"isolated-"`` names its use) locked until :meth:`cleanup`.

    Used as ``with WorkFolder() as path:``, like :class:`tempfile.TemporaryDirectory`.
    """

    def __init__(self, kind: str = "") -> None:
        root = tempfile.gettempdir()
        if root not in _swept:
            _swept.add(root)
            sweep(Path(root))
        self._dir = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}{_host()}-{os.getpid()}-")
        self.name = self._dir.name
        self._lock: int | None = None
        if fcntl is not None:
            self._lock = os.open(os.path.join(self.name, LOCK_FILE), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def cleanup(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None
        self._dir.cleanup()

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


def _abandoned(folder: str) -> bool:
    """True when no process holds the folder's lock (and it is older than a folder still being made)."""
    try:
        fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:  # made a moment ago, or by a version without locks: judged by age
        try:
            return time.time() - os.stat(folder).st_mtime > UNLOCKED_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its process is alive
        return False
    finally:
        os.close(fd)
    return True


def sweep(root: Path) -> list[Path]:
    """Remove the work folders under ``root`` that processes of this host left when they were killed."""
    if fcntl is None:
        return []
    pattern = re.compile(rf"^{re.escape(PREFIX)}(?:[a-z]+-)?{re.escape(_host())}-\d+-")
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _abandoned(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    if removed:
        log.info("removed %d work folder(s) of killed processes under %s", len(removed), root)
    return removed
