"""Query predicates shared by adapters that filter in Python (memory, and tests).

Adapters with a query language translate `DetailQuery` and `InstructionQuery`
themselves; these functions are the reference meaning of each filter.
"""

from __future__ import annotations

from imagecore.model import Instruction, InstructionDetail, Status
from imagecore.ports import DetailQuery, InstructionQuery

__all__ = ["detail_matches", "instruction_matches"]


def instruction_matches(instruction: Instruction, query: InstructionQuery, status: Status) -> bool:
    """Tell whether an instruction (with its aggregate ``status``) passes the query's filters."""
    return (
        instruction.user_id == query.user_id
        and (query.status is None or status is query.status)
        and (query.created_from is None or instruction.created_at >= query.created_from)
        and (query.created_to is None or instruction.created_at <= query.created_to)
        and (query.after is None or (instruction.created_at, instruction.id) < query.after)
    )


def detail_matches(detail: InstructionDetail, query: DetailQuery) -> bool:
    """Tell whether a detail passes every filter the query sets."""
    return (
        (not query.statuses or detail.status in query.statuses)
        and (query.updated_before is None or detail.updated_at < query.updated_before)
        and (query.created_before is None or detail.created_at < query.created_before)
        and (query.is_cleaned is None or detail.is_cleaned == query.is_cleaned)
        and (query.outbox is None or detail.outbox == query.outbox)
    )
