"""The multipart reading of uploads: bounded in parts and in lines, whatever the body."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import BodyPartReader, web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from entrypoints.http.uploads import _parts, _Stalled
from imagecore.errors import TooManyFiles, ValidationError

BOUNDARY = "unit-boundary"


def _request(body: bytes) -> web.Request:
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return make_mocked_request("POST", "/", headers=headers, payload=payload)


def _part(name: str = "file", content: bytes = b"x") -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
    return head.encode() + content + b"\r\n"


END = f"--{BOUNDARY}--\r\n".encode()


async def _read(body: bytes, most: int) -> list[int]:
    numbers = []
    async for number, part in _parts(_request(body), most):
        assert isinstance(part, BodyPartReader)
        await part.release()
        numbers.append(number)
    return numbers


async def test_parts_are_numbered_up_to_the_cap() -> None:
    assert await _read(_part() * 3 + END, most=3) == [1, 2, 3]


async def test_a_part_past_the_cap_is_too_many_files() -> None:
    with pytest.raises(TooManyFiles, match="at most 3 parts"):
        await _read(_part() * 4 + END, most=3)


async def test_a_long_preamble_is_refused_before_any_part() -> None:
    with pytest.raises(ValidationError, match="lines besides its files' contents"):
        await _read(b"x\r\n" * 10_000 + _part() + END, most=3)


async def test_a_short_preamble_and_big_contents_are_read() -> None:
    content = b"y\r\n" * 100_000  # lines inside a file's contents cost nothing
    assert await _read(b"a preamble\r\n" + _part(content=content) * 2 + END, most=2) == [1, 2]


async def test_the_event_loop_is_yielded_to_while_a_body_is_parsed() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    await _read(_part() * 50 + END, most=50)
    ticker.cancel()
    assert ticks - before >= 50


def _stalled_request(body: bytes) -> web.Request:
    """A request whose body sent ``body`` and then nothing more (no end)."""
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return make_mocked_request("POST", "/", headers=headers, payload=payload)


async def _drain(request: web.Request, idle: float) -> None:
    async for _, part in _parts(request, 3, idle):
        assert isinstance(part, BodyPartReader)
        while await part.read_chunk():
            pass


async def test_a_body_that_stops_before_its_first_part_is_stalled() -> None:
    with pytest.raises(_Stalled):
        await asyncio.wait_for(_drain(_stalled_request(b"a preamble\r\n"), idle=0.05), 5)


async def test_a_file_whose_contents_stop_is_stalled() -> None:
    body = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
    with pytest.raises(_Stalled) as stalled:
        await asyncio.wait_for(_drain(_stalled_request(body + b"x" * 100_000), idle=0.05), 5)
    assert stalled.value.seconds == 0.05


async def test_a_body_that_keeps_sending_within_the_idle_time_is_read() -> None:
    request = _stalled_request(f"--{BOUNDARY}\r\n".encode())

    async def trickle() -> None:
        await asyncio.sleep(0.05)
        request.content.feed_data(b'Content-Disposition: form-data; name="file"\r\n\r\n')
        for _ in range(15):
            await asyncio.sleep(0.1)
            request.content.feed_data(b"y" * 10)
        request.content.feed_data(b"\r\n" + END)
        request.content.feed_eof()

    sender = asyncio.create_task(trickle())
    await _drain(request, idle=1)  # 1.6 s in all, in waits of 0.1 s
    await sender
