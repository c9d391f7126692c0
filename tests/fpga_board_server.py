"""A real SSH server on loopback standing in for an FPGA board in the fpga_vitis tests.

:class:`LoopbackBoard` runs an asyncssh server in a background thread with a generated host key,
accepts one generated client key, serves SFTP on the real file system and executes every command with
``bash -c`` in a temporary "board" directory whose ``bin/`` (first on PATH) holds the stand-in
``xdputil`` of ``tests/fpga_board/``. Processes still running when the server stops are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

STANDINS = Path(__file__).parent / "fpga_board"


def install_standin(name: str, bin_dir: Path) -> Path:
    """Copy a stand-in tool into ``bin_dir`` with this interpreter in its shebang, executable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    text = (STANDINS / name).read_text(encoding="utf-8").split("\n", 1)[1]
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{text}", encoding="utf-8")
    path.chmod(0o755)
    return path


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoopbackBoard:
    """The server and the files a board YAML needs to reach it."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)  # extra environment of remote commands
    host: str = "127.0.0.1"
    port: int = 0
    sftp: bool = True  # False: a board without an SFTP subsystem

    def __post_init__(self) -> None:
        self.home = self.root / "board"
        self.bin = self.home / "bin"
        self.workdir = self.home / "work"
        self.home.mkdir(parents=True, exist_ok=True)
        install_standin("xdputil", self.bin)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_path = self.root / "host_key"
        self.client_key_path = self.root / "client_key"
        self.known_hosts_path = self.root / "known_hosts"
        host_key.write_private_key(str(self.host_key_path))
        client_key.write_private_key(str(self.client_key_path))
        self.client_key_path.chmod(0o600)
        self._host_key = host_key
        self._authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        self._procs: set[asyncio.subprocess.Process] = set()
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-board", daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None
        self.commands: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LoopbackBoard:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        self.port = self._server.sockets[0].getsockname()[1]
        public = self._host_key.export_public_key().decode().split()[:2]
        self.known_hosts_path.write_text(f"[{self.host}]:{self.port} {' '.join(public)}\n", encoding="utf-8")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            for proc in list(self._procs):
                _kill(proc)
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=10)
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LoopbackBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- board YAML ------------------------------------------------------------------------------
    def entry(self, **overrides: object) -> dict[str, object]:
        """A board entry reaching this server."""
        entry: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": os.environ.get("USER", "tester"),
            "key": str(self.client_key_path),
            "known_hosts": str(self.known_hosts_path),
            "host_key_policy": "strict",
            "workdir": str(self.workdir),
            "run_seconds": 2,
            "runs": 3,
            "max_runs": 6,
            "retries": 1,
            "retry_delay_s": 0.1,
            "connect_timeout_s": 5,
            "lock_file": str(self.root / "dpu.lock"),
        }
        return entry | overrides

    def remote_dirs(self) -> list[Path]:
        """What is left in the remote work directory."""
        return sorted(self.workdir.iterdir()) if self.workdir.exists() else []

    # -- server ----------------------------------------------------------------------------------
    async def _start(self) -> asyncssh.SSHAcceptor:
        board = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return board._authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None

        return await asyncssh.create_server(
            Server,
            self.host,
            0,
            server_host_keys=[self._host_key],
            process_factory=self._handle,
            sftp_factory=self.sftp or None,
            allow_scp=False,
        )

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command or ""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.commands.append(command)
        env = os.environ | {"HOME": str(self.home), "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"} | self.env
        data = await process.stdin.read()  # the client sends EOF after its input (none for most commands)
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            cwd=self.home,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._procs.add(proc)
        try:
            out, err = await proc.communicate(data.encode("utf-8", "surrogateescape") if data else None)
        finally:
            self._procs.discard(proc)
        status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        try:
            process.stdout.write(out.decode(errors="replace"))
            process.stderr.write(err.decode(errors="replace"))
            process.exit(status)
        except (OSError, asyncssh.Error):  # the client went away (its own time-out)
            pass


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def write_board_file(path: Path, entries: dict[str, dict[str, object]]) -> Path:
    """Write a board YAML with the given target entries."""
    import yaml

    path.write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
    return path
