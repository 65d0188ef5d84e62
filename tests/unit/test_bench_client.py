"""The benchmark's load generator: its HTTP/1.1 connection, and its client of the real API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from http_support import SECRET, running_api

from bench.client import ApiClient, end_to_end, requests_loop
from bench.connection import Connection, HttpError
from bench.workloads import Step
from corpus import PHOTOS, needs_corpus
from entrypoints.http.auth import mint_token

pytestmark = needs_corpus


class Recorder:
    """A small server: what each request brought, and answers of every framing."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.peers: list[int] = []
        self.drops = 0

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text=hashlib.sha256(body).hexdigest())

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername")[1])
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b"first ", b"second ", b"third"):
            await response.write(piece)
        await response.write_eof()
        return response

    async def closing(self, request: web.Request) -> web.Response:
        self.peers.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="bye", headers={"Connection": "close"})

    async def drop(self, request: web.Request) -> web.Response:
        self.drops += 1
        await request.read()
        request.transport.close()
        raise web.HTTPInternalServerError  # never reaches the client: the socket is gone


@contextlib.asynccontextmanager
async def serving(recorder: Recorder, idle_seconds: float = 75) -> AsyncIterator[int]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/echo", recorder.echo)
    app.router.add_get("/chunked", recorder.chunked)
    app.router.add_get("/closing", recorder.closing)
    app.router.add_post("/drop", recorder.drop)
    runner = web.AppRunner(app, keepalive_timeout=idle_seconds)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_bodies_of_bytes_and_files_arrive_whole_over_one_kept_connection(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 20_000)  # 5 MB: several blocks from the file
    async with serving(recorder) as port:
        connection = Connection("127.0.0.1", port)
        first = await connection.request("POST", "/echo", b"small")
        parts = (b"head|", big, b"|tail")
        second = await connection.request("POST", "/echo", parts)
        connection.close()
    whole = b"head|" + big.read_bytes() + b"|tail"
    assert recorder.bodies == [b"small", whole]
    assert second == (200, hashlib.sha256(whole).hexdigest().encode())
    assert first[0] == 200
    assert recorder.peers[0] == recorder.peers[1]  # the same socket, kept alive


async def test_chunked_answers_are_read_whole_and_a_closed_connection_is_opened_again() -> None:
    recorder = Recorder()
    async with serving(recorder) as port:
        connection = Connection("127.0.0.1", port)
        assert await connection.request("GET", "/chunked") == (200, b"first second third")
        assert await connection.request("GET", "/closing") == (200, b"bye")
        assert await connection.request("GET", "/chunked") == (200, b"first second third")
        connection.close()
    assert recorder.peers[0] == recorder.peers[1] != recorder.peers[2]


async def test_a_request_on_a_connection_closed_while_idle_goes_out_again_once() -> None:
    recorder = Recorder()
    async with serving(recorder, idle_seconds=0.1) as port:
        connection = Connection("127.0.0.1", port)
        await connection.request("POST", "/echo", b"one")
        await asyncio.sleep(0.5)  # the server closes the idle connection
        assert (await connection.request("POST", "/echo", b"two"))[0] == 200
        connection.close()
    assert recorder.bodies == [b"one", b"two"]
    assert recorder.peers[0] != recorder.peers[1]


async def test_a_request_dropped_unanswered_fails_and_goes_out_again_only_on_a_kept_one() -> None:
    recorder = Recorder()
    async with serving(recorder) as port:
        connection = Connection("127.0.0.1", port)
        with pytest.raises(ConnectionResetError):
            await connection.request("POST", "/drop", b"once")  # a new connection: no retry
        await connection.request("POST", "/echo", b"keep me")
        # On a kept connection a drop looks like an idle close: sent once more, then it fails.
        with pytest.raises(ConnectionResetError):
            await connection.request("POST", "/drop", b"twice")
    assert recorder.drops == 3  # once, then twice


async def test_end_to_end_uploads_waits_for_done_and_downloads_every_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    open_connection = asyncio.open_connection

    async def counted(*args: object, **kwargs: object) -> object:
        opened.append(1)
        return await open_connection(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "open_connection", counted)
    async with running_api(tmp_path) as api:
        step = Step("images/resize", {"width": 64, "format": "png"})
        async with ApiClient(api.base, mint_token(SECRET, "alice")) as client:
            result = await end_to_end(client, step, PHOTOS[:2] * 3, 4)
    # The event stream, and one kept connection per loop in flight.
    assert len(opened) <= 1 + 4
    assert result["images"] == 6
    assert result["failed"] == 0
    assert result["images_per_second"] > 0
    assert 0 < result["latency"]["p50"] <= result["latency"]["p99"]
    stored = [key for key in api.storage.stored_keys() if key.startswith("outputs/")]
    sizes = [(await api.storage.stat(key)).size for key in stored]
    assert len(sizes) == 6
    assert result["mean_output_bytes"] == pytest.approx(sum(sizes) / 6)


async def test_the_apis_error_reaches_the_caller_with_its_status_and_message(
    tmp_path: Path,
) -> None:
    async with (
        running_api(tmp_path) as api,
        ApiClient(api.base, mint_token(SECRET, "alice")) as client,
    ):
        with pytest.raises(HttpError) as refused:
            await client.upload("0123456789abcdef01234567", PHOTOS[0])
    assert refused.value.status == 404
    assert b"instruction" in refused.value.body


async def test_requests_loop_spreads_the_requests_over_the_servers() -> None:
    recorders = [Recorder(), Recorder()]
    async with serving(recorders[0]) as one, serving(recorders[1]) as two:
        bases = [f"http://127.0.0.1:{one}", f"http://127.0.0.1:{two}"]
        result = await requests_loop(bases, ["/chunked"] * 10, 4)
    assert result["failed"] == 0
    assert result["mean_output_bytes"] == len(b"first second third")
    assert len(recorders[0].peers) + len(recorders[1].peers) == 10
    assert recorders[0].peers
    assert recorders[1].peers
