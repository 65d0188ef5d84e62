"""Real backing servers on loopback, for integration tests and for trying production mode.

Starts NATS (JetStream), SeaweedFS (S3 gateway) and FerretDB (MongoDB wire protocol on
SQLite) as subprocesses on free ``127.0.0.1`` ports, with data and logs in a directory
the caller chooses, and waits until each answers its real client. Telemetry is off for
all three. A handle remembers its ports and data directory, so ``restart`` brings a
killed server back where its clients expect it, with its data.

``python -m entrypoints.devstack`` runs the whole stack in the foreground and prints the
environment the service reads as ``export`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

import attrs
import minio
import pymongo
import urllib3

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

__all__ = [
    "FERRETDB_VERSION",
    "Devstack",
    "DevstackError",
    "ServerHandle",
    "ServerName",
    "kill",
    "main",
    "restart",
    "start_ferretdb",
    "start_nats",
    "start_seaweedfs",
    "stop",
]

FERRETDB_VERSION = "v1.24.2"
LOOPBACK = "127.0.0.1"
MONGO_DB = "imagecore"
S3_BUCKET = "imagecore"
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "imagecore"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_GRPC_OFFSET = 10_000  # SeaweedFS's convention: each gRPC port is its HTTP port + 10000
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


def start_nats(data_dir: Path, *, port: int | None = None) -> ServerHandle:
    """Start nats-server with JetStream (file storage in ``data_dir``) and wait for it."""
    return _start(_nats_spec(data_dir, port=port))


def start_seaweedfs(data_dir: Path, *, bucket: str = S3_BUCKET) -> ServerHandle:
    """Start SeaweedFS with its S3 gateway, wait for it and make sure ``bucket`` exists."""
    return _start(_seaweedfs_spec(data_dir, bucket=bucket))


def start_ferretdb(data_dir: Path, *, port: int | None = None) -> ServerHandle:
    """Start FerretDB on SQLite files in ``data_dir`` and wait for ``ping``."""
    return _start(_ferretdb_spec(data_dir, port=port))


def stop(handle: ServerHandle, *, timeout: float | None = None) -> int:
    """Stop the server with SIGTERM, then SIGKILL after ``timeout`` s; its exit code.

    The default timeout is the server's own (SeaweedFS's filer takes 15 s to stop).
    """
    _terminate(handle)
    return _finish(handle, timeout)


def kill(handle: ServerHandle) -> int:
    """Kill the server with SIGKILL (a crash, for fault injection); its exit code."""
    handle.process.kill()
    return _reap(handle)


def _terminate(handle: ServerHandle) -> None:
    if handle.process.poll() is None:
        handle.process.terminate()


def _finish(handle: ServerHandle, timeout: float | None = None) -> int:
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
    return _start(handle.spec)


def _start(spec: ServerSpec) -> ServerHandle:
    handle = _launch(spec)
    _wait_ready(handle)
    return handle


def _launch(spec: ServerSpec) -> ServerHandle:
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


def _wait_ready(handle: ServerHandle) -> None:
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


# -- the three servers ------------------------------------------------------------------


def _nats_spec(data_dir: Path, *, port: int | None = None) -> ServerSpec:
    client_port, monitor_port = (port, *_free_ports(1)) if port else _free_ports(2)
    argv = (
        str(_find_executable("nats-server")),
        "--addr", LOOPBACK,
        "--port", str(client_port),
        "--http_port", str(monitor_port),  # binds to --addr too
        "--jetstream",
        "--store_dir", str(data_dir / "jetstream"),
    )  # fmt: skip
    url = f"nats://{LOOPBACK}:{client_port}"
    # /healthz answers 200 only once JetStream has loaded its streams.
    health = f"http://{LOOPBACK}:{monitor_port}/healthz"
    return ServerSpec(
        name="nats",
        argv=argv,
        data_dir=data_dir,
        url=url,
        env={"NATS_URI": url},
        probe=functools.partial(_probe_http, health),
        startup_timeout=30.0,
    )


def _seaweedfs_spec(data_dir: Path, *, bucket: str) -> ServerSpec:
    master, volume, filer, s3 = _free_ports(4, also_offset=_GRPC_OFFSET)
    secret_key = secrets.token_urlsafe(24)
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_config = data_dir / "s3.json"
    s3_config.write_text(json.dumps(_s3_identities(S3_ACCESS_KEY, secret_key)))
    (data_dir / "store").mkdir(exist_ok=True)  # weed exits if -dir is missing
    endpoint = f"{LOOPBACK}:{s3}"
    argv = (
        str(_find_executable("weed")),
        "server",
        f"-dir={data_dir / 'store'}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        "-master.electionTimeout=1s",  # a lone master resuming its raft state elects itself faster
        f"-master.port={master}",
        f"-master.port.grpc={master + _GRPC_OFFSET}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + _GRPC_OFFSET}",
        "-volume.max=64",  # the default 8 slots fill up after two buckets
        "-volume.preStopSeconds=0",  # else SIGTERM takes 10 s more, for peers we don't have
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + _GRPC_OFFSET}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + _GRPC_OFFSET}",
        "-s3.port.iceberg=0",  # both default to fixed ports (8181, 9101) that would clash
        "-s3.port.lance=0",
        "-s3.iam=false",  # no IAM API: the identities file is all we need
        f"-s3.config={s3_config}",
    )
    # weed leaves these Unix sockets behind, at fixed /tmp paths named by port.
    sockets = [
        f"{kind}-grpc-{port + _GRPC_OFFSET}"
        for kind, port in [("master", master), ("volume", volume), ("filer", filer), ("s3", s3)]
    ]
    sockets += [f"filer-{filer}", f"s3-{s3}"]
    return ServerSpec(
        name="seaweedfs",
        argv=argv,
        data_dir=data_dir,
        url=f"http://{endpoint}",
        env={
            "S3_ENDPOINT": endpoint,
            "S3_ACCESS_KEY": S3_ACCESS_KEY,
            "S3_SECRET_KEY": secret_key,
            "S3_BUCKET": bucket,
            "S3_REGION": S3_REGION,
            "S3_USE_SSL": "false",
        },
        probe=functools.partial(_probe_s3, endpoint, secret_key, bucket),
        # Its filer waits 15 s for its own gRPC streams before it stops.
        stop_timeout=20.0,
        leftovers=tuple(Path(f"/tmp/seaweedfs-{name}.sock") for name in sockets),  # noqa: S108 - weed's own fixed paths
    )


def _ferretdb_spec(data_dir: Path, *, port: int | None = None) -> ServerSpec:
    (listen_port,) = (port,) if port else _free_ports(1)
    sqlite_dir = data_dir / "sqlite"
    sqlite_dir.mkdir(parents=True, exist_ok=True)
    argv = (
        str(_ferretdb_binary()),
        f"--listen-addr={LOOPBACK}:{listen_port}",
        "--handler=sqlite",
        f"--sqlite-url={sqlite_dir.as_uri()}/",  # a directory: the trailing slash matters
        f"--state-dir={data_dir}",
        "--debug-addr=-",  # no HTTP debug listener (it defaults to the fixed port 8088)
        "--telemetry=disable",
        "--log-level=info",
        "--log-format=text",
    )
    url = f"mongodb://{LOOPBACK}:{listen_port}/"
    return ServerSpec(
        name="ferretdb",
        argv=argv,
        data_dir=data_dir,
        url=url,
        env={"MONGO_URI": url, "MONGO_DB": MONGO_DB},
        probe=functools.partial(_probe_mongo, url),
        process_env={"DO_NOT_TRACK": "1"},
    )


def _s3_identities(access_key: str, secret_key: str) -> dict[str, object]:
    credentials = [{"accessKey": access_key, "secretKey": secret_key}]
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    return {"identities": [{"name": "imagecore", "credentials": credentials, "actions": actions}]}


# -- readiness probes -------------------------------------------------------------------


def _probe_http(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - http on loopback
            if response.status != 200:  # noqa: PLR2004 - HTTP OK
                raise DevstackError(f"{url} answered {response.status}")
    except urllib.error.HTTPError as exc:
        # The error holds the open response: close it, or its socket leaks a warning later.
        exc.close()
        raise DevstackError(f"{url} answered {exc.code}") from None


def _probe_s3(endpoint: str, secret_key: str, bucket: str) -> None:
    # No retries and short timeouts: the wait loop is the retry.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=urllib3.Retry(total=0)
    )
    try:
        client = minio.Minio(
            endpoint, S3_ACCESS_KEY, secret_key, secure=False, region=S3_REGION, http_client=http
        )
        if bucket not in {b.name for b in client.list_buckets()}:
            client.make_bucket(bucket)
    finally:
        http.clear()


def _probe_mongo(url: str) -> None:
    with pymongo.MongoClient[dict[str, object]](
        url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
    ) as client:
        client.admin.command("ping")


# -- binaries and ports -----------------------------------------------------------------


def _find_executable(name: str) -> Path:
    """``name`` beside this interpreter (the virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    if found := shutil.which(name):
        return Path(found)
    raise DevstackError(f"{name} is neither beside {sys.executable} nor on PATH")


@functools.cache
def _ferretdb_binary() -> Path:
    """``$FERRETDB_BIN``, else what ``scripts/ferretdb.sh`` builds (cached after one build)."""
    if from_env := os.environ.get("FERRETDB_BIN"):
        return Path(from_env)
    script = _REPO_ROOT / "scripts" / "ferretdb.sh"
    if not script.is_file():
        raise DevstackError(f"set FERRETDB_BIN: {script} is not there to build FerretDB")
    try:
        # stderr is inherited, so a cold build (about a minute) shows its progress.
        built = subprocess.run(  # noqa: S603 - a fixed script of this repository
            [str(_find_executable("bash")), str(script)],
            stdout=subprocess.PIPE,
            check=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise DevstackError(f"{script} failed with code {exc.returncode}") from exc
    return Path(built.stdout.strip().splitlines()[-1])


def _free_ports(count: int, *, also_offset: int | None = None) -> list[int]:
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


# -- the whole stack --------------------------------------------------------------------


@attrs.define
class Devstack:
    """NATS, SeaweedFS and FerretDB under ``root``, started together and stopped on exit.

    ``env`` is what the service reads to reach them (``MONGO_URI``, ``S3_ENDPOINT``,
    ``NATS_URI``, ...). ``servers[name]`` is the handle of each, replaced by ``restart``.
    """

    root: Path
    servers: dict[ServerName, ServerHandle] = attrs.field(factory=dict, init=False)

    def __enter__(self) -> Self:
        specs = [  # resolving FerretDB may build it, so before any server starts
            _ferretdb_spec(self.root / "ferretdb"),
            _nats_spec(self.root / "nats"),
            _seaweedfs_spec(self.root / "seaweedfs", bucket=S3_BUCKET),
        ]
        try:
            for spec in specs:  # launch all, then wait: start-up times overlap
                self.servers[spec.name] = _launch(spec)
            for handle in self.servers.values():
                _wait_ready(handle)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def env(self) -> dict[str, str]:
        """The environment variables the service reads, for all three servers."""
        return {key: value for h in self.servers.values() for key, value in h.env.items()}

    def restart(self, name: ServerName) -> ServerHandle:
        """Restart one server on its ports and data; the new handle is also in ``servers``."""
        self.servers[name] = restart(self.servers[name])
        return self.servers[name]

    def close(self) -> None:
        """Stop every server; they shut down at the same time."""
        for handle in self.servers.values():
            _terminate(handle)
        for handle in self.servers.values():
            _finish(handle)

    def exited(self) -> list[ServerHandle]:
        """The servers whose process has ended."""
        return [h for h in self.servers.values() if h.process.poll() is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM; print its environment."""
    parser = argparse.ArgumentParser(
        prog="python -m entrypoints.devstack",
        description="Run NATS, SeaweedFS and FerretDB on loopback for imagecore.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep data and server logs here (default: a temporary directory, removed on exit)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with contextlib.ExitStack() as stack:
            root: Path = args.data_dir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="imagecore-devstack-"))
            )
            devstack = stack.enter_context(Devstack(root.resolve()))
            for key, value in sorted(devstack.env.items()):
                sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
            sys.stdout.flush()
            sys.stderr.write(f"# servers and their logs are in {root}; Ctrl-C stops them\n")
            while not (exited := devstack.exited()):
                time.sleep(1.0)
            for handle in exited:
                sys.stderr.write(f"# {handle.name} exited; {handle.log_path} ends with:\n")
                sys.stderr.write(handle.log_tail())
            return 1
    except KeyboardInterrupt:
        return 0


def _raise_keyboard_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
