"""Query a directory of surrogates: ``Benchmark.query(archs, device=..., metric=...)``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accelnas.core.errors import NoSurrogateError, SurrogateError
from accelnas.core.records import names_target
from accelnas.core.space import Architecture, as_architecture
from accelnas.surrogates import artifact
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.build import INDEX_FILE, INDEX_FORMAT, INDEX_VERSION


@dataclass
class Prediction:
    """Predicted mean and spread (seed-ensemble std) per architecture, in ``unit``."""

    mean: np.ndarray
    std: np.ndarray
    unit: str | None
    target: str
    metric: str

    def __len__(self) -> int:
        return len(self.mean)


def _index_paths(meta: object, index: Path) -> list[tuple[str, tuple[str, str] | None]]:
    """The surrogate directories a ``benchmark.json`` lists, each with the (target, metric) it records
    (None where it records none); :class:`SurrogateError` naming a malformed field or a path that
    leads outside the benchmark's directory (``..``, absolute, or through a link)."""
    if not isinstance(meta, dict):
        raise SurrogateError(f"corrupt benchmark index {index}: not a JSON object")
    if "surrogates" not in meta:
        raise SurrogateError(f"corrupt benchmark index {index}: no 'surrogates' field")
    entries = meta["surrogates"]
    if not isinstance(entries, list):
        raise SurrogateError(f"corrupt benchmark index {index}: 'surrogates' must be a list")
    paths = []
    for i, entry in enumerate(entries):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            raise SurrogateError(f"corrupt benchmark index {index}: surrogates[{i}] has no 'path' string")
        root = index.parent.resolve()
        if not (index.parent / path).resolve().is_relative_to(root):
            raise SurrogateError(
                f"corrupt benchmark index {index}: surrogates[{i}] path {path!r} leads outside {index.parent}"
            )
        target, metric = entry.get("target"), entry.get("metric")
        listed = (target, metric) if isinstance(target, str) and isinstance(metric, str) else None
        paths.append((path, listed))
    return paths


def read_index(index: Path) -> list[tuple[str, tuple[str, str] | None]]:
    """The surrogate directories a ``benchmark.json`` lists, as :func:`_index_paths` gives them;
    :class:`SurrogateError` where the file is not JSON, not an accelnas benchmark index, or of a
    format this version does not read."""
    try:
        meta = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SurrogateError(f"corrupt benchmark index {index}: {exc}") from None
    listed = _index_paths(meta, index)
    kind, version = meta.get("format", INDEX_FORMAT), meta.get("format_version", INDEX_VERSION)
    if kind != INDEX_FORMAT or not isinstance(version, int) or version > INDEX_VERSION:
        raise SurrogateError(
            f"{index} is not an accelnas benchmark index this version reads ({kind!r}, version {version!r})"
        )
    return listed


class Benchmark:
    """Surrogates by (target, metric); a device name alone finds its target (``zcu102`` -> ``zcu102/anb``).

    :meth:`load` reads each surrogate's model when it is first used, so a query loads only what it
    needs, and a damaged surrogate is reported (naming its file) by the queries that use it; the
    pairs come from ``benchmark.json``, so a damaged ``surrogate.json`` fails only its own pair.
    """

    def __init__(
        self,
        surrogates: Sequence[SurrogateArtifact | str | Path],
        where: Sequence[str] | None = None,
        pairs: Sequence[tuple[str, str] | None] | None = None,
    ) -> None:
        """``surrogates``: loaded artifacts, or surrogate directories to load on first use; ``where``
        names each (its directory) in the error about two for one pair; ``pairs``: the (target,
        metric) of each directory as an index lists it (checked when it loads; None: read now)."""
        self._by_pair: dict[tuple[str, str], SurrogateArtifact | Path] = {}
        self._listed: set[tuple[str, str]] = set()
        seen: dict[tuple[str, str], str] = {}
        for i, s in enumerate(surrogates):
            s = Path(s) if isinstance(s, str) else s  # a directory given as text
            if not isinstance(s, Path | SurrogateArtifact):
                raise TypeError(f"a benchmark holds surrogate directories or artifacts, got {type(s).__name__}")
            listed = pairs[i] if pairs and isinstance(s, Path) else None
            if listed is not None:
                pair = listed
                self._listed.add(pair)
            else:
                pair = artifact.identity(s) if isinstance(s, Path) else (s.target, s.metric)
            name = str(where[i]) if where else f"surrogate {i + 1}"
            if pair in seen:
                raise SurrogateError(f"two surrogates for {pair[0]}:{pair[1]}: {seen[pair]} and {name}")
            seen[pair], self._by_pair[pair] = name, s

    def _get(self, pair: tuple[str, str]) -> SurrogateArtifact:
        """The surrogate of a pair, loaded now if it was not yet."""
        found = self._by_pair[pair]
        if isinstance(found, Path):
            loaded = artifact.load(found)
            if pair in self._listed and (loaded.target, loaded.metric) != pair:
                raise SurrogateError(
                    f"{found / artifact.METADATA_FILE} holds {loaded.target}:{loaded.metric}, but the benchmark "
                    f"index lists it as {pair[0]}:{pair[1]}"
                )
            found = self._by_pair[pair] = loaded
        return found

    @classmethod
    def load(cls, path: str | Path) -> Benchmark:
        """The surrogates listed in ``benchmark.json`` (or found below ``path``); models load on first use."""
        root = Path(path)
        index = root / INDEX_FILE
        if index.is_file():
            listed = read_index(index)
            dirs, pairs = [root / path for path, _ in listed], [pair for _, pair in listed]
        elif root.is_dir():
            dirs = sorted(p.parent for p in root.rglob(artifact.METADATA_FILE))
            pairs = [None] * len(dirs)
        else:
            raise SurrogateError(f"no benchmark at {root}")
        if not dirs:
            raise SurrogateError(f"no surrogates under {root}")
        return cls(dirs, where=[str(d) for d in dirs], pairs=pairs)

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._by_pair)

    def find(self, device: str | None = None, metric: str | None = None) -> list[SurrogateArtifact]:
        """The surrogates of a device (or full target name) and of a metric, ``None`` matching any."""
        return [self.get(target, m) for target, m in self.find_pairs(device, metric)]

    def find_pairs(self, device: str | None = None, metric: str | None = None) -> list[tuple[str, str]]:
        """The (target, metric) pairs :meth:`find` would load, loading none."""
        return [
            (target, m)
            for target, m in self.pairs()
            if (metric is None or m == metric) and (device is None or names_target(device, target))
        ]

    def get(self, target: str, metric: str) -> SurrogateArtifact:
        """The surrogate of ``target`` and ``metric`` (loaded on first use; a damaged one raises here)."""
        if (target, metric) not in self._by_pair:
            raise self.not_found(target, metric)
        return self._get((target, metric))

    def surrogate(self, device: str | None = None, metric: str = "accuracy") -> SurrogateArtifact:
        """The surrogate for a device (or full target name) and metric."""
        matches = self.find(device, metric)
        if len(matches) != 1:
            raise self.not_found(device, metric, "no surrogate" if not matches else "several surrogates")
        return matches[0]

    def not_found(self, device: str | None, metric: str | None, reason: str = "no surrogate") -> NoSurrogateError:
        """The error for a device and/or metric this benchmark cannot answer, listing what it can."""
        if device is not None and metric is not None:
            what = f"{device}:{metric}" if device else f"device '' ({metric})"
        elif device is not None:
            what = f"device {device!r}"
        else:
            what = f"metric {metric!r}"
        known = ", ".join(f"{t}:{m}" for t, m in self.pairs())
        return NoSurrogateError(f"{reason} for {what} (available: {known})")

    def query(
        self,
        archs: Architecture | str | Mapping[str, Any] | Sequence[Architecture | str | Mapping[str, Any]],
        device: str | None = None,
        metric: str = "accuracy",
    ) -> Prediction:
        """Predicted mean and std of ``metric`` on ``device`` for one or many architectures.

        An architecture is an :class:`Architecture`, a string id, ``b0``, JSON text, a JSON file or
        a config dict (``block{i}_e/_k/_l/_se``).
        """
        if not isinstance(archs, Architecture | str | Mapping | Iterable) or isinstance(archs, bytes | bytearray):
            raise TypeError(f"query takes an architecture or a list of them, got {type(archs).__name__}")
        items = [archs] if isinstance(archs, (Architecture, str, Mapping)) else list(archs)
        parsed = [as_architecture(a) for a in items]
        s = self.surrogate(device, metric)  # an unknown pair is an error even for no architectures
        mean, std = s.predict_dist(parsed)
        return Prediction(np.asarray(mean), np.asarray(std), s.unit, s.target, s.metric)
