"""What a client sends, read strictly: numbers, times, event ids, JSON bodies.

Each reader raises `ValidationError` (400) naming the parameter, whatever
arrives: ``str.isdigit`` is true of a superscript two, which ``int`` refuses,
and of a full-width one, which ``int`` reads as 1, and ``int`` refuses a
number of more than 4,300 digits; so digits are matched as ASCII and bounded
in length before they are read.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from imagecore.errors import ValidationError

__all__ = [
    "event_id",
    "in_utc",
    "int_query",
    "json_body",
    "json_object",
    "time_query",
    "time_value",
    "whole_number",
]

#: An event id is a millisecond since 1970: 15 digits reach past the year 9999.
_EVENT_ID_DIGITS = 15
_ASCII_DIGITS = re.compile(r"[0-9]+")


def _digits(raw: str, most: int) -> int | None:
    """``raw`` as a number if it is 1 to ``most`` ASCII digits, else None."""
    if len(raw) > most or not _ASCII_DIGITS.fullmatch(raw):
        return None
    return int(raw)


def whole_number(name: str, raw: str, low: int, high: int) -> int:
    """``raw`` as a whole number from ``low`` to ``high`` (both >= 0)."""
    value = _digits(raw, len(str(high)))
    if value is None or not low <= value <= high:
        raise ValidationError(f"{name} must be a whole number from {low} to {high}")
    return value


def event_id(name: str, raw: str) -> int:
    """An SSE event id this service gave (a millisecond); ``name`` is where it came from."""
    value = _digits(raw.strip(), _EVENT_ID_DIGITS)
    if value is None:
        raise ValidationError(
            f"{name} must be the id of an event we sent (a whole number of milliseconds)"
        )
    return value


def in_utc(value: datetime) -> datetime | None:
    """``value`` in UTC, or None when UTC cannot hold it (a zone past year 1 or 9999)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


def time_value(name: str, raw: str) -> datetime:
    """An ISO 8601 time with a zone, in UTC."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(
            f"{name} must be an ISO 8601 time like 2026-11-24T10:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise ValidationError(f"{name} must include a time zone, e.g. a trailing Z")
    if (utc := in_utc(value)) is None:
        raise ValidationError(f"{name} is out of range")
    return utc


def json_object(body: bytes, hint: str = "the body must be a JSON object") -> dict[str, Any]:
    """A JSON object, from UTF-8 (or -16, -32) bytes; ``hint`` says what to send instead.

    The bytes are decoded here, not by the request's declared charset, which
    may name no codec at all (``LookupError``). A body nested deeper than the
    interpreter's recursion limit (``[`` fifty thousand times fits in a small
    request) makes the decoder raise `RecursionError`, which is the client's
    mistake like any other.
    """
    try:
        value = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise ValidationError(hint) from None
    except RecursionError:
        raise ValidationError(f"{hint}: this one is nested too deeply") from None
    if not isinstance(value, dict):
        raise ValidationError(hint)
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object."""
    return json_object(await request.read())


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as a whole number in ``[low, high]``; ``default`` if absent."""
    raw = request.query.get(name, "")
    return whole_number(name, raw, low, high) if raw else default


def time_query(request: web.Request, name: str) -> datetime | None:
    """Query parameter ``name`` as an aware time, or None if absent."""
    raw = request.query.get(name, "")
    return time_value(name, raw) if raw else None
