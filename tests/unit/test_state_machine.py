"""The status state machine, driven by Hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imagecore.errors import InvalidTransition
from imagecore.model import (
    TRANSITIONS,
    InstructionDetail,
    OutputFile,
    Status,
    aggregate_status,
    check_transition,
)

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def a_file() -> InstructionDetail:
    return InstructionDetail(
        id="a" * 24,
        instruction_id="b" * 24,
        user_id="alice",
        product_key="images/resize",
        original_name="kite.jpg",
        original_key="originals/alice/b/a",
        size=10,
        mime_type="image/jpeg",
        created_at=T0,
        updated_at=T0,
    )


OUTPUT = OutputFile("outputs/x.jpg", "kite.jpg", 5, "image/jpeg", 10, 10)


class FileLifecycle(RuleBasedStateMachine):
    """Any sequence of worker actions either follows the table or raises InvalidTransition."""

    def __init__(self) -> None:
        super().__init__()
        self.file = a_file()
        self.clock = T0
        self.claims = 0
        self.history: list[Status] = [Status.PENDING]

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def attempt(self, target: Status, action: str, *args: object) -> None:
        before = self.file
        allowed = target in TRANSITIONS[before.status]
        try:
            if action == "release":
                now, code, message, refund = args
                after = before.release(now, code, message, refund=refund)  # type: ignore[arg-type]
            else:
                after = getattr(before, action)(*args)
        except InvalidTransition:
            assert not allowed
            return
        assert allowed
        assert after.status is target
        assert after.version == before.version + 1
        self.file = after
        self.history.append(target)

    @rule()
    def claim(self) -> None:
        now = self.tick()
        was_pending = self.file.status is Status.PENDING
        self.attempt(Status.PROCESSING, "claim", "lease", now, now + timedelta(seconds=30))
        if was_pending:
            self.claims += 1
            assert self.file.lease_id == "lease"

    @rule()
    def complete(self) -> None:
        self.attempt(Status.DONE, "complete", OUTPUT, {}, self.tick())

    @rule(reason=st.sampled_from(["corrupt_image", "stale"]))
    def fail(self, reason: str) -> None:
        self.attempt(Status.FAILED, "fail", reason, "why", self.tick())

    @rule(refund=st.booleans())
    def release(self, refund: bool) -> None:
        was_processing = self.file.status is Status.PROCESSING
        self.attempt(Status.PENDING, "release", self.tick(), None, None, refund)
        if was_processing and refund:
            self.claims -= 1

    @precondition(lambda self: self.file.status is Status.PROCESSING)
    @rule()
    def renew(self) -> None:
        before = self.file
        now = self.tick()
        self.file = before.renew(now, now + timedelta(seconds=30))
        assert self.file.status is Status.PROCESSING
        assert self.file.lease_expires_at == now + timedelta(seconds=30)

    @invariant()
    def attempts_count_claims_less_refunds(self) -> None:
        assert self.file.attempts == self.claims

    @invariant()
    def a_lease_exists_exactly_while_processing(self) -> None:
        assert (self.file.lease_id is not None) == (self.file.status is Status.PROCESSING)

    @invariant()
    def final_states_are_final(self) -> None:
        finals = [i for i, s in enumerate(self.history) if s in {Status.DONE, Status.FAILED}]
        assert not finals or finals[0] == len(self.history) - 1

    @invariant()
    def done_files_have_an_output(self) -> None:
        assert (self.file.output is not None) == (self.file.status is Status.DONE)


TestFileLifecycle = FileLifecycle.TestCase
TestFileLifecycle.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)


@pytest.mark.parametrize(("current", "target"), [(s, t) for s in Status for t in Status])
def test_check_transition_follows_the_table(current: Status, target: Status) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition, match=f"from {current} to {target}"):
            check_transition(current, target)


def test_renewing_a_file_that_is_not_processing_is_refused() -> None:
    with pytest.raises(InvalidTransition):
        a_file().renew(T0, T0)


def test_a_lease_expires_at_its_time() -> None:
    claimed = a_file().claim("l", T0, T0 + timedelta(seconds=10))
    assert not claimed.lease_expired(T0 + timedelta(seconds=9))
    assert claimed.lease_expired(T0 + timedelta(seconds=10))
    assert not a_file().lease_expired(T0 + timedelta(days=1))


@given(st.lists(st.sampled_from(list(Status)), max_size=12))
def test_aggregate_status_summarises_the_files(statuses: list[Status]) -> None:
    status = aggregate_status(statuses)
    if not statuses or all(s is Status.PENDING for s in statuses):
        assert status is Status.PENDING
    elif any(s in {Status.PENDING, Status.PROCESSING} for s in statuses):
        assert status is Status.PROCESSING
    elif Status.DONE in statuses:
        assert status is Status.DONE
    else:
        assert status is Status.FAILED
