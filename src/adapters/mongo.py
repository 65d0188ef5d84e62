"""The MongoDB repository: the system of record when several hosts share one database.

Speaks the MongoDB wire protocol through pymongo's async client and is tested
against FerretDB 1.24 on SQLite. FerretDB's gaps shape three choices, each
explained where it is made:

* an update with a filter is not atomic there (it reads, filters, then writes
  by ``_id``), so the compare-and-set of `update_detail` is arbitrated by a
  unique index on ``detail_locks``, which SQLite enforces;
* no transactions: an instruction's derived ``status`` is rewritten after each
  file write until a fresh read of its files agrees with it;
* keys holding ``.`` or a leading ``$`` and arrays inside arrays are refused,
  so the free-form values (params, metadata, product parameters) are JSON text.

FerretDB on SQLite pushes down only a filter on ``_id`` alone; other queries
read the whole collection, so the indexes made here serve MongoDB. Times are
BSON dates, which keep milliseconds (imagecore's clocks give no more).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Self

from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
)

from adapters.documents import (
    Document,
    detail_from_document,
    detail_to_document,
    instruction_from_document,
    instruction_to_document,
    product_from_document,
    product_to_document,
    time_from_document,
    time_to_document,
)
from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    ImageCoreError,
    NotFound,
    TooManyFiles,
    ValidationError,
)
from imagecore.model import (
    Instruction,
    InstructionDetail,
    Status,
    aggregate_status,
    counted_status,
    new_id,
)
from imagecore.ports import DetailQuery, InstructionQuery, Page
from imagecore.products import Product
from imagecore.queries import detail_matches

__all__ = ["MongoInstructionRepository"]

_log = logging.getLogger(__name__)

_Collection = AsyncCollection[Document]

#: Server selection and connecting give up after this, so a stopped database fails
#: a call (and ``GET /health``) within 2 s: pymongo may wait 0.5 s more for its monitor.
_SELECTION_TIMEOUT_MS = 1000
#: A version lock older than this (by the hosts' clocks) is abandoned: its writer
#: died or lost the server mid-write; what it sent was long since applied or dropped.
_LOCK_EXPIRY = timedelta(seconds=30)
#: Rounds of recompute-and-compare before a status refresh leaves the last
#: word to the writers racing it (each of them runs its own rounds).
_STATUS_ROUNDS = 8
#: The instruction's fields counting its files in each status, kept beside its status.
_COUNT_FIELDS = {status: f"files_{status.value.lower()}" for status in Status}
#: The marker of `MongoInstructionRepository._upgraded`.
_NOTES_AND_PLACES = "outbox-notes-and-file-places"
#: Server error codes that mean "not now" rather than "never": shutting down,
#: stepping down, unreachable, out of time.
_TRANSIENT_CODES = frozenset({6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
_MESSAGE_LIMIT = 200

#: Free-form fields, stored as JSON text (see the module docstring).
_PRODUCT_JSON = ("parameters", "one_of")
_INSTRUCTION_JSON = ("params",)
_DETAIL_JSON = ("metadata",)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn pymongo's exceptions into `imagecore.errors`, the one place this adapter does."""
    try:
        yield
    except DuplicateKeyError as exc:
        raise ConflictError(f"the record exists: {_brief(exc)}") from exc
    except ConnectionFailure as exc:  # with AutoReconnect, NetworkTimeout, server selection
        raise DependencyUnavailable(f"mongo did not answer: {_brief(exc)}") from exc
    except OperationFailure as exc:
        if exc.code in _TRANSIENT_CODES or exc.has_error_label("RetryableWriteError"):
            raise DependencyUnavailable(f"mongo cannot serve now: {_brief(exc)}") from exc
        raise ImageCoreError(f"mongo refused the operation: {_brief(exc)}") from exc
    except InvalidOperation as exc:  # the client was closed
        raise DependencyUnavailable(f"the mongo repository is closed: {_brief(exc)}") from exc
    except PyMongoError as exc:
        raise ImageCoreError(f"mongo: {_brief(exc)}") from exc
    except (BSONError, UnicodeEncodeError) as exc:
        raise ValidationError(f"the value cannot be stored in mongo: {exc}") from exc


def _brief(exc: Exception) -> str:
    # Server selection errors append the whole topology description.
    text = str(exc)
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def _to_stored(document: Document, as_json: Sequence[str]) -> Document:
    stored = {k: json.dumps(v) if k in as_json else v for k, v in document.items()}
    stored["_id"] = stored.pop("id")
    return stored


def _from_stored(stored: Document, as_json: Sequence[str]) -> Document:
    document = {k: json.loads(v) if k in as_json else v for k, v in stored.items()}
    document["id"] = document.pop("_id")
    return document


class MongoInstructionRepository:
    """`InstructionRepository` on MongoDB (or FerretDB): products, instructions, details.

    Create it with ``await MongoInstructionRepository.open(uri, database)`` and
    end it with ``await repo.close()``; nothing connects before ``open``.
    Raises `DependencyUnavailable` when the server does not answer (within
    about a second to find it, ``timeout_ms`` for an answer) or after ``close``,
    `ConflictError` for a reused id, `NotFound` as the port says, and the base
    `ImageCoreError` for a request the server refuses for good.

    `update_detail` writes each version of a file once, whatever the number of
    processes. If a call fails midway (server gone, cancelled), the write may
    still land; until `_LOCK_EXPIRY` has passed, writers of that same version
    are told they lost.
    """

    def __init__(self, client: AsyncMongoClient[Document], database: str, timeout_ms: int) -> None:
        # Private: use ``open``.
        db = client[database]
        self._client = client
        self._products: _Collection = db["products"]
        self._instructions: _Collection = db["instructions"]
        self._details: _Collection = db["details"]
        self._locks: _Collection = db["detail_locks"]
        self._places: _Collection = db["file_places"]
        self._outbox: _Collection = db["detail_outbox"]
        self._migrations: _Collection = db["migrations"]
        self._lock_expiry = max(_LOCK_EXPIRY, 4 * timedelta(milliseconds=timeout_ms))
        self._last_seq = 0

    @classmethod
    async def open(cls, uri: str, database: str, *, timeout_ms: int = 5000) -> Self:
        """Connect to ``uri`` and make sure the indexes of ``database`` exist (idempotent).

        ``timeout_ms`` bounds the wait for the answer to one request.
        """
        selection_ms = min(timeout_ms, _SELECTION_TIMEOUT_MS)
        with _translated():
            client = AsyncMongoClient[Document](
                uri,
                tz_aware=True,
                tzinfo=UTC,
                serverSelectionTimeoutMS=selection_ms,
                connectTimeoutMS=selection_ms,
                socketTimeoutMS=timeout_ms,
                appname="imagecore",
            )
        repo = cls(client, database, timeout_ms)
        try:
            with _translated():
                await repo._create_indexes()
                await repo._upgraded()
        except BaseException:
            await client.close()
            raise
        return repo

    async def close(self) -> None:
        """Close the client's connections (idempotent); calls after this are unavailable."""
        await self._client.close()

    async def _create_indexes(self) -> None:
        up, down = ASCENDING, DESCENDING
        await self._products.create_index([("key", up)], unique=True)
        await self._instructions.create_index(
            [("user_id", up), ("created_at", down), ("_id", down)]
        )
        await self._instructions.create_index(
            [("user_id", up), ("status", up), ("created_at", down), ("_id", down)]
        )
        await self._details.create_index([("instruction_id", up), ("seq", up), ("_id", up)])
        await self._details.create_index([("status", up), ("updated_at", up), ("_id", up)])
        await self._details.create_index([("updated_at", up), ("_id", up)])
        await self._details.create_index([("created_at", up)])
        await self._details.create_index([("is_cleaned", up), ("updated_at", up)])
        await self._locks.create_index([("key", up)], unique=True)

    # ------------------------------------------------------------------ products

    async def save_products(self, products: Sequence[Product], now: datetime) -> None:
        when = time_to_document(now)
        with _translated():
            for product in products:
                fields = _to_stored(product_to_document(product), _PRODUCT_JSON)
                await self._upsert_product(fields.pop("_id"), fields, when)

    async def _upsert_product(self, product_id: str, fields: Document, now: datetime) -> None:
        update = {"$set": {**fields, "updated_at": now}, "$setOnInsert": {"created_at": now}}
        try:
            await self._products.update_one({"_id": product_id}, update, upsert=True)
        except DuplicateKeyError:
            # Another process inserted it between this upsert's read and its insert
            # (FerretDB does not upsert atomically); now the update finds it.
            await self._products.update_one({"_id": product_id}, update, upsert=True)

    async def list_products(self) -> list[tuple[Product, datetime, datetime]]:
        with _translated():
            stored = await self._products.find().sort("key", ASCENDING).to_list()
        return [
            (
                product_from_document(_from_stored(doc, _PRODUCT_JSON)),
                time_from_document(doc["created_at"]),
                time_from_document(doc["updated_at"]),
            )
            for doc in stored
        ]

    # ------------------------------------------------------------------ instructions

    async def add_instruction(self, instruction: Instruction) -> None:
        stored = _to_stored(instruction_to_document(instruction), _INSTRUCTION_JSON)
        # The aggregate status of the files, kept here so that a user's list
        # filters and counts by status on one indexed collection.
        stored["status"] = aggregate_status([]).value
        stored |= dict.fromkeys(_COUNT_FIELDS.values(), 0)
        with _translated():
            await self._instructions.insert_one(stored)

    async def get_instruction(self, instruction_id: str) -> Instruction:
        with _translated():
            stored = await self._instructions.find_one({"_id": instruction_id})
        if stored is None:
            raise NotFound("instruction not found")
        return instruction_from_document(_from_stored(stored, _INSTRUCTION_JSON))

    async def list_instructions(self, query: InstructionQuery) -> Page:
        conditions: Document = {"user_id": query.user_id}
        if query.status is not None:
            conditions["status"] = query.status.value
        created: Document = {}
        if query.created_from is not None:
            created["$gte"] = time_to_document(query.created_from)
        if query.created_to is not None:
            created["$lte"] = time_to_document(query.created_to)
        if created:
            conditions["created_at"] = created
        skip = (query.page - 1) * query.size
        if query.after is not None:
            moment, last_id = time_to_document(query.after[0]), query.after[1]
            conditions["$or"] = [
                {"created_at": {"$lt": moment}},
                {"created_at": moment, "_id": {"$lt": last_id}},
            ]
            skip = 0  # a page after a cursor starts there
        with _translated():
            total = None
            if query.after is None:
                total = await self._instructions.count_documents(conditions)
            stored: list[Document] = []
            if query.page >= 1 and query.size >= 1:  # else no such page (and 0 is "no limit")
                cursor = self._instructions.find(conditions)
                cursor = cursor.sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                cursor = cursor.skip(skip).limit(query.size)
                stored = await cursor.to_list()
        items = [instruction_from_document(_from_stored(d, _INSTRUCTION_JSON)) for d in stored]
        return Page(items, total, query.page, query.size)

    # ------------------------------------------------------------------ details

    async def add_detail(self, detail: InstructionDetail, *, max_files: int | None = None) -> None:
        stored = _to_stored(detail_to_document(detail), _DETAIL_JSON)
        # Upload order: strictly increasing here, by the clock across processes.
        self._last_seq = stored["seq"] = max(time.time_ns(), self._last_seq + 1)
        with _translated():
            # Instructions are never deleted, so a check before the insert holds.
            parent = await self._instructions.find_one({"_id": detail.instruction_id}, {"_id": 1})
            if parent is None:
                raise NotFound("instruction not found")
            place = None if max_files is None else await self._take_place(detail, max_files)
            try:
                await self._record_outbox(detail)
                await self._details.insert_one(stored)
            except BaseException:
                if place is not None:
                    await self._give_back(place, detail.id)
                raise
        await self._refresh_status(detail.instruction_id)

    async def _record_outbox(self, detail: InstructionDetail) -> None:
        """Note an outbox record in ``detail_outbox`` before the detail that holds it is written.

        The reaper reads that small collection, not the details, whose status
        index would have it walk every finished file. Written first, removed
        after the detail clears its record: a crash between leaves a note too
        many, which the reaper drops, never a record it cannot find. A note
        carries the version that set it: only a write of that version or a
        later one, or a reaper that reads such a version without the record,
        removes it.
        """
        if detail.outbox:
            note = {"updated_at": time_to_document(detail.updated_at), "version": detail.version}
            await self._outbox.update_one({"_id": detail.id}, {"$set": note}, upsert=True)

    async def _clear_outbox(self, detail_id: str, version: int) -> None:
        try:
            with _translated():
                await self._outbox.delete_one({"_id": detail_id, "version": {"$lte": version}})
        except DependencyUnavailable:
            _log.warning("outbox note of %s is left for the reaper to drop", detail_id)

    async def _upgraded(self) -> None:
        """Give the records and files written before notes and places theirs (once).

        Run when the repository opens, until a marker says it is done: every
        detail holding an outbox record gets its note, and every instruction
        a place for each file it holds. Stop the older processes first: what
        they write meanwhile has neither.
        """
        if await self._migrations.find_one({"_id": _NOTES_AND_PLACES}) is not None:
            return
        held: dict[str, int] = {}
        fields = {"instruction_id": 1, "outbox": 1, "updated_at": 1, "version": 1}
        async for stored in self._details.find({}, fields):
            if stored.get("outbox"):
                note = {"updated_at": stored["updated_at"], "version": stored["version"]}
                await self._outbox.update_one({"_id": stored["_id"]}, {"$set": note}, upsert=True)
            instruction_id = stored["instruction_id"]
            number = held[instruction_id] = held.get(instruction_id, -1) + 1
            await self._places.update_one(
                {"_id": f"{instruction_id}:{number}"},
                {"$setOnInsert": {"detail_id": stored["_id"]}},
                upsert=True,
            )
        await self._migrations.update_one(
            {"_id": _NOTES_AND_PLACES}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
        )

    async def _take_place(self, detail: InstructionDetail, max_files: int) -> str:
        """Take one of the instruction's ``max_files`` places; `TooManyFiles` if none is free.

        A place is a document whose ``_id`` names the instruction and a number
        below the limit: the unique ``_id`` lets one insert win each place, on
        MongoDB and on FerretDB alike, so concurrent uploads cannot pass the
        limit. A place is given back only when its file was never written.
        """
        for number in range(max_files):
            place = f"{detail.instruction_id}:{number}"
            try:
                await self._places.insert_one({"_id": place, "detail_id": detail.id})
            except DuplicateKeyError:
                continue
            return place
        raise TooManyFiles(f"the instruction holds {max_files} files already")

    async def _give_back(self, place: str, detail_id: str) -> None:
        """Free a place whose file's insert failed, unless the insert landed after all."""
        try:
            with _translated():
                if await self._details.find_one({"_id": detail_id}, {"_id": 1}) is None:
                    await self._places.delete_one({"_id": place, "detail_id": detail_id})
        except DependencyUnavailable:
            _log.warning("place %s is kept: whether its file was written is unknown", place)

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        with _translated():
            stored = await self._details.find_one({"_id": detail_id})
        if stored is None:
            raise NotFound("file not found")
        return detail_from_document(_from_stored(stored, _DETAIL_JSON))

    async def list_details(self, instruction_id: str) -> list[InstructionDetail]:
        with _translated():
            cursor = self._details.find({"instruction_id": instruction_id})
            stored = await cursor.sort([("seq", ASCENDING), ("_id", ASCENDING)]).to_list()
        return [detail_from_document(_from_stored(d, _DETAIL_JSON)) for d in stored]

    async def count_details(self, instruction_id: str) -> int:
        with _translated():
            return await self._details.count_documents({"instruction_id": instruction_id})

    async def update_detail(self, detail: InstructionDetail) -> bool:
        fields = _to_stored(detail_to_document(detail), _DETAIL_JSON)
        del fields["_id"]
        with _translated():
            lock = await self._lock_version(detail)
            if lock is None:
                return False
            await self._record_outbox(detail)
            # $set rather than a replacement keeps the adapter's own ``seq``; the
            # status before tells whether the instruction's status can have moved.
            # (FerretDB refuses a projection here: the whole document comes back.)
            before = await self._details.find_one_and_update(
                {"_id": detail.id, "version": detail.version - 1}, {"$set": fields}
            )
            if before is None and detail.outbox:
                # Not written: its note goes, while the lock keeps other writers of it out.
                await self._outbox.delete_one({"_id": detail.id, "version": detail.version})
        await self._unlock(lock)
        if before is None:
            return False
        if before.get("outbox") and not detail.outbox:
            await self._clear_outbox(detail.id, detail.version)
        if before.get("status") != fields["status"]:
            # Only then: on FerretDB the refresh reads every file, and most writes
            # (lease renewals, outbox records) leave the status as it was.
            await self._refresh_status(detail.instruction_id)
        return True

    async def _lock_version(self, detail: InstructionDetail) -> str | None:
        """Take the lock on writing ``detail.version``; None if another writer holds it.

        FerretDB reads, filters, then writes by ``_id``, so two updates filtered
        on the same version can both match. Every writer of version N starts
        from version N - 1, so at most one of them can be right: the one holding
        this lock, taken by an insert that the unique index lets only one win.
        Each lock has its own ``_id``, so deleting an abandoned one can never
        delete its successor.
        """
        key = f"{detail.id}:{detail.version}"
        lock_id = new_id()
        try:
            await self._locks.insert_one({"_id": lock_id, "key": key, "at": datetime.now(UTC)})
        except DuplicateKeyError:
            holder = await self._locks.find_one({"key": key})
            if holder is None or datetime.now(UTC) - holder["at"] < self._lock_expiry:
                return None
            await self._locks.delete_one({"_id": holder["_id"]})
            try:
                await self._locks.insert_one({"_id": lock_id, "key": key, "at": datetime.now(UTC)})
            except DuplicateKeyError:
                return None
        return lock_id

    async def _unlock(self, lock_id: str) -> None:
        # The outcome is known, so the version is free again: a slower writer of
        # it will find the stored version moved on (or still missing). Left
        # behind, the lock only makes such writers lose until it expires.
        try:
            with _translated():
                await self._locks.delete_one({"_id": lock_id})
        except DependencyUnavailable:
            _log.warning("version lock %s is left to expire", lock_id, exc_info=True)

    async def _refresh_status(self, instruction_id: str) -> None:
        """Rewrite the instruction's status until a fresh read of its files agrees.

        Without transactions a writer may store a status computed before a
        racing file write. Every writer that changes the status reads the files
        again afterwards and stops only when the stored status is what they
        say: once writes stop, the last to change it checked the final files.
        A failure here leaves the file written and the status stale until the
        instruction's next file write; it is logged, not raised.
        """
        try:
            with _translated():
                for _ in range(_STATUS_ROUNDS):
                    counts = await self._counted(instruction_id)
                    wanted = {"status": counted_status(counts).value} | {
                        _COUNT_FIELDS[status]: count for status, count in counts.items()
                    }
                    stale = [{field: {"$ne": value}} for field, value in wanted.items()]
                    changed = await self._instructions.update_one(
                        {"_id": instruction_id, "$or": stale}, {"$set": wanted}
                    )
                    if changed.matched_count == 0:
                        return
        except DependencyUnavailable:
            _log.warning(
                "the status of instruction %s may be stale until its next file write",
                instruction_id,
                exc_info=True,
            )

    async def _counted(self, instruction_id: str) -> dict[Status, int]:
        """The instruction's files per status, counted from the files (at most its file limit)."""
        files = self._details.find({"instruction_id": instruction_id}, {"status": 1})
        held = [Status(f["status"]) async for f in files]
        return {status: held.count(status) for status in Status}

    async def file_counts(self, instruction_ids: Sequence[str]) -> dict[str, dict[Status, int]]:
        counts: dict[str, dict[Status, int]] = {}
        fields = dict.fromkeys(_COUNT_FIELDS.values(), 1)
        with _translated():
            for (
                instruction_id
            ) in instruction_ids:  # one _id lookup each: FerretDB indexes only those
                stored = await self._instructions.find_one({"_id": instruction_id}, fields)
                if stored is None:
                    continue
                if all(field in stored for field in fields):
                    counts[instruction_id] = {s: stored[f] for s, f in _COUNT_FIELDS.items()}
                else:  # written before the counts were kept: counted from its files
                    counts[instruction_id] = await self._counted(instruction_id)
        return counts

    async def find_details(self, query: DetailQuery) -> list[InstructionDetail]:
        if query.limit <= 0:  # pymongo reads a limit of 0 as "no limit"
            return []
        if query.outbox is True:
            return await self._find_in_outbox(query)
        conditions: Document = {}
        if query.statuses:
            conditions["status"] = {"$in": sorted(s.value for s in query.statuses)}
        if query.updated_before is not None:
            conditions["updated_at"] = {"$lt": time_to_document(query.updated_before)}
        if query.created_before is not None:
            conditions["created_at"] = {"$lt": time_to_document(query.created_before)}
        if query.is_cleaned is not None:
            conditions["is_cleaned"] = query.is_cleaned
        if query.outbox is False:
            conditions["outbox"] = {"$ne": True}  # documents from before the field: False
        with _translated():
            cursor = self._details.find(conditions)
            cursor = cursor.sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
            stored = await cursor.limit(query.limit).to_list()
        return [detail_from_document(_from_stored(d, _DETAIL_JSON)) for d in stored]

    async def _find_in_outbox(self, query: DetailQuery) -> list[InstructionDetail]:
        """The details with an outbox record, found through their notes: one ``_id`` read each."""
        found: list[InstructionDetail] = []
        with _translated():
            notes = self._outbox.find({}).sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
            async for note in notes:
                stored = await self._details.find_one({"_id": note["_id"]})
                if stored is None:
                    continue  # its detail's insert failed after the note
                detail = detail_from_document(_from_stored(stored, _DETAIL_JSON))
                if not detail.outbox and detail.version >= note.get("version", 0):
                    # Left by a crash after the clear (a note of a later write waits for it).
                    await self._clear_outbox(detail.id, detail.version)
                elif not detail.outbox:
                    continue
                elif detail_matches(detail, query):
                    found.append(detail)
                    if len(found) == query.limit:
                        break
        found.sort(key=lambda d: (d.updated_at, d.id))
        return found

    async def ping(self) -> None:
        with _translated():
            await self._client.admin.command("ping")
