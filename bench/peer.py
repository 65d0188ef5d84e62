"""thumbor, the peer: run from PyPI on loopback with its file loader, on the same images.

Settings chosen to do the same work as our workloads: quality 80,
progressive JPEG, no EXIF kept (``PRESERVE_EXIF_INFO = False`` and the
``strip_exif()`` filter), never enlarged (``no_upscale()``), no storage
and no result storage (so every request is processed, none is served from a
cache), and thumbor's default engine, Pillow (which decodes JPEG at a
reduced size with ``draft``, like libvips' shrink-on-load). As many thumbor
servers as our worker has pool children, each a single process on its own
port, and the client keeps the same number of requests in flight on each
(as a load balancer in front of them would). One server with ``--processes
2`` shares its listening socket between two forked processes, and a
keep-alive connection stays with the process that accepted it: in one run
all four of the client's connections landed on one process, which worked
alone at 1.0 CPU while the other idled.

With ``uploads`` (the symmetric workload, `bench.symmetric`) thumbor runs
as a service user of it would run it: its upload module on (``POST
/image`` stores the body and answers its id in ``Location``) and its file
storage for the uploads and as ``STORAGE``, where the imaging handler
looks an image up before its loader, so ``GET /unsafe/.../<id>`` derives
the uploaded file. Result storage stays off: every GET is processed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs

from bench.stacks import free_port

__all__ = ["THUMBOR_PATHS", "Peer", "thumbor", "thumbor_conf"]

THUMBOR = str(Path(sys.executable).with_name("thumbor"))
_CONF = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
ENGINE = 'thumbor.engines.pil'
ALLOW_UNSAFE_URL = True
QUALITY = 80
PROGRESSIVE_JPEG = True
PRESERVE_EXIF_INFO = False
AUTO_WEBP = False
RESPECT_ORIENTATION = True
MAX_AGE = 0
"""
_UPLOADS = """\
STORAGE = 'thumbor.storages.file_storage'
UPLOAD_ENABLED = True
UPLOAD_PHOTO_STORAGE = 'thumbor.storages.file_storage'
FILE_STORAGE_ROOT_PATH = {storage!r}
"""
#: Our workloads as thumbor URLs (``{name}`` is the image's path under the corpus).
_FILTERS = "filters:quality(80):format({fmt}):no_upscale():strip_exif()"
THUMBOR_PATHS = {
    "W1": "/unsafe/fit-in/512x512/" + _FILTERS.format(fmt="jpeg") + "/{name}",
    "W2": "/unsafe/fit-in/512x512/" + _FILTERS.format(fmt="webp") + "/{name}",
    "W6": "/unsafe/500x0/" + _FILTERS.format(fmt="jpeg") + "/{name}",
}


@attrs.frozen
class Peer:
    """Running thumbor servers: their base URLs and process ids."""

    bases: list[str]
    pids: list[int]


def thumbor_conf(corpus: Path, storage: Path | None = None) -> str:
    """thumbor's configuration: files from ``corpus``; uploads into ``storage`` if given."""
    text = _CONF.format(root=str(corpus.resolve()))
    if storage is not None:
        text += _UPLOADS.format(storage=str(storage.resolve()))
    return text


@contextlib.contextmanager
def thumbor(corpus: Path, folder: Path, servers: int, *, uploads: bool = False) -> Iterator[Peer]:
    """``servers`` single-process thumbor servers over ``corpus``.

    With ``uploads``, all of them store uploads in one file storage under ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "thumbor.conf"
    conf.write_text(thumbor_conf(corpus, folder / "storage" if uploads else None))
    started: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for index in range(servers):
            port = free_port()
            log = folder / f"thumbor-{index}.log"
            with log.open("ab") as sink:
                process = subprocess.Popen(
                    [
                        THUMBOR,
                        "--port",
                        str(port),
                        "--ip",
                        "127.0.0.1",
                        "--conf",
                        str(conf),
                        "--processes",
                        "1",
                        "--log-level",
                        "error",
                    ],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, ended whole below
                )
            started.append(process)
            bases.append(f"http://127.0.0.1:{port}")
            _wait(process, bases[-1] + "/healthcheck", log)
        yield Peer(bases, [p.pid for p in started])
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"thumbor exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"thumbor did not answer: {log.read_text()[-2000:]}")
