"""The MongoDB repository: the system of record when several hosts share one database.

Speaks the MongoDB wire protocol through pymongo's async client and is tested
against FerretDB 1.24 on SQLite. FerretDB's gaps shape four choices, each
explained where it is made:

* FerretDB on SQLite uses no index: a filter on any field but ``_id``
  decodes the whole collection, and even an ``_id`` filter walks the table
  until it meets the document (docs/decisions/0001). So the details live in
  a collection per day of their ids (``details_YYYYMMDD``), as does a copy
  of each instruction (``instructions_YYYYMMDD``), and every hot path
  (upload, claim, lease renewal, finish, the reaper, cleanup, one
  instruction's reads) reads by ``_id`` in one day, or reads a side
  collection that holds only the active set: ``file_places_YYYYMMDD`` (an
  instruction's files, by numbered ``_id``), ``detail_outbox`` (records not yet
  published), ``detail_in_flight`` (PENDING and PROCESSING files) and
  ``detail_kept`` (finished files whose bytes are still stored). A user's list
  of instructions is the exception: it filters the ``instructions``
  collection (an index on MongoDB, a walk of every instruction on FerretDB),
  whose status is rewritten only when an instruction's status changes;
* an update with a filter is not atomic there (it reads, filters, then writes
  by ``_id``), so the compare-and-set of `update_detail` is arbitrated by a
  unique index on ``detail_locks``, which SQLite enforces;
* no transactions: an instruction's derived ``status`` and counts are
  rewritten after each status change until a fresh read of its files agrees;
* keys holding ``.`` or a leading ``$`` and arrays inside arrays are refused,
  so the free-form values (params, metadata, product parameters) are JSON text.

Times are BSON dates, which keep milliseconds (imagecore's clocks give no more).

Why one module: one port's adapter, with one place that translates the
driver's errors and one layout of collections that every method follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Self

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
    is_object_id,
    new_id,
)
from imagecore.ports import DetailQuery, InstructionQuery, Page
from imagecore.products import Product
from imagecore.queries import detail_matches

__all__ = ["MongoInstructionRepository", "stored_documents"]

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
_LAYOUT = "instruction-days-details-days-notes-places-sides"
#: The prefixes of the collections of one day's details, its instructions' places, and its
#: instructions (copies of those in ``instructions``, which serves a user's list).
_DETAILS, _PLACES, _INSTRUCTIONS = "details_", "file_places_", "instructions_"
#: Documents read by ``_id`` at once, each its own request on the client's pool.
_READ_AHEAD = 16
_IN_FLIGHT = frozenset({Status.PENDING, Status.PROCESSING})
_FINAL = frozenset({Status.DONE, Status.FAILED})
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
        raise ConflictError("the record exists already") from exc
    except ConnectionFailure as exc:  # with AutoReconnect, NetworkTimeout, server selection
        raise DependencyUnavailable("the database did not answer", f"mongo: {_brief(exc)}") from exc
    except OperationFailure as exc:
        if exc.code in _TRANSIENT_CODES or exc.has_error_label("RetryableWriteError"):
            raise DependencyUnavailable(
                "the database cannot serve now", f"mongo: {_brief(exc)}"
            ) from exc
        raise ImageCoreError(f"mongo refused the operation: {_brief(exc)}") from exc
    except InvalidOperation as exc:  # the client was closed
        raise DependencyUnavailable("the database is closed", f"mongo: {_brief(exc)}") from exc
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
        self._db = db
        self._locks: _Collection = db["detail_locks"]
        self._outbox: _Collection = db["detail_outbox"]
        self._in_flight: _Collection = db["detail_in_flight"]
        self._kept: _Collection = db["detail_kept"]
        self._migrations: _Collection = db["migrations"]
        self._lock_expiry = max(_LOCK_EXPIRY, 4 * timedelta(milliseconds=timeout_ms))
        self._last_seq = 0
        # MongoDB applies a filter on ``_id`` and ``version`` atomically, from an
        # index; FerretDB would read the whole collection for it (see `_written`).
        self._version_filter = True

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
                info = await client.admin.command("buildInfo")
                repo._version_filter = "ferretdbVersion" not in info
                await repo._create_indexes()
                await repo._upgraded()
        except BaseException:
            await client.close()
            raise
        return repo

    async def close(self) -> None:
        """Close the client's connections (idempotent); calls after this are unavailable."""
        await self._client.close()

    def _details_of(self, detail_id: str) -> _Collection:
        """The collection of the details created on the day ``detail_id`` was (see `_day`)."""
        return self._db[_DETAILS + _day(detail_id)]

    def _instructions_of(self, instruction_id: str) -> _Collection:
        """The collection of the instructions created on the day ``instruction_id`` was."""
        return self._db[_INSTRUCTIONS + _day(instruction_id)]

    def _places_of_day(self, instruction_id: str) -> _Collection:
        """The collection of the places of the instructions created on ``instruction_id``'s day."""
        return self._db[_PLACES + _day(instruction_id)]

    async def _days(self, prefix: str) -> list[str]:
        """The names of the day collections of ``prefix``, oldest day first."""
        names = await self._db.list_collection_names()
        return sorted(n for n in names if n.startswith(prefix))

    async def _create_indexes(self) -> None:
        """The indexes MongoDB uses; FerretDB on SQLite keeps them but reads by ``_id`` alone.

        A user's list (`list_instructions`) uses the first two; the side
        collections' walks (`find_details`) the last three. Every other read
        and write is by ``_id``. The details' own indexes serve only a query
        no side collection answers (cleaned files, say), which the service
        never makes.
        """
        up, down = ASCENDING, DESCENDING
        await self._products.create_index([("key", up)], unique=True)
        await self._instructions.create_index(
            [("user_id", up), ("created_at", down), ("_id", down)]
        )
        await self._instructions.create_index(
            [("user_id", up), ("status", up), ("created_at", down), ("_id", down)]
        )
        await self._locks.create_index([("key", up)], unique=True)
        await self._outbox.create_index([("updated_at", up), ("_id", up)])
        await self._in_flight.create_index([("created_at", up), ("_id", up)])
        await self._kept.create_index([("updated_at", up), ("_id", up)])

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
        # The aggregate status of the files and their counts. The day's copy is
        # the one read and kept per file write; the copy in ``instructions``
        # serves a user's list, and its status moves only when the status does.
        stored["status"] = aggregate_status([]).value
        stored |= dict.fromkeys(_COUNT_FIELDS.values(), 0)
        with _translated():
            # The day's copy first: a crash between leaves an instruction that
            # can be read, not one that is listed and cannot.
            await self._instructions_of(instruction.id).insert_one(stored)
            await self._instructions.insert_one(stored)

    async def get_instruction(self, instruction_id: str) -> Instruction:
        with _translated():
            stored = await self._instructions_of(instruction_id).find_one({"_id": instruction_id})
        if stored is None:
            raise NotFound("instruction not found")
        return instruction_from_document(_from_stored(stored, _INSTRUCTION_JSON))

    async def list_instructions(self, query: InstructionQuery) -> Page[Instruction]:
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
        counts = dict.fromkeys(_COUNT_FIELDS.values(), 1)
        with _translated():
            # Instructions are never deleted, so a check before the insert holds.
            parent = await self._instructions_of(detail.instruction_id).find_one(
                {"_id": detail.instruction_id}, counts
            )
            if parent is None:
                raise NotFound("instruction not found")
            # Its counted files hold places below this number (the counts lag the places).
            start = sum(parent.get(field, 0) for field in counts)
            place = await self._take_place(detail.instruction_id, detail.id, start, max_files)
            try:
                await self._record_outbox(detail)
                await self._track(detail, None)
                await self._details_of(detail.id).insert_one(stored)
            except BaseException:
                await self._give_back(place, detail.id, stored["seq"])
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
            await _upsert(self._outbox, detail.id, note)

    async def _clear_outbox(self, detail_id: str, version: int) -> None:
        try:
            with _translated():
                await self._outbox.delete_one({"_id": detail_id, "version": {"$lte": version}})
        except DependencyUnavailable:
            _log.warning("outbox note of %s is left for the reaper to drop", detail_id)

    def _side(self, detail: InstructionDetail) -> _Collection | None:
        """The side collection that lists ``detail`` as it is: in flight, kept, or none."""
        if detail.is_cleaned:
            return None
        return self._in_flight if detail.status in _IN_FLIGHT else self._kept

    def _collection(self, name: str) -> _Collection:
        return self._in_flight if name == self._in_flight.name else self._kept

    async def _track(self, detail: InstructionDetail, before: Document | None) -> None:
        """List ``detail`` in its side collection before the write that moves it there.

        As with the outbox notes, the entry comes first and a crash leaves one
        too many, which `_find_tracked` drops once the detail's own version
        shows it; the entry's ``version`` is the write's that made it.
        """
        side = self._side(detail)
        if side is None or (before is not None and _side_name(before) == side.name):
            return
        entry = {
            "created_at": time_to_document(detail.created_at),
            "updated_at": time_to_document(detail.updated_at),
            "version": detail.version,
            "at": datetime.now(UTC),  # when written: an entry whose detail never came is dropped
        }
        await _upsert(side, detail.id, entry)

    async def _untrack(self, detail: InstructionDetail, before: Document) -> None:
        """Take ``detail`` off the side collection it has left, after the write that moved it.

        A file only moves on (in flight, then kept, then cleaned) and never
        comes back to a side collection it left, so its entry there is deleted
        by ``_id`` alone: FerretDB would decode the whole collection to apply a
        filter on ``_id`` and ``version``.
        """
        was = _side_name(before)
        side = self._side(detail)
        if was is None or (side is not None and side.name == was):
            return
        try:
            with _translated():
                await self._collection(was).delete_one({"_id": detail.id})
        except DependencyUnavailable:
            _log.warning("%s keeps %s until a walk drops it", was, detail.id)

    async def _upgraded(self) -> None:
        """Bring a database an older imagecore wrote to this layout (once).

        Until a marker says it is done: every instruction gets its day's copy,
        the details and places of the single ``details`` and ``file_places``
        collections move to their days; then
        every detail holding an outbox record gets its note, every file not
        cleaned its entry in ``detail_in_flight`` or ``detail_kept``, and every
        instruction a place for each file it holds. Each step may run again,
        so a crash midway leaves the next opening to finish. Stop the older
        processes first: what they write meanwhile is not moved.
        """
        if await self._migrations.find_one({"_id": _LAYOUT}) is not None:
            return
        async for stored in self._instructions.find({}):
            await self._instructions_of(stored["_id"]).replace_one(
                {"_id": stored["_id"]}, stored, upsert=True
            )
        legacy_details, legacy_places = self._db["details"], self._db["file_places"]
        async for stored in legacy_details.find({}):
            await self._details_of(stored["_id"]).replace_one(
                {"_id": stored["_id"]}, stored, upsert=True
            )
        async for place in legacy_places.find({}):
            places = self._places_of_day(place["_id"].rpartition(":")[0])
            await places.replace_one({"_id": place["_id"]}, place, upsert=True)
        files: dict[str, list[tuple[int, str]]] = {}
        for name in await self._days(_DETAILS):
            async for stored in self._db[name].find({}):
                detail = detail_from_document(_from_stored(stored, _DETAIL_JSON))
                await self._record_outbox(detail)
                await self._track(detail, None)
                files.setdefault(detail.instruction_id, []).append(
                    (stored.get("seq", 0), detail.id)
                )
        for instruction_id, uploaded in files.items():
            held = await self._places_of(instruction_id)
            for _, detail_id in sorted(uploaded):
                if detail_id not in held:
                    await self._take_place(instruction_id, detail_id, len(held), None)
                    held.append(detail_id)
        await legacy_details.drop()
        await legacy_places.drop()
        await self._migrations.update_one(
            {"_id": _LAYOUT}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
        )

    async def _take_place(
        self, instruction_id: str, detail_id: str, start: int, max_files: int | None
    ) -> str:
        """Take the first free place from number ``start``; `TooManyFiles` past ``max_files``.

        A place is a document whose ``_id`` names the instruction and a number:
        the unique ``_id`` lets one insert win each place, on MongoDB and on
        FerretDB alike, so concurrent uploads cannot pass the limit. Places are
        numbered from 0 without gaps (none is ever deleted), so that the
        instruction's files are found by ``_id`` alone (`_places_of`).
        """
        numbers = itertools.count(start) if max_files is None else range(start, max_files)
        for number in numbers:
            place = f"{instruction_id}:{number}"
            try:
                await self._places_of_day(instruction_id).insert_one(
                    {"_id": place, "detail_id": detail_id}
                )
            except DuplicateKeyError:
                continue
            return place
        raise TooManyFiles(f"the instruction holds {max_files} files already")

    async def _give_back(self, place: str, detail_id: str, seq: int) -> None:
        """Empty a place whose file's insert failed, unless this insert landed after all.

        The place stays, empty, so the numbering keeps no gap; it still counts
        against the instruction's limit. ``seq`` tells this insert's document
        from another detail of the same id (a reused id).
        """
        try:
            with _translated():
                stored = await self._details_of(detail_id).find_one({"_id": detail_id}, {"seq": 1})
                if stored is None or stored.get("seq") != seq:
                    places = self._places_of_day(place.rpartition(":")[0])
                    await places.update_one({"_id": place}, {"$set": {"detail_id": None}})
        except DependencyUnavailable:
            _log.warning("place %s is kept: whether its file was written is unknown", place)

    async def _places_of(self, instruction_id: str) -> list[str | None]:
        """The detail id in each of the instruction's places (None: emptied), in place order."""
        held: list[str | None] = []
        while True:
            ids = [f"{instruction_id}:{n}" for n in range(len(held), len(held) + _READ_AHEAD)]
            places = self._places_of_day(instruction_id)
            for place in await asyncio.gather(*(places.find_one({"_id": i}) for i in ids)):
                if place is None:
                    return held
                held.append(place.get("detail_id"))

    async def _details_by_ids(self, ids: Sequence[str]) -> dict[str, Document]:
        """The stored details with these ids, each read by ``_id`` in its day, some at once."""
        found: dict[str, Document] = {}
        for start in range(0, len(ids), _READ_AHEAD):
            chunk = ids[start : start + _READ_AHEAD]
            reads = (self._details_of(i).find_one({"_id": i}) for i in chunk)
            for stored in await asyncio.gather(*reads):
                if stored is not None:
                    found[stored["_id"]] = stored
        return found

    async def _files_of(self, instruction_id: str) -> list[Document]:
        """The instruction's stored details, found through its places: ``_id`` reads only."""
        ids = [detail_id for detail_id in await self._places_of(instruction_id) if detail_id]
        stored = await self._details_by_ids(ids)
        # A place whose detail is missing is an upload still on its way (or one that failed).
        return sorted(stored.values(), key=lambda d: (d["seq"], d["_id"]))

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        with _translated():
            stored = await self._details_of(detail_id).find_one({"_id": detail_id})
        if stored is None:
            raise NotFound("file not found")
        return detail_from_document(_from_stored(stored, _DETAIL_JSON))

    async def list_details(self, instruction_id: str) -> list[InstructionDetail]:
        with _translated():
            stored = await self._files_of(instruction_id)
        return [detail_from_document(_from_stored(d, _DETAIL_JSON)) for d in stored]

    async def count_details(self, instruction_id: str) -> int:
        with _translated():
            return sum(1 for detail_id in await self._places_of(instruction_id) if detail_id)

    async def update_detail(self, detail: InstructionDetail) -> bool:
        fields = _to_stored(detail_to_document(detail), _DETAIL_JSON)
        del fields["_id"]
        with _translated():
            lock = await self._lock_version(detail)
            if lock is None:
                return False
            details = self._details_of(detail.id)
            before = await details.find_one({"_id": detail.id}, _BEFORE)
            written = before is not None and before.get("version") == detail.version - 1
            if written:
                await self._record_outbox(detail)
                await self._track(detail, before)
                # $set rather than a replacement keeps the adapter's own ``seq`` and ``place``.
                changed = await details.update_one(self._written(detail), {"$set": fields})
                written = changed.matched_count == 1
                if not written and detail.outbox:
                    # Not written: its note goes, while the lock keeps other writers of it out.
                    await self._outbox.delete_one({"_id": detail.id, "version": detail.version})
        await self._unlock(lock)
        if not written or before is None:
            return False
        if before.get("outbox") and not detail.outbox:
            await self._clear_outbox(detail.id, detail.version)
        await self._untrack(detail, before)
        if before.get("status") != fields["status"]:
            # Only then: most writes (lease renewals, outbox records) keep the status.
            await self._refresh_status(detail.instruction_id)
        return True

    async def update_details(self, details: Sequence[InstructionDetail]) -> int:
        # No transaction spans documents here: a compare-and-set each, some at once.
        written = 0
        for start in range(0, len(details), _READ_AHEAD):
            chunk = details[start : start + _READ_AHEAD]
            written += sum(await asyncio.gather(*(self.update_detail(d) for d in chunk)))
        return written

    def _written(self, detail: InstructionDetail) -> Document:
        """The filter of a detail's write, once the lock is held and the version read matched.

        The lock already makes this writer the only one of its version; MongoDB
        checks the version again atomically, FerretDB would walk every detail
        to (its filters on more than ``_id`` are not pushed down).
        """
        if self._version_filter:
            return {"_id": detail.id, "version": detail.version - 1}
        return {"_id": detail.id}

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
        """Rewrite the instruction's status and counts until a fresh read of its files agrees.

        Without transactions a writer may store counts made before a racing
        file write. Every writer that changes a status reads the files again
        afterwards and stops only when the stored counts are what they say:
        once writes stop, the last to change them checked the final files. The
        files are read through the places, by ``_id`` (at most the file limit).
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
                    day = self._instructions_of(instruction_id)
                    stored = await day.find_one({"_id": instruction_id}, dict.fromkeys(wanted, 1))
                    if stored is None or all(stored.get(k) == v for k, v in wanted.items()):
                        return
                    await day.update_one({"_id": instruction_id}, {"$set": wanted})
                    if stored.get("status") != wanted["status"]:
                        # A few times in an instruction's life: the list's copy walks.
                        await self._instructions.update_one(
                            {"_id": instruction_id}, {"$set": {"status": wanted["status"]}}
                        )
        except DependencyUnavailable:
            _log.warning(
                "the status of instruction %s may be stale until its next file write",
                instruction_id,
                exc_info=True,
            )

    async def _counted(self, instruction_id: str) -> dict[Status, int]:
        """The instruction's files per status, counted from the files (at most its file limit)."""
        held = [Status(f["status"]) for f in await self._files_of(instruction_id)]
        return {status: held.count(status) for status in Status}

    async def file_counts(self, instruction_ids: Sequence[str]) -> dict[str, dict[Status, int]]:
        counts: dict[str, dict[Status, int]] = {}
        fields = dict.fromkeys(_COUNT_FIELDS.values(), 1)
        with _translated():
            for instruction_id in instruction_ids:  # one _id read each
                day = self._instructions_of(instruction_id)
                stored = await day.find_one({"_id": instruction_id}, fields)
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
        with _translated():
            if query.outbox is True:
                return await self._find_in_outbox(query)
            sides = _sides_for(query)
            if sides is None:
                return await self._find_by_scan(query)
            found: list[InstructionDetail] = []
            for name in sides:
                found += await self._find_tracked(self._collection(name), query)
        found.sort(key=lambda d: (d.updated_at, d.id))
        return found[: query.limit]

    async def _find_tracked(self, side: _Collection, query: DetailQuery) -> list[InstructionDetail]:
        """The details of a side collection that pass the query, read by ``_id``, oldest first.

        An entry's times are the detail's when it entered (a detail's own only
        grow), so the entries filtered by them hold every match. An entry whose
        detail has moved on past the entry's version, or whose insert never
        landed (written longer ago than the lock expiry), is dropped.
        """
        conditions: Document = {}
        if query.created_before is not None:
            conditions["created_at"] = {"$lt": time_to_document(query.created_before)}
        if query.updated_before is not None:
            conditions["updated_at"] = {"$lt": time_to_document(query.updated_before)}
        order = "created_at" if side is self._in_flight else "updated_at"
        entries = side.find(conditions).sort([(order, ASCENDING), ("_id", ASCENDING)])
        found: list[InstructionDetail] = []
        abandoned = datetime.now(UTC) - self._lock_expiry
        while len(found) < query.limit and (chunk := await entries.to_list(_READ_AHEAD)):
            stored = await self._details_by_ids([e["_id"] for e in chunk])
            for entry in chunk:
                if entry["_id"] not in stored:
                    written = entry["at"] if "at" in entry else entry["updated_at"]
                    if written < abandoned:
                        await side.delete_one({"_id": entry["_id"]})
                    continue
                detail = detail_from_document(_from_stored(stored[entry["_id"]], _DETAIL_JSON))
                if self._side(detail) is not side and detail.version >= entry["version"]:
                    await side.delete_one({"_id": detail.id})  # it never comes back
                elif detail_matches(detail, query) and len(found) < query.limit:
                    found.append(detail)
        await entries.close()
        return found

    async def _find_by_scan(self, query: DetailQuery) -> list[InstructionDetail]:
        """A query no side collection answers (cleaned files, say): it walks every day's details.

        The service never asks one; tests and operators' tools do.
        """
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
        stored: list[Document] = []
        for name in await self._days(_DETAILS):
            cursor = self._db[name].find(conditions)
            cursor = cursor.sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
            stored += await cursor.limit(query.limit).to_list()
        stored.sort(key=lambda d: (d["updated_at"], d["_id"]))
        return [detail_from_document(_from_stored(d, _DETAIL_JSON)) for d in stored[: query.limit]]

    async def _find_in_outbox(self, query: DetailQuery) -> list[InstructionDetail]:
        """The details with an outbox record, found through their notes: one ``_id`` read each."""
        found: list[InstructionDetail] = []
        notes = self._outbox.find({}).sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
        while len(found) < query.limit and (chunk := await notes.to_list(_READ_AHEAD)):
            stored = await self._details_by_ids([n["_id"] for n in chunk])
            for note in chunk:
                if note["_id"] not in stored:
                    continue  # its detail's insert failed after the note
                detail = detail_from_document(_from_stored(stored[note["_id"]], _DETAIL_JSON))
                if not detail.outbox and detail.version >= note.get("version", 0):
                    # Left by a crash after the clear (a note of a later write waits for it).
                    await self._clear_outbox(detail.id, detail.version)
                elif detail.outbox and detail_matches(detail, query) and len(found) < query.limit:
                    found.append(detail)
        await notes.close()
        found.sort(key=lambda d: (d.updated_at, d.id))
        return found

    async def ping(self) -> None:
        with _translated():
            await self._client.admin.command("ping")


def stored_documents(
    instruction: Instruction, details: Sequence[InstructionDetail], *, seq: int
) -> dict[str, list[Document]]:
    """What the repository holds for an instruction and its files, by collection name.

    For bulk imports into a database this repository has opened (the
    benchmarks seed history with it): inserted as they are, they read back as
    if each file had been added and moved through the repository. ``seq``
    numbers the files' upload order from there.
    """
    counts = {status: sum(d.status is status for d in details) for status in Status}
    stored = _to_stored(instruction_to_document(instruction), _INSTRUCTION_JSON)
    stored["status"] = counted_status(counts).value
    stored |= {_COUNT_FIELDS[status]: count for status, count in counts.items()}
    out: dict[str, list[Document]] = {
        "instructions": [stored],
        _INSTRUCTIONS + _day(instruction.id): [dict(stored)],
    }
    for number, detail in enumerate(details):
        document = _to_stored(detail_to_document(detail), _DETAIL_JSON)
        document["seq"] = seq + number
        out.setdefault(_DETAILS + _day(detail.id), []).append(document)
        place = {"_id": f"{instruction.id}:{number}", "detail_id": detail.id}
        out.setdefault(_PLACES + _day(instruction.id), []).append(place)
        entry = {
            "_id": detail.id,
            "created_at": time_to_document(detail.created_at),
            "updated_at": time_to_document(detail.updated_at),
            "version": detail.version,
        }
        if not detail.is_cleaned:
            side = "detail_in_flight" if detail.status in _IN_FLIGHT else "detail_kept"
            out.setdefault(side, []).append(entry)
        if detail.outbox:
            note = {"_id": detail.id, "updated_at": entry["updated_at"], "version": detail.version}
            out.setdefault("detail_outbox", []).append(note)
    return out


#: What `update_detail` reads of the stored detail before writing.
_BEFORE: Final = {"status": 1, "is_cleaned": 1, "outbox": 1, "version": 1}


async def _upsert(collection: _Collection, key: str, fields: Document) -> None:
    """Insert the document ``key``, or set ``fields`` on it if it is there.

    An insert first: FerretDB checks a new ``_id`` against its unique index,
    where an upsert's update would walk the collection to find no document.
    """
    try:
        await collection.insert_one({"_id": key, **fields})
    except DuplicateKeyError:
        await collection.update_one({"_id": key}, {"$set": fields})


def _day(record_id: str) -> str:
    """The UTC day an id was made on, from its first four bytes (`new_id`), as ``YYYYMMDD``.

    A string not shaped as an id (this service never makes one) falls in ``other``.
    """
    if not is_object_id(record_id):
        return "other"
    return datetime.fromtimestamp(int(record_id[:8], 16), UTC).strftime("%Y%m%d")


def _side_name(stored: Document) -> str | None:
    """The side collection that lists a stored detail (``_BEFORE`` fields): none once cleaned."""
    if stored.get("is_cleaned"):
        return None
    return "detail_in_flight" if Status(stored["status"]) in _IN_FLIGHT else "detail_kept"


def _sides_for(query: DetailQuery) -> tuple[str, ...] | None:
    """The side collections that hold every detail ``query`` can match; None if none do.

    In-flight files are never cleaned; final ones not cleaned are kept.
    """
    if query.statuses and query.statuses <= _IN_FLIGHT and query.is_cleaned is not True:
        return ("detail_in_flight",)
    if query.is_cleaned is False:
        if query.statuses and query.statuses <= _FINAL:
            return ("detail_kept",)
        return ("detail_in_flight", "detail_kept")
    return None
