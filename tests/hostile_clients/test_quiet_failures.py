"""Issue 27, finding 6: what a client breaks on purpose leaves no secret and no flood.

Before the fix every aborted upload wrote an ERROR line with a full
traceback (any client could fill the log), and aiohttp's own 400 for an
oversized header quoted its first bytes, the start of a bearer token, in a
plain text body and in an ERROR log line.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from client_support import bearer, call, instruction, port_of

from integration.service_support import Served

pytestmark = pytest.mark.hostile_clients

ABORTED = 20
#: A recognisable token start: it must appear in no answer and no log line.
SECRET_START = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXN0YXJ0"  # noqa: S105 - a fake


def _log_since(served: Served, offset: int) -> str:
    return served.log.read_bytes()[offset:].decode(errors="replace")


def _settled(served: Served, offset: int, marker: str, seconds: float = 30) -> str:
    """The log written since ``offset``, once ``marker`` is in it (the service logs later)."""
    deadline = time.monotonic() + seconds
    while marker not in (text := _log_since(served, offset)):
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.1)
    return text


def test_aborted_uploads_log_one_quiet_line_each(served: Served) -> None:
    instruction_id = instruction(served.base, "aborting-user")
    offset = served.log.stat().st_size
    head = (
        f"POST /instructions/{instruction_id}/details HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {bearer('aborting-user')['Authorization']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    ).encode()
    for _ in range(ABORTED):
        with socket.create_connection(("127.0.0.1", port_of(served.base))) as sock:
            sock.sendall(head + b"\xff\xd8\xff" + b"x" * 5000)
            time.sleep(0.05)
    # One more, then a request that must come after it in the log.
    assert call(served.base, "GET", "/health")[0] == 200
    text = _settled(served, offset, "closed the connection")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert not [line for line in lines if line["level"] in ("error", "critical")], text[-2000:]
    assert "Traceback" not in text
    assert sum("closed the connection" in line["event"] for line in lines) >= 1


def test_an_oversized_header_is_refused_without_quoting_it(served: Served) -> None:
    offset = served.log.stat().st_size
    with socket.create_connection(("127.0.0.1", port_of(served.base)), timeout=30) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + SECRET_START.encode()
            + b"A" * 20_000
            + b"\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), head
    assert b"application/json" in head
    document = json.loads(body)
    assert document["errors"][0]["code"] == "header_too_large"
    assert b"eyJ" not in answer
    text = _settled(served, offset, "unparsable request")
    assert "eyJ" not in text
    assert "Traceback" not in text
