"""On-disk cache of serialized TensorRT engines and of the builder's timing cache.

An engine is only valid for the network, precision and shapes it was built for, on the GPU model and
TensorRT version that built it, so its key holds exactly those: architecture id, precision, batch
profile (the exact batch sizes, one optimisation profile each), input size, builder optimisation
level and workspace limit, TensorRT version, GPU name and compute capability, and a digest of the
ONNX graph's structure (:func:`onnx_graph_digest`), so a network that a newer release exports
differently gets a new engine. The weights are not part of the key: networks are randomly
initialised and dense kernels run equally fast on any weights, so an engine of the same graph
measures the same. Each entry is
``<digest>.engine`` plus ``<digest>.json`` holding the key and the engine's SHA-256; an entry whose
metadata is unreadable, whose key differs or whose bytes do not match the checksum is deleted and
reported as a miss, so the caller rebuilds it. Files are written atomically (temporary file +
rename), so concurrent campaigns never read half an engine. The cache is best effort: a cache folder
that cannot be entered, or an entry that cannot be written or removed (a read-only or full disk), is
logged as a warning, and the engine just built is used all the same.

The cache directory is ``$ACCELNAS_TRT_CACHE`` if set (``off`` disables caching), else
``$XDG_CACHE_HOME/accelnas/tensorrt`` (``~/.cache/accelnas/tensorrt``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accelnas.core import files

log = logging.getLogger(__name__)

ENV_VAR = "ACCELNAS_TRT_CACHE"
DISABLED = ("off", "none", "0", "false", "")
FORMAT = 1


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on."""

    arch_id: str
    precision: str
    batch_profile: tuple[int, ...]  # one exact-shape optimisation profile per batch size, ascending
    input_size: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    opt_level: int = 3
    workspace_mib: int | None = None
    graph_digest: str = ""  # onnx_graph_digest of the exported network

    def __post_init__(self) -> None:
        if not self.batch_profile or any(b < 1 for b in self.batch_profile):
            raise ValueError(f"batch profile must be positive batch sizes, got {self.batch_profile}")
        if tuple(sorted(set(self.batch_profile))) != tuple(self.batch_profile):
            raise ValueError(f"batch profile must be ascending and unique, got {self.batch_profile}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_profile"] = list(self.batch_profile)
        return d

    @property
    def digest(self) -> str:
        text = json.dumps({"format": FORMAT, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @property
    def timing_cache_name(self) -> str:
        """One timing cache per GPU model and TensorRT version, shared by all architectures."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower()
        return f"timing-{slug}-sm{self.compute_capability.replace('.', '')}-trt{self.tensorrt_version}.cache"


def onnx_graph_digest(path: Path | str) -> str:
    """SHA-256 (24 hex digits) of an ONNX graph's structure: opsets, nodes with their attributes and
    wiring, initializer types and shapes, input and output types; not the weight values, nor the
    names the exporter gave to values."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    index: dict[str, int] = {}

    def ref(name: str) -> int:
        return index.setdefault(name, len(index)) if name else -1

    digest = hashlib.sha256()
    for opset in sorted((o.domain, o.version) for o in model.opset_import):
        digest.update(f"opset {opset}\n".encode())
    for t in graph.initializer:
        digest.update(f"initializer {ref(t.name)} {t.data_type} {list(t.dims)}\n".encode())
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for v in values:
            digest.update(f"{kind} {ref(v.name)} ".encode() + v.type.SerializeToString() + b"\n")
    for node in graph.node:
        wiring = f"node {node.domain} {node.op_type} {[ref(i) for i in node.input]} {[ref(o) for o in node.output]}"
        digest.update(wiring.encode())
        for attribute in sorted(node.attribute, key=lambda a: a.name):
            digest.update(b" " + attribute.SerializeToString())
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def batch_profile(throughput_batch: int) -> tuple[int, ...]:
    """Batch sizes an engine is built for (one exact profile each): 1 for latency and the throughput batch."""
    return tuple(sorted({1, throughput_batch}))


def cache_dir_from(value: str) -> Path | None:
    """The engine cache directory a setting names (``$ACCELNAS_TRT_CACHE``, ``--engine-cache``); None for
    ``off`` and the other words of :data:`DISABLED`."""
    return None if value.strip().lower() in DISABLED else Path(value).expanduser()


def default_cache_dir() -> Path | None:
    """The engine cache directory from the environment; None when caching is switched off."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return cache_dir_from(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "accelnas" / "tensorrt"


class EngineCache:
    """Serialized engines and timing caches under ``root`` (``root=None``: nothing is cached)."""

    def __init__(self, root: Path | str | None) -> None:
        self.root = Path(root) if root is not None else None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def paths(self, key: EngineKey) -> tuple[Path, Path]:
        if self.root is None:
            raise ValueError("the engine cache is disabled")
        return self.root / f"{key.digest}.engine", self.root / f"{key.digest}.json"

    def load(self, key: EngineKey) -> bytes | None:
        """The cached engine of ``key``, or None (missing, or corrupt and now removed)."""
        if self.root is None:
            return None
        engine_path, meta_path = self.paths(key)
        try:
            if not engine_path.exists() and not meta_path.exists():
                return None
        except OSError as exc:  # a folder this user may not enter: as if there were no cache
            log.warning("engine cache %s is unreadable (%s); building the engine", self.root, exc)
            return None
        problem = None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = engine_path.read_bytes()
            if not isinstance(meta, dict) or meta.get("key") != key.to_dict():
                problem = "metadata does not match the key"
            elif meta.get("sha256") != hashlib.sha256(data).hexdigest() or meta.get("bytes") != len(data):
                problem = "engine bytes do not match the checksum"
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        if problem:
            log.warning("engine cache entry %s is corrupt (%s); it will be rebuilt", engine_path.name, problem)
            self.invalidate(key)
            return None
        return data

    def store(self, key: EngineKey, engine: bytes, info: dict[str, Any] | None = None) -> Path | None:
        """Write ``engine`` for ``key`` (engine first, metadata last, so a crash leaves no valid-looking
        entry); None when caching is off or the entry could not be written (logged)."""
        if self.root is None:
            return None
        engine_path, meta_path = self.paths(key)
        meta = {
            "key": key.to_dict(),
            "sha256": hashlib.sha256(engine).hexdigest(),
            "bytes": len(engine),
            "info": info or {},
        }
        try:
            files.write_bytes(engine_path, engine)
            files.write_bytes(meta_path, json.dumps(meta, indent=1, sort_keys=True, default=str).encode())
        except OSError as exc:
            log.warning("could not cache the engine of %s in %s (%s)", key.arch_id, self.root, exc)
            self.invalidate(key)
            return None
        return engine_path

    def invalidate(self, key: EngineKey) -> None:
        """Remove the entry of ``key`` (both files), if any."""
        if self.root is not None:
            for path in self.paths(key):
                files.remove(path, "engine cache file")

    def load_timing_cache(self, key: EngineKey) -> bytes:
        """The serialized timing cache for ``key``'s GPU and TensorRT version (b"" when none)."""
        if self.root is None:
            return b""
        try:
            return (self.root / key.timing_cache_name).read_bytes()
        except OSError:
            return b""

    def store_timing_cache(self, key: EngineKey, data: bytes) -> None:
        if self.root is not None and data:
            try:
                files.write_bytes(self.root / key.timing_cache_name, data)
            except OSError as exc:
                log.warning("could not save the timing cache in %s (%s)", self.root, exc)

    def drop_timing_cache(self, key: EngineKey) -> None:
        if self.root is not None:
            files.remove(self.root / key.timing_cache_name, "engine cache file")
