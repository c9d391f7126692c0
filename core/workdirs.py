"""Work folders of measurements, named by host and process so that those of a killed process are removed.

A measurement exports and compiles into a temporary folder that is removed when it ends; a process
killed with SIGKILL cannot remove it (an exported model: tens of megabytes). The folders are named
``accelnas-[KIND]<host>-<pid>-<random>``, and the first folder a process makes sweeps the folders of
this host whose process no longer exists.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "accelnas-"
_swept: set[str] = set()  # temporary directories this process has swept


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def work_folder(kind: str = "") -> tempfile.TemporaryDirectory[str]:
    """A temporary folder (``kind`` such as ``"isolated-"`` names its use), after a sweep of stale ones."""
    root = tempfile.gettempdir()
    if root not in _swept:
        _swept.add(root)
        sweep(Path(root))
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}{_host()}-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def sweep(root: Path) -> list[Path]:
    """Remove the work folders under ``root`` that processes of this host left when they were killed."""
    if os.name != "posix":  # os.kill(pid, 0) is no liveness test elsewhere
        return []
    pattern = re.compile(rf"^{re.escape(PREFIX)}(?:[a-z]+-)?{re.escape(_host())}-(\d+)-")
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    if removed:
        log.info("removed %d work folder(s) of killed processes under %s", len(removed), root)
    return removed
