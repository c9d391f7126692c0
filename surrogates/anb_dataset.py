"""Import the public Accel-NASBench dataset (``result_N.json`` records) into the dataset schema.

Sources: a directory of ``result_*.json`` files (searched recursively; one with none is searched for
tar archives of them), the ``anb_dataset_jsons.tar.gz`` archive, or a URL of that archive
(downloaded once into a cache).
Every record yields up to nine rows: accuracy (``val_top1``), throughput on six devices and latency
on the two FPGAs; ``sequence`` is the record's number ``N``. Malformed records and incomplete
entries are counted with their reasons and skipped, never silently dropped.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import tarfile
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import pandas as pd

from accelnas.core.dataset import COLUMNS
from accelnas.core.errors import DatasetError, InvalidArchitectureError
from accelnas.core.space import Architecture

log = logging.getLogger(__name__)

ANB_URL = "https://github.com/afzalxo/Accel-NASBench/raw/master/anb_dataset/anb_dataset_jsons.tar.gz"
ACCURACY_TARGET = "imagenet/anb"
# platform_perf key -> (device, metric); targets are "<device>/anb"
PERF_KEYS: dict[str, tuple[str, str]] = {
    "throughput_a100": ("a100", "throughput"),
    "throughput_3090": ("3090", "throughput"),
    "throughput_tpuv2": ("tpuv2", "throughput"),
    "throughput_tpuv3": ("tpuv3", "throughput"),
    "throughput_zcu102": ("zcu102", "throughput"),
    "throughput_vck190": ("vck190", "throughput"),
    "latency_zcu102": ("zcu102", "latency"),
    "latency_vck190": ("vck190", "latency"),
}
UNITS = {"throughput": "images/s", "latency": "ms", "accuracy": "%"}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)  # what reading a damaged archive raises
RECORD_NUMBER = re.compile(r"result_(\d+)\.json$")  # sequence: record numbers follow measurement sessions


def is_url(source: str | Path) -> bool:
    """Whether an import source is a URL to download (otherwise a local path)."""
    return str(source).startswith(("http://", "https://"))


def anb_target(device: str) -> str:
    return f"{device}/anb"


@dataclass
class ImportReport:
    """What an import read, kept and skipped (with reasons and a few examples per reason)."""

    source: str
    records: int = 0
    records_ok: int = 0
    rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(name)

    def summary(self) -> str:
        head = f"{self.records} records read from {self.source}: {self.records_ok} complete, {self.rows} rows"
        if not self.skipped:
            return head + ", nothing skipped"
        parts = [f"{n} x {reason} (e.g. {', '.join(self.examples[reason])})" for reason, n in self.skipped.items()]
        return head + "; skipped: " + "; ".join(parts)


def default_cache_dir() -> Path:
    base = os.environ.get("ACCELNAS_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "accelnas"


def fetch(url: str = ANB_URL, cache_dir: Path | None = None, timeout: float = 120) -> Path:
    """Download ``url`` into the cache once (atomic rename); return the local path.

    A download shorter than its announced length, or an archive that does not read to its end, is
    discarded rather than cached; a damaged archive already in the cache is downloaded again.
    """
    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    name = Path(url.split("?")[0]).name or "download"
    path = cache / f"{sha256(url.encode()).hexdigest()[:12]}-{name}"
    if path.is_file() and path.stat().st_size > 0:
        problem = _archive_problem(path)
        if problem is None:
            return path
        log.warning("cached download %s is damaged (%s); downloading it again", path, problem)
        path.unlink()
    partial = path.with_suffix(path.suffix + ".part")
    log.info("downloading %s to %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                received += len(chunk)
        if expected is not None and expected.isdigit() and received != int(expected):
            raise DatasetError(f"cannot download {url}: the connection ended after {received} of {expected} bytes")
        problem = _archive_problem(partial)
        if problem is not None:
            raise DatasetError(f"cannot download {url}: the file received is {problem}")
    except (OSError, http.client.HTTPException) as exc:
        partial.unlink(missing_ok=True)
        raise DatasetError(f"cannot download {url}: {exc or type(exc).__name__}") from None
    except DatasetError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return path


def _archive_problem(path: Path) -> str | None:
    """Why a downloaded tar archive cannot be read to its end, or ``None``.

    Every download is one (:func:`import_anb` reads it as one), whatever its URL's name ends in.
    """
    try:
        with tarfile.open(path) as tar:
            for _ in tar:
                pass
            cut = _missing_end(tar)
    except TAR_ERRORS as exc:
        return f"not a complete tar archive ({_tar_reason(exc)})"
    return f"not a complete tar archive ({cut})" if cut else None


def _missing_end(tar: tarfile.TarFile) -> str | None:
    """Why a tar archive read to its last member lacks tar's end-of-archive blocks (zeros), or ``None``.

    tarfile stops quietly where the data stop, so an archive cut exactly between two members would
    otherwise read as a complete, smaller one.
    """
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        return f"it ends after {tar.offset} bytes without tar's end-of-archive blocks, cut short"
    return None


def _tar_reason(exc: BaseException) -> str:
    """One line for an error reading a tar archive."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    # tarfile lists each compression it tried, one per line, after a header line ending in ':'
    return "not a tar archive (plain, gzip, bzip2 or xz)" if lines[0].endswith(":") else lines[0]


def _record_number(name: str) -> int | None:
    """The number in a ``result_<n>.json`` file name (the measurement order), if any."""
    number = RECORD_NUMBER.search(name)
    return int(number.group(1)) if number else None


def _record_order(name: str) -> tuple[float, str]:
    """Measurement order of a record: its number, then its name; unnumbered names last."""
    number = _record_number(name)
    return (math.inf if number is None else number, name)


def _archives_under(directory: Path) -> list[Path]:
    """Tar archives under a directory (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``)."""
    found = (f for f in directory.rglob("*") if f.is_file() and f.name.endswith(ARCHIVE_SUFFIXES))
    return sorted(found)


def _iter_sources(source: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every ``result_*.json`` record in a directory or archive.

    A directory yields its ``result_*.json`` files or, when it has none, the records of the tar
    archives under it (a directory holding ``anb_dataset_jsons.tar.gz`` as published); archives
    without records (or not readable as tar) are passed over.
    """
    if source.is_dir():
        files = sorted(f for f in source.rglob("result_*.json") if f.is_file())
        if files:
            for f in files:
                yield f.name, f.read_bytes()
            return
        archives = _archives_under(source)
        if not archives:
            raise DatasetError(f"no result_*.json files or tar archives of them under {source}")
        unusable: list[str] = []
        for archive in archives:
            read = 0
            try:
                for item in _iter_archive(archive):
                    read += 1
                    yield item
            except DatasetError as exc:
                if read:  # records were read from it: a damaged archive, not an unrelated one
                    raise
                log.info("skipping %s: %s", archive, exc)
                unusable.append(str(exc))
        if len(unusable) == len(archives):
            raise DatasetError(f"no archive under {source} holds result_*.json records ({unusable[0]})")
        return
    if not source.is_file():
        raise DatasetError(f"Accel-NASBench source not found: {source}")
    yield from _iter_archive(source)


def _iter_archive(source: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(source) as tar:
            found = False
            for member in tar:
                # a link is a record too, as in a directory: tar stores a file once and links its other
                # names to it (hard links), and keeps a directory's symbolic links as links
                is_file = member.isfile() or member.islnk() or member.issym()
                if is_file and Path(member.name).name.startswith("result_") and member.name.endswith(".json"):
                    found = True
                    try:
                        handle = tar.extractfile(member)
                    except (KeyError, RecursionError):
                        # a link to a member the archive lacks, or symbolic links that lead to one another
                        # in a loop (tarfile follows them without end): read as an empty record
                        handle = None
                    yield Path(member.name).name, handle.read() if handle else b""
            if not found:
                raise DatasetError(f"no result_*.json records in {source}")
            cut = _missing_end(tar)
            if cut:
                raise DatasetError(f"cannot read archive {source}: {cut}")
    except TAR_ERRORS as exc:
        raise DatasetError(f"cannot read archive {source}: {_tar_reason(exc)}") from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _record_rows(name: str, record: Any, source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of one record and the reasons any of its entries were skipped."""
    if not isinstance(record, dict):
        return [], ["not a JSON object"]
    try:
        arch = Architecture.from_config(record.get("architecture"))
    except InvalidArchitectureError as exc:
        return [], [f"invalid architecture ({str(exc).split(': ', 1)[-1]})"]
    base = {"arch_id": arch.id, **arch.to_config(), "source": source, "settings_key": "anb",
            "sequence": _record_number(name)}  # fmt: skip
    rows = []
    reasons = []
    metrics = record.get("metrics")
    top1 = _number(metrics.get("val_top1")) if isinstance(metrics, dict) else None
    if top1 is None or not 0 < top1 <= 100:
        reasons.append("missing or invalid metrics.val_top1")
    else:
        rows.append(base | {"target": ACCURACY_TARGET, "metric": "accuracy", "value": top1, "unit": "%"})
    perf = record.get("platform_perf")
    perf = perf if isinstance(perf, dict) else {}
    for key, (device, metric) in PERF_KEYS.items():
        entry = perf.get(key)
        mean = _number(entry.get(f"{metric}_mean")) if isinstance(entry, dict) else None
        if mean is None or mean <= 0:
            reasons.append(f"missing or invalid {key}")
            continue
        raw_std = entry.get(f"{metric}_std")
        std = _number(raw_std)
        if raw_std is not None and (std is None or std < 0):  # null means "not measured"; anything else must be a std
            reasons.append(f"invalid {key}.{metric}_std (kept without it)")
            std = None
        rows.append(base | {"target": anb_target(device), "metric": metric, "value": mean,
                            "std": std, "unit": UNITS[metric]})  # fmt: skip
    return rows, reasons


def import_anb(source: str | Path = ANB_URL, *, cache_dir: Path | None = None) -> tuple[pd.DataFrame, ImportReport]:
    """Read Accel-NASBench records from a directory, archive or URL into a dataset frame."""
    text = str(source)
    path = fetch(text, cache_dir) if is_url(text) else Path(text)
    report = ImportReport(source=text)
    parsed: list[tuple[str, list[dict[str, Any]], list[str]]] = []
    for name, payload in _iter_sources(path):
        report.records += 1
        try:
            record = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            report.skip("malformed JSON", name)
            continue
        parsed.append((name, *_record_rows(name, record, f"anb:{name}")))
    # An architecture measured twice keeps its earliest record, whatever order the files come in.
    first: dict[str, int] = {}
    for i, (name, new, _) in enumerate(parsed):
        kept = first.get(new[0]["arch_id"]) if new else None
        if new and (kept is None or _record_order(name) < _record_order(parsed[kept][0])):
            first[new[0]["arch_id"]] = i
    rows: list[dict[str, Any]] = []
    for i, (name, new, reasons) in enumerate(parsed):
        if new and first[new[0]["arch_id"]] != i:
            report.skip("duplicate architecture", f"{name} (same as {parsed[first[new[0]['arch_id']]][0]})")
            continue
        for reason in reasons:
            report.skip(reason, name)
        report.records_ok += not reasons
        rows += new
    if not rows:
        raise DatasetError(f"no usable Accel-NASBench records in {text} ({report.summary()})")
    report.rows = len(rows)
    frame = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    return frame, report
