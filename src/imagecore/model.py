"""Instructions, their details (one per uploaded file) and the status state machine.

Values are frozen attrs classes; a change makes a new value through
``attrs.evolve`` and bumps ``version``, which repositories use for
conditional writes (compare-and-set on ``version``). Domain functions take
``now`` as an argument so that tests drive time.
"""

from __future__ import annotations

import enum
import itertools
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from imagecore.errors import InvalidTransition

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "ImageInfo",
    "Instruction",
    "InstructionDetail",
    "OutputFile",
    "Status",
    "aggregate_status",
    "check_transition",
    "counted_status",
    "is_object_id",
    "new_id",
    "paired_record_id",
]

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
#: Never with `_OUTPUT_BIT` set: that bit tells a file's output record from its input.
_process_random = bytes([os.urandom(1)[0] & 0x7F]) + os.urandom(4)
#: The top bit of an id's fifth byte (its first random one).
_OUTPUT_BIT = 1 << 63


def new_id(now: float | None = None) -> str:
    """Return a new 24-hex id laid out like a MongoDB ObjectId.

    Four bytes of seconds, five random bytes per process and a three-byte
    counter: ids sort by creation second and never collide across processes.
    """
    seconds = int(time.time() if now is None else now)
    count = next(_counter) & 0xFFFFFF
    raw = seconds.to_bytes(4, "big") + _process_random + count.to_bytes(3, "big")
    return raw.hex()


def paired_record_id(record_id: str) -> str:
    """The id of the other record of a file's pair: input -> output, output -> input.

    The old service kept two records per uploaded file; here one detail holds
    the file's whole state, and its output record is a view of it whose id is
    the detail's with `_OUTPUT_BIT` flipped. The map is its own inverse, keeps
    the id's time, and never yields an id `new_id` makes (it never sets that
    bit), so an output id cannot name a real detail made since. ``record_id``
    must be an id (`is_object_id`).
    """
    return f"{int(record_id, 16) ^ _OUTPUT_BIT:024x}"


def is_object_id(value: str) -> bool:
    """Tell whether ``value`` has the form of an id (24 lowercase hex digits)."""
    return len(value) == 24 and all(c in "0123456789abcdef" for c in value)  # noqa: PLR2004


class Status(enum.StrEnum):
    """Where one file is in the pipeline."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


#: The allowed next states. PROCESSING -> PENDING is a retry after a transient
#: failure or the reclaim of an expired lease; PENDING -> FAILED is cleanup
#: giving up on a file nobody picked up. DONE and FAILED are final.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.DONE, Status.FAILED, Status.PENDING}),
    Status.DONE: frozenset(),
    Status.FAILED: frozenset(),
}

TERMINAL = frozenset({Status.DONE, Status.FAILED})


def check_transition(current: Status, target: Status) -> None:
    """Raise `InvalidTransition` unless the table allows ``current -> target``."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a file cannot go from {current} to {target}")


@attrs.frozen
class ImageInfo:
    """What a header says about an image: read before any pixel is decoded."""

    format: str
    mime_type: str
    width: int
    height: int
    frames: int = 1


@attrs.frozen
class OutputFile:
    """The processed file of a detail, as stored."""

    key: str
    name: str
    size: int
    mime_type: str
    width: int | None = None
    height: int | None = None


@attrs.frozen
class Instruction:
    """A job: one product with its validated parameters, owned by one user.

    ``notify_url`` receives one signed POST each time the instruction
    finishes (all its files DONE or FAILED).
    """

    id: str
    user_id: str
    product_id: str
    product_key: str
    params: dict[str, object] = attrs.field(hash=False)
    created_at: datetime
    updated_at: datetime
    notify_url: str | None = None


@attrs.frozen
class InstructionDetail:
    """One uploaded file of an instruction and what became of it.

    ``lease_id`` and ``lease_expires_at`` are set while a worker holds the file
    (PROCESSING); ``version`` increases with every write. ``outbox`` is the
    outbox record: true from the moment a job for the file must be published
    until the broker has acknowledged it, so a failed publish is found again;
    for a DONE or FAILED file, until its final notification has been published
    (a worker that dies between the final write and the notification leaves
    the record for the reaper, so no listener waits forever).
    """

    id: str
    instruction_id: str
    user_id: str
    product_key: str
    original_name: str
    original_key: str
    size: int
    mime_type: str
    created_at: datetime
    updated_at: datetime
    status: Status = Status.PENDING
    width: int | None = None
    height: int | None = None
    output: OutputFile | None = None
    error_code: str | None = None
    error_message: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict, hash=False)
    attempts: int = 0
    lease_id: str | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    is_cleaned: bool = False
    outbox: bool = False
    version: int = 1

    def _move(self, target: Status, now: datetime, **changes: Any) -> InstructionDetail:  # noqa: ANN401
        check_transition(self.status, target)
        return attrs.evolve(
            self, status=target, updated_at=now, version=self.version + 1, **changes
        )

    def claim(self, lease_id: str, now: datetime, lease_until: datetime) -> InstructionDetail:
        """PENDING -> PROCESSING under a new lease; counts one attempt."""
        return self._move(
            Status.PROCESSING,
            now,
            lease_id=lease_id,
            lease_expires_at=lease_until,
            attempts=self.attempts + 1,
            started_at=now,
            outbox=False,
        )

    def published(self, now: datetime) -> InstructionDetail:
        """The broker acknowledged a job for this PENDING file: clear the outbox record."""
        if self.status is not Status.PENDING:
            raise InvalidTransition(f"only a PENDING file is queued, this one is {self.status}")
        return attrs.evolve(self, outbox=False, updated_at=now, version=self.version + 1)

    def announced(self) -> InstructionDetail:
        """The final notification of this DONE or FAILED file went out: clear the outbox record.

        ``updated_at`` stays the time of the final change: this is bookkeeping,
        not news for anyone replaying changes.
        """
        if self.status not in TERMINAL:
            raise InvalidTransition(f"only a final file is announced, this one is {self.status}")
        return attrs.evolve(self, outbox=False, version=self.version + 1)

    def renew(self, now: datetime, lease_until: datetime) -> InstructionDetail:
        """Extend the lease of a PROCESSING file."""
        if self.status is not Status.PROCESSING:
            raise InvalidTransition(
                f"only a PROCESSING file has a lease, this one is {self.status}"
            )
        return attrs.evolve(
            self, lease_expires_at=lease_until, updated_at=now, version=self.version + 1
        )

    def complete(
        self,
        output: OutputFile,
        metadata: dict[str, Any],
        now: datetime,
        width: int | None = None,
        height: int | None = None,
    ) -> InstructionDetail:
        """PROCESSING -> DONE with its output."""
        return self._move(
            Status.DONE,
            now,
            output=output,
            metadata=metadata,
            width=self.width if width is None else width,
            height=self.height if height is None else height,
            lease_id=None,
            lease_expires_at=None,
            finished_at=now,
            error_code=None,
            error_message=None,
            outbox=True,
        )

    def fail(self, code: str, message: str, now: datetime) -> InstructionDetail:
        """PENDING or PROCESSING -> FAILED with a reason a person can read."""
        return self._move(
            Status.FAILED,
            now,
            error_code=code,
            error_message=message,
            lease_id=None,
            lease_expires_at=None,
            finished_at=now,
            outbox=True,
        )

    def release(
        self,
        now: datetime,
        code: str | None = None,
        message: str | None = None,
        *,
        refund: bool = False,
        requeue: bool = False,
    ) -> InstructionDetail:
        """PROCESSING -> PENDING: retry later (transient failure or expired lease).

        ``refund`` gives the attempt back: the failure was not this file's
        doing (a database or bucket was briefly away), so it should not
        count toward the file's attempt budget. ``requeue`` records that a
        new job must be published (the outbox); a worker that naks its own
        message leaves it false, since the broker delivers that one again.
        """
        return self._move(
            Status.PENDING,
            now,
            lease_id=None,
            lease_expires_at=None,
            error_code=code,
            error_message=message,
            attempts=self.attempts - 1 if refund else self.attempts,
            outbox=requeue,
        )

    def mark_cleaned(self, now: datetime) -> InstructionDetail:
        """Record that the stored files of this detail were deleted."""
        return attrs.evolve(self, is_cleaned=True, updated_at=now, version=self.version + 1)

    def lease_expired(self, now: datetime) -> bool:
        """Tell whether a PROCESSING file's lease has run out."""
        return (
            self.status is Status.PROCESSING
            and self.lease_expires_at is not None
            and self.lease_expires_at <= now
        )


# The fields' real types, not the strings postponed annotations leave: what reads them
# (Hypothesis' st.builds, a host's own introspection) sees str, datetime, Status.
for _record in (ImageInfo, OutputFile, Instruction, InstructionDetail):
    attrs.resolve_types(_record)


def aggregate_status(statuses: list[Status]) -> Status:
    """Derive an instruction's status from its files' statuses.

    No files yet, or any file still waiting or running: the instruction is
    PENDING (nothing started) or PROCESSING (something started). All files
    final: DONE if at least one file is DONE, FAILED if every file FAILED.
    """
    if not statuses:
        return Status.PENDING
    if all(s is Status.PENDING for s in statuses):
        return Status.PENDING
    if any(s not in TERMINAL for s in statuses):
        return Status.PROCESSING
    if any(s is Status.DONE for s in statuses):
        return Status.DONE
    return Status.FAILED


def counted_status(counts: Mapping[Status, int]) -> Status:
    """`aggregate_status` from how many files are in each status (it needs only which occur)."""
    return aggregate_status([status for status, count in counts.items() if count > 0])


def utc_now() -> datetime:
    """The current time in UTC, to the millisecond (what every repository keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
