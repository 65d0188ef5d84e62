"""Domain values for the contract suites: times at millisecond precision (what MongoDB keeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from imagecore.model import Instruction, InstructionDetail, OutputFile, new_id

T0 = datetime(2026, 11, 24, 9, 30, 0, 123000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A time ``seconds`` after T0, rounded to the millisecond."""
    return T0 + timedelta(milliseconds=round(seconds * 1000))


def instruction(
    user_id: str = "alice", created: float = 0, key: str = "images/resize"
) -> Instruction:
    return Instruction(
        id=new_id(at(created).timestamp()),
        user_id=user_id,
        product_id="0123456789abcdef01234567",
        product_key=key,
        params={"width": 512, "fit": "inside", "nested": {"list": [1, 2.5, "x"]}},
        created_at=at(created),
        updated_at=at(created),
    )


def detail(parent: Instruction, created: float = 0, name: str = "kite.jpg") -> InstructionDetail:
    detail_id = new_id(at(created).timestamp())
    return InstructionDetail(
        id=detail_id,
        instruction_id=parent.id,
        user_id=parent.user_id,
        product_key=parent.product_key,
        original_name=name,
        original_key=f"originals/{parent.user_id}/{parent.id}/{detail_id}",
        size=487_350,
        mime_type="image/jpeg",
        created_at=at(created),
        updated_at=at(created),
        width=2560,
        height=1600,
    )


def done(d: InstructionDetail, seconds: float) -> InstructionDetail:
    """Claim and finish a detail with an output, as a worker would."""
    claimed = d.claim("lease-1", at(seconds), at(seconds + 60))
    output = OutputFile(
        key=f"outputs/{d.user_id}/{d.instruction_id}/{d.id}.webp",
        name="kite.webp",
        size=12_345,
        mime_type="image/webp",
        width=512,
        height=320,
    )
    return claimed.complete(output, {"quality": 80, "exif": {"Make": "Canon"}}, at(seconds + 1))
