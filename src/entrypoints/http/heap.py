"""The heap's free pages handed back to the system after uploads end early.

glibc keeps the memory a process frees for its next allocations, so after a
burst of stalled uploads ended with 408 the process would go on holding
their peak (docs/decisions/0011-upload-bodies-bounded.md). So when an upload
ends early, the heap is trimmed a moment later, once for a burst of them.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Callable

__all__ = ["trim_soon"]

_log = logging.getLogger(__name__)
#: Seconds between an upload ending early and the trim: the rest of a burst ends meanwhile.
_DELAY = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
        return None
    return trim


class _Trimmer:
    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._pending: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        if self._trim is None or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().call_later(_DELAY, self._run)

    def _run(self) -> None:
        self._pending = None
        assert self._trim is not None  # noqa: S101 - soon() schedules only with one
        started = time.perf_counter()
        self._trim(0)
        _log.debug("heap trimmed in %.1f ms", (time.perf_counter() - started) * 1000)


_TRIMMER = _Trimmer()


def trim_soon() -> None:
    """Trim the heap in a moment, unless a trim is due already (call on the event loop)."""
    _TRIMMER.soon()
