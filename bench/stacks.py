"""The stacks under test: ``imagecore`` processes on loopback, and the production servers.

The embedded stack is ``imagecore serve`` alone (SQLite, files, the
in-process broker). The production stack is `devtools.devstack`'s
FerretDB, SeaweedFS and NATS with ``imagecore api`` and ``imagecore
worker``. A server whose adapter the container does not offer yet is left
out, and `production_env` says which were (so a partial stack is reported
as partial, never as the production one).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

from devtools import devstack

__all__ = ["PRODUCTION_ADAPTERS", "Served", "production_env", "start", "wired"]

IMAGECORE = str(Path(sys.executable).with_name("imagecore"))
#: The benchmark's clients send far more than the default per-user budget.
BENCH_ENV = {"RATE_LIMIT_USER_PER_MINUTE": "0", "RATE_LIMIT_ADDRESS_PER_MINUTE": "0"}


#: Each production backend's adapter, as the container imports it once selected.
PRODUCTION_ADAPTERS = {
    "mongo": "adapters.mongo",
    "s3": "adapters.minio",
    "nats": "adapters.nats.broker",
}


def wired() -> dict[str, bool]:
    """Which production adapters this installation can run.

    The container selects each by its setting (MONGO_URI, S3_ENDPOINT,
    NATS_URI) and imports it then; it runs where its extra is installed.
    """
    return {name: _importable(module) for name, module in PRODUCTION_ADAPTERS.items()}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    return True


@contextlib.contextmanager
def production_env(root: Path) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Start the production servers whose adapters are wired; (their env, their names)."""
    starters = {
        "mongo": devstack.start_ferretdb,
        "s3": devstack.start_seaweedfs,
        "nats": devstack.start_nats,
    }
    handles: list[devstack.ServerHandle] = []
    names: list[str] = []
    try:
        for name, ok in wired().items():
            if ok:
                handles.append(starters[name](root / name))
                names.append(name)
        yield {k: v for h in handles for k, v in h.env.items()}, names
    finally:
        for handle in handles:
            devstack.stop(handle, timeout=2.0)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Served:
    """One running ``imagecore`` process."""

    process: subprocess.Popen[bytes]
    base: str
    env: dict[str, str]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def token(self, user: str) -> str:
        """A token for ``user`` signed with this process's secret."""
        return subprocess.run(
            [IMAGECORE, "token", "--user", user],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(command: str, data_dir: Path, env: Mapping[str, str]) -> Served:
    """Start ``imagecore COMMAND``; wait for ``/health`` unless it is the worker."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MONGO_", "S3_", "NATS_", "JWT_"))
        },
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        **BENCH_ENV,
        **env,
    }
    log = data_dir / f"{command}-{port}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [IMAGECORE, command], env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )
    served = Served(process, f"http://127.0.0.1:{port}", full_env, log)
    if command != "worker":
        _wait_healthy(served)
    return served


def _wait_healthy(served: Served, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"imagecore exited: {served.log.read_text()[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(served.base + "/health", timeout=2) as response,  # noqa: S310 - loopback
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    served.stop()
    raise RuntimeError(f"imagecore did not become healthy: {served.log.read_text()[-2000:]}")
