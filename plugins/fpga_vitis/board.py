"""Board descriptions: a YAML file with one entry per target (``zcu102``, ``vck190``, ``dpu``).

The file is found through the measurement option ``fpga_board`` (``MeasureSettings(options=
(("fpga_board", "boards.yaml"),))``) or, failing that, the environment variable
``ACCELNAS_FPGA_BOARD``. Example::

    zcu102:
      host: 192.168.1.50          # required
      port: 22
      user: root
      key: ~/.ssh/id_ed25519      # private key; without it the SSH agent / default keys are used
      known_hosts: ~/.ssh/known_hosts
      host_key_policy: strict     # strict | accept-new | ignore
      workdir: /tmp/accelnas      # remote scratch directory (a fresh sub-directory per model)
      run_seconds: 10             # length of one xdputil benchmark run
      runs: 3                     # minimum runs per metric (more until the CI is within precision)
      max_runs: 10
      retries: 2                  # extra attempts after a connection failure or a time-out
      lock_file: /tmp/accelnas-dpu.lock   # `flock` serialises benchmarks on the board (null: off)
      sudo: false                 # xdputil through `sudo -n` (a non-root user; /dev/dpu is root-only)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from accelnas.core import yamlio
from accelnas.core.records import MeasureSettings
from accelnas.plugins.fpga_vitis.devices import PROFILES, target_batch
from accelnas.plugins.fpga_vitis.errors import BoardConfigError

ENV_BOARD = "ACCELNAS_FPGA_BOARD"
OPTION_BOARD = "fpga_board"
HOST_KEY_POLICIES = ("strict", "accept-new", "ignore")


@dataclass(frozen=True)
class BoardConfig:
    """One board: how to reach it, which DPU it carries and how to benchmark on it."""

    name: str
    host: str
    port: int = 22
    user: str = "root"
    key: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: str = "strict"
    dpu: str = ""
    arch: str | None = None
    batch: int = 1
    throughput_threads: int = 1
    latency_threads: int = 1
    workdir: str = "/tmp/accelnas"
    xdputil: str = "xdputil"
    run_seconds: float = 10.0
    runs: int = 3
    max_runs: int = 10
    connect_timeout_s: float = 15.0
    command_timeout_s: float | None = None  # None: run_seconds + 120 s
    retries: int = 2
    retry_delay_s: float = 2.0
    compile_timeout_s: float = 1800.0
    kill_on_timeout: bool = True  # wrap remote commands in `timeout -s KILL`
    lock_file: str | None = "/tmp/accelnas-dpu.lock"  # `flock` serialises benchmarks on the board; None: off
    sudo: bool = False  # run xdputil with `sudo -n` (a non-root user: /dev/dpu is root-only)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def command_timeout(self, run_seconds: float | None = None) -> float:
        """Seconds one remote benchmark command may take."""
        if self.command_timeout_s is not None:
            return self.command_timeout_s
        return (run_seconds if run_seconds is not None else self.run_seconds) + 120.0

    def public(self) -> dict[str, Any]:
        """The entry without secrets-adjacent paths, for provenance."""
        return {
            "board": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dpu": self.dpu,
            "batch": self.batch,
            "throughput_threads": self.throughput_threads,
            "latency_threads": self.latency_threads,
            "run_seconds": self.run_seconds,
            "host_key_policy": self.host_key_policy,
        }


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "port": (int,),
    "user": (str,),
    "key": (str,),
    "known_hosts": (str,),
    "host_key_policy": (str,),
    "dpu": (str,),
    "arch": (str,),
    "batch": (int,),
    "throughput_threads": (int,),
    "latency_threads": (int,),
    "workdir": (str,),
    "xdputil": (str,),
    "run_seconds": (int, float),
    "runs": (int,),
    "max_runs": (int,),
    "connect_timeout_s": (int, float),
    "command_timeout_s": (int, float),
    "retries": (int,),
    "retry_delay_s": (int, float),
    "compile_timeout_s": (int, float),
    "kill_on_timeout": (bool,),
    "lock_file": (str,),
    "sudo": (bool,),
}


def board_file(settings: MeasureSettings | None = None) -> Path | None:
    """The board YAML named by the ``fpga_board`` option or ``ACCELNAS_FPGA_BOARD`` (None if neither)."""
    value = settings.option(OPTION_BOARD) if settings is not None else None
    value = value or os.environ.get(ENV_BOARD)
    return Path(value).expanduser() if value else None


def read_board_file(path: Path) -> dict[str, dict[str, Any]]:
    """The raw entries of a board file, keyed by target backend; raise :class:`BoardConfigError`."""
    try:
        data = yamlio.load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BoardConfigError(f"board file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BoardConfigError(f"board file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise BoardConfigError(f"board file {path} is not valid YAML: {yamlio.problem(exc)}") from None
    if not isinstance(data, dict) or not data:
        raise BoardConfigError(f"board file {path} must map target names ({', '.join(PROFILES)}) to board entries")
    unknown = [k for k in data if k not in PROFILES]
    if unknown:
        raise BoardConfigError(
            f"board file {path}: unknown target {unknown[0]!r} (expected one of {', '.join(PROFILES)})"
        )
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise BoardConfigError(f"board file {path}: entry {name!r} must be a mapping of settings")
    return data


def _check(name: str, key: str, value: Any, path: Path) -> Any:
    types = _FIELD_TYPES[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        expected = " or ".join(t.__name__ for t in types)
        raise BoardConfigError(f"board file {path}: {name}.{key} must be {expected}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BoardConfigError(f"board file {path}: {name}.{key} must be finite")
    if isinstance(value, str) and not value.strip():  # an empty xdputil or arch would fail only on the board
        raise BoardConfigError(f"board file {path}: {name}.{key} is empty (leave it out for the default)")
    return value


def parse_board(name: str, entry: dict[str, Any], path: Path) -> BoardConfig:
    """Validate one entry, fill in the target's defaults and return the :class:`BoardConfig`."""
    unknown = [k for k in entry if k not in _FIELD_TYPES]
    if unknown:
        raise BoardConfigError(f"board file {path}: {name}.{unknown[0]} is not a board setting")
    if not entry.get("host"):
        raise BoardConfigError(f"board file {path}: {name}.host is required")
    values = {k: _check(name, k, v, path) for k, v in entry.items() if v is not None}
    if "lock_file" in entry and entry["lock_file"] is None:
        values["lock_file"] = None  # null switches the board-wide lock off
    profile = PROFILES[name]
    defaults: dict[str, Any] = {
        "dpu": profile.dpu,
        "arch": profile.arch,
        "batch": profile.batch,
        "throughput_threads": profile.throughput_threads,
        "latency_threads": profile.latency_threads,
    }
    # the DPU the entry names; the profile's only where the entry gives no arch.json of its own, whose
    # target is what is compiled for (and checked against batch when the file is here: check_option_values)
    dpu = values.get("dpu", None if "arch" in values else profile.dpu)
    named = target_batch(dpu)  # C32B3 runs 3, DPUCZDX8G 1; None where the name does not say
    if named is not None:
        if values.get("batch", named) != named:
            raise BoardConfigError(
                f"board file {path}: {name}.batch is {values['batch']}, but DPU {dpu} runs batch {named}"
            )
        defaults["batch"] = named
    board = BoardConfig(name=name, **(defaults | values))
    if not 1 <= board.port <= 65535:
        raise BoardConfigError(f"board file {path}: {name}.port must be within 1..65535, got {board.port}")
    if board.host_key_policy not in HOST_KEY_POLICIES:
        raise BoardConfigError(
            f"board file {path}: {name}.host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}, "
            f"got {board.host_key_policy!r}"
        )
    for key in ("batch", "throughput_threads", "latency_threads", "runs", "max_runs"):
        if getattr(board, key) < 1:
            raise BoardConfigError(f"board file {path}: {name}.{key} must be >= 1")
    if board.max_runs < board.runs:
        raise BoardConfigError(f"board file {path}: {name}.max_runs must be >= runs")
    if board.retries < 0 or board.retry_delay_s < 0:
        raise BoardConfigError(f"board file {path}: {name}.retries and retry_delay_s must be >= 0")
    for key in ("run_seconds", "connect_timeout_s", "compile_timeout_s"):
        if getattr(board, key) <= 0:
            raise BoardConfigError(f"board file {path}: {name}.{key} must be > 0")
    if board.command_timeout_s is not None and board.command_timeout_s <= board.run_seconds:
        raise BoardConfigError(
            f"board file {path}: {name}.command_timeout_s ({board.command_timeout_s:g}) must exceed run_seconds "
            f"({board.run_seconds:g}): every benchmark run would be killed"
        )
    if board.lock_file is not None and not board.lock_file.startswith("/"):
        raise BoardConfigError(f"board file {path}: {name}.lock_file must be an absolute path (or null)")
    if not board.workdir.startswith("/") or board.workdir.rstrip("/") in ("", "/"):
        raise BoardConfigError(f"board file {path}: {name}.workdir must be an absolute directory other than /")
    if name == "dpu" and not (board.arch and board.dpu):
        raise BoardConfigError(f"board file {path}: the generic 'dpu' entry needs 'arch' (arch.json) and 'dpu'")
    if board.key:
        board = replace(board, key=str(Path(board.key).expanduser()))
    return replace(board, known_hosts=str(Path(board.known_hosts).expanduser()))


def compiled_batch(compiled_info: dict[str, Any], board: BoardConfig) -> tuple[int, str]:
    """The DPU batch of the xmodel (from its compile target's name) and where it came from.

    A target that names its batch (``..._C32B6``; DPUCZDX8G always runs 1) must agree with the board
    entry's ``batch``, which is used only for targets whose name does not say.
    """
    target = compiled_info.get("compiled_target")
    batch = target_batch(str(target)) if target else None
    if batch is None:
        return board.batch, "board entry"
    if batch != board.batch:
        raise BoardConfigError(
            f"an xmodel compiled for {target} runs batch {batch}, but board {board.name}'s entry says batch "
            f"{board.batch}: fix 'batch' or the arch.json"
        )
    return batch, "compile target"


def load_board(name: str, settings: MeasureSettings | None = None) -> BoardConfig:
    """The board entry of target backend ``name``; raise :class:`BoardConfigError` with the fix."""
    path = board_file(settings)
    if path is None:
        raise BoardConfigError(
            f"no board configured for fpga/{name}: set {ENV_BOARD} (or the '{OPTION_BOARD}' option) to a board YAML"
        )
    entries = read_board_file(path)
    if name not in entries:
        raise BoardConfigError(f"board file {path} has no {name!r} entry (it has: {', '.join(entries)})")
    return parse_board(name, entries[name], path)
