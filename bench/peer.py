"""thumbor, the peer: run from PyPI on loopback with its file loader, on the same images.

Settings chosen to do the same work as our workloads: quality 80,
progressive JPEG, no EXIF kept (``PRESERVE_EXIF_INFO = False`` and the
``strip_exif()`` filter), never enlarged (``no_upscale()``), no storage
and no result storage (so every request is processed, none is served from a
cache), and thumbor's default engine, Pillow (which decodes JPEG at a
reduced size with ``draft``, like libvips' shrink-on-load). ``--processes``
forks as many server processes as our worker has pool children.
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

from bench.stacks import free_port

__all__ = ["THUMBOR_PATHS", "thumbor"]

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
#: Our workloads as thumbor URLs (``{name}`` is the image's path under the corpus).
_FILTERS = "filters:quality(80):format({fmt}):no_upscale():strip_exif()"
THUMBOR_PATHS = {
    "W1": "/unsafe/fit-in/512x512/" + _FILTERS.format(fmt="jpeg") + "/{name}",
    "W2": "/unsafe/fit-in/512x512/" + _FILTERS.format(fmt="webp") + "/{name}",
    "W6": "/unsafe/500x0/" + _FILTERS.format(fmt="jpeg") + "/{name}",
}


@contextlib.contextmanager
def thumbor(corpus: Path, folder: Path, processes: int) -> Iterator[tuple[str, int]]:
    """A thumbor server over ``corpus``; its base URL and process id."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "thumbor.conf"
    conf.write_text(_CONF.format(root=str(corpus.resolve())))
    port = free_port()
    log = folder / "thumbor.log"
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
                str(processes),
                "--log-level",
                "error",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the forked servers end with it
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(process, base + "/healthcheck", log)
        yield base, process.pid
    finally:
        # thumbor --processes forks its servers; terminating the parent alone leaves them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
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
