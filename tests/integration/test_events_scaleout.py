"""Live events across processes: a separate `imagecore worker` does the work, and its
notifications reach the SSE streams of a separate `imagecore api` through NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from service_support import Served, start, token

from corpus import PHOTOS as CORPUS_PHOTOS
from corpus import require
from devtools import devstack

PHOTOS = CORPUS_PHOTOS[:2]


pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(
    nats_server: devstack.ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Served]]:
    require()
    # One data folder: both processes share the SQLite repository, the stored
    # files and the signing secret; only NATS carries jobs and notifications.
    data_dir = tmp_path_factory.mktemp("scaleout")
    env = dict(nats_server.env)
    api = start("api", data_dir, env)
    worker = start("worker", data_dir, env)
    try:
        yield api, worker
    finally:
        worker.stop()
        api.stop()


@pytest.fixture
async def session(pair: tuple[Served, Served]) -> AsyncIterator[aiohttp.ClientSession]:
    api, _ = pair
    headers = {"Authorization": f"Bearer {token(api, 'alice')}"}
    async with aiohttp.ClientSession(api.base, headers=headers) as session:
        yield session


async def read_events(
    response: aiohttp.ClientResponse, done: Any, seconds: float = 120
) -> list[dict[str, Any]]:
    """``data`` of each event until ``done(events)`` holds; heartbeats are skipped."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:")))
                if done(events):
                    return events
    raise AssertionError(f"the stream ended after {events}")


def finished(count: int) -> Any:
    return lambda events: sum(e["status"] in {"DONE", "FAILED"} for e in events) == count


async def test_a_separate_workers_progress_streams_live_from_the_api(
    pair: tuple[Served, Served], session: aiohttp.ClientSession
) -> None:
    api, worker = pair
    body = {"product_key": "images/resize", "params": {"width": 400}}
    async with session.post("/instructions", json=body) as response:
        assert response.status == 200, await response.text()
        instruction_id = (await response.json())["data"]["instruction"]["id"]

    async with session.get(f"/instructions/{instruction_id}/events") as stream:
        assert stream.status == 200
        form = aiohttp.FormData()
        for photo in PHOTOS:
            form.add_field("file", photo.read_bytes(), filename=photo.name)
        async with session.post(f"/instructions/{instruction_id}/details", data=form) as response:
            assert response.status == 200, await response.text()
            uploaded = [f["id"] for f in (await response.json())["data"]["files"]]
        events = await read_events(stream, finished(len(uploaded)))

    for detail_id in uploaded:
        statuses = [e["status"] for e in events if e["instruction_detail_id"] == detail_id]
        assert statuses[-2:] == ["PROCESSING", "DONE"], events
    assert {e["user_id"] for e in events} == {"alice"}
    assert all(e["output_size"] for e in events if e["status"] == "DONE")
    assert api.process.poll() is None
    assert worker.process.poll() is None

    # A client that was away gets the same final states back from the repository.
    async with session.get(
        f"/instructions/{instruction_id}/events", headers={"Last-Event-ID": "0"}
    ) as stream:
        replay = await read_events(stream, finished(len(uploaded)), seconds=10)
    assert {e["instruction_detail_id"] for e in replay} == set(uploaded)


async def test_the_user_stream_on_the_api_sees_the_workers_events(
    session: aiohttp.ClientSession,
) -> None:
    body = {"product_key": "images/thumbnail", "params": {}}
    async with session.post("/instructions", json=body) as response:
        instruction_id = (await response.json())["data"]["instruction"]["id"]
    async with session.get("/events") as stream:
        form = aiohttp.FormData()
        form.add_field("file", PHOTOS[0].read_bytes(), filename=PHOTOS[0].name)
        async with session.post(f"/instructions/{instruction_id}/details", data=form) as response:
            assert response.status == 200, await response.text()
        events = await read_events(stream, finished(1))
    assert events[-1]["instruction_id"] == instruction_id
    assert events[-1]["status"] == "DONE"
