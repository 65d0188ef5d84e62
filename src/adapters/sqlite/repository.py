"""The SQLite repository: the embedded system of record of ``imagecore serve``.

One database file, no server, one connection. A point operation (one file or
instruction by id, a write, a count) runs on the event loop itself and waits
for no lock: that costs less than a trip to a thread
(docs/decisions/0006-sqlite-point-operations-on-the-loop.md). When another
connection holds the write lock, and for the scans (listings, searches), the
call goes to a dedicated thread, which waits up to the busy timeout; while
the thread has work, every call queues behind it, so two threads never use
the connection at once and calls keep their order. No commit copies the
write-ahead log into the database (a checkpoint, whose fsyncs take as long
as the disk does): a second connection does, in a thread of its own
(`adapters.sqlite.checkpoint`). Several processes may open the same file:
WAL lets readers run beside the one writer, writes take the lock up front
(``BEGIN IMMEDIATE``), and the compare-and-set on ``version`` holds across
processes.

Why one module: one port's adapter, whose methods share one connection,
one thread and one translation of SQLite's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar

from adapters.documents import (
    Document,
    detail_from_document,
    detail_to_document,
    instruction_from_document,
    instruction_to_document,
    product_from_document,
    product_to_document,
    time_to_document,
)
from adapters.sqlite.checkpoint import WalCheckpointer
from adapters.sqlite.schema import connect, transaction
from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    NotFound,
    StorageFull,
    TooManyFiles,
    out_of_space,
)
from imagecore.model import (
    Instruction,
    InstructionDetail,
    Status,
    aggregate_status,
    counted_status,
)
from imagecore.ports import DetailQuery, InstructionQuery, Page
from imagecore.products import Product

__all__ = ["SqliteInstructionRepository"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


#: SQLite's primary result codes for a lock another connection holds.
_CONTENDED: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to call
        loop.call_soon_threadsafe(callback)


def _micros(value: datetime) -> int:
    return (time_to_document(value) - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    return _EPOCH + value * _MICROSECOND


def _dumps(document: Document) -> str:
    # Only the top-level times are domain values; anything else that JSON
    # cannot hold is a bug upstream and should fail loudly, not be stringified.
    plain = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in document.items()}
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn sqlite3's exceptions into `imagecore.errors`, the one place this adapter does."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_FOREIGNKEY":
            raise NotFound("instruction not found") from exc
        raise ConflictError("the record exists already") from exc
    except (sqlite3.Error, OSError) as exc:
        # Locked past the busy timeout, disk full or failing, not a database,
        # closed: the store did not answer, and a retry later may work.
        if out_of_space(exc) or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
            raise StorageFull("the database's disk is full", f"sqlite: {exc}") from exc
        raise DependencyUnavailable("the database cannot serve now", f"sqlite: {exc}") from exc


class SqliteInstructionRepository:
    """`InstructionRepository` on one SQLite file, for a single host.

    Create it with ``await SqliteInstructionRepository.open(path)`` and end it
    with ``await repo.close()``; nothing touches the disk before ``open``.
    Details are stored as JSON documents (`adapters.documents`) beside the
    columns that queries filter and sort on. ``update_detail`` is a
    compare-and-set on ``version`` inside one write transaction, which also
    updates the instruction's aggregate status. Raises `DependencyUnavailable`
    for any database failure (including use after ``close``), `ConflictError`
    for a reused id and `NotFound` as the port says.

    A call cancelled while it waits for the worker thread still runs to its
    end there: a cancelled ``update_detail`` may have been written.
    """

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        connection: sqlite3.Connection,
        busy_timeout: float,
        checkpointer: WalCheckpointer | None,
    ) -> None:
        # Private: use ``open``. The connection waits for no lock unless the
        # thread sets the busy timeout for one call (`_patiently`).
        self._executor = executor
        self._connection = connection
        self._checkpointer = checkpointer  # None for a database in memory (no log)
        self._busy_ms = round(busy_timeout * 1000)
        # Calls handed to the thread whose end the loop has not seen yet; while
        # there are any, the connection may be in use there.
        self._on_thread = 0
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout: float = 5.0) -> Self:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.

        ``busy_timeout`` is how many seconds a write waits for another
        process's transaction before `DependencyUnavailable`.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagecore-sqlite")
        loop = asyncio.get_running_loop()
        connection: sqlite3.Connection | None = None
        try:
            with _translated():
                connection = await loop.run_in_executor(executor, connect, str(path), busy_timeout)
                await loop.run_in_executor(executor, _quiet, connection)
                checkpointer = None
                if str(path) != ":memory:":
                    checkpointer = await WalCheckpointer.open(str(path), busy_timeout)
        except BaseException:
            if connection is not None:
                connection.close()
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection, busy_timeout, checkpointer)

    async def close(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            with _translated():
                try:
                    if self._checkpointer is not None:
                        await self._checkpointer.close()
                finally:
                    # The last connection to close copies what is left of the log.
                    await loop.run_in_executor(self._executor, self._connection.close)
        finally:
            self._executor.shutdown(wait=False)

    async def _run(
        self,
        work: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run a point operation here if the thread is idle and no lock is held, else queue it."""
        with _translated():
            call = self._bind(work, *args, **kwargs)
            if not self._on_thread:
                try:
                    return call()
                except sqlite3.OperationalError as exc:
                    # Every operation is one transaction, rolled back when it
                    # raises: nothing was written, and the thread may run it again.
                    if exc.sqlite_errorcode & 0xFF not in _CONTENDED:
                        raise
            return await self._queue(call)

    async def _scan(
        self,
        work: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run work whose cost grows with the data on the thread, never on the loop."""
        with _translated():
            return await self._queue(self._bind(work, *args, **kwargs))

    def _bind(
        self,
        work: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Callable[[], _T]:
        if self._closed:
            raise DependencyUnavailable("the sqlite repository is closed")
        return functools.partial(work, self._connection, *args, **kwargs)

    async def _queue(self, call: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        future = self._executor.submit(self._patiently, call)
        self._on_thread += 1
        # Counted down when the thread is done with the connection, not when
        # the caller stops waiting: a cancelled call still runs to its end there.
        future.add_done_callback(lambda _: _call_soon(loop, self._thread_done))
        return await asyncio.wrap_future(future)

    def _patiently(self, call: Callable[[], _T]) -> _T:
        self._connection.execute(f"PRAGMA busy_timeout={self._busy_ms:d}")
        try:
            return call()
        finally:
            self._connection.execute("PRAGMA busy_timeout=0")

    def _thread_done(self) -> None:
        self._on_thread -= 1

    def _wrote(self, rows: int) -> None:
        if self._checkpointer is not None:
            self._checkpointer.wrote(rows)

    # ------------------------------------------------------------------ products

    async def save_products(self, products: Sequence[Product], now: datetime) -> None:
        rows: list[dict[str, str | int]] = [
            {"key": p.key, "now": _micros(now), "document": _dumps(product_to_document(p))}
            for p in products
        ]
        await self._scan(_save_products, rows)
        self._wrote(len(rows))

    async def list_products(self) -> list[tuple[Product, datetime, datetime]]:
        rows = await self._scan(
            _fetch, "SELECT document, created_at, updated_at FROM products ORDER BY key", ()
        )
        return [
            (product_from_document(json.loads(doc)), _from_micros(created), _from_micros(updated))
            for doc, created, updated in rows
        ]

    # ------------------------------------------------------------------ instructions

    async def add_instruction(self, instruction: Instruction) -> None:
        row = (
            instruction.id,
            instruction.user_id,
            _micros(instruction.created_at),
            aggregate_status([]).value,
            _dumps(instruction_to_document(instruction)),
        )
        await self._run(_add_instruction, row)
        self._wrote(1)

    async def get_instruction(self, instruction_id: str) -> Instruction:
        rows = await self._run(
            _fetch, "SELECT document FROM instructions WHERE id = ?", (instruction_id,)
        )
        if not rows:
            raise NotFound("instruction not found")
        return instruction_from_document(json.loads(rows[0][0]))

    async def list_instructions(self, query: InstructionQuery) -> Page[Instruction]:
        where: list[str] = ["user_id = ?"]
        args: list[Any] = [query.user_id]
        if query.status is not None:
            where.append("status = ?")
            args.append(query.status.value)
        if query.created_from is not None:
            where.append("created_at >= ?")
            args.append(_micros(query.created_from))
        if query.created_to is not None:
            where.append("created_at <= ?")
            args.append(_micros(query.created_to))
        if query.after is not None:
            # Row values compare as the index orders them: a seek, not a walk.
            where.append("(created_at, id) < (?, ?)")
            args.extend([_micros(query.after[0]), query.after[1]])
        condition = " AND ".join(where)
        # A page after a cursor costs one page: it is not counted.
        count: tuple[str, list[Any]] | None = None
        if query.after is None and query.created_from is None and query.created_to is None:
            # The user's kept counts: a row per status, however many instructions.
            by_status = " AND status = ?" if query.status is not None else ""
            kept = "SELECT coalesce(sum(instructions), 0) FROM user_counts WHERE user_id = ?"
            count = (kept + by_status, args[: 2 if query.status is not None else 1])
        elif query.after is None:
            count = (f"SELECT count(*) FROM instructions WHERE {condition}", args)  # noqa: S608 - fixed fragments only
        offset = 0 if query.after is not None else (query.page - 1) * query.size
        total, documents = await self._scan(_page, (condition, args), count, query.size, offset)
        items = [instruction_from_document(json.loads(doc)) for doc in documents]
        return Page(items, total, query.page, query.size)

    # ------------------------------------------------------------------ details

    async def file_counts(self, instruction_ids: Sequence[str]) -> dict[str, dict[Status, int]]:
        if not instruction_ids:
            return {}
        marks = ", ".join("?" * len(instruction_ids))
        rows = await self._run(
            _fetch,
            f"SELECT id, {', '.join(_COUNTED.values())} FROM instructions WHERE id IN ({marks})",  # noqa: S608 - column names from _COUNTED, values bound
            list(instruction_ids),
        )
        return {row[0]: dict(zip(_COUNTED, row[1:], strict=True)) for row in rows}

    async def add_detail(self, detail: InstructionDetail, *, max_files: int | None = None) -> None:
        await self._run(_add_detail, _detail_row(detail), max_files)
        self._wrote(1)

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        rows = await self._run(_fetch, "SELECT document FROM details WHERE id = ?", (detail_id,))
        if not rows:
            raise NotFound("file not found")
        return detail_from_document(json.loads(rows[0][0]))

    async def list_details(self, instruction_id: str) -> list[InstructionDetail]:
        rows = await self._run(
            _fetch,
            "SELECT document FROM details WHERE instruction_id = ? ORDER BY seq",
            (instruction_id,),
        )
        return [detail_from_document(json.loads(doc)) for (doc,) in rows]

    async def count_details(self, instruction_id: str) -> int:
        rows = await self._run(
            _fetch, "SELECT count(*) FROM details WHERE instruction_id = ?", (instruction_id,)
        )
        return int(rows[0][0])

    async def update_detail(self, detail: InstructionDetail) -> bool:
        written = await self._run(_update_detail, _detail_row(detail), detail.version - 1)
        self._wrote(written)
        return written

    async def update_details(self, details: Sequence[InstructionDetail]) -> int:
        if not details:
            return 0
        # One transaction on the thread: its cost grows with the batch.
        rows = [(_detail_row(detail), detail.version - 1) for detail in details]
        written = await self._scan(_update_details, rows)
        self._wrote(written)
        return written

    async def find_details(self, query: DetailQuery) -> list[InstructionDetail]:
        where: list[str] = []
        args: list[Any] = []
        # The partial indexes hold only the records a periodic pass acts on; a
        # query names its index, so that no plan ever walks finished history.
        index = ""
        if query.outbox is not None:
            where.append(f"outbox = {int(query.outbox):d}")
            index = "INDEXED BY details_in_outbox" if query.outbox else ""
        if query.is_cleaned is not None:
            where.append(f"is_cleaned = {int(query.is_cleaned):d}")
            index = index or ("" if query.is_cleaned else "INDEXED BY details_not_cleaned")
        if query.statuses:
            statuses = sorted(s.value for s in query.statuses)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if query.updated_before is not None:
            where.append("updated_at < ?")
            args.append(_micros(query.updated_before))
        if query.created_before is not None:
            where.append("created_at < ?")
            args.append(_micros(query.created_before))
        condition = " AND ".join(where) or "1"
        sql = (
            f"SELECT document FROM details {index} WHERE {condition} "  # noqa: S608 - only fixed fragments are interpolated; values are bound
            "ORDER BY updated_at, id LIMIT ?"
        )
        rows = await self._scan(_fetch, sql, (*args, max(query.limit, 0)))
        return [detail_from_document(json.loads(doc)) for (doc,) in rows]

    async def ping(self) -> None:
        await self._run(_fetch, "SELECT 1", ())


# ------------------------------------------------------------------ on the loop or the thread


def _detail_row(detail: InstructionDetail) -> dict[str, Any]:
    return {
        "id": detail.id,
        "instruction_id": detail.instruction_id,
        "status": detail.status.value,
        "created_at": _micros(detail.created_at),
        "updated_at": _micros(detail.updated_at),
        "is_cleaned": int(detail.is_cleaned),
        "outbox": int(detail.outbox),
        "version": detail.version,
        "document": _dumps(detail_to_document(detail)),
    }


def _quiet(connection: sqlite3.Connection) -> None:
    # No lock waits but the thread's (`_patiently`), and no checkpoint in a commit
    # (`adapters.sqlite.checkpoint` runs them).
    connection.execute("PRAGMA busy_timeout=0")
    connection.execute("PRAGMA wal_autocheckpoint=0")


def _fetch(connection: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Any]:
    return connection.execute(sql, args).fetchall()


def _execute(connection: sqlite3.Connection, sql: str, args: Sequence[Any]) -> None:
    with transaction(connection):
        connection.execute(sql, args)


def _save_products(connection: sqlite3.Connection, rows: list[dict[str, str | int]]) -> None:
    # Named parameters, `now` being bound twice: Python 3.12 before its fix of
    # python/cpython#117995 (3.12.1 among them) takes a numbered `?2` for a name and
    # warns when it is bound from a sequence.
    with transaction(connection):
        connection.executemany(
            """INSERT INTO products (key, created_at, updated_at, document)
               VALUES (:key, :now, :now, :document)
               ON CONFLICT (key) DO UPDATE
               SET updated_at = excluded.updated_at, document = excluded.document""",
            rows,
        )


def _page(
    connection: sqlite3.Connection,
    query: tuple[str, list[Any]],
    count: tuple[str, list[Any]] | None,
    size: int,
    offset: int,
) -> tuple[int | None, list[str]]:
    # One read transaction: the count and the page come from the same snapshot.
    with transaction(connection, "DEFERRED"):
        total = None if count is None else connection.execute(*count).fetchone()[0]
        if offset < 0 or size < 1:  # no such page; SQLite would read a negative LIMIT as "all"
            return total, []
        where, args = query
        rows = connection.execute(
            f"SELECT document FROM instructions WHERE {where} "  # noqa: S608 - fixed fragments only
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [*args, size, offset],
        ).fetchall()
    return total, [doc for (doc,) in rows]


#: The instructions' column counting the files in each status.
_COUNTED: Final = {
    Status.PENDING: "pending",
    Status.PROCESSING: "processing",
    Status.DONE: "done",
    Status.FAILED: "failed",
}


def _counted(
    connection: sqlite3.Connection, instruction_id: str, before: str | None, after: str
) -> None:
    """Move one file of the instruction from status ``before`` (None: a new file) to ``after``.

    The counts are the instruction's own row: a status write reads none of
    its other files, however many it holds.
    """
    moves = [f"{_COUNTED[Status(after)]} = {_COUNTED[Status(after)]} + 1"]
    if before is not None:
        moves.append(f"{_COUNTED[Status(before)]} = {_COUNTED[Status(before)]} - 1")
    counts = connection.execute(
        f"UPDATE instructions SET {', '.join(moves)} WHERE id = ? "  # noqa: S608 - column names from _COUNTED only
        "RETURNING pending, processing, done, failed, status, user_id",
        (instruction_id,),
    ).fetchone()
    if counts is None:
        return  # the foreign key refuses the file's insert
    *numbers, stored, user_id = counts
    status = counted_status(dict(zip(_COUNTED, numbers, strict=True))).value
    if status != stored:
        connection.execute(
            "UPDATE instructions SET status = ? WHERE id = ?", (status, instruction_id)
        )
        _user_counted(connection, user_id, stored, status)


def _add_instruction(connection: sqlite3.Connection, row: Sequence[Any]) -> None:
    with transaction(connection):
        connection.execute(
            "INSERT INTO instructions (id, user_id, created_at, status, document) "
            "VALUES (?, ?, ?, ?, ?)",
            row,
        )
        _user_counted(connection, row[1], None, row[3])


def _user_counted(
    connection: sqlite3.Connection, user_id: str, before: str | None, after: str
) -> None:
    """Move one of the user's instructions from status ``before`` (None: new) to ``after``."""
    connection.execute(
        """INSERT INTO user_counts (user_id, status, instructions) VALUES (?, ?, 1)
           ON CONFLICT (user_id, status) DO UPDATE SET instructions = instructions + 1""",
        (user_id, after),
    )
    if before is not None:
        connection.execute(
            "UPDATE user_counts SET instructions = instructions - 1 "
            "WHERE user_id = ? AND status = ?",
            (user_id, before),
        )


def _add_detail(connection: sqlite3.Connection, row: dict[str, Any], max_files: int | None) -> None:
    with transaction(connection):
        if max_files is not None:
            held = connection.execute(
                "SELECT pending + processing + done + failed FROM instructions WHERE id = ?",
                (row["instruction_id"],),
            ).fetchone()
            if held is not None and held[0] >= max_files:
                raise TooManyFiles(f"the instruction holds {max_files} files already")
        connection.execute(
            """INSERT INTO details
                 (id, instruction_id, status, created_at, updated_at, is_cleaned, outbox, version,
                  document)
               VALUES (:id, :instruction_id, :status, :created_at, :updated_at, :is_cleaned,
                       :outbox, :version, :document)""",
            row,
        )
        _counted(connection, row["instruction_id"], None, row["status"])


def _update_detail(connection: sqlite3.Connection, row: dict[str, Any], expected: int) -> bool:
    with transaction(connection):
        return _compare_and_set(connection, row, expected)


def _update_details(
    connection: sqlite3.Connection, rows: Sequence[tuple[dict[str, Any], int]]
) -> int:
    with transaction(connection):
        return sum(_compare_and_set(connection, row, expected) for row, expected in rows)


def _compare_and_set(connection: sqlite3.Connection, row: dict[str, Any], expected: int) -> bool:
    """Write the detail ``row`` if its stored version is ``expected`` (inside a transaction)."""
    found = connection.execute(
        "SELECT status FROM details WHERE id = ? AND version = ?", (row["id"], expected)
    ).fetchone()
    if found is None:
        return False
    connection.execute(
        """UPDATE details
           SET status = :status, updated_at = :updated_at, is_cleaned = :is_cleaned,
               outbox = :outbox, version = :version, document = :document
           WHERE id = :id""",
        row,
    )
    if found[0] != row["status"]:
        # Most writes keep the status (a lease renewed, a record cleared): the
        # instruction's status can only change with one of its files'.
        _counted(connection, row["instruction_id"], found[0], row["status"])
    return True
