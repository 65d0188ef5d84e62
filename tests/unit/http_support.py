"""A running app on a loopback port over in-memory ports, and a client that speaks its envelope."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer
from dependency_injector import providers

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from adapters.vips.processor import VipsImageProcessor
from entrypoints.config import Settings
from entrypoints.container import Container
from entrypoints.http.app import WORKER, create_app
from entrypoints.http.auth import mint_token
from imagecore.ports import ProcessingRequest, ProcessingResult
from imagecore.worker import Worker

SECRET = "unit-test-secret-0123456789-0123456789"  # noqa: S105 - a test key


async def inline_processor(request: ProcessingRequest) -> ProcessingResult:
    """libvips in a thread: the same processor as the pool, without spawning processes."""
    return await asyncio.to_thread(VipsImageProcessor().process, request)


@attrs.define
class Api:
    """A client bound to one running app."""

    session: aiohttp.ClientSession
    base: str
    repo: MemoryInstructionRepository
    storage: MemoryImageStorage
    app: web.Application

    @property
    def worker(self) -> Worker:
        return self.app[WORKER]

    def token(self, user: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(SECRET, user, admin=admin)}"}

    async def call(
        self, method: str, path: str, user: str | None = "alice", **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = {**(self.token(user) if user else {}), **kwargs.pop("headers", {})}
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as r:
            body = await r.json() if r.content_type == "application/json" else {}
            return r.status, body

    async def instruction(self, product: str, params: dict[str, Any], user: str = "alice") -> str:
        status, body = await self.call(
            "POST", "/instructions", user, json={"product_key": product, "params": params}
        )
        assert status == 200, body
        return str(body["data"]["instruction"]["id"])

    async def upload(
        self, instruction_id: str, files: list[tuple[str, bytes]], user: str = "alice"
    ) -> tuple[int, dict[str, Any]]:
        form = aiohttp.FormData()
        for name, data in files:
            form.add_field("file", data, filename=name, content_type="application/octet-stream")
        return await self.call("POST", f"/instructions/{instruction_id}/details", user, data=form)

    async def wait_final(
        self, instruction_id: str, user: str = "alice", seconds: float = 60
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            status, body = await self.call("GET", f"/instructions/{instruction_id}/details", user)
            assert status == 200, body
            files = body["data"]["files"]
            if files and all(f["status"] in {"DONE", "FAILED"} for f in files):
                return list(files)
            assert asyncio.get_running_loop().time() < deadline, files
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_api(tmp_path: Path, **overrides: Any) -> AsyncIterator[Api]:
    defaults = {"rate_limit_user_per_minute": 100_000, "rate_limit_address_per_minute": 100_000}
    settings = attrs.evolve(
        Settings(),
        data_dir=tmp_path,
        jwt_secret=SECRET,
        reap_interval_seconds=0.5,
        **{**defaults, **overrides},
    )
    container = Container(settings=settings)
    repo, storage = MemoryInstructionRepository(), MemoryImageStorage()
    container.repository.override(providers.Object(repo))
    container.storage.override(providers.Object(storage))
    container.broker.override(providers.Singleton(MemoryMessageBroker))
    container.runner.override(providers.Object(inline_processor))
    app: web.Application = create_app(settings, run_worker=True, container=container)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, str(server.make_url("")).rstrip("/"), repo, storage, app)
    finally:
        await server.close()
