"""Writing files so that no reader, and no kill, ever leaves half of one in place.

Each file is written under a temporary name beside its destination and moved over it with
``os.replace`` (atomic on POSIX and Windows within a file system): a reader sees the old file or the
new one, and a write that fails or is killed leaves the old file as it was (a killed one may leave a
``.NAME.*.tmp`` file behind, never the destination half-written).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; when the block ends without error it replaces ``path`` (or,
    where ``path`` is a device or a pipe, is copied into it)."""
    path = Path(path)
    if path.is_symlink():  # write through a link (a file shared from elsewhere), not over it
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():  # refused before anything is written: no file of a pair replaced, no temporary left
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of the file to write", str(path))
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null, a FIFO): written into, never
        with tempfile.TemporaryDirectory() as scratch:  # replaced by a file, nor written beside (/dev)
            tmp = Path(scratch) / path.name
            yield tmp
            with open(tmp, "rb") as source, open(path, "wb") as sink:
                shutil.copyfileobj(source, sink)
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        with contextlib.suppress(FileNotFoundError):  # the new file keeps the old one's permissions
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno and exc.filename in (None, str(tmp)):
            # a writer's own error (pyarrow's on a full disk) may name no file: name the folder written in
            raise OSError(exc.errno, os.strerror(exc.errno), str(path.parent)) from exc
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path: str | Path, frame: Any) -> None:
    """Replace ``path`` by a pandas DataFrame as CSV (no index column) atomically."""
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def remove(path: str | Path, what: str = "file") -> bool:
    """Delete ``path`` where it exists, best effort: one that cannot be removed is logged, not raised.

    True when it is gone (removed, or there was none).
    """
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("could not remove the %s %s: %s", what, path, exc)
        return False
    return True
