"""The app mounted by a host under a prefix, with the host's sign-in and a choice of routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from dependency_injector import providers
from http_support import inline_processor

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from entrypoints.embed import AuthError, Container, Identity, Routes, Settings, create_app


class KeyedStorage(MemoryImageStorage):
    """A host's own storage, as /health should name it."""


@attrs.define
class Host:
    http: aiohttp.ClientSession
    seen: list[web.Request]

    async def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        async with self.http.get(path, **kwargs) as r:
            body = await r.json() if r.content_type == "application/json" else {}
            return r.status, body, dict(r.headers)


@contextlib.asynccontextmanager
async def mounted(
    tmp_path: Path, serve: Routes | None = None, **settings: Any
) -> AsyncIterator[Host]:
    seen: list[web.Request] = []

    async def sign_in(request: web.Request) -> Identity:
        seen.append(request)
        user = request.query.get("as") or request.cookies.get("user")
        if not user:
            raise AuthError("the host says: sign in first")
        return Identity(user, is_admin=user == "root")

    config = attrs.evolve(Settings(), data_dir=tmp_path, **settings)
    container = Container(settings=config)
    container.repository.override(providers.Object(MemoryInstructionRepository()))
    container.storage.override(providers.Object(KeyedStorage()))
    container.broker.override(providers.Singleton(MemoryMessageBroker))
    container.runner.override(providers.Object(inline_processor))
    host = web.Application()
    app = create_app(
        config, run_worker=False, container=container, authenticate=sign_in, serve=serve or Routes()
    )
    host.add_subapp("/images", app)
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("/"))
        async with aiohttp.ClientSession(base, cookies={"user": "alice"}) as http:
            yield Host(http, seen)
    finally:
        await server.close()


async def test_the_host_s_sign_in_sees_the_request_and_names_the_caller(tmp_path: Path) -> None:
    async with mounted(tmp_path) as host:
        status, body, _ = await host.get("/images/instructions")
        assert status == 200, body
        assert host.seen[-1].cookies["user"] == "alice"
        assert host.seen[-1].path == "/images/instructions"
        async with host.http.post(
            "/images/instructions", json={"product_key": "images/resize", "params": {"width": 9}}
        ) as r:
            assert r.status == 200
            assert (await r.json())["data"]["instruction"]["user_id"] == "alice"
        status, body, _ = await host.get("/images/files", params={"as": "root"})
        assert status == 200, body  # the host's admin
        host.http.cookie_jar.clear()
        status, body, headers = await host.get("/images/instructions")
        assert status == 401
        assert body["message"] == "the host says: sign in first"
        assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_hook_that_returns_something_else_is_a_500_not_a_pass(tmp_path: Path) -> None:
    async def confused(request: web.Request) -> Identity:
        del request
        return "alice"  # type: ignore[return-value] - what the test is about

    host = web.Application()
    host.add_subapp(
        "/images",
        create_app(
            attrs.evolve(Settings(), data_dir=tmp_path), run_worker=False, authenticate=confused
        ),
    )
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession(str(server.make_url("/"))) as http,
            http.get("/images/instructions") as r,
        ):
            assert r.status == 500
    finally:
        await server.close()


async def test_public_routes_stay_unlimited_and_unsigned_under_a_prefix(tmp_path: Path) -> None:
    limits = {"rate_limit_user_per_minute": 2, "rate_limit_address_per_minute": 2}
    async with mounted(tmp_path, **limits) as host:
        host.http.cookie_jar.clear()
        for _ in range(5):
            for path in ("/images/health", "/images/", "/images/console/app.js"):
                status, _, _ = await host.get(path)
                assert status == 200, path
        assert host.seen == []  # the host's sign-in is not asked for what is public
        # Behind the host's sign-in, the metrics want it too (and are not limited).
        assert [(await host.get("/images/metrics"))[0] for _ in range(3)] == [401] * 3
        signed_in = [(await host.get("/images/metrics", params={"as": "ops"}))[0] for _ in range(3)]
        assert signed_in == [200] * 3
        statuses = [(await host.get("/images/products"))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]  # the rest is limited, as at the root


async def test_health_names_the_adapters_the_host_put_in(tmp_path: Path) -> None:
    async with mounted(tmp_path) as host:
        status, body, _ = await host.get("/images/health")
    assert status == 200
    adapters = {k: v.get("adapter") for k, v in body["data"]["dependencies"].items()}
    assert adapters == {
        "repository": "MemoryInstructionRepository",
        "storage": "KeyedStorage",
        "broker": "MemoryMessageBroker",
        "disk": None,
    }


@pytest.mark.parametrize(
    ("serve", "absent"),
    [
        (Routes(console=False), {"/images/", "/images/console/app.js"}),
        (Routes(metrics=False), {"/images/metrics"}),
        (Routes(swagger=False), {"/images/swagger"}),
        (Routes(dev_login=False), {"/images/auth/dev-token"}),
    ],
)
async def test_a_host_chooses_the_optional_routes(
    tmp_path: Path, serve: Routes, absent: set[str]
) -> None:
    everything = {
        "/images/",
        "/images/console/app.js",
        "/images/metrics",
        "/images/swagger",
        "/images/auth/dev-token",
    }
    async with mounted(tmp_path, serve) as host:
        statuses = {path: (await host.get(path))[0] for path in everything}
        assert {path for path, status in statuses.items() if status == 404} == absent
        if serve.swagger:
            _, document, _ = await host.get("/images/swagger")
            assert document["servers"] == [{"url": "/images"}]
            documented = {
                f"/images{path}" if path != "/" else "/images/" for path in document["paths"]
            }
            assert not documented & absent
            assert "/images/instructions/{id}/details" in documented


async def test_a_hook_s_redirect_to_the_host_s_sign_in_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def to_login(request: web.Request) -> Identity:
        raise web.HTTPFound(f"/login?next={request.path}")

    caplog.set_level(logging.INFO, logger="entrypoints.http.access")
    host = web.Application()
    settings = attrs.evolve(Settings(), data_dir=tmp_path)
    host.add_subapp("/images", create_app(settings, run_worker=False, authenticate=to_login))
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession(str(server.make_url("/"))) as http,
            http.get("/images/instructions", allow_redirects=False) as r,
        ):
            assert r.status == 302
            assert r.headers["Location"] == "/login?next=/images/instructions"
    finally:
        await server.close()
    lines = [r for r in caplog.records if r.name == "entrypoints.http.access"]
    assert [(r.path, r.status) for r in lines] == [("/images/instructions", 302)]  # type: ignore[attr-defined]
