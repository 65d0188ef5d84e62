"""The service's processes run on uvloop's event loop (`entrypoints.loop`)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web

from entrypoints import logs, loop
from entrypoints.cli import main
from entrypoints.http import app as http_app
from entrypoints.http import protocol


def test_run_awaits_the_coroutine_on_uvloop() -> None:
    async def answer() -> tuple[type[asyncio.AbstractEventLoop], int]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()), 42

    assert loop.run(answer()) == (uvloop.Loop, 42)


def test_run_closes_its_loop() -> None:
    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert loop.run(running()).is_closed()


def test_serve_runs_the_app_on_uvloop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = web.Application()
    given: dict[str, Any] = {}

    def create_app(_settings: object, *, run_worker: bool) -> web.Application:
        given["run_worker"] = run_worker
        return app

    def run(served: web.Application, **kwargs: Any) -> None:
        given.update(kwargs, app=served)
        kwargs["loop"].close()

    monkeypatch.setattr(protocol, "run", run)
    monkeypatch.setattr(logs, "configure_logging", lambda _level: None)
    monkeypatch.setattr(http_app, "create_app", create_app)
    assert main(["serve", "--data-dir", str(tmp_path)]) == 0
    assert isinstance(given["loop"], uvloop.Loop)
    assert given["app"] is app
    assert given["run_worker"] is True


def test_serve_says_it_listens_once_bound_and_stops_on_sigterm() -> None:
    async def here(_request: web.Request) -> web.Response:
        return web.Response(text="here")

    app = web.Application()
    app.router.add_get("/", here)
    heard: list[str] = []
    asking: set[asyncio.Task[None]] = set()

    async def ask_then_stop(url: str) -> None:
        async with aiohttp.ClientSession() as session, session.get(url + "/") as response:
            heard.append(await response.text())
        os.kill(os.getpid(), signal.SIGTERM)

    def listening(url: str) -> None:
        heard.append(url)  # the socket is bound now: a request is answered
        asking.add(asyncio.get_running_loop().create_task(ask_then_stop(url)))

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    protocol.run(app, host="127.0.0.1", port=port, loop=loop.new_event_loop(), listening=listening)
    assert heard == [f"http://127.0.0.1:{port}", "here"]
