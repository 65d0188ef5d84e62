"""The service's processes run on uvloop's event loop (`entrypoints.loop`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web

from entrypoints import http, logs, loop
from entrypoints.cli import main


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

    def run_app(served: web.Application, **kwargs: Any) -> None:
        given.update(kwargs, app=served)
        kwargs["loop"].close()

    monkeypatch.setattr(web, "run_app", run_app)
    monkeypatch.setattr(logs, "configure_logging", lambda _level: None)
    monkeypatch.setattr(http, "create_app", create_app)
    assert main(["serve", "--data-dir", str(tmp_path)]) == 0
    assert isinstance(given["loop"], uvloop.Loop)
    assert given["app"] is app
    assert given["run_worker"] is True
