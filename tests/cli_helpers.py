"""Run the ``accelnas`` command line in a subprocess, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: str | os.PathLike | None = None
) -> subprocess.CompletedProcess:
    full_env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    full_env.pop("ACCELNAS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "accelnas.core.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )
