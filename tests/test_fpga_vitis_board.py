"""fpga_vitis against a real SSH server on loopback standing in for a board (tests/fpga_board_server.py):
upload, remote execution, parsing, time-outs, unreachable board, remote failure, host keys, cleanup,
and a campaign that compiles with a stand-in vai_c_xir and measures over SSH."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fpga_board_server import LoopbackBoard, closed_port, install_standin, write_board_file

from accelnas import hookimpl
from accelnas.core.campaign import run_campaign
from accelnas.core.plugins import load_registry
from accelnas.core.records import CompiledModel, ExportedModel, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.store import Store
from accelnas.plugins.fpga_vitis import plugin
from accelnas.plugins.fpga_vitis.board import ENV_BOARD
from accelnas.plugins.fpga_vitis.errors import (
    BoardConfigError,
    BoardUnreachableError,
    RemoteCommandError,
    RemoteTimeoutError,
)
from accelnas.plugins.fpga_vitis.vai_compile import ENV_TOOL

FRAME_MS = 2.5
DPU_CORES = 2  # of the stand-in xdputil
SETTINGS = MeasureSettings(input_size=32, precision=0.02, max_seconds=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LoopbackBoard(tmp_path_factory.mktemp("loopback")) as board:
        yield board


@pytest.fixture
def board(server):
    """The server with a clean environment, call log and work directory for each test."""
    server.env.clear()
    for name in ("xdputil_calls.jsonl", "xdputil_runs", "xdputil_pids", "xdputil_overlaps", "xdputil_busy"):
        (server.home / name).unlink(missing_ok=True)
    yield server
    server.env.clear()


def _use(tmp_path: Path, monkeypatch, entries: dict) -> None:
    monkeypatch.setenv(ENV_BOARD, str(write_board_file(tmp_path / "boards.yaml", entries)))


def _target(backend: str) -> Target:
    return Target(device="fpga", backend=backend, kind="fpga", default_batch_size=6 if backend == "vck190" else 1)


def _compiled(
    tmp_path: Path, batch: int = 1, target: str = "DPUCZDX8G_ISA1_B4096", name: str = "anb_net"
) -> CompiledModel:
    path = tmp_path / f"{name}.xmodel"
    path.write_text(json.dumps({"frame_ms": FRAME_MS, "batch": batch}), encoding="utf-8")
    return CompiledModel(handle=path, info={"net_name": name, "compiled_target": target})


def _calls(board: LoopbackBoard) -> list[dict]:
    path = board.home / "xdputil_calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_zcu102_throughput_and_latency_over_ssh(board, tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch, {"zcu102": board.entry()})
    compiled = _compiled(tmp_path)
    t = plugin.measure_throughput(_target("zcu102"), compiled, SETTINGS)
    lat = plugin.measure_latency(_target("zcu102"), compiled, SETTINGS)
    # 5 threads on a 2-core DPU: 2 jobs in flight; latency: one thread, batch 1
    assert t.metric == "throughput" and t.unit == "images/s" and t.batch_size == 1
    assert t.mean == pytest.approx(DPU_CORES * 1000 / FRAME_MS, rel=0.02)
    assert lat.metric == "latency" and lat.unit == "ms" and lat.batch_size == 1
    assert lat.mean == pytest.approx(FRAME_MS, rel=0.02)
    for m in (t, lat):
        assert len(m.samples) >= 3 and len(set(m.samples)) > 1 and m.precision_reached
        assert m.ci_low < m.mean < m.ci_high and m.extra["run_seconds"] == 2
        ident = m.provenance["board_identity"]
        assert ident["xdputil_query"]["dpu_arch"] == ["DPUCZDX8G_ISA1_B4096"]
        assert ident["xdputil_query"]["vart"].startswith("Xilinx vart-runner Version: 3.5.0")
        assert ident["uname"].startswith("Linux") and m.provenance["remote_cleanup"] == "removed"
        assert m.provenance["board"]["dpu"] == "DPUCZDX8G_ISA1_B4096" and m.provenance["compiled_target"]
    assert lat.extra["threads"] == 1 and t.extra["threads"] == 5
    assert t.extra["runs"][0]["thread_frames"] and len(t.extra["runs"][0]["thread_frames"]) == 5
    benchmarks = [c for c in _calls(board) if c["argv"][0] == "benchmark"]
    assert {c["SLEEP_MS"] for c in benchmarks} == {"2000"}
    # what each timed job does besides the DPU run is fixed, not left to the board's environment
    assert all(c["jobs"] == {"COPY_INPUT": "1", "COPY_OUTPUT": "1", "ENABLE_MEMCMP": "0"} for c in benchmarks)
    assert t.extra["xdputil_env"] == lat.extra["xdputil_env"] == benchmarks[0]["jobs"]
    assert {tuple(c["argv"][2:]) for c in benchmarks} == {("-i", "-1", "5"), ("-i", "-1", "1")}
    assert all(
        c["argv"][1].startswith(str(board.workdir)) and c["argv"][1].endswith("/anb_net.xmodel") for c in benchmarks
    )
    assert board.remote_dirs() == []  # every upload was removed
    benchmark_commands = [cmd for cmd in board.commands if " benchmark " in cmd]
    lock = f"flock {board.root / 'dpu.lock'} timeout -s KILL "  # runs of all clients take turns on the DPU
    assert benchmark_commands and all(cmd.startswith(lock) for cmd in benchmark_commands)
    assert all(cmd.startswith(("timeout -s KILL ", lock)) for cmd in board.commands)


def test_vck190_runs_at_batch_six(board, tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch, {"vck190": board.entry(runs=2)})
    board.env["XDPUTIL_STANDIN_DPU"] = "DPUCVDX8G_ISA3_C32B6"
    compiled = _compiled(tmp_path, batch=6, target="DPUCVDX8G_ISA3_C32B6")
    t = plugin.measure_throughput(_target("vck190"), compiled, SETTINGS)
    lat = plugin.measure_latency(_target("vck190"), compiled, SETTINGS)
    assert t.batch_size == lat.batch_size == 6 and t.extra["threads"] == 6
    assert t.mean == pytest.approx(DPU_CORES * 6000 / FRAME_MS, rel=0.02)
    assert lat.mean == pytest.approx(FRAME_MS, rel=0.02)  # one job of 6 images
    assert t.extra["dpu_batch"] == 6 and t.extra["dpu_batch_from"] == "compile target"
    with pytest.raises(BoardConfigError, match="batch 6"):
        plugin.measure_throughput(_target("vck190"), compiled, MeasureSettings(input_size=32, batch_size=16))


def test_the_batch_comes_from_the_compiled_xmodel_not_the_board_entry(board, tmp_path, monkeypatch):
    # a board entry claiming batch 6 for a batch-1 xmodel used to turn 2.5 ms into 15 ms
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(batch=6, runs=2)})  # DPUCZDX8G runs batch 1
    with pytest.raises(BoardConfigError, match=r"zcu102\.batch is 6, but DPU DPUCZDX8G_ISA1_B4096 runs batch 1"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(batch=6, runs=2, dpu="CUSTOM_DPU")})  # a name that says no batch
    with pytest.raises(BoardConfigError, match=r"runs batch 1, but board zcu102's entry says batch 6"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert not _calls(board)  # refused before anything ran on the board


def test_user_data_never_reaches_the_shell_unquoted(board, tmp_path, monkeypatch):
    workdir = str(board.home / "my work" / "$(touch pwned); x")
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(workdir=workdir, runs=2)})
    m = plugin.measure_latency(_target("zcu102"), _compiled(tmp_path, name="anb_q"), SETTINGS)
    assert m.mean == pytest.approx(FRAME_MS, rel=0.02)
    assert not list(board.home.rglob("pwned")) and not (board.home / "pwned").exists()
    assert [p.name for p in (board.home / "my work").iterdir()] == ["$(touch pwned); x"]
    assert list(Path(workdir).iterdir()) == []  # the model's directory was removed


def test_unwritable_remote_workdir(board, tmp_path, monkeypatch):
    (board.home / "plain-file").write_text("x")
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(workdir=str(board.home / "plain-file" / "work"))})
    with pytest.raises(RemoteCommandError, match=r"upload to .*plain-file/work/.* failed"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert not [c for c in _calls(board) if c["argv"][0] == "benchmark"]


def test_remote_failure_is_reported_without_retrying(board, tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(retries=2)})
    board.env["XDPUTIL_STANDIN_MODE"] = "fail"
    with pytest.raises(RemoteCommandError, match="status 134: CHECK fingerprint fail"):
        plugin.measure_throughput(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert len([c for c in _calls(board) if c["argv"][0] == "benchmark"]) == 1
    assert board.remote_dirs() == []
    board.env["XDPUTIL_STANDIN_MODE"] = "garbage"
    with pytest.raises(RemoteCommandError, match="no 'FPS=' summary"):
        plugin.measure_throughput(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    board.env["XDPUTIL_STANDIN_MODE"] = "mismatch"  # a summary and exit status 0, but outputs differed
    with pytest.raises(RemoteCommandError, match="printed 'Test Failed'"):
        plugin.measure_throughput(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert board.remote_dirs() == []


def test_hung_benchmark_times_out_is_retried_and_cleaned_up(board, tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(command_timeout_s=1, run_seconds=0.5, retries=1)})
    board.env["XDPUTIL_STANDIN_MODE"] = "sleep"
    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match=r"timed out after 1 s \(killed\) \(2 attempts\)"):
        plugin.measure_throughput(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert time.perf_counter() - start < 20
    assert len([c for c in _calls(board) if c["argv"][0] == "benchmark"]) == 2
    assert board.remote_dirs() == []


def test_client_side_timeout_without_the_remote_wrapper(board, tmp_path, monkeypatch):
    _use(
        tmp_path,
        monkeypatch,
        {"zcu102": board.entry(command_timeout_s=1, run_seconds=0.5, retries=0, kill_on_timeout=False)},
    )
    board.env["XDPUTIL_STANDIN_MODE"] = "sleep"
    with pytest.raises(RemoteTimeoutError, match="timed out after 1 s"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert not any(cmd.startswith("timeout") for cmd in board.commands[-3:])


def test_unreachable_board(tmp_path, monkeypatch, board):
    port = closed_port()
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(port=port, retries=2, retry_delay_s=0.05)})
    with pytest.raises(BoardUnreachableError, match=rf"\(\S+@127\.0\.0\.1:{port}\) unreachable after 3 attempts"):
        plugin.measure_throughput(_target("zcu102"), _compiled(tmp_path), SETTINGS)


def test_host_key_policies(board, tmp_path, monkeypatch):
    stranger = tmp_path / "stranger_known_hosts"
    stranger.write_text(
        f"[127.0.0.1]:{board.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOM4uyC7pGaB8M3f0DNG8vCskjf2l7lTqPIDeHf+cXzN\n"
    )
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(known_hosts=str(stranger), runs=2)})
    with pytest.raises(BoardConfigError, match="host key not verifiable"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    fresh = tmp_path / "ssh" / "known_hosts"
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(known_hosts=str(fresh))})
    with pytest.raises(BoardConfigError, match="accept-new"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(known_hosts=str(fresh), host_key_policy="accept-new", runs=2)})
    assert plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS).mean > 0
    assert fresh.read_text().split()[:2] == board.known_hosts_path.read_text().split()[:2]
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(known_hosts=str(fresh), runs=2)})  # now strict works
    assert plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS).mean > 0
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(key=str(tmp_path / "no_key"))})
    with pytest.raises(BoardConfigError, match="no_key does not exist"):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)


def test_wrong_dpu_is_refused_before_benchmarking(board, tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(runs=2)})
    with pytest.raises(
        RemoteCommandError, match="carries DPUCZDX8G_ISA1_B4096 but the xmodel was compiled for DPUCZDX8G_ISA1_B1024"
    ):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path, target="DPUCZDX8G_ISA1_B1024"), SETTINGS)
    # same name, other fingerprint (compiled for 0x101000016010407, the board has 0x101000056010407)
    other = _compiled(tmp_path, target="DPUCZDX8G_ISA1_B4096_0101000016010407")
    with pytest.raises(RemoteCommandError, match=r"fingerprint 0x101000056010407 but .* fingerprint 0x101000016010407"):
        plugin.measure_latency(_target("zcu102"), other, SETTINGS)
    assert not [c for c in _calls(board) if c["argv"][0] == "benchmark"]
    same = _compiled(tmp_path, target="DPUCZDX8G_ISA1_B4096_0101000056010407")
    assert plugin.measure_latency(_target("zcu102"), same, SETTINGS).mean > 0


class _FixtureQuantizer:
    """Stands in for vai_q_pytorch (absent here): writes the JSON "quantized xmodel" the stand-in compiler reads."""

    @hookimpl(tryfirst=True)
    def export_model(self, target, architecture, settings, workdir):
        if target.device != "fpga":
            return None
        path = Path(workdir) / "MBConvNet_int.xmodel"
        unsupported = architecture.stages[0].e == 6  # the stand-in compiler fails on these
        path.write_text(json.dumps({"frame_ms": FRAME_MS, "batch": 1, "unsupported": unsupported}), encoding="utf-8")
        return ExportedModel(format="xmodel", path=path, info={"net_name": f"anb_{architecture.id.replace('-', '_')}"})


def test_campaign_compiles_measures_and_records_compile_failures(board, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_TOOL, str(install_standin("vai_c_xir", tmp_path / "bin")))
    arch_json = tmp_path / "arch.json"
    arch_json.write_text(json.dumps({"target": "DPUCZDX8G_ISA1_B4096"}), encoding="utf-8")
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(arch=str(arch_json), runs=2)})
    monkeypatch.setattr(plugin.quantize, "importable", lambda name: True)  # _FixtureQuantizer stands in
    registry = load_registry(["fpga_vitis"], use_env=False)
    registry.register(_FixtureQuantizer(), "fixture_quantizer")
    target = registry.target("fpga/zcu102")
    good = Architecture.from_string("4511-6521-4530-6320-1530-4311-4321")
    bad = Architecture.from_string("6311-6521-4530-6320-1530-4311-4321")
    with Store(tmp_path / "fpga.sqlite") as store:
        report = run_campaign(registry, target, [bad, good], SETTINGS, store)
        assert (report.measured, report.failed) == (2, 2), report.errors
        ok = store.results(target="fpga/zcu102")
        failed = store.results(target="fpga/zcu102", status="failed")
    assert {r["arch_id"] for r in ok} == {good.id} and {r["metric"] for r in ok} == {"throughput", "latency"}
    assert all(r["plugin"] == "fpga_vitis" for r in ok)
    prov = next(r["provenance"] for r in ok if r["metric"] == "latency")
    assert prov["dpu_subgraphs"] == 1 and prov["compiled_target"] == "DPUCZDX8G_ISA1_B4096"
    assert {r["arch_id"] for r in failed} == {bad.id} and len(failed) == 2
    assert all("CompileError" in r["error"] and "XCOM_OP_NOT_SUPPORT" in r["error"] for r in failed)
    assert board.remote_dirs() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_benchmarks_take_turns_and_an_abandoned_one_is_killed(board, tmp_path, monkeypatch):
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(runs=2, max_runs=2, run_seconds=1)})
    with ThreadPoolExecutor(3) as pool:  # e.g. --shard jobs sharing one board
        jobs = [pool.submit(plugin.measure_latency, _target("zcu102"), _compiled(tmp_path), SETTINGS) for _ in range(3)]
        assert all(job.result().mean == pytest.approx(FRAME_MS, rel=0.02) for job in jobs)
    assert len(_calls(board)) == 9 and not (board.home / "xdputil_overlaps").exists()
    # the client gives up (no remote `timeout` here): the remote benchmark must not keep the DPU
    _use(
        tmp_path,
        monkeypatch,
        {"zcu102": board.entry(command_timeout_s=1, run_seconds=0.5, retries=0, kill_on_timeout=False)},
    )
    board.env["XDPUTIL_STANDIN_MODE"] = "sleep"
    with pytest.raises(RemoteTimeoutError):
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    pids = [int(p) for p in (board.home / "xdputil_pids").read_text().split()]
    deadline = time.monotonic() + 5
    while _alive(pids[-1]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pids[-1]) and board.remote_dirs() == []


@pytest.mark.parametrize("sftp", [False, "missing"], ids=["refused", "server-missing"])
def test_board_without_sftp_takes_the_model_over_an_exec_channel(tmp_path, monkeypatch, sftp):
    import asyncssh

    if sftp == "missing":  # dropbear accepts the subsystem, then its absent sftp-server ends it at once

        async def lost(self, *args, **kwargs):
            raise asyncssh.SFTPConnectionLost("Connection lost")

        monkeypatch.setattr(asyncssh.SSHClientConnection, "start_sftp_client", lost)
    with LoopbackBoard(tmp_path / "nosftp", sftp=bool(sftp)) as bare:
        _use(tmp_path, monkeypatch, {"zcu102": bare.entry(runs=2, retries=2)})
        m = plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
        assert m.mean == pytest.approx(FRAME_MS, rel=0.02) and m.provenance["remote_cleanup"] == "removed"
        assert any(" && cat > " in c for c in bare.commands) and bare.remote_dirs() == []


def test_key_and_reachability_problems_are_found_before_quantizing(board, tmp_path, monkeypatch):
    import asyncssh

    from accelnas.core.retry import RetryPolicy
    from accelnas.core.space import sample

    locked = tmp_path / "locked_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(locked), "pkcs8-pem", passphrase="secret")
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(key=str(locked))})
    settings = MeasureSettings(input_size=32)
    for call in (
        lambda: plugin.check_option_values(settings, backend="zcu102", listed_batch=1),
        lambda: plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS),
        lambda: plugin.export_model(_target("zcu102"), sample(1)[0], None, settings, tmp_path),
    ):
        with pytest.raises(BoardConfigError, match=r"locked_key cannot be loaded: .*ssh-agent"):
            call()
    port = closed_port()
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(port=port, retries=1, retry_delay_s=0.05)})
    start = time.perf_counter()
    with pytest.raises(BoardUnreachableError, match=r"unreachable after 2 attempts \(connection refused\)") as info:
        plugin.export_model(_target("zcu102"), sample(1)[0], None, settings, tmp_path)  # no model: fails first
    assert time.perf_counter() - start < 5 and RetryPolicy().is_transient(str(info.value))


def test_an_unreachable_board_stops_a_campaign_leaving_the_rest_pending(board, tmp_path, monkeypatch):
    from accelnas.core.retry import NO_RETRY
    from accelnas.core.space import sample

    monkeypatch.setenv(ENV_TOOL, str(install_standin("vai_c_xir", tmp_path / "bin")))
    arch_json = tmp_path / "arch.json"
    arch_json.write_text(json.dumps({"target": "DPUCZDX8G_ISA1_B4096"}), encoding="utf-8")
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(arch=str(arch_json), port=closed_port(), retries=0)})
    monkeypatch.setattr(plugin.quantize, "importable", lambda name: True)
    registry = load_registry(["fpga_vitis"], use_env=False)
    target = registry.target("fpga/zcu102")
    with Store(tmp_path / "fpga.sqlite") as store:
        report = run_campaign(registry, target, sample(4, seed=2), SETTINGS, store, retry=NO_RETRY)
        assert store.results(status=None) == []  # the board's absence is no result of an architecture
    assert report.failed == 0 and report.pending == 8  # 4 architectures x 2 metrics, all left for a re-run
    assert "unreachable" in report.unavailable and "connection refused" in report.unavailable


def test_a_refused_login_stops_the_campaign_as_a_set_up_error(board, tmp_path, monkeypatch):
    import asyncssh

    from accelnas.core.errors import TargetUnavailableError
    from accelnas.plugins.fpga_vitis.errors import BoardLoginError

    stranger = tmp_path / "stranger_key"  # a key the board does not know
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    _use(tmp_path, monkeypatch, {"zcu102": board.entry(key=str(stranger), retries=2, retry_delay_s=0.05)})
    start = time.perf_counter()
    with pytest.raises(BoardLoginError, match=r"refused the login: .*check the entry's user and key") as info:
        plugin.measure_latency(_target("zcu102"), _compiled(tmp_path), SETTINGS)
    assert isinstance(info.value, BoardConfigError) and isinstance(info.value, TargetUnavailableError)
    assert time.perf_counter() - start < 5  # not retried: the same key is refused again
