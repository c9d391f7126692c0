"""A real Ray cluster on loopback: a head, a separately started worker advertising the target's resource,
and a real ONNX Runtime campaign that survives the loss of that worker mid-campaign.

Every Ray process is started here in its own session with a private temp dir and killed in teardown by
process group and by that temp dir (``ray stop`` would also stop other clusters on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from accelnas.core.ray_executor import resource_name
from accelnas.core.space import sample
from accelnas.core.store import Store

TARGET = "cpu/onnxruntime"
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
# quick failure detection on the head, so a killed node is declared dead in seconds
FAST_HEALTH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Ray nodes started as separate ``ray start --block`` processes on 127.0.0.1."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="anr", dir="/tmp")  # short: Ray's socket paths must fit
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # token authentication with a private token, whatever ~/.ray holds: every process of the test gets it
        self.env = os.environ | {
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen] = []

    def _start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(Path(self.tmp) / f"node{len(self.nodes)}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.nodes.append(proc)
        return proc

    def start_head(self) -> None:
        self._start(
            ["--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", "--num-cpus=0",
             "--include-dashboard=false", "--object-store-memory=80000000", f"--temp-dir={self.tmp}",
             f"--ray-client-server-port={_free_port()}", "--disable-usage-stats"],
            self.env | FAST_HEALTH,
        )  # fmt: skip
        deadline = time.time() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if time.time() > deadline or self.nodes[0].poll() is not None:
                raise RuntimeError(f"the Ray head did not start: {self.log(0)}")
            time.sleep(0.2)

    def start_worker(self) -> subprocess.Popen:
        resources = json.dumps({resource_name(TARGET): 1})
        return self._start(
            [f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--resources={resources}",
             "--object-store-memory=80000000", "--disable-usage-stats"],
            self.env,
        )  # fmt: skip

    def kill(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def log(self, index: int) -> str:
        return (Path(self.tmp) / f"node{index}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in self.nodes:
            if proc.poll() is None:
                self.kill(proc)
        # worker processes put themselves in their own process groups: find them by this cluster's temp dir
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                with contextlib.suppress(OSError, ProcessLookupError):
                    if self.tmp.encode() in (pid_dir / "cmdline").read_bytes():
                        os.kill(int(pid_dir.name), signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture()
def cluster():
    if RAY is None:
        pytest.skip("the ray command is not installed")
    c = LocalCluster()
    try:
        c.start_head()
        yield c
    finally:
        c.stop()


def _ok_rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_worker_killed_mid_campaign_loses_and_duplicates_nothing(cluster, tmp_path):
    first_worker = cluster.start_worker()
    db = tmp_path / "ray.sqlite"
    num, seed = 4, 13
    cmd = [sys.executable, "-m", "accelnas.core.cli", "collect", "--executor", "ray", "--address", cluster.address,
           "--target", TARGET, "--num", str(num), "--seed", str(seed), "--input-size", "32", "--batch-size", "4",
           "--threads", "1", "--max-seconds", "0.3", "--warmup-seconds", "0.05", "--precision", "0.05",
           "--isolate", "--task-timeout", "120", "--db", str(db)]  # fmt: skip
    driver = subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while _ok_rows(db) < 2:  # the first architecture is stored, the next one is being measured
            assert driver.poll() is None, f"collect ended early: {driver.communicate()[1][-3000:]}"
            assert time.time() < deadline, f"no result within 120 s; worker log: {cluster.log(1)}"
            time.sleep(0.05)
        cluster.kill(first_worker)
        cluster.start_worker()
        _, err = driver.communicate(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]
    assert "executor: ray" in err

    with Store(db, create=False) as store:
        rows = store.results(status=None)
    keys = [(r["arch_id"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * num  # nothing lost, nothing duplicated
    assert {r["arch_id"] for r in rows} == {a.id for a in sample(num, seed)}
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)  # the lost task was retried by Ray
    nodes = {r["provenance"]["measured_by"]["node"] for r in rows}
    assert len(nodes) == 2  # measured on the first worker and, after its loss, on the second
    assert all(r["provenance"]["measured_by"]["executor"] == "ray+isolated" for r in rows)
    assert all(r["plugin"] == "cpu_ort" and r["ci_low"] <= r["value"] <= r["ci_high"] for r in rows)


def test_unreachable_cluster_is_a_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    db = tmp_path / "x.sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "accelnas.core.cli", "collect", "--executor", "ray", "--address", f"127.0.0.1:{port}",
         "--num", "1", "--input-size", "32", "--db", str(db)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot reach the Ray cluster at 127.0.0.1:{port}")


def test_an_address_where_another_service_listens_is_a_one_line_error(tmp_path):
    """Ray would retry there for many minutes (the dashboard's port given for the head's, say)."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_http() -> None:  # as the dashboard or any HTTP/1 server does
        with server, contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_http, daemon=True).start()
    base = [sys.executable, "-m", "accelnas.core.cli", "collect", "--executor", "ray", "--num", "1", "--input-size",
            "32", "--db", str(tmp_path / "x.sqlite"), "--address"]  # fmt: skip
    proc = subprocess.run([*base, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: 127.0.0.1:{port} does not answer as a Ray cluster does")
    proc = subprocess.run([*base, "http://127.0.0.1:8265"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: http://127.0.0.1:8265 is not a Ray cluster address")


def test_an_ipv6_address_is_checked_at_its_host():
    """``[::1]:port`` names host ``::1``; with the brackets kept the name does not resolve."""
    from accelnas.core.errors import AccelnasError
    from accelnas.core.ray_executor import check_reachable

    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = server.getsockname()[1]
    server.close()  # nothing listens there now: the error must be the connection's, not the name's
    with pytest.raises(AccelnasError) as info:
        check_reachable(f"[::1]:{port}", timeout=5)
    assert "cannot reach" in str(info.value)
    assert "Name or service" not in str(info.value) and "nodename" not in str(info.value)
    assert "refused" in str(info.value).lower()


def test_starting_ray_keeps_the_sigterm_handler_of_the_command():
    """Ray's own handler exits at once; a stopped command must still clean up and say so (exit 143)."""
    from accelnas.core.ray_executor import init_ray

    class FakeRay:
        def init(self, **kwargs):
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # as ray.init does
            self.kwargs = kwargs

    def mine(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, mine)
    try:
        fake = FakeRay()
        init_ray(fake, address=None, include_dashboard=False)
        assert signal.getsignal(signal.SIGTERM) is mine and fake.kwargs == {"address": None, "include_dashboard": False}
    finally:
        signal.signal(signal.SIGTERM, before)
