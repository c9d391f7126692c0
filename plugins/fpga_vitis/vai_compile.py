"""Compile a quantized xmodel for one DPU with ``vai_c_xir`` (a subprocess, arguments as a list).

``vai_c_xir --xmodel M --arch arch.json --net_name N --output_dir D`` writes ``D/N.xmodel`` plus
``meta.json`` and ``md5sum.txt``; its log says how the graph was split between DPU and CPU, which
:func:`~accelnas.plugins.fpga_vitis.parsers.parse_vai_c_xir` turns into facts for provenance.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelnas.plugins.fpga_vitis.errors import CompileError
from accelnas.plugins.fpga_vitis.parsers import CompileReport, parse_vai_c_xir, strip_ansi

log = logging.getLogger(__name__)

TOOL = "vai_c_xir"
ENV_TOOL = "ACCELNAS_VAI_C_XIR"  # path of vai_c_xir when it is not on PATH
_NET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def find_compiler() -> str | None:
    """Path of ``vai_c_xir`` (``ACCELNAS_VAI_C_XIR`` or PATH), None when absent."""
    explicit = os.environ.get(ENV_TOOL)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which(TOOL)


def missing_compiler() -> str:
    """Why :func:`find_compiler` found nothing: ``ACCELNAS_VAI_C_XIR`` names no executable, or none is on PATH."""
    explicit = os.environ.get(ENV_TOOL)
    if explicit:
        return f"{ENV_TOOL}={explicit} is not an executable file"
    return f"{TOOL} not found (run inside the Vitis AI container, or set {ENV_TOOL})"


def net_name_for(architecture_id: str) -> str:
    """A network name vai_c_xir and the board accept, from an architecture id."""
    return "anb_" + re.sub(r"[^A-Za-z0-9_]", "_", architecture_id)


def read_arch(arch_json: Path) -> dict[str, Any]:
    """The arch.json (``{"target": "DPUCZDX8G_ISA1_B4096"}`` or ``{"fingerprint": "0x..."}``)."""
    try:
        data = json.loads(Path(arch_json).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompileError(f"arch.json {arch_json} does not exist (is this the Vitis AI container?)") from None
    except (OSError, ValueError) as exc:
        raise CompileError(f"arch.json {arch_json} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not ({"target", "fingerprint"} & set(data)):
        raise CompileError(f"arch.json {arch_json} names neither a 'target' nor a 'fingerprint'")
    return data


@dataclass
class CompileResult:
    """A compiled xmodel and what the compiler reported."""

    xmodel: Path
    report: CompileReport
    arch: dict[str, Any]
    command: list[str]
    seconds: float
    log_path: Path

    def info(self) -> dict[str, Any]:
        report = self.report.to_dict()
        return {
            "compiler": Path(self.command[0]).name,
            "arch": self.arch,
            "dpu_subgraphs": report["dpu_subgraphs"],
            "total_subgraphs": report["total_subgraphs"],
            "cpu_fallback_ops": report["cpu_fallback_ops"],
            "cpu_op_types": report["cpu_op_types"],
            "compiled_target": report["target"],
            "xmodel_md5": report["md5"],
            "xmodel_bytes": self.xmodel.stat().st_size,
            "compile_seconds": round(self.seconds, 2),
        }


def _run(command: list[str], timeout: float) -> tuple[int, str]:
    """Run ``command`` in its own process group; kill the whole group on time-out."""
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise CompileError(f"cannot run {command[0]}: {exc}") from None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CompileError(f"{Path(command[0]).name} timed out after {timeout:g} s") from None
    return proc.returncode, out


def compile_xmodel(
    quantized: Path,
    arch_json: Path,
    net_name: str,
    output_dir: Path,
    *,
    timeout: float = 1800.0,
    tool: str | None = None,
) -> CompileResult:
    """Run ``vai_c_xir`` on ``quantized`` for the DPU of ``arch_json``; raise :class:`CompileError`."""
    tool = tool or find_compiler()
    if tool is None:
        raise CompileError(missing_compiler())
    if not _NET_NAME.match(net_name):
        raise CompileError(f"invalid network name {net_name!r} (letters, digits and _ only)")
    if not Path(quantized).is_file():
        raise CompileError(f"quantized model {quantized} does not exist")
    arch = read_arch(arch_json)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(tool),
        "--xmodel",
        str(quantized),
        "--arch",
        str(arch_json),
        "--net_name",
        net_name,
        "--output_dir",
        str(output_dir),
    ]
    log.info("compiling: %s", " ".join(command))
    start = time.perf_counter()
    code, output = _run(command, timeout)
    seconds = time.perf_counter() - start
    log_path = output_dir / f"{net_name}.vai_c_xir.log"
    log_path.write_text(output, encoding="utf-8")
    report = parse_vai_c_xir(output)
    if code != 0:
        lines = [line.strip() for line in strip_ansi(output).splitlines() if line.strip()]
        detail = report.errors[0] if report.errors else (lines[-1] if lines else "no output")
        raise CompileError(f"{TOOL} failed with exit code {code}: {detail}")
    xmodel = output_dir / f"{net_name}.xmodel"
    if not xmodel.is_file() and report.xmodel_path and Path(report.xmodel_path).is_file():
        xmodel = Path(report.xmodel_path)
    if not xmodel.is_file():
        raise CompileError(f"{TOOL} exited 0 but wrote no {net_name}.xmodel into {output_dir}")
    if report.dpu_subgraphs == 0:
        raise CompileError(f"{TOOL} mapped nothing to the DPU (0 DPU subgraphs)")
    return CompileResult(xmodel, report, arch, command, seconds, log_path)
