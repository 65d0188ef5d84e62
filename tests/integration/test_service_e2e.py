"""`imagecore serve` as a real process over real HTTP: every product, restarts, big uploads."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from service_support import Served, serving, start, token

from corpus import CORPUS, KITE, PHOTOS, require
from imagecore.products import CATALOGUE

pytestmark = pytest.mark.integration

PHOTO = KITE

#: One sensible call of every product, and what its output must be.
CALLS: dict[str, tuple[dict[str, Any], str]] = {
    "images/compress": ({}, "image/jpeg"),
    "images/convert": ({"format": "avif"}, "image/avif"),
    "images/resize": ({"width": 640, "height": 640, "fit": "cover"}, "image/jpeg"),
    "images/crop": ({"aspect_ratio": "1:1", "gravity": "attention"}, "image/jpeg"),
    "images/rotate": ({"angle": 90, "flip": "horizontal"}, "image/jpeg"),
    "images/thumbnail": ({}, "image/jpeg"),
    "images/strip-metadata": ({}, "image/jpeg"),
    "images/metadata": ({}, "application/json"),
    "images/watermark": ({"text": "imagecore", "image": None}, "image/jpeg"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require()
    with serving(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture
async def session(served: Served) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {token(served, 'alice')}"}
    async with aiohttp.ClientSession(served.base, headers=headers) as session:
        yield session


async def create(session: aiohttp.ClientSession, product: str, params: dict[str, Any]) -> str:
    body = {"product_key": product, "params": {k: v for k, v in params.items() if v is not None}}
    async with session.post("/instructions", json=body) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["data"]["instruction"]["id"])


async def upload(
    session: aiohttp.ClientSession, instruction_id: str, *paths: Path
) -> list[dict[str, Any]]:
    form = aiohttp.FormData()
    for path in paths:
        form.add_field("file", path.read_bytes(), filename=path.name)
    async with session.post(f"/instructions/{instruction_id}/details", data=form) as response:
        assert response.status == 200, await response.text()
        return list((await response.json())["data"]["files"])


async def final(
    session: aiohttp.ClientSession, instruction_id: str, seconds: float = 120
) -> list[dict[str, Any]]:
    for _ in range(int(seconds * 10)):
        async with session.get(f"/instructions/{instruction_id}/details") as response:
            files = (await response.json())["data"]["files"]
        if files and all(f["status"] in {"DONE", "FAILED"} for f in files):
            return list(files)
        await asyncio.sleep(0.1)
    raise AssertionError(f"not finished: {files}")


def test_every_product_is_called_by_the_e2e_table() -> None:
    assert set(CALLS) == {p.key for p in CATALOGUE}


@pytest.mark.parametrize("product", sorted(CALLS))
async def test_every_product_end_to_end(session: aiohttp.ClientSession, product: str) -> None:
    params, mime = CALLS[product]
    if product == "images/watermark":
        logo = base64.b64encode((CORPUS / "misc" / "logo.png").read_bytes()).decode()
        params = {**params, "image": logo, "text": None}
    instruction_id = await create(session, product, params)
    await upload(session, instruction_id, PHOTO)
    [detail] = await final(session, instruction_id)
    assert detail["status"] == "DONE", detail
    async with session.get(
        f"/instructions/{instruction_id}/details/{detail['output_id']}/file"
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == mime
        data = await response.read()
    assert len(data) == detail["output"]["size"]
    if mime == "application/json":
        assert json.loads(data)["width"] == 2560
    if product == "images/compress":
        assert len(data) < PHOTO.stat().st_size


def vm_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_a_100_mb_upload_streams_without_growing_the_process(
    served: Served, session: aiohttp.ClientSession
) -> None:
    instruction_id = await create(session, "images/thumbnail", {})
    before = vm_peak_kib(served.process.pid)
    size = 100 * 1024 * 1024

    async def body() -> AsyncIterator[bytes]:
        yield PHOTO.read_bytes()[:1024]
        block = bytes(1024 * 1024)
        for _ in range(size // len(block)):
            yield block

    form = aiohttp.FormData()
    form.add_field("file", body(), filename="huge.jpg", content_type="image/jpeg")
    async with session.post(f"/instructions/{instruction_id}/details", data=form) as response:
        assert response.status == 200, await response.text()
        [detail] = (await response.json())["data"]["files"]
    assert detail["size"] == size + 1024
    grown_mib = (vm_peak_kib(served.process.pid) - before) / 1024
    print(f"peak RSS grew by {grown_mib:.1f} MiB for a {size / 2**20:.0f} MiB upload")  # noqa: T201
    assert grown_mib < 40
    [failed] = await final(session, instruction_id)
    assert failed["status"] == "FAILED"


async def test_a_crash_in_the_middle_loses_nothing(tmp_path: Path) -> None:
    require()
    photos = PHOTOS
    first = start("serve", tmp_path, {"WORKER_CONCURRENCY": "1"})
    headers = {"Authorization": f"Bearer {token(first, 'alice')}"}
    async with aiohttp.ClientSession(first.base, headers=headers) as session:
        instruction_id = await create(session, "images/compress", {})
        await upload(session, instruction_id, *photos)
    first.stop(signal.SIGKILL)
    second = start(
        "serve", tmp_path, {"WORKER_CONCURRENCY": "2"}, port=int(first.base.rsplit(":", 1)[1])
    )
    try:
        async with aiohttp.ClientSession(second.base, headers=headers) as session:
            files = await final(session, instruction_id, seconds=240)
            async with session.get(f"/instructions/{instruction_id}") as response:
                instruction = (await response.json())["data"]["instruction"]
    finally:
        second.stop()
    assert [f["status"] for f in files] == ["DONE"] * len(photos)
    assert [f["original_name"] for f in files] == [p.name for p in photos]
    assert instruction["status"] == "DONE"


def test_health_is_public(served: Served) -> None:
    with urllib.request.urlopen(served.base + "/health", timeout=5) as response:  # noqa: S310
        assert json.load(response)["data"]["status"] == "ok"
