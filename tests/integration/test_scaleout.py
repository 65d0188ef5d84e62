"""Scale-out: 2 API and 3 worker processes over FerretDB, SeaweedFS and NATS."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from service_support import Served, start, token

from corpus import PHOTOS, require
from devtools.devstack import ServerHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = [f"user-{n}" for n in range(5)]
INSTRUCTIONS_PER_USER = 4
FILES_PER_INSTRUCTION = 15  # 5 users x 4 instructions x 15 files = 300 files
FINAL = {"DONE", "FAILED"}


def stack_env(
    ferretdb_server: ServerHandle, seaweedfs_server: ServerHandle, nats_server: ServerHandle
) -> dict[str, str]:
    run = secrets.token_hex(4)
    return {
        **ferretdb_server.env,
        **seaweedfs_server.env,
        **nats_server.env,
        "MONGO_DB": f"scaleout_{run}",
        "NATS_SUBJECT_IMAGE_REQUESTS": f"image.requests.{run}",
        "NATS_SUBJECT_NOTIFICATIONS_SSE": f"notifications.sse.{run}",
        "JWT_SECRET": f"scaleout-secret-{run}-0123456789abcdef",
        "WORKER_CONCURRENCY": "1",
        "RATE_LIMIT_USER_PER_MINUTE": "0",
        "RATE_LIMIT_ADDRESS_PER_MINUTE": "0",
        "REAP_INTERVAL_SECONDS": "2",
    }


@pytest.fixture
def cluster(
    tmp_path: Path,
    ferretdb_server: ServerHandle,
    seaweedfs_server: ServerHandle,
    nats_server: ServerHandle,
) -> Iterator[tuple[list[Served], list[Served], dict[str, str]]]:
    env = stack_env(ferretdb_server, seaweedfs_server, nats_server)
    apis = [start("api", tmp_path / f"api{n}", env) for n in range(2)]
    workers = [start("worker", tmp_path / f"worker{n}", env) for n in range(3)]
    try:
        yield apis, workers, env
    finally:
        for process in [*apis, *workers]:
            process.stop()


async def _upload_all(apis: list[Served], photos: list[Path]) -> dict[str, list[str]]:
    """Every user's instructions and files, spread over both API processes."""
    files: dict[str, list[str]] = {}
    blobs = [(p.name, p.read_bytes()) for p in photos]

    async def one_user(index: int, user: str) -> None:
        api = apis[index % len(apis)]
        headers = {"Authorization": f"Bearer {token(api, user)}"}
        async with aiohttp.ClientSession(api.base, headers=headers) as session:
            for _ in range(INSTRUCTIONS_PER_USER):
                body = {"product_key": "images/thumbnail", "params": {"width": 128, "height": 128}}
                async with session.post("/instructions", json=body) as r:
                    assert r.status == 200, await r.text()
                    instruction_id = (await r.json())["data"]["instruction"]["id"]
                form = aiohttp.FormData()
                for n in range(FILES_PER_INSTRUCTION):
                    name, data = blobs[n % len(blobs)]
                    form.add_field("file", data, filename=f"{n}-{name}")
                async with session.post(f"/instructions/{instruction_id}/details", data=form) as r:
                    assert r.status == 200, await r.text()
                    files[instruction_id] = [f["id"] for f in (await r.json())["data"]["files"]]

    await asyncio.gather(*(one_user(i, u) for i, u in enumerate(USERS)))
    return files


async def _statuses(
    api: Served, user_of: dict[str, str], files: dict[str, list[str]]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for instruction_id in files:
        headers = {"Authorization": f"Bearer {token(api, user_of[instruction_id])}"}
        async with (
            aiohttp.ClientSession(api.base, headers=headers) as session,
            session.get(f"/instructions/{instruction_id}/details") as r,
        ):
            for f in (await r.json())["data"]["files"]:
                found[f["id"]] = f
    return found


async def test_two_apis_and_three_workers_process_300_files_once_each(cluster) -> None:
    apis, workers, env = cluster
    require()
    photos = PHOTOS[:3]
    terminal: collections.Counter[str] = collections.Counter()
    client = await nats.connect(env["NATS_URI"])

    async def count(msg: Any) -> None:
        event = json.loads(msg.data)
        if event["status"] in FINAL:
            terminal[event["instruction_detail_id"]] += 1

    await client.subscribe(env["NATS_SUBJECT_NOTIFICATIONS_SSE"], cb=count)
    try:
        files = await _upload_all(apis, photos)
        all_ids = [d for ids in files.values() for d in ids]
        assert len(all_ids) == 300
        # Who owns what, from one API; then wait until every file is final.
        user_of: dict[str, str] = {}
        for api in apis:
            for user in USERS:
                headers = {"Authorization": f"Bearer {token(api, user)}"}
                async with (
                    aiohttp.ClientSession(api.base, headers=headers) as session,
                    session.get("/instructions?size=100") as r,
                ):
                    for i in (await r.json())["data"]["instructions"]:
                        user_of[i["id"]] = user
        assert set(user_of) == set(files)
        deadline = time.monotonic() + 600
        while True:
            found = await _statuses(apis[1], user_of, files)
            if len(found) == 300 and all(f["status"] in FINAL for f in found.values()):
                break
            assert time.monotonic() < deadline, collections.Counter(
                f["status"] for f in found.values()
            )
            await asyncio.sleep(1)
        await asyncio.sleep(2)  # let the last notifications arrive
    finally:
        await client.drain()

    assert collections.Counter(f["status"] for f in found.values()) == {"DONE": 300}
    assert terminal == dict.fromkeys(all_ids, 1)
    written: collections.Counter[str] = collections.Counter()
    busy_workers = 0
    for worker in workers:
        lines = re.findall(r"output written: outputs/\w+/(\w+)\.", worker.log.read_text())
        written.update(lines)
        busy_workers += bool(lines)
    assert written == dict.fromkeys(all_ids, 1), "an output was written more than once"
    assert busy_workers >= 2
    for worker in workers:
        assert worker.process.poll() is None, worker.log.read_text()[-2000:]
