"""SSH to a board with asyncssh: connect (with a host-key policy), upload by SFTP, run commands, clean up.

Remote commands are argument lists joined with :func:`shlex.join`, so no value from a board file or
an architecture reaches the remote shell unquoted. With ``kill_on_timeout`` (the default) every command
runs under ``timeout -s KILL <seconds>`` on the board (GNU coreutils and BusyBox both accept it), so a
hung benchmark does not outlive its time-out; the client gives up a little later in any case.
"""

from __future__ import annotations

import asyncio
import logging
import math
import posixpath
import shlex
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from accelnas.plugins.fpga_vitis.board import BoardConfig
from accelnas.plugins.fpga_vitis.errors import (
    BoardConfigError,
    BoardLoginError,
    BoardUnreachableError,
    RemoteCommandError,
    RemoteTimeoutError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
CLIENT_GRACE_S = 15.0  # the client waits this much longer than the remote `timeout`
KILLED = (124, 137)  # exit codes of `timeout` (GNU: 124 on TERM, 128 + 9 when it sends KILL)


@dataclass
class RemoteResult:
    """What a remote command returned."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr


def remote_command(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    kill_after: float | None = None,
    sudo: bool = False,
    lock: str | None = None,
) -> str:
    """A shell-safe command line from an argument list.

    Prefixes, outermost first: ``flock <lock>`` (one such command at a time on the board), ``sudo -n``,
    ``timeout -s KILL <s>``, ``env K=V``.
    """
    if not argv:
        raise ValueError("empty remote command")
    parts = [str(a) for a in argv]
    if env:
        parts = ["env", *(f"{k}={v}" for k, v in env.items()), *parts]
    if kill_after is not None:
        parts = ["timeout", "-s", "KILL", str(max(1, math.ceil(kill_after))), *parts]
    if sudo:
        parts = ["sudo", "-n", *parts]
    if lock:
        parts = ["flock", lock, *parts]
    return shlex.join(parts)


def _known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {algorithm} {blob}\n"


def _is_known(path: Path, host: str, port: int) -> bool:
    if not path.is_file():
        return False
    try:
        addr = socket.gethostbyname(host)
    except OSError:
        addr = host
    trusted = asyncssh.read_known_hosts(str(path)).match(host, addr, port)
    return bool(trusted[0] or trusted[1])


async def _known_hosts_for(board: BoardConfig) -> str | None:
    """The known_hosts argument of asyncssh.connect for the board's host-key policy."""
    if board.host_key_policy == "ignore":
        return None
    path = Path(board.known_hosts)
    if board.host_key_policy == "accept-new" and not _is_known(path, board.host, board.port):
        key = await asyncssh.get_server_host_key(board.host, board.port)
        if key is None:
            raise BoardUnreachableError(f"board {board.name} at {board.host}:{board.port} offered no host key")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(_known_hosts_line(board.host, board.port, key))
        log.warning("recorded the host key of %s:%s in %s (accept-new)", board.host, board.port, path)
    if not path.is_file():
        raise BoardConfigError(
            f"known_hosts file {path} does not exist; add the board's key or use host_key_policy: accept-new"
        )
    return str(path)


def load_client_key(board: BoardConfig) -> asyncssh.SSHKey | None:
    """The board entry's private key, loaded; raise :class:`BoardConfigError` when it cannot be used."""
    if not board.key:
        return None
    if not Path(board.key).is_file():
        raise BoardConfigError(f"board {board.name}: SSH key {board.key} does not exist")
    try:
        return asyncssh.read_private_key(board.key)
    except asyncssh.KeyImportError as exc:
        hint = " (a passphrase-protected key: load it into ssh-agent and omit 'key')" if "assphrase" in str(exc) else ""
        raise BoardConfigError(f"board {board.name}: SSH key {board.key} cannot be loaded: {exc}{hint}") from None
    except OSError as exc:
        raise BoardConfigError(f"board {board.name}: SSH key {board.key} cannot be read: {exc.strerror}") from None


def _cause(exc: BaseException | None) -> str:
    """A short cause of a connection failure, in words the campaign's retry policy knows."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, socket.timeout)):
        return "connection timed out"
    if isinstance(exc, (asyncssh.ConnectionLost, ConnectionResetError, asyncssh.DisconnectError)):
        return "connection closed"
    return "connection failed"


def unreachable(board: BoardConfig, attempts: int, last: BaseException | None) -> BoardUnreachableError:
    detail = (str(last) if last is not None else "") or type(last).__name__
    return BoardUnreachableError(
        f"board {board.name} ({board.address}) unreachable after {attempts} attempts ({_cause(last)}): {detail}"
    )


def probe(board: BoardConfig) -> None:
    """Open (and close) a TCP connection to the board's SSH port, with the entry's retries.

    Cheap, so that an unreachable board is found before a model is quantized and compiled for it.
    """
    last: BaseException | None = None
    for number in range(board.retries + 1):
        if number:
            time.sleep(board.retry_delay_s * number)
        try:
            with socket.create_connection((board.host, board.port), timeout=board.connect_timeout_s):
                return
        except OSError as exc:
            last = exc
    raise unreachable(board, board.retries + 1, last)


class BoardClient:
    """One SSH connection to a board (``async with BoardClient(board) as client``)."""

    def __init__(self, board: BoardConfig) -> None:
        self.board = board
        self.conn: asyncssh.SSHClientConnection | None = None
        self.no_sftp = False

    async def __aenter__(self) -> BoardClient:
        board = self.board
        key = load_client_key(board)
        known_hosts = await _known_hosts_for(board)
        kwargs: dict[str, Any] = {
            "port": board.port,
            "username": board.user,
            "known_hosts": known_hosts,
            "connect_timeout": board.connect_timeout_s,
            "login_timeout": board.connect_timeout_s,
            "keepalive_interval": 15,
        }
        if key is not None:
            kwargs |= {"client_keys": [key], "agent_path": None}
        self.conn = await asyncssh.connect(board.host, **kwargs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()
            self.conn = None

    def _connection(self) -> asyncssh.SSHClientConnection:
        if self.conn is None:
            raise RuntimeError("BoardClient used outside 'async with'")
        return self.conn

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        check: bool = True,
        sudo: bool = False,
        lock: bool = False,
    ) -> RemoteResult:
        """Run ``argv`` on the board; raise on time-out and (with ``check``) on a non-zero exit.

        ``sudo`` runs it through ``sudo -n`` where the board entry says so; ``lock`` holds the board's
        ``lock_file`` (``flock``) while it runs, so runs of several clients take turns: the client then
        also waits up to ``timeout`` for the lock.
        """
        board = self.board
        kill_after = timeout if board.kill_on_timeout else None
        lock_file = board.lock_file if lock else None
        command = remote_command(argv, env=env, kill_after=kill_after, sudo=sudo and board.sudo, lock=lock_file)
        client_timeout = timeout + CLIENT_GRACE_S if kill_after is not None else timeout
        if lock_file:
            client_timeout += timeout  # another client's run (bounded by its own time-out) may hold the lock
        start = time.perf_counter()
        try:
            done = await self._connection().run(command, check=False, timeout=client_timeout, stdin=asyncssh.DEVNULL)
        except asyncssh.TimeoutError:
            raise RemoteTimeoutError(f"{argv[0]} on board {self.board.name} timed out after {timeout:g} s") from None
        seconds = time.perf_counter() - start
        status = _status(done)
        result = RemoteResult(command, status, str(done.stdout or ""), str(done.stderr or ""), seconds)
        if kill_after is not None and status in KILLED and seconds >= timeout * 0.95:
            raise RemoteTimeoutError(f"{argv[0]} on board {self.board.name} timed out after {timeout:g} s (killed)")
        if check and status != 0:
            lines = [line.strip() for line in result.output.splitlines() if line.strip()]
            detail = lines[-1] if lines else "no output"
            raise RemoteCommandError(f"{argv[0]} on board {self.board.name} exited with status {status}: {detail}")
        return result

    async def _sftp(self) -> asyncssh.SFTPClient | None:
        """An SFTP client, or None on a board without an SFTP subsystem (remembered for the connection)."""
        if self.no_sftp:
            return None
        try:
            return await self._connection().start_sftp_client()
        except (asyncssh.ChannelOpenError, asyncssh.SFTPError, BrokenPipeError) as exc:
            # refused (OpenSSH without sftp-server), or accepted and ended at once (dropbear, whose
            # sftp-server binary is not installed: SFTPConnectionLost); the connection itself is fine
            self.no_sftp = True
            log.info("board %s has no SFTP subsystem (%s): copying with cat over an exec channel", self.board.name, exc)
            return None

    async def _shell(self, command: str, data: bytes | None = None) -> asyncssh.SSHCompletedProcess:
        stdin = {"input": data} if data is not None else {"stdin": asyncssh.DEVNULL}
        return await self._connection().run(
            command, encoding=None, check=False, timeout=self.board.connect_timeout_s + 120, **stdin
        )

    async def upload(self, local: Path, remote_dir: str, name: str | None = None) -> str:
        """Copy ``local`` into ``remote_dir`` (created) by SFTP, or ``cat`` without SFTP; return the remote path."""
        remote = posixpath.join(remote_dir, name or Path(local).name)
        expected = Path(local).stat().st_size
        sftp = await self._sftp()
        if sftp is None:
            quoted_dir, quoted = shlex.quote(remote_dir), shlex.quote(remote)
            done = await self._shell(
                f"mkdir -p -- {quoted_dir} && cat > {quoted} && wc -c < {quoted}", Path(local).read_bytes()
            )
            out = (done.stdout or b"").decode(errors="replace").strip()
            if done.exit_status != 0:
                err = [x.strip() for x in (done.stderr or b"").decode(errors="replace").splitlines() if x.strip()]
                detail = err[-1] if err else f"exit status {done.exit_status}"
                raise RemoteCommandError(f"upload to {remote} on board {self.board.name} failed: {detail}")
            size = int(out) if out.isdigit() else -1
        else:
            try:
                async with sftp:
                    await sftp.makedirs(remote_dir, exist_ok=True)
                    await sftp.put(str(local), remote)
                    size = (await sftp.stat(remote)).size
            except asyncssh.SFTPError as exc:
                raise RemoteCommandError(
                    f"upload to {remote} on board {self.board.name} failed: {exc.reason}"
                ) from None
        if size != expected:
            raise RemoteCommandError(f"upload of {Path(local).name} to board {self.board.name} is incomplete")
        return remote

    async def remove_tree(self, remote_dir: str) -> None:
        """Delete ``remote_dir`` and everything in it (missing is fine)."""
        sftp = await self._sftp()
        if sftp is None:
            done = await self._shell(f"rm -rf -- {shlex.quote(remote_dir)}")
            if done.exit_status != 0:
                raise RemoteCommandError(f"rm -rf {remote_dir} on board {self.board.name} failed")
            return
        async with sftp:
            if await sftp.exists(remote_dir):
                await sftp.rmtree(remote_dir)

    async def kill_matching(self, unique: str) -> None:
        """Best effort: kill every process on the board whose command line holds ``unique`` (a fresh path)."""
        argv = ["pkill", "-KILL", "-f", "--", literal_pattern(unique)]
        await self._connection().run(
            shlex.join(["sudo", "-n", *argv] if self.board.sudo else argv),
            check=False,
            timeout=self.board.connect_timeout_s,
            stdin=asyncssh.DEVNULL,
        )


def literal_pattern(text: str) -> str:
    """An extended regular expression (pkill's) matching ``text`` literally, but not its own command line."""
    out = []
    for i, ch in enumerate(text):
        if ch == "^":
            out.append("\\^")
        elif i == 0 or ch in ".[]$*+?(){}|\\":
            out.append(f"[{ch}]")  # the first character bracketed: the pattern does not match itself
        else:
            out.append(ch)
    return "".join(out)


def _status(done: asyncssh.SSHCompletedProcess) -> int:
    """The exit status, with death by a signal mapped to 128 + signal number as a shell reports it."""
    if done.exit_status is not None and done.exit_status >= 0:
        return done.exit_status
    if done.exit_signal:
        try:
            return 128 + signal.Signals[f"SIG{done.exit_signal[0]}"].value
        except KeyError:
            return 255
    return -1


TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, reset, connect time-out
    asyncssh.DisconnectError,
    asyncssh.ChannelOpenError,
    asyncssh.ConnectionLost,
    RemoteTimeoutError,
)


async def with_retries(board: BoardConfig, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` (one whole session) with up to ``board.retries`` retries on transient failures."""
    last: BaseException | None = None
    for number in range(board.retries + 1):
        if number:
            log.warning("board %s: retry %d/%d after: %s", board.name, number, board.retries, last)
            await asyncio.sleep(board.retry_delay_s * number)
        try:
            return await attempt()
        except asyncssh.PermissionDenied as exc:
            raise BoardLoginError(
                f"board {board.name} ({board.address}) refused the login: {exc}; check the entry's user and key"
            ) from None
        except asyncssh.KeyImportError as exc:
            raise BoardConfigError(f"board {board.name}: SSH key {board.key} cannot be loaded: {exc}") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise BoardConfigError(
                f"board {board.name} ({board.address}): host key not verifiable against {board.known_hosts}: {exc}"
            ) from None
        except (RemoteCommandError, BoardConfigError):
            raise
        except TRANSIENT as exc:
            last = exc
    attempts = board.retries + 1
    if isinstance(last, RemoteTimeoutError):
        raise RemoteTimeoutError(f"{last} ({attempts} attempts)")
    raise unreachable(board, attempts, last)


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even when a loop already runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=worker, name="accelnas-fpga-ssh")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
