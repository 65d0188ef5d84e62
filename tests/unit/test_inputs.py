"""Reading what clients send: any string is a value or a `ValidationError` naming the parameter."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoints.http.inputs import event_id, json_object, time_value, whole_number
from imagecore.errors import ValidationError


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", 1), ("007", 7), ("1000000", 1_000_000), ("42", 42)]
)
def test_a_whole_number_in_range_is_read(raw: str, expected: int) -> None:
    assert whole_number("page", raw, 1, 1_000_000) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "\u00b2",  # superscript two: isdigit() is true, int() raises
        "\uff11",  # full-width one: isdigit() is true, int() reads 1
        "\u0661",  # Arabic-Indic one: likewise
        "9" * 5000,  # more digits than int() reads
        "1000001",
        "0",
        "-1",
        "+1",
        " 1",
        "1.0",
        "1e3",
        "0x10",
        "1_000",
    ],
)
def test_anything_else_is_a_validation_error_naming_the_parameter(raw: str) -> None:
    with pytest.raises(ValidationError, match=r"^page must be a whole number from 1 to 1000000$"):
        whole_number("page", raw, 1, 1_000_000)


@given(st.text())
def test_no_string_makes_a_number_reader_raise_anything_but_a_validation_error(raw: str) -> None:
    for read in (
        lambda: whole_number("size", raw, 1, 100),
        lambda: event_id("Last-Event-ID", raw),
        lambda: time_value("created_from", raw),
    ):
        with contextlib.suppress(ValidationError):
            read()


def test_an_event_id_is_a_millisecond_and_may_carry_spaces() -> None:
    assert event_id("Last-Event-ID", " 1764547200000 ") == 1_764_547_200_000
    assert event_id("Last-Event-ID", "0") == 0


@pytest.mark.parametrize("raw", ["\u00b2", "-5", "abc", "", "1" * 16, "12 34"])
def test_a_malformed_event_id_names_where_it_came_from(raw: str) -> None:
    with pytest.raises(ValidationError, match=r"^last_event_id must be the id of an event"):
        event_id("last_event_id", raw)


def test_a_time_is_read_in_utc() -> None:
    assert time_value("created_to", "2026-11-24T11:00:00+01:00") == datetime(
        2026, 11, 24, 10, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("9999-12-31T23:59:59-23:59", "created_from is out of range"),
        ("0001-01-01T00:00:00+23:59", "created_from is out of range"),
        ("2026-11-24T10:00:00", "created_from must include a time zone"),
        ("yesterday", "created_from must be an ISO 8601 time"),
    ],
)
def test_a_time_out_of_range_or_malformed_is_refused(raw: str, says: str) -> None:
    with pytest.raises(ValidationError, match=f"^{says}"):
        time_value("created_from", raw)


def test_a_json_object_is_read_from_utf8_bytes() -> None:
    assert json_object(json.dumps({"name": "caf\u00e9"}).encode()) == {"name": "caf\u00e9"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b"\xff\xfe{", "the body must be a JSON object"),
        (b"", "the body must be a JSON object"),
        (b"{", "the body must be a JSON object"),
    ],
)
def test_a_body_that_is_no_json_object_is_a_validation_error(body: bytes, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        json_object(body)
