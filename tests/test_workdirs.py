"""Work folders: locked while in use; those whose lock nobody holds (a killed process) are swept."""

import os
import subprocess
import sys
import time

import pytest

from accelnas.core import workdirs

fcntl = pytest.importorskip("fcntl")  # flock: POSIX


def _folder(root, name, *, lock_file=True, age=0.0):
    path = root / name
    path.mkdir()
    (path / "net.onnx").write_bytes(b"\0" * 10)
    if lock_file:
        (path / workdirs.LOCK_FILE).touch()
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_only_unlocked_folders_of_this_host_are_swept(tmp_path):
    host = workdirs._host()
    dead = _folder(tmp_path, f"accelnas-{host}-101-a")  # its process died: the lock is free
    dead_isolated = _folder(tmp_path, f"accelnas-isolated-{host}-102-b")
    held = _folder(tmp_path, f"accelnas-{host}-103-c")  # alive, whatever its pid says (another namespace)
    fd = os.open(held / workdirs.LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    new = _folder(tmp_path, f"accelnas-{host}-104-d", lock_file=False)  # being made this moment
    old = _folder(tmp_path, f"accelnas-{host}-105-e", lock_file=False, age=3600)  # an older version's
    other_host = _folder(tmp_path, f"accelnas-elsewhere{host}x-106-f")
    unrelated = _folder(tmp_path, f"mytool-{host}-107-g")
    try:
        removed = workdirs.sweep(tmp_path)
    finally:
        os.close(fd)
    assert sorted(removed) == sorted([dead, dead_isolated, old])
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in (held, new, other_host, unrelated)}


def test_a_killed_process_leaves_a_folder_the_next_sweep_removes(tmp_path):
    code = (
        "import os, sys, tempfile; tempfile.tempdir = sys.argv[1]\n"
        "from accelnas.core.workdirs import WorkFolder\n"
        "w = WorkFolder(); print(w.name, flush=True); os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    left = proc.stdout.strip()
    assert proc.returncode == -9 and os.path.isdir(left)  # SIGKILL: no clean-up ran
    assert [str(p) for p in workdirs.sweep(tmp_path)] == [left] and not os.path.exists(left)


def test_a_work_folder_is_locked_named_for_its_process_and_sweeps_once(tmp_path, monkeypatch):
    monkeypatch.setattr(workdirs.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workdirs, "_swept", set())
    stale = _folder(tmp_path, f"accelnas-{workdirs._host()}-1-x")
    with workdirs.WorkFolder("isolated-") as folder:
        assert os.path.basename(folder).startswith(f"accelnas-isolated-{workdirs._host()}-{os.getpid()}-")
        assert not stale.exists()
        assert workdirs.sweep(tmp_path) == []  # its own folder is held
    assert not os.path.exists(folder)
    stale = _folder(tmp_path, f"accelnas-{workdirs._host()}-1-y")
    with workdirs.WorkFolder():
        assert stale.exists()  # swept once per process and directory
