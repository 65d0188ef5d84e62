"""Runs the image processor in child processes, one file per child at a time.

Each of the ``workers`` slots is its own single-process executor. A crash
in native decoding code kills that slot's child only: its file's attempt
ends with `ProcessorCrashed` (retried within the attempt budget), the slot
gets a fresh child, and the files running in the other slots never notice.
(One shared ``ProcessPoolExecutor`` would not do: when any of its children
dies it fails every file in flight, so one hostile upload would cost other
users' files an attempt each time it crashed.) A file that runs past its
time limit has its child killed the same way, since a thread inside libvips
cannot be stopped any other way. A child left large by a file (over
``TRIM_ABOVE`` resident) hands its freed heap back to the system at once
(glibc's ``malloc_trim``; glibc would otherwise keep it for the child's whole
life), and children are recycled every ``max_tasks_per_child`` files against
slow leaks: a recycle costs a fresh interpreter and libvips (about 0.5 s of
CPU), so it is kept rare. On Linux children die with the process that
started them: a server killed outright leaves no orphaned decoder holding
its memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from imagecore.errors import ProcessingTimeout, ProcessorCrashed
from imagecore.ports import ImageProcessor, ProcessingRequest, ProcessingResult

__all__ = ["ProcessPoolRunner", "run_in_child"]

_log = logging.getLogger(__name__)
_processors: dict[str, ImageProcessor] = {}


_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8
_ARENAS = 2
#: Resident bytes after a file above which a child returns freed memory at once. Small
#: files stay below it (a 2560x1600 photo resized: about 70 MiB), so they pay nothing:
#: trimming costs about 3 ms per file in page faults when done every time.
TRIM_ABOVE = 128 * 1024 * 1024


def _die_with_parent(parent: int) -> None:
    """Pool child initializer: SIGKILL when the starting process goes; few malloc arenas."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # glibc gives each libvips worker thread its own heap (up to 8 per core), and
        # each keeps its high-water mark: two arenas cut a compress peak by about 20 %.
        mallopt = getattr(libc, "mallopt", None)  # absent outside glibc
        if mallopt is not None:
            mallopt(_M_ARENA_MAX, _ARENAS)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_in_child(request: ProcessingRequest) -> ProcessingResult:
    """The body of one task in a child: libvips is set up once per child."""
    from adapters.vips import VipsImageProcessor  # noqa: PLC0415 - children load libvips lazily

    processor = _processors.get("vips")
    if processor is None:
        processor = _processors["vips"] = VipsImageProcessor()
    try:
        return processor.process(request)
    finally:
        _release_memory()


def _release_memory() -> None:
    """After a file that left this child large, give glibc's freed heap back to the system."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/statm", "rb") as statm:  # noqa: PTH123 - one small read per file
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return
    if resident > TRIM_ABOVE:
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # absent outside glibc
        if trim is not None:
            trim(0)


class ProcessPoolRunner:
    """An async callable ``(ProcessingRequest) -> ProcessingResult`` over isolated children."""

    def __init__(
        self, workers: int = 0, timeout_seconds: float = 120.0, max_tasks_per_child: int = 1000
    ) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._timeout = timeout_seconds
        self._max_tasks = max_tasks_per_child
        self._slots: list[ProcessPoolExecutor | None] = [None] * self.workers
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(self.workers):
            self._free.put_nowait(slot)

    def _executor(self, slot: int) -> ProcessPoolExecutor:
        pool = self._slots[slot]
        if pool is None:
            pool = self._slots[slot] = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=self._max_tasks,
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return pool

    def _submit(self, slot: int, request: ProcessingRequest) -> Future[ProcessingResult]:
        try:
            return self._executor(slot).submit(run_in_child, request)
        except BrokenProcessPool:
            # The idle child died between files (the OOM killer, say): not this file's fault.
            self._discard(slot)
            return self._executor(slot).submit(run_in_child, request)

    async def __call__(self, request: ProcessingRequest) -> ProcessingResult:
        slot = await self._free.get()
        try:
            future = asyncio.wrap_future(self._submit(slot, request))
            try:
                return await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                self._discard(slot)
                raise ProcessingTimeout(
                    f"processing took longer than {self._timeout:g} s and was stopped"
                ) from None
            except BrokenProcessPool:
                self._discard(slot)
                raise ProcessorCrashed("the image processor crashed on this file") from None
            except asyncio.CancelledError:
                # Nobody wants this result (the worker is stopping): end the child now,
                # or shutting the pool down would wait for the file to finish.
                self._discard(slot)
                raise
        finally:
            self._free.put_nowait(slot)

    def _discard(self, slot: int) -> None:
        pool, self._slots[slot] = self._slots[slot], None
        if pool is None:
            return
        # The executor has no public way to stop a running task: end its child.
        # (Once the executor has seen its child die, it sets _processes to None.)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        _log.warning("image processor child of slot %d replaced", slot)

    def close(self) -> None:
        """Stop the children."""
        for slot, pool in enumerate(self._slots):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                self._slots[slot] = None
