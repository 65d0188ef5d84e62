"""Server processes for development and tests: started, probed until ready, stopped.

A `ServerSpec` says how to run one server (argv, data directory, the probe that
succeeds once it answers its real client); `start` launches it in its own
session with its output appended to a log and waits for the probe; a handle
remembers its spec, so `restart` brings a killed server back on the same ports
with its data. The servers themselves are in `devtools.devstack`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "LOOPBACK",
    "DevstackError",
    "ServerHandle",
    "ServerName",
    "ServerSpec",
    "find_executable",
    "finish",
    "free_ports",
    "kill",
    "launch",
    "restart",
    "start",
    "stop",
    "terminate",
    "wait_ready",
]

LOOPBACK = "127.0.0.1"
_MAX_PORT = 65_535
_LOG_TAIL_BYTES = 4_000

ServerName = Literal["nats", "seaweedfs", "ferretdb"]


class DevstackError(RuntimeError):
    """A server binary was not found, or its server did not start or get ready."""


@attrs.frozen
class ServerSpec:
    """Everything needed to (re)start one server on the same ports and data."""

    name: ServerName
    argv: tuple[str, ...]
    data_dir: Path
    url: str
    env: Mapping[str, str]  # the variables the service reads to reach this server
    probe: Callable[[], object]  # raises until the server answers its real client
    process_env: Mapping[str, str] = attrs.field(factory=dict)
    leftovers: tuple[Path, ...] = ()  # files the server leaves behind, removed once it ends
    startup_timeout: float = 60.0
    stop_timeout: float = 10.0  # SIGTERM's grace before SIGKILL

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go (appended across restarts)."""
        return self.data_dir / f"{self.name}.log"


@attrs.frozen
class ServerHandle:
    """A running server: its process and how its clients reach it."""

    spec: ServerSpec
    process: subprocess.Popen[bytes]

    @property
    def name(self) -> ServerName:
        """Which server this is."""
        return self.spec.name

    @property
    def url(self) -> str:
        """The URL a client connects to."""
        return self.spec.url

    @property
    def env(self) -> Mapping[str, str]:
        """The environment variables the service reads for this server."""
        return self.spec.env

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.spec.log_path

    def log_tail(self, size: int = _LOG_TAIL_BYTES) -> str:
        """The last ``size`` bytes of the log, for error messages and failing tests."""
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")
        return ""


# -- starting, stopping ---------------------------------------------------------------


def stop(handle: ServerHandle, *, timeout: float | None = None) -> int:
    """Stop the server with SIGTERM, then SIGKILL after ``timeout`` s; its exit code.

    The default timeout is the server's own (SeaweedFS's filer takes 15 s to stop).
    """
    terminate(handle)
    return finish(handle, timeout)


def kill(handle: ServerHandle) -> int:
    """Kill the server with SIGKILL (a crash, for fault injection); its exit code."""
    handle.process.kill()
    return _reap(handle)


def terminate(handle: ServerHandle) -> None:
    """Ask the server to stop (SIGTERM) if it still runs."""
    if handle.process.poll() is None:
        handle.process.terminate()


def finish(handle: ServerHandle, timeout: float | None = None) -> int:
    """Wait for the server to end (SIGKILL after ``timeout`` s); its exit code."""
    try:
        handle.process.wait(handle.spec.stop_timeout if timeout is None else timeout)
    except subprocess.TimeoutExpired:
        handle.process.kill()
    return _reap(handle)


def _reap(handle: ServerHandle) -> int:
    code = handle.process.wait()
    for leftover in handle.spec.leftovers:
        leftover.unlink(missing_ok=True)
    return code


def restart(handle: ServerHandle) -> ServerHandle:
    """Stop the server if it still runs, then start it on the same ports and data."""
    stop(handle)
    return start(handle.spec)


def start(spec: ServerSpec) -> ServerHandle:
    """Launch the server ``spec`` describes and wait until its probe succeeds."""
    handle = launch(spec)
    wait_ready(handle)
    return handle


def launch(spec: ServerSpec) -> ServerHandle:
    """Start the server's process, without waiting for it to be ready."""
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as log:
        log.write(f"--- devstack {time.strftime('%H:%M:%S')}: {shlex.join(spec.argv)}\n".encode())
        log.flush()
        # A new session keeps a terminal's Ctrl-C away from the servers: main() stops them.
        process = subprocess.Popen(  # noqa: S603 - argv is built here from resolved binaries
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=spec.data_dir,
            env={**os.environ, **spec.process_env},
            start_new_session=True,
        )
    return ServerHandle(spec=spec, process=process)


def wait_ready(handle: ServerHandle) -> None:
    """Wait until the server's probe succeeds; `DevstackError` if it exits or times out."""
    spec = handle.spec
    deadline = time.monotonic() + spec.startup_timeout
    while True:
        if (code := handle.process.poll()) is not None:
            _reap(handle)
            raise DevstackError(
                f"{spec.name} exited with code {code} while starting; "
                f"{spec.log_path} ends with:\n{handle.log_tail()}"
            )
        try:
            spec.probe()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        else:
            return
        if time.monotonic() > deadline:
            stop(handle)
            raise DevstackError(
                f"{spec.name} was not ready after {spec.startup_timeout:.0f} s "
                f"(last probe error: {last_error!r}); {spec.log_path} ends with:\n"
                f"{handle.log_tail()}"
            )
        time.sleep(0.1)


# -- binaries and ports -----------------------------------------------------------------


def find_executable(name: str) -> Path:
    """``name`` beside this interpreter (the virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    if found := shutil.which(name):
        return Path(found)
    raise DevstackError(f"{name} is neither beside {sys.executable} nor on PATH")


def free_ports(count: int, *, also_offset: int | None = None) -> list[int]:
    """``count`` distinct free loopback ports; with ``also_offset``, port + offset is free too.

    Every probe socket stays bound until all ports are picked, so none repeats.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            held.append(probe := _bound_socket(0))
            port: int = probe.getsockname()[1]
            if also_offset is not None:
                if port + also_offset > _MAX_PORT:
                    continue
                try:
                    held.append(_bound_socket(port + also_offset))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _bound_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock
