"""Fuzz the loading of tree surrogates: edit saved XGBoost and LightGBM model files, load them, count crashes.

Fits a small XGBoost and a small LightGBM surrogate, then writes ``--cases`` damaged copies of each:
a random truncation, a deleted run of bytes, a byte replaced by a printable character, or a digit
replaced by another digit or a minus sign. Each copy's checksums are recomputed (as someone handing
over a surrogate directory could), so only the structural checks of
``accelnas.surrogates.models.tree_checks`` stand between the file and the native loaders. Copies are
loaded in child processes; a child that dies (abort, segfault) is counted as a crash and the rest are
loaded in a new child; a load still running after 30 s counts as hung. Every outcome is one of:
loaded, refused with a SurrogateError, crashed, hung. Exit status 1 if any copy crashed or hung.

    python benchmarks/model_file_fuzz.py --cases 2500 --seed 0 --keep crashed/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from accelnas.core.cli_options import at_least_one, output_file, output_folder, seed, write_output
from accelnas.core.model import count_macs
from accelnas.core.space import sample
from accelnas.surrogates import artifact
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.models import make

KINDS = ("truncate", "delete", "byte", "digit")
FILES = {"xgboost": "xgboost.json", "lightgbm": "lightgbm.txt"}
HANG_SECONDS = 30
CHILD = f"""
import faulthandler, sys
from accelnas.core.errors import SurrogateError
from accelnas.surrogates import artifact
for path in sys.argv[1:]:
    print("start", path, flush=True)
    faulthandler.dump_traceback_later({HANG_SECONDS}, exit=True)  # a load spinning in native code ends the child
    try:
        artifact.load(path)
        print("loaded", path, flush=True)
    except SurrogateError:
        print("refused", path, flush=True)
    faulthandler.cancel_dump_traceback_later()
"""


def _damage(data: bytes, kind: str, rng: random.Random) -> tuple[bytes, str]:
    """The damaged bytes and what was done, e.g. ``byte 812: '\\n' -> 'x'``."""
    out = bytearray(data)
    pos = rng.randrange(len(out))
    if kind == "truncate":
        return bytes(out[:pos]), f"cut at {pos} of {len(out)}"
    if kind == "delete":
        size = rng.randrange(1, 40)
        del out[pos : pos + size]
        return bytes(out), f"{size} bytes deleted at {pos}"
    if kind == "digit":
        pos = rng.choice([i for i, b in enumerate(out) if 48 <= b <= 57])
        new = ord(rng.choice("0123456789-"))
    else:
        new = rng.randrange(32, 127)
    old, out[pos] = out[pos], new
    return bytes(out), f"byte {pos}: {chr(old)!r} -> {chr(new)!r}"


def _resign(directory: Path) -> None:
    meta = json.loads((directory / "surrogate.json").read_text())
    meta["files"] = {
        n: hashlib.sha256(artifact.model_file(directory, n).read_bytes()).hexdigest() for n in meta.get("files", {})
    }
    meta["model_sha256"] = artifact._state_sha256(meta["model"])
    (directory / "surrogate.json").write_text(json.dumps(meta))


def _load_all(paths: list[str]) -> dict[str, str]:
    """Outcome per path; a child that dies (or spins past HANG_SECONDS) marks the path it was loading as
    crashed (or hung) and a new child goes on."""
    outcome: dict[str, str] = {}
    while todo := [p for p in paths if p not in outcome]:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *todo], capture_output=True, text=True, errors="replace", check=False
        )
        current = None
        for line in child.stdout.splitlines():
            word, _, path = line.partition(" ")
            if word == "start":
                current = path
            elif word in ("loaded", "refused"):
                outcome[path], current = word, None
        if current is not None:
            outcome[current] = "hung" if "Timeout (" in child.stderr else "crashed"
        elif child.returncode != 0:
            raise SystemExit(f"the loading process failed outside a load: {child.stderr.strip()[-300:]}")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=at_least_one, default=250, help="Damaged copies per model format.")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--json", type=output_file, default=None, help="Write the counts here.")
    parser.add_argument("--keep", type=output_folder, default=None,
                        help="Copy each surrogate that crashed a process here.")  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    archs = sample(120, args.seed)
    y = [count_macs(a, 64) / 1e6 for a in archs]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kinds: dict[str, tuple[str, str]] = {}
        done: dict[str, str] = {}
        for family, name in FILES.items():
            source = artifact.save(
                SurrogateArtifact(make(family, n_estimators=20).fit(archs, y), "sim/x", "latency", "ms"),
                root / family,
            )
            data = artifact.model_file(source, name).read_bytes()
            for i in range(args.cases):
                copy = root / f"{family}-{i}"
                shutil.copytree(source, copy)
                kind = rng.choice(KINDS)
                damaged, done[str(copy)] = _damage(data, kind, rng)
                artifact.model_file(copy, name).write_bytes(damaged)
                _resign(copy)
                kinds[str(copy)] = (family, kind)
        outcome = _load_all(list(kinds))
        for path, result in outcome.items():
            if result in ("crashed", "hung"):
                print(f"{result}: {kinds[path][0]} {done[path]}")
                if args.keep:
                    shutil.copytree(path, args.keep / Path(path).name, dirs_exist_ok=True)
    counts = Counter((*kinds[path], result) for path, result in outcome.items())
    print(f"{'format':10s} {'damage':9s} {'loaded':>7s} {'refused':>8s} {'crashed':>8s} {'hung':>5s}")
    for family in FILES:
        for kind in KINDS:
            row = [counts[(family, kind, r)] for r in ("loaded", "refused", "crashed", "hung")]
            print(f"{family:10s} {kind:9s} {row[0]:7d} {row[1]:8d} {row[2]:8d} {row[3]:5d}")
    crashed = sum(n for (_, _, r), n in counts.items() if r == "crashed")
    hung = sum(n for (_, _, r), n in counts.items() if r == "hung")
    print(f"{len(outcome)} damaged files, {crashed} crashed a loading process, {hung} hung")
    if args.json:
        write_output(args.json, json.dumps({"/".join(k): n for k, n in sorted(counts.items())}, indent=2) + "\n")
    return 1 if crashed or hung else 0


if __name__ == "__main__":
    raise SystemExit(main())
