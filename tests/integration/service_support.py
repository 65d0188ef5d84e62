"""`imagecore` processes started on free loopback ports for the end-to-end tests."""

from __future__ import annotations

import contextlib
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

IMAGECORE = str(Path(sys.executable).with_name("imagecore"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Served:
    """One running ``imagecore`` process."""

    process: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    log: Path
    env: dict[str, str]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _wait_healthy(served: Served, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"imagecore exited: {served.log.read_text()[-3000:]}")
        url = served.base + "/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"imagecore did not become healthy: {served.log.read_text()[-3000:]}")


def start(
    command: str,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_dir: Path | None = None,
) -> Served:
    """Start ``imagecore COMMAND`` and wait for /health (API commands) or a moment (worker).

    Its log goes to ``log_dir``, by default ``data_dir``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MONGO_", "S3_", "NATS_", "JWT_"))
        },
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(data_dir),
        **(env or {}),
    }
    log = (log_dir or data_dir) / f"{command}-{port}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own console script
            [IMAGECORE, command], env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )
    served = Served(process, f"http://127.0.0.1:{port}", data_dir, log, full_env)
    if command != "worker":
        _wait_healthy(served)
    return served


@contextlib.contextmanager
def serving(
    data_dir: Path, env: Mapping[str, str] | None = None, log_dir: Path | None = None
) -> Iterator[Served]:
    served = start("serve", data_dir, env, log_dir=log_dir)
    try:
        yield served
    finally:
        served.stop()


def token(served: Served, user: str, *, admin: bool = False) -> str:
    args = [IMAGECORE, "token", "--user", user, *(["--admin"] if admin else [])]
    return subprocess.run(  # noqa: S603 - our own console script
        args, env=served.env, check=True, capture_output=True, text=True
    ).stdout.strip()
