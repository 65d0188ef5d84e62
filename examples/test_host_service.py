"""The host of host_service.py, tested as its authors would: `pytest test_host_service.py`."""

import asyncio
import re

import aiohttp
import pytest
import pyvips
from aiohttp.test_utils import TestServer
from host_service import host_app


def a_photo() -> bytes:
    """A small JPEG of our own (any image of yours will do)."""
    return (
        pyvips.Image.black(320, 200, bands=3)
        .linear([1, 1, 1], [200, 120, 40])
        .jpegsave_buffer(Q=90)
    )


@pytest.mark.asyncio
async def test_a_signed_in_user_uploads_and_downloads_under_images(tmp_path) -> None:
    server = TestServer(host_app(tmp_path), host="127.0.0.1")
    await server.start_server()
    jar = aiohttp.CookieJar(unsafe=True)  # the server is an IP address
    try:
        async with aiohttp.ClientSession(str(server.make_url("/")), cookie_jar=jar) as http:
            async with http.get("/images/instructions") as refused:
                assert refused.status == 401  # the host's sign-in decides

            async with http.get("/login", params={"user": "alice"}, allow_redirects=False) as r:
                assert r.status == 302

            job = {"product_key": "images/resize", "params": {"width": 64, "format": "webp"}}
            async with http.post("/images/instructions", json=job) as r:
                assert r.status == 200
                instruction = (await r.json())["data"]["instruction"]
            assert instruction["user_id"] == "alice"

            form = aiohttp.FormData()
            form.add_field("file", a_photo(), filename="photo.jpg", content_type="image/jpeg")
            details = f"/images/instructions/{instruction['id']}/details"
            async with http.post(details, data=form) as r:
                assert r.status == 200

            for _ in range(600):
                async with http.get(details) as r:
                    [file] = (await r.json())["data"]["files"]
                if file["status"] in {"DONE", "FAILED"}:
                    break
                await asyncio.sleep(0.2)
            assert file["status"] == "DONE", file

            async with http.get(f"{details}/{file['output_id']}/file") as r:
                webp = await r.read()
            assert webp[8:12] == b"WEBP"
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_the_console_and_the_api_document_live_under_the_prefix(tmp_path) -> None:
    server = TestServer(host_app(tmp_path), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(str(server.make_url("/"))) as http:
            async with http.get("/images/") as r:
                assert r.status == 200
                page = await r.text()
            assets = re.findall(r'(?:src|href)="(console/[^"]+)"', page)
            assert "console/app.js" in assets
            for asset in assets:  # relative: they resolve under /images/
                async with http.get(f"/images/{asset}") as r:
                    assert r.status == 200, asset

            async with http.get("/images/swagger") as r:
                document = await r.json()
            assert document["servers"] == [{"url": "/images"}]
            assert "/instructions" in document["paths"]
            assert "/metrics" not in document["paths"]  # the host left it out

            async with http.get("/images/metrics") as r:
                assert r.status == 404
            async with http.get("/images/health") as r:
                assert r.status == 200
    finally:
        await server.close()
