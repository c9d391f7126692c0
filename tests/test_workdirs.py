"""Work folders: named by host and process; those of killed processes are swept, no others."""

import os
import subprocess
import sys

import pytest

from accelnas.core import workdirs

pytestmark = pytest.mark.skipif(os.name != "posix", reason="liveness by os.kill(pid, 0) is POSIX")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_folders_of_dead_processes_of_this_host_are_swept(tmp_path):
    host = workdirs._host()
    dead = _dead_pid()
    names = {
        "dead": f"accelnas-{host}-{dead}-abc",
        "dead_isolated": f"accelnas-isolated-{host}-{dead}-def",
        "alive": f"accelnas-{host}-{os.getppid()}-ghi",
        "mine": f"accelnas-{host}-{os.getpid()}-jkl",
        "other_host": f"accelnas-elsewhere{host}x-{dead}-mno",
        "unrelated": f"mytool-{host}-{dead}-pqr",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "net.onnx").write_bytes(b"\0" * 10)
    (tmp_path / f"accelnas-{host}-{dead}-file").write_text("a file, not a work folder")
    removed = workdirs.sweep(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["dead_isolated"]])
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names[k] for k in ("alive", "mine", "other_host", "unrelated")} | {f"accelnas-{host}-{dead}-file"}


def test_a_work_folder_is_named_for_its_process_and_sweeps_its_temporary_directory_once(tmp_path, monkeypatch):
    monkeypatch.setattr(workdirs.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workdirs, "_swept", set())
    stale = tmp_path / f"accelnas-{workdirs._host()}-{_dead_pid()}-x"
    stale.mkdir()
    with workdirs.work_folder("isolated-") as folder:
        assert os.path.basename(folder).startswith(f"accelnas-isolated-{workdirs._host()}-{os.getpid()}-")
        assert not stale.exists()
    stale.mkdir()
    with workdirs.work_folder():
        assert stale.exists()  # swept once per process and directory
