"""Runs the image processor in child processes, one file per child at a time.

Each of the ``workers`` slots owns one spawned child and a pipe to it. A
crash in native decoding code kills that slot's child only: its file's
attempt ends with `ProcessorCrashed` (retried within the attempt budget),
the slot gets a fresh child, and the files running in the other slots never
notice. (One shared ``ProcessPoolExecutor`` would not do: when any of its
children dies it fails every file in flight, so one hostile upload would
cost other users' files an attempt each time it crashed.) The request is
written to the pipe from the event loop and the answer read when the loop
sees the pipe readable: no thread stands between the two, where a
single-process ``ProcessPoolExecutor`` per slot passed each file through a
manager and a feeder thread, at a higher cost in the server's CPU and in
latency (docs/decisions/0012-pool-children-over-pipes.md). A file that runs past its
time limit has its child killed the same way, since a thread inside libvips
cannot be stopped any other way. A child left large by a file (over
``TRIM_ABOVE`` resident) hands its freed heap back to the system at once
(glibc's ``malloc_trim``; glibc would otherwise keep it for the child's whole
life), and children are recycled every ``max_tasks_per_child`` files against
slow leaks: a recycle costs a fresh interpreter and libvips, so it is kept
rare (docs/decisions/0014-pool-child-memory.md). On Linux children die with the process that
started them: a server killed outright leaves no orphaned decoder holding
its memory.

Two limits of the host process, each with its own error rather than a
stray ``AssertionError`` or a crash: a daemonic process (a Celery prefork
worker) cannot start children, and the spawn start method runs the host's
main script again in each child, so a script must start the pool under
``if __name__ == "__main__":`` (a child that finds itself starting a pool
while it imports that script ends at once; see the README).

Why one module: the pool, its children and their pipes are one protocol;
half of it is what happens when a child dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from imagecore.errors import ImageCoreError, ProcessingError, ProcessingTimeout, ProcessorCrashed
from imagecore.ports import ImageProcessor, ProcessingRequest, ProcessingResult

__all__ = ["ProcessPoolRunner", "child_threads", "run_in_child"]

_log = logging.getLogger(__name__)
_processors: dict[str, ImageProcessor] = {}


_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8
_ARENAS = 2
#: Resident bytes after a file above which a child returns freed memory at once. Small
#: files stay below it, so they pay nothing: trimming after every file costs page faults,
#: and recycling already bounds slow growth (docs/decisions/0014-pool-child-memory.md).
TRIM_ABOVE = 128 * 1024 * 1024

#: The name of every pool child: a process by that name that is still importing
#: the host's main script (spawn) runs a script without a ``__main__`` guard.
_CHILD_NAME = "imagecore-pool-child"
_UNGUARDED_EXIT = 3
_READY = "ready"
DAEMONIC = (
    "the image processor's pool cannot start its processes inside a daemonic process "
    "(a Celery prefork worker, say): run the pool in a process of its own, or call "
    "VipsImageProcessor directly (see the README, Rules for a host process)"
)
NEVER_STARTED = (
    "the image processor's process ended while it started; if the main script starts the "
    'pool outside `if __name__ == "__main__":`, that is why: the spawn start method runs '
    "the main script again in each child (see the README, Rules for a host process)"
)


class _NeverStarted(EOFError):
    """The child's pipe closed before the child said it was ready."""


def _refuse_unguarded_main() -> None:
    """End a pool child that is starting a pool of its own while importing the host's script."""
    me = multiprocessing.current_process()
    # multiprocessing's own flag while a spawned child imports the main script.
    if getattr(me, "_inheriting", False) and me.name.startswith(_CHILD_NAME):
        sys.stderr.write(f"imagecore: {NEVER_STARTED}\n")
        sys.stderr.flush()
        os._exit(_UNGUARDED_EXIT)  # whatever the script catches, this child serves nothing


def _refuse_daemonic_host() -> None:
    if multiprocessing.current_process().daemon:
        raise ProcessingError(DAEMONIC)


def _die_with_parent(parent: int) -> None:
    """Pool child set-up: SIGKILL when the starting process goes; few malloc arenas."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # glibc gives each libvips worker thread its own heap (up to 8 per core), and
        # each keeps its high-water mark: two arenas lower a compress peak (0014).
        mallopt = getattr(libc, "mallopt", None)  # absent outside glibc
        if mallopt is not None:
            mallopt(_M_ARENA_MAX, _ARENAS)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_in_child(request: ProcessingRequest) -> ProcessingResult:
    """The body of one task in a child: libvips is set up once per child."""
    from adapters.vips.processor import VipsImageProcessor, configure_vips  # noqa: PLC0415 - children load libvips lazily

    processor = _processors.get("vips")
    if processor is None:
        configure_vips()  # the child is imagecore's own: its libvips gets the hardening
        processor = _processors["vips"] = VipsImageProcessor()
    try:
        return processor.process(request)
    finally:
        _release_memory()
        _drop_cached(request.source)


def _drop_cached(source: Path) -> None:
    """Tell the kernel this child is done with ``source``: its pages leave the page cache.

    The service reads an original once, right after its upload, and writing
    into fresh page cache costs more CPU than reusing dropped pages
    (docs/decisions/0014-pool-child-memory.md). Only clean pages go (the
    storage synced them); a retry reads from disk.
    """
    fadvise = getattr(os, "posix_fadvise", None)  # absent outside POSIX
    if fadvise is None:
        return
    try:
        fd = os.open(source, os.O_RDONLY)
    except OSError:
        return  # gone already (a scratch copy) or unreadable: nothing to drop
    try:
        with contextlib.suppress(OSError):  # a hint: a file that refuses it keeps its pages
            fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


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


Task = Callable[[ProcessingRequest], ProcessingResult]


def child_threads(children: int) -> int:
    """How many libvips threads each of ``children`` processes sharing the cores gets."""
    return max(1, (os.cpu_count() or 1) // max(1, children))


def _serve(conn: Connection, parent: int, task: Task, threads: int) -> None:
    """A child's life: answer each request on ``conn`` until told to stop (``None``)."""
    _die_with_parent(parent)
    # libvips reads VIPS_WARNING once, as it starts: set, it prints none of its warnings
    # about damaged files (most camera photos give one or two); a file that fails is
    # reported in the service's own words. Set here, not in the host that started the pool.
    os.environ.setdefault("VIPS_WARNING", "1")
    if threads and not os.environ.get("VIPS_CONCURRENCY"):  # an operator's setting wins
        import pyvips  # noqa: PLC0415 - only the children load libvips

        pyvips.concurrency_set(threads)
    conn.send(_READY)  # the server tells a child that never got here by its absence
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the server closed its end
        if request is None:
            return
        try:
            reply: tuple[bool, object] = (True, task(request))
        except Exception as exc:  # noqa: BLE001 - the server raises it for this file
            reply = (False, exc)
        try:
            conn.send(reply)
        except OSError:
            return  # the server is gone
        except Exception:  # noqa: BLE001 - it would not pickle, and nothing was written
            error = ProcessingError(f"the image processor failed ({type(reply[1]).__name__})")
            conn.send((False, error))


class _Child:
    """One spawned child, its pipe and how many files it has taken."""

    def __init__(self, task: Task, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_serve,
            args=(theirs, os.getpid(), task, threads),
            daemon=True,
            name=f"{_CHILD_NAME}-{os.getpid()}",
        )
        self.process.start()
        theirs.close()
        self.files = 0
        self.started = False

    def stop(self, *, kill: bool) -> None:
        """End the child: at once (``kill``), or after the file in hand (it has none)."""
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.process.kill()
        self.conn.close()


class _Entry:
    """One file for the pool: its request, the slot that took it, the child's answer."""

    __slots__ = ("answer", "request", "started")

    def __init__(self, request: ProcessingRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.started: asyncio.Future[int] = loop.create_future()
        self.answer: asyncio.Future[tuple[bool, object]] = loop.create_future()


class ProcessPoolRunner:
    """An async callable ``(ProcessingRequest) -> ProcessingResult`` over isolated children.

    Files wait in one queue. An idle child gets the next waiting file; a busy
    child gets one more, written ahead into its pipe, which it starts the
    moment it has answered, with no trip through the server's event loop in
    between (docs/decisions/0013-pool-write-ahead-and-threads.md). A file sent
    ahead is started, and its time limit
    counted, from the answer before it. If the child dies or is stopped
    before reaching it, it goes back to the front of the queue: only the file
    a child was running can fail with it.
    """

    def __init__(
        self,
        workers: int = 0,
        timeout_seconds: float = 120.0,
        max_tasks_per_child: int = 1000,
        *,
        task: Task | None = None,
    ) -> None:
        # ``task`` (by default `run_in_child`) runs in each child: it must be importable
        # there by name, as the spawn start method pickles it by reference.
        _refuse_unguarded_main()
        _refuse_daemonic_host()
        self._task = task or run_in_child
        self.workers = workers or os.cpu_count() or 1
        #: libvips threads per child: the cores shared out, so that busy children do not
        #: outnumber them (docs/decisions/0013-pool-write-ahead-and-threads.md).
        self.threads = child_threads(self.workers)
        self._timeout = timeout_seconds
        self._max_tasks = max_tasks_per_child
        self._slots: list[_Child | None] = [None] * self.workers
        self._running: dict[int, _Entry] = {}  # slot -> the file its child has
        self._ahead: dict[int, _Entry] = {}  # slot -> the file written ahead into its pipe
        self._idle = list(range(self.workers))
        self._queue: deque[_Entry] = deque()
        self._ended: list[BaseProcess] = []  # stopped children not yet reaped

    def child_pids(self) -> list[int | None]:
        """The process id of each slot's child (None: not started yet)."""
        return [child.process.pid if child else None for child in self._slots]

    def _child(self, slot: int) -> _Child:
        child = self._slots[slot]
        if child is None or not child.process.is_alive():
            if child is not None:
                # The idle child died between files (the OOM killer, say): not this file's fault.
                self._discard(slot, kill=True)
            _refuse_daemonic_host()  # forked into one after the pool was made
            child = self._slots[slot] = _Child(self._task, self.threads)
        return child

    async def __call__(self, request: ProcessingRequest) -> ProcessingResult:
        entry = _Entry(request, asyncio.get_running_loop())
        self._queue.append(entry)
        self._feed()
        try:
            slot = await entry.started
        except asyncio.CancelledError:
            if entry.started.done() and not entry.started.cancelled():
                self._replace(entry, entry.started.result())  # taken meanwhile: stop its child
            elif entry in self._queue:
                self._queue.remove(entry)
            raise
        try:
            ok, value = await asyncio.wait_for(entry.answer, self._timeout)
        except TimeoutError:
            self._replace(entry, slot)
            raise ProcessingTimeout(
                f"processing took longer than {self._timeout:g} s and was stopped"
            ) from None
        except EOFError as exc:
            self._replace(entry, slot)
            if isinstance(exc, _NeverStarted):
                raise ProcessorCrashed(NEVER_STARTED) from None
            raise ProcessorCrashed("the image processor crashed on this file") from None
        except asyncio.CancelledError:
            # Nobody wants this result (the worker is stopping): end the child now,
            # or stopping would wait for the file to finish.
            self._replace(entry, slot)
            raise
        if ok:
            return value  # type: ignore[return-value]
        raise value  # type: ignore[misc]

    def _feed(self) -> None:
        """Give waiting files to idle slots, then one ahead to each busy child, oldest first."""
        while self._idle and self._queue:
            self._give(self._idle.pop())
        for slot in list(self._running):
            if not self._queue:
                return
            if slot not in self._ahead:
                self._send_ahead(slot)

    def _waiting(self) -> _Entry | None:
        """The first waiting file whose caller still wants it."""
        while self._queue and self._queue[0].started.done():
            self._queue.popleft()  # its caller was cancelled while it waited
        return self._queue.popleft() if self._queue else None

    def _send_ahead(self, slot: int) -> None:
        """Write the next waiting file into the busy slot's pipe, behind the file it runs."""
        child = self._slots[slot]
        if child is None or child.files >= self._max_tasks:
            return  # the slot's next file goes to a fresh child
        entry = self._waiting()
        if entry is None:
            return
        try:
            child.conn.send(entry.request)
        except OSError:
            self._queue.appendleft(entry)  # the child died: its running file's caller sees it
            return
        except Exception as exc:  # noqa: BLE001 - it would not pickle, and nothing was written
            entry.started.set_result(slot)
            error = f"the request could not be sent to the image processor ({type(exc).__name__})"
            entry.answer.set_exception(ProcessingError(error))
            self._send_ahead(slot)
            return
        child.files += 1
        self._ahead[slot] = entry

    def _give(self, slot: int) -> None:
        """Write the next waiting file to the slot's child, or mark the slot idle."""
        entry = self._waiting()
        if entry is None:
            self._idle.append(slot)
            return
        self._running[slot] = entry
        entry.started.set_result(slot)
        try:
            child = self._child(slot)
            child.conn.send(entry.request)
        except OSError as exc:
            # The child died just now, or none could start: the caller replaces it.
            entry.answer.set_exception(EOFError(str(exc)))
            return
        except ImageCoreError as exc:  # this host cannot have children: every file says why
            del self._running[slot]
            entry.answer.set_exception(exc)
            self._give(slot)
            return
        except Exception as exc:  # noqa: BLE001 - it would not pickle, and nothing was written
            del self._running[slot]
            error = f"the request could not be sent to the image processor ({type(exc).__name__})"
            entry.answer.set_exception(ProcessingError(error))
            self._give(slot)
            return
        child.files += 1
        asyncio.get_running_loop().add_reader(child.conn.fileno(), self._readable, slot)

    def _readable(self, slot: int) -> None:
        """The slot's child answered (or died): settle its file, give it the next."""
        child, entry = self._slots[slot], self._running.get(slot)
        if child is None or entry is None:
            return
        if child.started:
            self._answered(slot, child, entry)
        else:
            self._started(child, entry)

    def _answered(self, slot: int, child: _Child, entry: _Entry) -> None:
        asyncio.get_running_loop().remove_reader(child.conn.fileno())
        try:
            reply = child.conn.recv()
        except (EOFError, OSError) as exc:
            if not entry.answer.done():
                entry.answer.set_exception(EOFError(str(exc)))
            return  # its caller replaces the child, which then takes the next file
        except Exception as exc:  # noqa: BLE001 - an answer that would not unpickle
            error = f"the image processor's answer could not be read ({type(exc).__name__})"
            if not entry.answer.done():
                entry.answer.set_exception(ProcessingError(error))
        else:
            if not entry.answer.done():
                entry.answer.set_result(reply)
        del self._running[slot]
        ahead = self._ahead.pop(slot, None)
        if ahead is not None:
            self._start_ahead(slot, child, ahead)
            return
        if child.files >= self._max_tasks:
            self._discard(slot, kill=False)  # recycled against slow leaks
        self._give(slot)

    @staticmethod
    def _started(child: _Child, entry: _Entry) -> None:
        """The child's first word: it is ready (the reader stays for its answer), or it died."""
        try:
            child.conn.recv()
        except (EOFError, OSError) as exc:
            asyncio.get_running_loop().remove_reader(child.conn.fileno())
            if not entry.answer.done():
                entry.answer.set_exception(_NeverStarted(str(exc)))
            return
        child.started = True

    def _start_ahead(self, slot: int, child: _Child, entry: _Entry) -> None:
        """The child went on to the file sent ahead: it is now the slot's running file."""
        if entry.started.done():
            # Its caller gave up while it was ahead (the worker is stopping): end the
            # child rather than let it write a file nobody will remove.
            self._discard(slot, kill=True)
            entry.request.destination.unlink(missing_ok=True)
            self._give(slot)
            return
        self._running[slot] = entry
        entry.started.set_result(slot)
        asyncio.get_running_loop().add_reader(child.conn.fileno(), self._readable, slot)
        self._send_ahead(slot)

    def _replace(self, entry: _Entry, slot: int) -> None:
        """Kill the slot's child if it still has ``entry``; the slot takes the next file."""
        if self._running.get(slot) is not entry:
            return  # answered meanwhile: the child has moved on to another file
        del self._running[slot]
        self._discard(slot, kill=True)
        self._give(slot)

    def _discard(self, slot: int, *, kill: bool) -> None:
        ahead = self._ahead.pop(slot, None)
        if ahead is not None and not ahead.started.done():
            self._queue.appendleft(ahead)  # never started: the next child takes it
        child, self._slots[slot] = self._slots[slot], None
        if child is None:
            return
        with contextlib.suppress(RuntimeError):  # no loop runs: nothing watches the pipe
            asyncio.get_running_loop().remove_reader(child.conn.fileno())
        child.stop(kill=kill)
        self._ended = [p for p in [*self._ended, child.process] if p.is_alive()]  # reaps
        if kill:
            _log.warning("image processor child of slot %d replaced", slot)

    def close(self) -> None:
        """Stop the children (each ends its file in hand first; a file in hand was cancelled)."""
        for slot in range(self.workers):
            self._discard(slot, kill=False)
        for process in self._ended:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        self._ended = []
