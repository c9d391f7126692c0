"""DPU throughput and latency on a board: upload the xmodel, run ``xdputil benchmark``, clean up.

Protocol (Accel-NASBench): throughput with the board's ``throughput_threads`` (5 on ZCU102, 6 on
VCK190; ``MeasureSettings.threads`` overrides it), latency with one thread at the DPU's batch (1 on
ZCU102, 6 on VCK190). ``xdputil benchmark <xmodel> -i -1 <threads>`` runs the whole graph for
``SLEEP_MS`` milliseconds and prints frames per second of the compiled graph: its DPU subgraphs,
and any operations the compiler left on the CPU (recorded at compile time), but no pre- or
post-processing. Each run is one sample; runs repeat until at least ``runs`` samples are in and the
95% CI of the mean is within the requested precision, or ``max_runs`` / the time budget is reached.
Latency samples are the mean time per job of a one-thread run, ``1000 * batch / FPS`` milliseconds;
xdputil reports no per-job times, so no percentiles are given.

Each job of xdputil's runner copies its input into the DPU buffers, runs and copies the output back
(VART's ``COPY_INPUT`` and ``COPY_OUTPUT``, 1 by default); comparing each output with reference
outputs (``ENABLE_MEMCMP``) is off, as by default since Vitis AI 2.5 (the 2019 runner had it on).
The three are set explicitly, so a board's environment cannot change what is timed, and recorded
with each measurement. A run that prints ``Test Failed`` is an error, not a sample. In Vitis AI
3.x's xdputil ``-i -1`` is the whole graph (VART's graph runner: DPU subgraphs and the compiled
graph's CPU subgraphs); releases that index DPU subgraphs only read it as the last one, which is the
same graph for an xmodel with one DPU subgraph (the compile step records how many there are, and
the VART version is in the provenance).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelnas.core.provenance import host_provenance, package_version
from accelnas.core.records import UNITS, CompiledModel, Measurement, MeasureSettings
from accelnas.core.timing import mean_ci
from accelnas.plugins.fpga_vitis.board import BoardConfig, compiled_batch
from accelnas.plugins.fpga_vitis.devices import (
    XDPUTIL_JOB_ENV,
    parse_fingerprint,
    same_dpu,
    split_target,
)
from accelnas.plugins.fpga_vitis.errors import RemoteCommandError
from accelnas.plugins.fpga_vitis.parsers import (
    BenchmarkRun,
    OutputFormatError,
    failure_reason,
    parse_xdputil_benchmark,
    parse_xdputil_query,
)
from accelnas.plugins.fpga_vitis.transport import BoardClient, run_sync, with_retries

log = logging.getLogger(__name__)

IDENTITY_TIMEOUT_S = 60.0


async def board_identity(client: BoardClient) -> dict[str, Any]:
    """``uname -a`` and ``xdputil query`` of the board (DPU arch, fingerprints, VART/XIR versions)."""
    board = client.board
    uname = await client.run(["uname", "-a"], timeout=IDENTITY_TIMEOUT_S)
    query = await client.run([board.xdputil, "query"], timeout=IDENTITY_TIMEOUT_S, check=False, sudo=True)
    identity: dict[str, Any] = {"uname": uname.stdout.strip()}
    try:
        parsed = parse_xdputil_query(query.output)
    except OutputFormatError as exc:
        reason = failure_reason(query.output) or str(exc)
        raise RemoteCommandError(f"xdputil query on board {board.name} failed: {reason}") from None
    raw = parsed.pop("raw")
    identity |= {"xdputil_query": parsed, "dpu_ip_spec": raw.get("DPU IP Spec")}
    return identity


def model_fingerprint(compiled_info: dict[str, Any]) -> int | None:
    """The fingerprint the xmodel was compiled for: the compile target's suffix, else the arch.json's."""
    target = compiled_info.get("compiled_target")
    fingerprint = split_target(str(target))[1] if target else None
    if fingerprint is None and isinstance(compiled_info.get("arch"), dict):
        fingerprint = parse_fingerprint(compiled_info["arch"].get("fingerprint"))
    return fingerprint


def check_dpu(identity: dict[str, Any], compiled_info: dict[str, Any], board: BoardConfig) -> None:
    """Refuse a board whose DPU is not the one the xmodel was compiled for (xdputil would abort).

    Fingerprints decide where both are known (``xdputil query`` gives the board's, the compile target's
    suffix or the arch.json the model's); otherwise the DPU names must agree token by token.
    """
    query = identity.get("xdputil_query", {})
    on_board = [str(a) for a in query.get("dpu_arch") or []]
    board_prints = {f for f in (parse_fingerprint(v) for v in query.get("fingerprints") or []) if f}
    target = compiled_info.get("compiled_target") or ""
    wanted = model_fingerprint(compiled_info)
    if wanted is not None and board_prints:
        if wanted not in board_prints:
            have = ", ".join(f"{f:#x}" for f in sorted(board_prints))
            raise RemoteCommandError(
                f"board {board.name} carries {', '.join(on_board) or 'a DPU'} with fingerprint {have} but the xmodel "
                f"was compiled for fingerprint {wanted:#x} ({target or 'arch.json'})"
            )
        return
    if not target or not on_board:
        return
    if not any(same_dpu(target, a) for a in on_board):
        raise RemoteCommandError(
            f"board {board.name} carries {', '.join(on_board)} but the xmodel was compiled for {target}"
        )


async def benchmark_run(client: BoardClient, remote_xmodel: str, threads: int, seconds: float) -> BenchmarkRun:
    """One ``xdputil benchmark`` run of ``seconds`` with ``threads`` threads."""
    board = client.board
    argv = [board.xdputil, "benchmark", remote_xmodel, "-i", "-1", str(threads)]
    env = {"SLEEP_MS": str(max(1, round(seconds * 1000))), **XDPUTIL_JOB_ENV}
    result = await client.run(argv, timeout=board.command_timeout(seconds), env=env, check=False, sudo=True, lock=True)
    if result.exit_status != 0:
        reason = failure_reason(result.output)
        lines = [line.strip() for line in result.output.splitlines() if line.strip()]
        detail = reason or (lines[-1] if lines else "no output")
        raise RemoteCommandError(
            f"xdputil benchmark on board {board.name} exited with status {result.exit_status}: {detail}"
        )
    try:
        run = parse_xdputil_benchmark(result.output)
    except OutputFormatError as exc:
        raise RemoteCommandError(f"board {board.name}: {exc}") from None
    if not run.passed:
        raise RemoteCommandError(f"xdputil benchmark on board {board.name} printed 'Test Failed' (its run is not kept)")
    return run


def _enough(samples: list[float], board: BoardConfig, precision: float) -> bool:
    if len(samples) < board.runs:
        return False
    mean, _, low, high = mean_ci(samples)
    return (high - low) / 2 <= precision * mean


async def _session(
    board: BoardConfig, xmodel: Path, compiled_info: dict[str, Any], threads: int, settings: MeasureSettings
) -> dict[str, Any]:
    async with BoardClient(board) as client:
        identity = await board_identity(client)
        check_dpu(identity, compiled_info, board)
        remote_dir = posixpath.join(board.workdir, f"{xmodel.stem}-{uuid.uuid4().hex[:8]}")
        runs: list[BenchmarkRun] = []
        cleanup: str = "removed"
        start = time.perf_counter()
        finished = False
        try:
            remote = await client.upload(xmodel, remote_dir)
            while len(runs) < board.max_runs:
                runs.append(await benchmark_run(client, remote, threads, board.run_seconds))
                fps = [r.fps for r in runs]
                log.info("board %s: run %d, %d thread(s): %.2f FPS", board.name, len(runs), threads, fps[-1])
                if _enough(fps, board, settings.precision):
                    break
                if len(runs) >= board.runs and time.perf_counter() - start >= settings.max_seconds:
                    break
            finished = True
        finally:
            if not finished:  # cancelled, timed out or failed: no xdputil of this model may outlive the session
                await _kill_remote(client, remote_dir)
            try:
                await client.remove_tree(remote_dir)
            except Exception as exc:  # the measurement stands; say the directory is left behind
                cleanup = f"failed: {type(exc).__name__}: {exc}"
                log.warning("board %s: could not remove %s: %s", board.name, remote_dir, exc)
        return {
            "identity": identity,
            "runs": runs,
            "remote_dir": remote_dir,
            "cleanup": cleanup,
            "seconds": time.perf_counter() - start,
        }


async def _kill_remote(client: BoardClient, remote_dir: str) -> None:
    """Best effort: kill what still runs on the board for ``remote_dir`` (its path is unique to this session)."""
    try:
        await asyncio.wait_for(asyncio.shield(client.kill_matching(remote_dir + "/")), client.board.connect_timeout_s)
    except BaseException as exc:  # a dropped connection: the remote `timeout` still ends the run
        if isinstance(exc, KeyboardInterrupt):
            raise
        log.warning("board %s: could not stop the benchmark under %s: %s", client.board.name, remote_dir, exc)


def _provenance(board: BoardConfig, compiled: CompiledModel, session: dict[str, Any]) -> dict[str, Any]:
    return (
        host_provenance()
        | {"asyncssh": package_version("asyncssh"), "backend": f"vitis-ai/{board.name}"}
        | {"board": board.public(), "board_identity": session["identity"], "remote_cleanup": session["cleanup"]}
        | compiled.info
    )


def measure_on_board(
    board: BoardConfig, compiled: CompiledModel, settings: MeasureSettings, metric: str
) -> Measurement:
    """Throughput (images/s) or latency (ms per job) of the compiled xmodel on ``board``."""
    xmodel = Path(compiled.handle)
    if not xmodel.is_file():
        raise RemoteCommandError(f"compiled xmodel {xmodel} does not exist")
    threads = board.throughput_threads if metric == "throughput" else board.latency_threads
    if metric == "throughput" and settings.threads:
        threads = settings.threads
    batch, batch_source = compiled_batch(compiled.info, board)
    info = compiled.info
    session = run_sync(lambda: with_retries(board, lambda: _session(board, xmodel, info, threads, settings)))
    runs: list[BenchmarkRun] = session["runs"]
    fps = [r.fps for r in runs]
    samples = fps if metric == "throughput" else [1000.0 * batch / f for f in fps]
    mean, std, low, high = mean_ci(samples)
    extra = {
        "threads": threads,
        "dpu_batch": batch,
        "dpu_batch_from": batch_source,
        "runs": [asdict(r) for r in runs],
        "run_seconds": board.run_seconds,
        "n_samples": len(samples),
        "relative_ci": (high - low) / 2 / mean,
        "requested_precision": settings.precision,
        "session_seconds": round(session["seconds"], 3),
        "timer": "xdputil benchmark (compiled graph: DPU subgraphs and any CPU-fallback ops, with each job's input "
        "and output copies; no pre/post-processing)",
        "xdputil_env": dict(XDPUTIL_JOB_ENV),
    }
    if metric == "latency":
        extra["percentiles"] = "not available: xdputil reports the mean time per job of each run"
    return Measurement(
        metric=metric,
        unit=UNITS[metric],
        mean=mean,
        std=std,
        ci_low=low,
        ci_high=high,
        samples=samples,
        batch_size=batch,
        input_size=settings.input_size,
        precision_reached=len(samples) >= 2 and extra["relative_ci"] <= settings.precision,
        extra=extra,
        provenance=_provenance(board, compiled, session),
    ).validate()
