"""Every repository answers like the in-memory one, step by step (Hypothesis stateful).

`RepositoryAgreement` drives the memory repository (the reference) and a
candidate with the same random operations and asserts equal answers, or
equal error types, after each. A backend joins by subclassing it with its own
``candidate()`` and exposing ``.TestCase`` (see `SqliteAgreement`); one that
needs a server (MongoDB) does so in ``tests/integration``, marked, with a fresh
database per example. Values stay within what every store keeps: millisecond
times, 64-bit integers, string keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from adapters.memory import MemoryInstructionRepository
from adapters.sqlite.repository import SqliteInstructionRepository
from imagecore.errors import ImageCoreError
from imagecore.model import Instruction, InstructionDetail, OutputFile, Status, new_id
from imagecore.ports import DetailQuery, InstructionQuery, InstructionRepository
from imagecore.products import CATALOGUE

T = TypeVar("T")
T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
USERS = ("alice", "bob")


# Few whole seconds make ties (ordering falls to the id) and hit the range bounds
# exactly. Milliseconds, not microseconds: MongoDB keeps no finer, and every
# backend runs this one machine (SQLite's microseconds have their own test).
times = st.one_of(
    st.integers(0, 8).map(lambda s: T0 + timedelta(seconds=s)),
    st.integers(0, 8_000).map(lambda ms: T0 + timedelta(milliseconds=ms)),
)
optional_times = st.none() | times
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
documents = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
dimensions = st.none() | st.integers(1, 20_000)
outputs = st.builds(
    OutputFile,
    key=st.just("outputs/x.webp"),
    name=st.text(min_size=1, max_size=10),
    size=st.integers(0, 10**9),
    mime_type=st.sampled_from(["image/webp", "image/png"]),
    width=dimensions,
    height=dimensions,
)
LEASE = timedelta(seconds=60)
Move = Callable[[InstructionDetail, datetime, st.DataObject], InstructionDetail]

#: The domain's moves on a detail.
MOVES: dict[str, Move] = {
    "claim": lambda d, now, data: d.claim(
        data.draw(st.sampled_from(["w1", "w2"])), now, now + LEASE
    ),
    "renew": lambda d, now, _: d.renew(now, now + LEASE),
    "complete": lambda d, now, data: d.complete(
        data.draw(outputs), data.draw(documents), now, data.draw(dimensions), data.draw(dimensions)
    ),
    "fail": lambda d, now, data: d.fail("corrupt_image", data.draw(st.text(max_size=20)), now),
    "release": lambda d, now, _: d.release(now),
    "release_with_reason": lambda d, now, _: d.release(now, "processing_timeout", "too long"),
    "clean": lambda d, now, _: d.mark_cleaned(now),
}
#: Which moves the state machine allows from each status: only those reach a repository.
ALLOWED: dict[Status, tuple[str, ...]] = {
    Status.PENDING: ("claim", "fail", "clean"),
    Status.PROCESSING: ("renew", "complete", "fail", "release", "release_with_reason", "clean"),
    Status.DONE: ("clean",),
    Status.FAILED: ("clean",),
}


def new_instruction(user: str, created: datetime, params: dict[str, Any]) -> Instruction:
    return Instruction(
        id=new_id(created.timestamp()),
        user_id=user,
        product_id="0123456789abcdef01234567",
        product_key="images/resize",
        params=params,
        created_at=created,
        updated_at=created,
    )


def new_detail(job: Instruction, created: datetime, name: str = "kite.jpg") -> InstructionDetail:
    detail_id = new_id(created.timestamp())
    return InstructionDetail(
        id=detail_id,
        instruction_id=job.id,
        user_id=job.user_id,
        product_key=job.product_key,
        original_name=name,
        original_key=f"originals/{job.id}/{detail_id}",
        size=1234,
        mime_type="image/jpeg",
        created_at=created,
        updated_at=created,
    )


class RepositoryAgreement(RuleBasedStateMachine):
    """The memory repository and ``candidate()`` answer every operation alike."""

    def candidate(self) -> AbstractAsyncContextManager[InstructionRepository]:
        """The repository under test, fresh and empty, closed on exit."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        self.reference = MemoryInstructionRepository()
        self.other: InstructionRepository = self.run(
            self.stack.enter_async_context(self.candidate())
        )
        self.jobs: list[Instruction] = []
        # Every version of each detail that was written: old ones make stale writes.
        self.history: dict[str, list[InstructionDetail]] = {}

    def teardown(self) -> None:
        try:
            self.run(self.stack.aclose())
        finally:
            self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def both(self, call: Callable[[InstructionRepository], Awaitable[T]]) -> T | None:
        """Ask both; assert the same answer or the same error type; return the answer."""

        async def outcome(repo: InstructionRepository) -> tuple[str, Any]:
            try:
                return "answer", await call(repo)
            except ImageCoreError as exc:
                return "error", type(exc)

        expected = self.run(outcome(self.reference))
        actual = self.run(outcome(self.other))
        assert actual == expected
        return expected[1] if expected[0] == "answer" else None

    def add_instruction(self, job: Instruction) -> None:
        self.both(lambda repo: repo.add_instruction(job))
        self.jobs.append(job)

    def add_detail(self, file: InstructionDetail) -> None:
        self.both(lambda repo: repo.add_detail(file))
        self.history[file.id] = [file]

    # ------------------------------------------------------------------ writes

    @initialize(
        seed=st.lists(
            st.tuples(st.sampled_from(USERS), times, st.lists(times, max_size=3)),
            min_size=1,
            max_size=5,
        )
    )
    def some_instructions_with_files(
        self, seed: list[tuple[str, datetime, list[datetime]]]
    ) -> None:
        for user, created, files in seed:
            job = new_instruction(user, created, {"width": 512})
            self.add_instruction(job)
            for file_created in files:
                self.add_detail(new_detail(job, file_created))

    @rule(user=st.sampled_from(USERS), created=times, params=documents)
    def add_an_instruction(self, user: str, created: datetime, params: dict[str, Any]) -> None:
        self.add_instruction(new_instruction(user, created, params))

    @rule(data=st.data(), created=times, name=st.text(min_size=1, max_size=12))
    def add_a_file(self, data: st.DataObject, created: datetime, name: str) -> None:
        self.add_detail(new_detail(data.draw(st.sampled_from(self.jobs)), created, name))

    @rule(data=st.data())
    def reuse_an_id(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self.jobs))
        self.both(lambda repo: repo.add_instruction(job))
        if self.history:
            file = self.history[data.draw(st.sampled_from(sorted(self.history)))][0]
            self.both(lambda repo: repo.add_detail(file))

    @rule(created=times)
    def add_a_file_to_a_missing_instruction(self, created: datetime) -> None:
        orphan = new_detail(new_instruction("alice", created, {}), created)
        self.both(lambda repo: repo.add_detail(orphan))

    @precondition(lambda self: self.history)
    @rule(data=st.data(), moves=st.integers(1, 3))
    def move_a_file(self, data: st.DataObject, moves: int) -> None:
        versions = self.history[data.draw(st.sampled_from(sorted(self.history)))]
        for _ in range(moves):
            # Mostly the current version; sometimes an older one, as a slower worker would write.
            current = data.draw(st.booleans())
            base = versions[-1] if current else data.draw(st.sampled_from(versions))
            action = data.draw(st.sampled_from(ALLOWED[base.status]))
            moved = MOVES[action](base, data.draw(times), data)
            if self.both(lambda repo, moved=moved: repo.update_detail(moved)):
                versions.append(moved)

    @rule(data=st.data())
    def write_a_file_that_was_never_added(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self.jobs))
        ghost = new_detail(job, T0).claim("w1", T0, T0 + LEASE)
        self.both(lambda repo: repo.update_detail(ghost))

    @rule(now=times, count=st.integers(0, len(CATALOGUE)))
    def save_products(self, now: datetime, count: int) -> None:
        self.both(lambda repo: repo.save_products(CATALOGUE[:count], now))

    # ------------------------------------------------------------------ reads

    @rule(data=st.data())
    def read_an_instruction(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self.jobs))
        self.both(lambda repo: repo.get_instruction(job.id))
        self.both(lambda repo: repo.list_details(job.id))
        self.both(lambda repo: repo.count_details(job.id))

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def read_a_file(self, data: st.DataObject) -> None:
        detail_id = data.draw(st.sampled_from(sorted(self.history)))
        self.both(lambda repo: repo.get_detail(detail_id))

    @rule()
    def read_what_does_not_exist(self) -> None:
        missing = new_id()
        self.both(lambda repo: repo.get_instruction(missing))
        self.both(lambda repo: repo.get_detail(missing))
        self.both(lambda repo: repo.list_details(missing))
        self.both(lambda repo: repo.count_details(missing))

    def bound(self, data: st.DataObject) -> datetime | None:
        """No bound, any time, or exactly a stored time (where ``<`` and ``<=`` differ)."""
        stored = sorted(
            {d.created_at for d in self.latest()}
            | {d.updated_at for d in self.latest()}
            | {j.created_at for j in self.jobs}
        )
        return data.draw(optional_times | st.sampled_from(stored))

    def latest(self) -> list[InstructionDetail]:
        return [versions[-1] for versions in self.history.values()]

    @rule(
        data=st.data(),
        statuses=st.frozensets(st.sampled_from(Status)),
        is_cleaned=st.none() | st.booleans(),
        limit=st.integers(0, 8),
    )
    def find_files(
        self,
        data: st.DataObject,
        statuses: frozenset[Status],
        is_cleaned: bool | None,
        limit: int,
    ) -> None:
        updated_before, created_before = self.bound(data), self.bound(data)
        query = DetailQuery(
            statuses=statuses,
            updated_before=updated_before,
            created_before=created_before,
            is_cleaned=is_cleaned,
            outbox=data.draw(st.none() | st.booleans()),
            limit=limit,
        )
        self.both(lambda repo: repo.find_details(query))

    @rule(
        data=st.data(),
        user=st.sampled_from(USERS),
        status=st.none() | st.sampled_from(Status),
        page=st.integers(1, 3),
        size=st.integers(1, 4),
    )
    def list_instructions(
        self, data: st.DataObject, user: str, status: Status | None, page: int, size: int
    ) -> None:
        created_from, created_to = self.bound(data), self.bound(data)
        query = InstructionQuery(user, status, created_from, created_to, page, size)
        self.both(lambda repo: repo.list_instructions(query))

    @rule()
    def list_products(self) -> None:
        self.both(lambda repo: repo.list_products())

    @invariant()
    def every_list_agrees(self) -> None:
        # Whole lists after every step: a divergence is caught when it happens,
        # not only if a random query later happens to look at it.
        for user in USERS:
            for status in (None, *Status):
                query = InstructionQuery(user, status, size=1000)
                self.both(lambda repo, query=query: repo.list_instructions(query))
        self.both(lambda repo: repo.find_details(DetailQuery(limit=10_000)))


class SqliteAgreement(RepositoryAgreement):
    @contextlib.asynccontextmanager
    async def candidate(self) -> AsyncIterator[InstructionRepository]:
        with tempfile.TemporaryDirectory(prefix="imagecore-model-") as folder:
            repo = await SqliteInstructionRepository.open(Path(folder) / "model.sqlite3")
            try:
                yield repo
            finally:
                await repo.close()


AGREEMENT = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestSqliteAgreesWithMemory = SqliteAgreement.TestCase
TestSqliteAgreesWithMemory.settings = AGREEMENT
