"""A test-only decoder killer: a child process that dies, for real, on a marked file.

No libvips crash can be produced on demand, so the tests make one: with
``IMAGECORE_TEST_CRASH_MARKER`` set, `run_or_crash` stands in for
`adapters.vips.pool.run_in_child` and kills its own process with SIGSEGV
(what a crash in native decoding code looks like to the pool) whenever the
file to process contains the marker's bytes; any other file is processed
normally. Each crash appends the file's name to ``IMAGECORE_TEST_CRASH_LOG``
so a test can count the process deaths.

Nothing of this is in the package: a unit test swaps it in with
``monkeypatch``, and a served process gets it from
``tests/integration/crashhook/sitecustomize.py``, which is on its
``PYTHONPATH`` only when a test puts it there. Production code has no hook
to trigger.
"""

from __future__ import annotations

import os
import signal

from adapters.vips.processor import VipsImageProcessor
from imagecore.ports import ProcessingRequest, ProcessingResult

__all__ = ["LOG_ENV", "MARKER_ENV", "install", "run_or_crash"]

MARKER_ENV = "IMAGECORE_TEST_CRASH_MARKER"
LOG_ENV = "IMAGECORE_TEST_CRASH_LOG"


def run_or_crash(request: ProcessingRequest) -> ProcessingResult:
    """Die by SIGSEGV on a file holding the marker; otherwise process it as the pool does."""
    marker = os.environ.get(MARKER_ENV, "").encode()
    if marker and marker in request.source.read_bytes():
        log = os.environ.get(LOG_ENV)
        if log:
            with open(log, "a", encoding="utf-8") as sink:  # noqa: PTH123 - one line, then death
                sink.write(f"{request.source.name} {os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGSEGV)
    return VipsImageProcessor().process(request)


def install() -> None:
    """Make this process's pool send every file through `run_or_crash`."""
    import adapters.vips.pool  # noqa: PLC0415 - only when the hook is wanted

    adapters.vips.pool.run_in_child = run_or_crash  # type: ignore[assignment]
