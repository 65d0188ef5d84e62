"""Issue 27, finding 2: uploads that stall must not hold memory, sockets or others' share.

Before the fix, 1,200 uploads that sent 1,040,000 bytes of a JPEG and stopped
took the service from 104 MB to 1,315 MB, and it kept them (and the memory)
for as long as their clients waited; one sending a byte every 5 s stayed over
300 s. The service here ends an upload whose body sends nothing for
`UPLOAD_IDLE_SECONDS`, or takes more than `UPLOAD_BODY_SECONDS` in all, with
408, and allows `UPLOADS_PER_USER` uploads at once per user
(`client_support.SETTINGS`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from client_support import (
    UPLOAD_BODY_SECONDS,
    UPLOAD_IDLE_SECONDS,
    UPLOADS_PER_ADDRESS,
    UPLOADS_PER_USER,
    bearer,
    call,
    instruction,
    next_address,
    port_of,
)

from hostile.files import valid
from integration.service_support import Served

pytestmark = pytest.mark.hostile_clients

BOUNDARY = "stalled-upload-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
#: What each stalled upload of the issue sent: a JPEG's first 1,040,000 bytes.
SENT = 1_040_000
#: Generous: an answer due after 2 s may come late on a busy machine, never not at all.
ANSWER_WITHIN = 60.0


def _file_part(content: bytes, filename: str = "photo.jpg") -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    )
    return head.encode() + content


def _jpeg_start(size: int) -> bytes:
    jpeg = valid("jpeg")
    return jpeg + b"\0" * (size - len(jpeg))


def _stalled(served: Served, path: str, user: str, source: str, sent: int = SENT) -> socket.socket:
    """An upload (from ``source``) that sent its headers and ``sent`` bytes of a file, then stops.

    Its Content-Length promises more, as a client on a slow link would.
    """
    body = _file_part(_jpeg_start(sent))
    headers = {**bearer(user), **MULTIPART, "Content-Length": str(len(body) + 10_000_000)}
    head = f"POST {path} HTTP/1.1\r\nHost: imagecore\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    connection = socket.create_connection(
        ("127.0.0.1", port_of(served.base)), timeout=ANSWER_WITHIN, source_address=(source, 0)
    )
    connection.sendall(head.encode() + body)
    return connection


def _answer(connection: socket.socket, first: bytes = b"") -> tuple[int, dict[str, Any]]:
    """The status and JSON body the service answered on ``connection`` (after ``first``).

    Read by its Content-Length, then the connection closed: the service would
    read and drop the rest of the body for a while before closing it itself.
    """
    raw = first
    with connection:
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _length(raw):
            chunk = connection.recv(65536)
            assert chunk, f"closed without a whole answer: {raw!r}"
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(raw: bytes) -> int:
    head = raw.partition(b"\r\n\r\n")[0].decode().lower()
    return int(head.split("content-length:")[1].split()[0])


def _rss_mb(served: Served) -> float:
    for line in Path(f"/proc/{served.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _stored_files(served: Served, instruction_id: str) -> list[Path]:
    """Every file (whole or partial) the storage holds for the instruction."""
    files = served.data_dir / "files"
    return [p for p in files.rglob("*") if p.is_file() and instruction_id in p.parts]


def test_a_stalled_upload_ends_with_408_and_leaves_nothing(served: Served) -> None:
    instruction_id = instruction(served.base, "stella")
    path = f"/instructions/{instruction_id}/details"
    started = time.monotonic()
    # 1.5 MiB: past the storage's first write, so that a partial file is on disk.
    status, body = _answer(_stalled(served, path, "stella", next_address(), sent=3 << 19))
    seconds = time.monotonic() - started
    assert status == 408, body
    assert UPLOAD_IDLE_SECONDS <= seconds < ANSWER_WITHIN
    [error] = body["errors"]
    assert error["code"] == "upload_timeout"
    assert f"no byte for {UPLOAD_IDLE_SECONDS} s" in error["message"]
    status, _, listed = call(served.base, "GET", path, bearer("stella"))
    assert (status, listed["data"]["files"]) == (200, [])
    assert _stored_files(served, instruction_id) == []


def test_an_upload_sending_a_byte_at_a_time_ends_at_the_body_timeout(served: Served) -> None:
    path = f"/instructions/{instruction(served.base, 'trickle')}/details"
    started = time.monotonic()
    connection = _stalled(served, path, "trickle", next_address(), sent=1000)
    connection.settimeout(UPLOAD_IDLE_SECONDS / 4)
    answered = b""
    while time.monotonic() - started < UPLOAD_BODY_SECONDS + ANSWER_WITHIN and not answered:
        try:
            connection.sendall(b"\0")  # a byte every quarter of the idle time: never idle
            answered = connection.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # closed by the service as it answered
            break
    seconds = time.monotonic() - started
    connection.settimeout(ANSWER_WITHIN)
    status, body = _answer(connection, answered)
    assert status == 408, body
    assert UPLOAD_BODY_SECONDS <= seconds < UPLOAD_BODY_SECONDS + ANSWER_WITHIN
    assert f"took more than {UPLOAD_BODY_SECONDS} s" in body["message"]


class _Trickle:
    """Uploads kept alive by a byte every quarter of the idle time, until the block ends."""

    def __init__(self, connections: list[socket.socket]) -> None:
        self.connections = connections
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(UPLOAD_IDLE_SECONDS / 4):
            for connection in self.connections:
                connection.sendall(b"\0")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_users_uploads_past_the_cap_get_429_while_another_users_succeeds(
    served: Served,
) -> None:
    address = next_address()
    mine = f"/instructions/{instruction(served.base, 'hoarder')}/details"
    theirs = f"/instructions/{instruction(served.base, 'neighbour')}/details"
    whole = _file_part(valid("jpeg")) + f"\r\n--{BOUNDARY}--\r\n".encode()
    held = [_stalled(served, mine, "hoarder", address) for _ in range(UPLOADS_PER_USER)]
    with _Trickle(held):
        time.sleep(0.5)  # the last of them has reached its handler
        status, headers, body = call(
            served.base, "POST", mine, {**bearer("hoarder"), **MULTIPART}, whole
        )
        assert status == 429, body
        assert body["errors"][0]["code"] == "too_many_uploads"
        assert int(headers["Retry-After"]) > 0
        status, _, body = call(
            served.base, "POST", theirs, {**bearer("neighbour"), **MULTIPART}, whole
        )
        assert status == 200, body
    assert [_answer(c)[0] for c in held] == [408] * UPLOADS_PER_USER
    status, _, body = call(served.base, "POST", mine, {**bearer("hoarder"), **MULTIPART}, whole)
    assert status == 200, body  # the ended uploads gave their places back


@pytest.fixture
def rss_watch(served: Served) -> Iterator[list[float]]:
    """The service's RSS in MB every 50 ms while the test runs."""
    samples: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            samples.append(_rss_mb(served))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield samples
    stop.set()
    thread.join()


ADDRESSES = 4
#: As many stalled uploads as the caps allow from each address, from as many users as
#: that takes: about 190 MB held while they last.
USERS_PER_ADDRESS = UPLOADS_PER_ADDRESS // UPLOADS_PER_USER


def test_memory_held_by_stalled_uploads_is_given_back(
    served: Served, rss_watch: list[float]
) -> None:
    start = _rss_mb(served)
    held: list[socket.socket] = []
    for a in range(ADDRESSES):
        address = next_address()
        for u in range(USERS_PER_ADDRESS):
            user = f"stalled-{a}-{u}"
            path = f"/instructions/{instruction(served.base, user)}/details"
            held += [_stalled(served, path, user, address) for _ in range(UPLOADS_PER_USER)]
    answers = [_answer(c)[0] for c in held]
    assert answers == [408] * len(held)
    peak = max(rss_watch)
    # The uploads did hold their bytes, so that what follows tells something.
    assert peak > start + 100, f"{len(held)} stalled uploads: {start:.0f} -> {peak:.0f} MB"
    deadline = time.monotonic() + 30
    while (now := _rss_mb(served)) > start + 100 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert now <= start + 100, f"RSS {start:.0f} MB at the start, {peak:.0f} peak, {now:.0f} now"
