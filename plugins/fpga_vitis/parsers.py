"""Parsers of what the Vitis AI tools print: ``vai_c_xir``, ``xdputil benchmark`` and ``xdputil query``.

The formats, as the tools print them (Vitis AI 2.x-3.5):

* ``vai_c_xir`` logs through UNILOG: ``[UNILOG][INFO] Total device subgraph number 3, DPU subgraph
  number 1``, ``[UNILOG][INFO] Target architecture: DPUCZDX8G_ISA1_B4096``, and one warning per op
  the DPU cannot run: ``[UNILOG][WARNING] xir::Op{name = N, type = T} has been assigned to CPU: [reason].``
* ``xdputil benchmark`` (VART's ``test_dpu_runner_mt`` through glog) ends with
  ``performance_test.hpp:94] FPS= 1358.31 number_of_frames= 81501 time= 60.002 seconds.``, preceded by
  ``thread-<i> processes <n> frames`` lines, and prints ``Test PASS.`` or ``Test Failed!!!`` (Vitis AI
  3.x; earlier releases print neither).
* ``xdputil query`` prints a JSON document (``DPU IP Spec``, ``VAI Version``, ``kernels``), possibly
  after glog lines.

The parsers are tolerant: unknown lines are ignored, ANSI colours stripped, numbers in any float form.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_SUBGRAPHS = re.compile(r"Total device subgraph number\s*(\d+)\s*,\s*DPU subgraph number\s*(\d+)", re.I)
_CPU_SUBGRAPHS = re.compile(r"Total device subgraph number\s*(\d+)\s*,\s*CPU subgraph number\s*(\d+)", re.I)
_TARGET = re.compile(r"Target architecture:\s*(\S+)")
_GRAPH = re.compile(r"Graph name:\s*(.+?),\s*with op num:\s*(\d+)")
_SAVED = re.compile(r"The compiled xmodel is saved to\s*\"?([^\"\n]+?)\"?\s*$")
_MD5 = re.compile(r"md5sum is\s*([0-9a-fA-F]{32})")
_OP = r"xir::Op\{\s*name\s*=\s*(?P<name>[^,}]+?)\s*,\s*type\s*=\s*(?P<type>[^,}\s]+)\s*\}"
_ASSIGNED = re.compile(_OP + r"\s*has been assigned to CPU\s*[:.]?\s*\[?(?P<reason>[^\]\n]*)\]?")
_NOT_SUPPORTED = re.compile(_OP + r"\s*is not supported by current target\b(?P<reason>[^\n]*)")
_FATAL = re.compile(r"\[UNILOG\]\[(?:FATAL|ERROR)\]\s*(.+)|^F\d{4} [\d:.]+\s+\d+\s+\S+\]\s*(.+)$")

_FPS = re.compile(rf"FPS\s*=\s*({_NUM})\s+number_of_frames\s*=\s*({_NUM})\s+time\s*=\s*({_NUM})\s*seconds?")
_THREAD = re.compile(r"thread-(\d+)\s+processes\s+(\d+)\s+frames")
_GLOG_FATAL = re.compile(r"^F\d{4} [\d:.]+\s+\d+\s+\S+\]\s*(.+)$")
_CHECK_FAIL = re.compile(r"^[EWF]\d{4} [\d:.]+\s+\d+\s+\S+\]\s*(CHECK .*fail.*)$", re.I)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class CompileReport:
    """What ``vai_c_xir`` said about one compilation."""

    dpu_subgraphs: int | None = None
    total_subgraphs: int | None = None
    cpu_subgraphs: int | None = None
    target: str | None = None
    graph_name: str | None = None
    op_count: int | None = None
    xmodel_path: str | None = None
    md5: str | None = None
    cpu_ops: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def cpu_op_types(self) -> dict[str, int]:
        return dict(Counter(op["type"] for op in self.cpu_ops))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_op_types"] = self.cpu_op_types
        d["cpu_fallback_ops"] = len(self.cpu_ops)
        return d


def parse_vai_c_xir(text: str) -> CompileReport:
    """Subgraph counts, CPU-fallback ops, target and output path from ``vai_c_xir``'s output."""
    report = CompileReport()
    seen_ops: set[tuple[str, str]] = set()
    for raw in strip_ansi(text).splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _SUBGRAPHS.search(line):
            report.total_subgraphs, report.dpu_subgraphs = int(m.group(1)), int(m.group(2))
        elif m := _CPU_SUBGRAPHS.search(line):
            report.total_subgraphs, report.cpu_subgraphs = int(m.group(1)), int(m.group(2))
        if (m := _TARGET.search(line)) and report.target is None:
            report.target = m.group(1)
        if m := _GRAPH.search(line):
            report.graph_name, report.op_count = m.group(1).strip(), int(m.group(2))
        if m := _SAVED.search(line):
            report.xmodel_path = m.group(1).strip()
        if m := _MD5.search(line):
            report.md5 = m.group(1).lower()
        m = _ASSIGNED.search(line) or _NOT_SUPPORTED.search(line)
        if m:
            key = (m.group("name").strip(), m.group("type").strip())
            if key not in seen_ops:
                seen_ops.add(key)
                reason = m.group("reason").strip().strip(".").strip()
                report.cpu_ops.append({"name": key[0], "type": key[1], "reason": reason})
        if m := _FATAL.search(line):
            report.errors.append((m.group(1) or m.group(2)).strip())
    if report.cpu_subgraphs is None and report.total_subgraphs is not None and report.dpu_subgraphs is not None:
        # the total counts the input ("user") subgraph too, which runs nowhere
        report.cpu_subgraphs = max(0, report.total_subgraphs - report.dpu_subgraphs - 1)
    return report


@dataclass
class BenchmarkRun:
    """One ``xdputil benchmark`` run: frames per second over ``seconds``, per-thread frame counts.

    ``passed`` is false when the tool printed ``Test Failed`` (outputs differed from the reference).
    """

    fps: float
    frames: int
    seconds: float
    thread_frames: list[int]
    passed: bool


class OutputFormatError(ValueError):
    """Tool output without the lines a parser needs."""


def failure_reason(text: str) -> str | None:
    """The first fatal glog line or failed CHECK of a VART tool's output, if any."""
    for raw in strip_ansi(text).splitlines():
        line = raw.strip()
        if m := _GLOG_FATAL.match(line) or _CHECK_FAIL.match(line):
            return m.group(1).strip()
    return None


def parse_xdputil_benchmark(text: str) -> BenchmarkRun:
    """The ``FPS= ... number_of_frames= ... time= ... seconds.`` summary of ``xdputil benchmark``."""
    clean = strip_ansi(text)
    matches = list(_FPS.finditer(clean))
    if not matches:
        reason = failure_reason(clean)
        tail = reason or (clean.strip().splitlines()[-1] if clean.strip() else "no output")
        raise OutputFormatError(f"xdputil benchmark printed no 'FPS=' summary ({tail})")
    m = matches[-1]
    fps, frames, seconds = float(m.group(1)), float(m.group(2)), float(m.group(3))
    threads: dict[int, int] = {}
    for t in _THREAD.finditer(clean):
        threads[int(t.group(1))] = int(t.group(2))
    if fps <= 0 or seconds <= 0:
        raise OutputFormatError(f"xdputil benchmark reported FPS={fps} over {seconds} s")
    return BenchmarkRun(
        fps=fps,
        frames=round(frames),
        seconds=seconds,
        thread_frames=[threads[i] for i in sorted(threads)],
        passed="Test Failed" not in clean,
    )


def parse_xdputil_query(text: str) -> dict[str, Any]:
    """The JSON document of ``xdputil query`` plus a summary (``dpu_arch``, ``fingerprints``, versions)."""
    clean = strip_ansi(text)
    decoder = json.JSONDecoder()
    doc: dict[str, Any] | None = None
    for m in re.finditer(r"^\s*\{", clean, re.M):
        try:
            value, _ = decoder.raw_decode(clean[m.end() - 1 :])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            doc = value
            break
    if doc is None:
        raise OutputFormatError("xdputil query printed no JSON document")
    kernels = [k for k in doc.get("kernels", []) if isinstance(k, dict)]
    dpus = [k for k in kernels if k.get("DPU Arch")]
    versions = doc.get("VAI Version", {}) if isinstance(doc.get("VAI Version"), dict) else {}
    spec = doc.get("DPU IP Spec", {}) if isinstance(doc.get("DPU IP Spec"), dict) else {}
    return {
        "dpu_arch": sorted({str(k["DPU Arch"]) for k in dpus}),
        "fingerprints": sorted({str(k.get("fingerprint")) for k in dpus if k.get("fingerprint")}),
        "dpu_cores": len(dpus),
        "dpu_frequency_mhz": sorted({k["DPU Frequency (MHz)"] for k in dpus if "DPU Frequency (MHz)" in k}),
        "ip_version": spec.get("IP version"),
        "vart": versions.get("libvart-runner.so"),
        "xir": versions.get("libxir.so"),
        "target_factory": versions.get("target_factory"),
        "raw": doc,
    }
