"""Checkpoints of the SQLite repository's write-ahead log, on a connection and thread of their own.

A checkpoint copies what commits appended to the write-ahead log (WAL) into
the database file and fsyncs both, so it takes as long as the disk takes.
SQLite's automatic checkpoint runs inside the commit that takes the log past
1,000 pages, on the connection that commits: for the repository, on the
event loop when a point write committed there, where it held every request
(docs/decisions/0007-sqlite-checkpoints-on-their-own-thread.md). So the
repository turns the automatic checkpoint off and counts the rows it writes
instead; every `CHECKPOINT_ROWS` this checkpointer runs a PASSIVE checkpoint
on its own connection and thread, which no read or write of the repository
waits for: in WAL mode a checkpoint runs beside readers and the writer.

The log is reused from its start by the first write after a checkpoint that
copied all of it. Writes that keep landing while each checkpoint runs keep
it growing, so once a checkpoint finds more than `RESTART_FRAMES` in the
log, the next one is a RESTART, which makes writers wait (on the
repository's thread, never the loop) until it has copied the rest, and the
log starts again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, Self

__all__ = ["CHECKPOINT_ROWS", "RESTART_FRAMES", "WalCheckpointer"]

_log = logging.getLogger(__name__)

#: Rows written between two checkpoints: a lease renewal appends 3 pages to the
#: log, so a little under SQLite's own 1,000 pages.
CHECKPOINT_ROWS: Final = 200
#: Pages in the log (about 40 MB) past which the next checkpoint makes writers wait.
RESTART_FRAMES: Final = 10_000


class WalCheckpointer:
    """Runs the checkpoints of one database file in a thread, as rows are written.

    Open with `open`, end with `close`. `wrote` is called on the event loop
    after each write transaction of the repository's connection (whose own
    automatic checkpoint must be off). A checkpoint that fails is logged and
    tried again after the next rows: the log then grows meanwhile, and SQLite
    keeps the database whole.
    """

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        # Private: use ``open``.
        self._executor = executor
        self._connection = connection
        self._rows = 0
        self._running: Future[None] | None = None
        self._restart = False
        self.checkpoints = 0  # run so far (for tests and metrics)

    @classmethod
    async def open(cls, path: str, busy_timeout: float) -> Self:
        """Open a second connection to the WAL database at ``path`` (blocking work in a thread).

        ``busy_timeout`` bounds a RESTART's wait for the writer and readers.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagecore-checkpoint")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, path, busy_timeout)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection)

    def wrote(self, rows: int) -> None:
        """Count ``rows`` written; start a checkpoint if enough were and none is running."""
        self._rows += rows
        if self._rows < CHECKPOINT_ROWS or not (self._running is None or self._running.done()):
            return
        self._rows = 0
        self._running = self._executor.submit(self._checkpoint, restart=self._restart)

    async def idle(self) -> None:
        """Wait for the checkpoint under way, if any, to end."""
        if self._running is not None:
            await asyncio.wait([asyncio.wrap_future(self._running)])

    async def close(self) -> None:
        """Let the checkpoint under way end, then close the connection (idempotent)."""
        await self.idle()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connection.close)
        finally:
            self._executor.shutdown(wait=False)

    def _checkpoint(self, *, restart: bool) -> None:
        mode = "RESTART" if restart else "PASSIVE"
        try:
            busy, frames, _ = self._connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            _log.warning("checkpoint of the SQLite log failed, tried again later: %s", exc)
            return
        self.checkpoints += 1
        # A PASSIVE checkpoint that found the log this long asks for a RESTART; a
        # RESTART that met a writer or a reader past the busy timeout asks again.
        self._restart = bool(busy) if restart else frames > RESTART_FRAMES


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    # The checkpoint syncs as the repository's connection would (see adapters.sqlite.schema).
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection
