"""Issue 27, finding 5: malformed input is a 400 naming what is wrong, never a 500.

Before the fix each request below answered 500: ``"²".isdigit()`` is true and
``int("²")`` raises; ``int`` refuses 5,000 digits; a zone past the year 9999
overflows; a JSON body nested 60,000 deep exhausts the decoder's recursion.
A token whose ``sub`` holds control characters, or whose ``exp`` is 10**30,
was accepted, and one whose ``exp`` is 10**400 answered 500.
"""

from __future__ import annotations

import json
import time

import pytest
from client_support import bearer, call, instruction

from integration.service_support import Served

pytestmark = pytest.mark.hostile_clients

SUPERSCRIPT_TWO = "%C2%B2"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        (f"/instructions?page={SUPERSCRIPT_TWO}", "page"),
        (f"/instructions?size={SUPERSCRIPT_TWO}", "size"),
        ("/instructions?page=" + "9" * 5000, "page"),
        ("/instructions?page=%EF%BC%91", "page"),  # a full-width 1
        ("/instructions?created_from=9999-12-31T23:59:59-23:59", "created_from"),
        ("/instructions?created_to=0001-01-01T00:00:00%2B23:59", "created_to"),
        (f"/events?last_event_id={SUPERSCRIPT_TWO}", "last_event_id"),
        ("/events?last_event_id=" + "9" * 5000, "last_event_id"),
    ],
)
def test_a_malformed_query_parameter_is_a_400_naming_it(
    served: Served, path: str, parameter: str
) -> None:
    status, _, body = call(served.base, "GET", path, bearer("quentin"))
    assert status == 400, body
    assert body["message"].startswith(f"{parameter} "), body
    assert body["errors"][0]["code"] == "validation_error"


def test_a_malformed_limit_of_the_admin_files_is_a_400_naming_it(served: Served) -> None:
    path = f"/files?limit={SUPERSCRIPT_TWO}"
    status, _, body = call(served.base, "GET", path, bearer("root", admin=True))
    assert status == 400, body
    assert body["message"].startswith("limit "), body


@pytest.mark.parametrize("value", ["\u00b2", "\uff11", "9" * 5000, "-5", "abc"])
@pytest.mark.parametrize("route", ["/events", "instruction"])
def test_a_malformed_last_event_id_header_is_a_400_naming_it(
    served: Served, route: str, value: str
) -> None:
    if route == "instruction":
        route = f"/instructions/{instruction(served.base, 'quentin')}/events"
    headers = {**bearer("quentin"), "Last-Event-ID": value}
    # http.client sends a header as Latin-1: the service reads the bytes as they come.
    status, _, body = call(served.base, "GET", route, _latin1(headers), timeout=10)
    assert status == 400, body
    assert body["message"].startswith("Last-Event-ID "), body


def _latin1(headers: dict[str, str]) -> dict[str, str]:
    return {k: v.encode().decode("latin-1") for k, v in headers.items()}


@pytest.mark.parametrize("depth", [50_000, 200_000])
def test_a_json_body_nested_too_deep_is_a_400(served: Served, depth: int) -> None:
    body = ("[" * depth + "]" * depth).encode()
    headers = {**bearer("quentin"), "Content-Type": "application/json"}
    status, _, answer = call(served.base, "POST", "/instructions", headers, body)
    assert status == 400, answer
    assert "nested too deeply" in answer["message"]


def test_a_json_body_in_an_unknown_charset_is_read_as_utf8(served: Served) -> None:
    body = json.dumps({"product_key": "images/thumbnail"}).encode()
    headers = {**bearer("quentin"), "Content-Type": "application/json; charset=no-such-codec"}
    status, _, answer = call(served.base, "POST", "/instructions", headers, body)
    assert status == 200, answer


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "al\x00ice"},
        {"sub": "alice\r\nX-Injected: 1"},
        {"sub": "\x1b[31malice"},
        {"sub": "alice\u202e"},  # a bidirectional override
        {"exp": 10**30},
        {"exp": 10**400},
        {"nbf": -(10**400)},
    ],
    ids=["nul", "crlf", "escape", "bidi", "exp-1e30", "exp-1e400", "nbf-minus-1e400"],
)
def test_a_token_with_an_unacceptable_subject_or_time_is_a_401(
    served: Served, claims: dict[str, object]
) -> None:
    for path in ("/instructions", "/events"):
        status, headers, body = call(
            served.base, "GET", path, bearer("quentin", **claims), timeout=10
        )
        assert status == 401, (path, body)
        assert headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_valid_until_the_end_of_the_year_9999_is_accepted(served: Served) -> None:
    exp = 253_402_300_799
    assert exp > time.time()
    status, _, body = call(served.base, "GET", "/instructions", bearer("quentin", exp=exp))
    assert status == 200, body
