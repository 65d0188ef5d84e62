"""Real backing servers on loopback, for integration tests and for trying production mode.

Starts NATS (JetStream), SeaweedFS (S3 gateway) and FerretDB (MongoDB wire protocol on
SQLite) as subprocesses on free ``127.0.0.1`` ports, with data and logs in a directory
the caller chooses, and waits until each answers its real client. Telemetry is off for
all three. A handle remembers its ports and data directory, so ``restart`` brings a
killed server back where its clients expect it, with its data.

``python -m devtools.devstack`` runs the whole stack in the foreground and prints the
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
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Self

import attrs
import minio
import pymongo
import urllib3

from devtools.servers import (
    LOOPBACK,
    DevstackError,
    ServerHandle,
    ServerName,
    ServerSpec,
    find_executable,
    finish,
    free_ports,
    kill,
    launch,
    restart,
    start,
    stop,
    terminate,
    wait_ready,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
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
MONGO_DB = "imagecore"
S3_BUCKET = "imagecore"
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "imagecore"

_REPO_ROOT = Path(__file__).resolve().parents[1]
_GRPC_OFFSET = 10_000  # SeaweedFS's convention: each gRPC port is its HTTP port + 10000


# -- starting ---------------------------------------------------------------------------


def start_nats(data_dir: Path, *, port: int | None = None) -> ServerHandle:
    """Start nats-server with JetStream (file storage in ``data_dir``) and wait for it."""
    return start(_nats_spec(data_dir, port=port))


def start_seaweedfs(data_dir: Path, *, bucket: str = S3_BUCKET) -> ServerHandle:
    """Start SeaweedFS with its S3 gateway, wait for it and make sure ``bucket`` exists."""
    return start(_seaweedfs_spec(data_dir, bucket=bucket))


def start_ferretdb(data_dir: Path, *, port: int | None = None) -> ServerHandle:
    """Start FerretDB on SQLite files in ``data_dir`` and wait for ``ping``."""
    return start(_ferretdb_spec(data_dir, port=port))


# -- the three servers ------------------------------------------------------------------


def _nats_spec(data_dir: Path, *, port: int | None = None) -> ServerSpec:
    client_port, monitor_port = (port, *free_ports(1)) if port else free_ports(2)
    argv = (
        str(find_executable("nats-server")),
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
    master, volume, filer, s3 = free_ports(4, also_offset=_GRPC_OFFSET)
    secret_key = secrets.token_urlsafe(24)
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_config = data_dir / "s3.json"
    s3_config.write_text(json.dumps(_s3_identities(S3_ACCESS_KEY, secret_key)))
    (data_dir / "store").mkdir(exist_ok=True)  # weed exits if -dir is missing
    endpoint = f"{LOOPBACK}:{s3}"
    argv = (
        str(find_executable("weed")),
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
    (listen_port,) = (port,) if port else free_ports(1)
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
            [str(find_executable("bash")), str(script)],
            stdout=subprocess.PIPE,
            check=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise DevstackError(f"{script} failed with code {exc.returncode}") from exc
    return Path(built.stdout.strip().splitlines()[-1])


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
                self.servers[spec.name] = launch(spec)
            for handle in self.servers.values():
                wait_ready(handle)
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
            terminate(handle)
        for handle in self.servers.values():
            finish(handle)

    def exited(self) -> list[ServerHandle]:
        """The servers whose process has ended."""
        return [h for h in self.servers.values() if h.process.poll() is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM; print its environment."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.devstack",
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
