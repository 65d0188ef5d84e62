"""The hostile corpus against a real ``imagecore serve``, while another user works normally.

Three users upload every case of `hostile.cases` (the decoder killer
included) and the shared ``corpus/edge`` files; a fourth uploads ordinary
photos before and during the storm. The server runs two pool children and
three attempts per file. Throughout, ``/health`` is polled and the peak
memory of the server and of each pool child is sampled from ``/proc``.

The decoder killer is a real process crash: the served process has
``tests/integration/crashhook`` on its ``PYTHONPATH``, whose
``sitecustomize`` arms ``tests/crash_hook.py`` in it and in every pool
child, so a child processing a file that carries `hostile.CRASH_MARKER`
dies by SIGSEGV.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from service_support import Served, start, token

import crash_hook
from corpus import CORPUS, PHOTOS, require
from hostile import (
    CRASH_MARKER,
    MAX_FILE_BYTES,
    Case,
    Done,
    Failed,
    Rejected,
    cases,
    multipart,
    output_problems,
)

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
MAX_ATTEMPTS = 3
#: What the shared edge files must come to as thumbnails; the rest are DONE.
EDGE_FAILURES = {
    "broken.png": {"corrupt_image"},
    "decompression_bomb.gif": {"image_too_large"},
    "hopper.heif": {"unsupported_media_type"},
}
HOSTILE_USERS = ("mallory", "trudy", "eve")
#: Bounds on peak resident memory, MiB. The server only streams bytes; a pool
#: child may hold a 100-megapixel image (the product limit) while encoding it.
SERVER_PEAK_MIB = 400
CHILD_PEAK_MIB = 2560


@attrs.define
class Memory:
    """Peak resident memory of a process and its direct children, sampled from /proc."""

    pid: int
    server_kib: int = 0
    children_kib: dict[int, int] = attrs.field(factory=dict)
    total_kib: int = 0
    samples: int = 0

    def sample(self) -> None:
        server = _status(self.pid)
        total = server.get("VmRSS", 0)
        self.server_kib = max(self.server_kib, server.get("VmHWM", 0))
        for child in _children(self.pid):
            status = _status(child)
            peak = status.get("VmHWM", 0)
            self.children_kib[child] = max(self.children_kib.get(child, 0), peak)
            total += status.get("VmRSS", 0)
        self.total_kib = max(self.total_kib, total)
        self.samples += 1


def _status(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = (line.split() for line in text.splitlines())
    return {f[0].rstrip(":"): int(f[1]) for f in fields if len(f) >= 2 and f[0].startswith("Vm")}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@attrs.define
class Watch:
    """Polls /health and samples memory on a thread until stopped."""

    served: Served
    memory: Memory
    health: list[int] = attrs.field(factory=list)
    _stop: threading.Event = attrs.field(factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            self.memory.sample()
            try:
                with urllib.request.urlopen(self.served.base + "/health", timeout=5) as r:  # noqa: S310 - loopback
                    self.health.append(r.status)
            except OSError as exc:
                self.health.append(getattr(exc, "code", 0))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require()
    data_dir = tmp_path_factory.mktemp("hostile")
    env = {
        "WORKER_CONCURRENCY": "2",
        "MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "MAX_FILE_BYTES": str(MAX_FILE_BYTES),
        "REAP_INTERVAL_SECONDS": "2",
        # Three users send a hundred files at once and poll each one: not what rate limits
        # and upload caps are tested on (tests/hostile_clients covers those).
        "RATE_LIMIT_USER_PER_MINUTE": "0",
        "RATE_LIMIT_ADDRESS_PER_MINUTE": "0",
        "MAX_UPLOADS_PER_USER": "0",
        "MAX_UPLOADS_PER_ADDRESS": "0",
        "PYTHONPATH": f"{TESTS / 'integration' / 'crashhook'}:{TESTS}",
        crash_hook.MARKER_ENV: CRASH_MARKER.decode(),
        crash_hook.LOG_ENV: str(data_dir / "crashes.log"),
    }
    served = start("serve", data_dir, env)
    try:
        yield served
    finally:
        served.stop()


class Client:
    """One user's session on the served API."""

    def __init__(self, served: Served, user: str) -> None:
        self.user = user
        self.scratch = str(served.data_dir)
        self.session = aiohttp.ClientSession(
            served.base, headers={"Authorization": f"Bearer {token(served, user)}"}
        )

    async def instruction(self, product: str, params: dict[str, Any]) -> str:
        body = {"product_key": product, "params": params}
        async with self.session.post("/instructions", json=body) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["data"]["instruction"]["id"])

    async def upload(
        self, instruction_id: str, name: str, data: bytes, content_type: str
    ) -> tuple[int, dict[str, Any]]:
        body, multipart_type = multipart([(name, data, content_type)])
        async with self.session.post(
            f"/instructions/{instruction_id}/details",
            data=io.BytesIO(body),
            headers={"Content-Type": multipart_type},
        ) as response:
            return response.status, await response.json()

    async def files(self, instruction_id: str) -> list[dict[str, Any]]:
        async with self.session.get(f"/instructions/{instruction_id}/details") as response:
            assert response.status == 200
            return list((await response.json())["data"]["files"])

    async def final(self, instruction_id: str, seconds: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            [detail] = await self.files(instruction_id)
            if detail["status"] in {"DONE", "FAILED"}:
                return detail
            assert time.monotonic() < deadline, detail
            await asyncio.sleep(0.2)

    async def output(self, instruction_id: str, detail_id: str) -> bytes:
        path = f"/instructions/{instruction_id}/details/{detail_id}/file"
        async with self.session.get(path) as response:
            assert response.status == 200
            return await response.read()


def _ms(detail: dict[str, Any]) -> float:
    created = datetime.fromisoformat(detail["created_at"])
    return (datetime.fromisoformat(detail["finished_at"]) - created).total_seconds() * 1000


async def _hostile(client: Client, case: Case) -> tuple[str, list[str], float]:
    """Send one case; return its name, its problems and its time to an outcome (ms)."""
    instruction_id = await client.instruction(case.product, case.params)
    started = time.monotonic()
    status, body = await client.upload(instruction_id, case.filename, case.data, case.content_type)
    expect = case.expect
    if isinstance(expect, Rejected):
        ms = (time.monotonic() - started) * 1000
        if status != expect.status or expect.says not in body["message"]:
            return case.name, [f"{status} {body['message']!r}, expected {expect}"], ms
        return case.name, [], ms
    if status != 200:
        return case.name, [f"upload answered {status}: {body['message']}"], 0.0
    detail = await client.final(instruction_id)
    problems = []
    if isinstance(expect, Failed):
        error = detail["error"] or {}
        if detail["status"] != "FAILED" or error.get("code") not in expect.codes:
            problems.append(f"{detail['status']} {error}, expected FAILED with {set(expect.codes)}")
        elif not error.get("message") or client.scratch in error["message"]:
            problems.append(f"unclear or leaky reason {error!r}")
    elif detail["status"] != "DONE":
        problems.append(f"{detail['status']} {detail['error']}, expected DONE")
    else:
        assert isinstance(expect, Done)
        output = await client.output(instruction_id, detail["output_id"])
        problems += output_problems(expect, output)
        if expect.name is not None and detail["original_name"] != expect.name:
            problems.append(f"original_name {detail['original_name']!r}")
    if case.name == "decoder-killer":
        problems += [f"attempts {detail['attempts']}"] if detail["attempts"] != MAX_ATTEMPTS else []
    return case.name, problems, _ms(detail)


async def _edge(client: Client, path: Path) -> tuple[str, list[str], float]:
    instruction_id = await client.instruction("images/thumbnail", {})
    status, body = await client.upload(instruction_id, path.name, path.read_bytes(), "image/*")
    if status != 200:
        return path.name, [f"upload answered {status}: {body['message']}"], 0.0
    detail = await client.final(instruction_id)
    codes = EDGE_FAILURES.get(path.name)
    error = detail["error"] or {}
    if codes is not None:
        ok = detail["status"] == "FAILED" and error.get("code") in codes and error.get("message")
        return path.name, [] if ok else [f"{detail['status']} {error}"], _ms(detail)
    if detail["status"] != "DONE":
        return path.name, [f"{detail['status']} {error}"], _ms(detail)
    data = await client.output(instruction_id, detail["output_id"])
    return path.name, output_problems(Done(), data), _ms(detail)


async def _photos(client: Client) -> list[dict[str, Any]]:
    """The ordinary user's job: every photo resized to 800 px WebP, one instruction."""
    instruction_id = await client.instruction("images/resize", {"width": 800, "format": "webp"})
    form = aiohttp.FormData()
    for photo in PHOTOS:
        form.add_field("file", photo.read_bytes(), filename=photo.name, content_type="image/jpeg")
    async with client.session.post(f"/instructions/{instruction_id}/details", data=form) as r:
        assert r.status == 200, await r.text()
    deadline = time.monotonic() + 240
    while True:
        files = await client.files(instruction_id)
        if all(f["status"] in {"DONE", "FAILED"} for f in files):
            return files
        assert time.monotonic() < deadline, files
        await asyncio.sleep(0.2)


def _report(title: str, rows: dict[str, list[float]]) -> None:
    print(f"\n{title}")  # noqa: T201
    print(f"  {'class':24} {'files':>5} {'median ms':>10} {'max ms':>9}")  # noqa: T201
    for kind, values in sorted(rows.items()):
        print(f"  {kind:24} {len(values):5} {statistics.median(values):10.1f} {max(values):9.1f}")  # noqa: T201


async def test_the_service_survives_the_hostile_corpus_while_others_work(served: Served) -> None:
    watch = Watch(served, Memory(served.process.pid))
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    alice = Client(served, "alice")
    hostile = [Client(served, user) for user in HOSTILE_USERS]
    edgar = Client(served, "edgar")
    try:
        baseline = await _photos(alice)
        storm = [
            *(_hostile(hostile[i % len(hostile)], case) for i, case in enumerate(cases())),
            *(_edge(edgar, path) for path in sorted((CORPUS / "edge").iterdir())),
        ]
        results, during = await asyncio.gather(asyncio.gather(*storm), _photos(alice))
        async with alice.session.get("/health") as response:
            assert response.status == 200
        admin = Client(served, "root")
        async with admin.session.get(
            "/files?limit=1000",
            headers={"Authorization": f"Bearer {token(served, 'root', admin=True)}"},
        ) as response:
            every_file = (await response.json())["data"]["files"]
        await admin.session.close()
    finally:
        watch.stop()
        watcher.join()
        for client in (alice, edgar, *hostile):
            await client.session.close()

    by_name = {case.name: case for case in cases()}
    problems = {name: found for name, found, _ in results if found}
    assert not problems, problems
    assert served.process.poll() is None, "the server process died"
    assert watch.health
    assert set(watch.health) == {200}, sorted(set(watch.health))
    assert [f for f in every_file if f["status"] not in {"DONE", "FAILED"}] == []
    # A crash costs the crashing file an attempt, and no other file anything.
    retried = [(f["original_name"], f["attempts"]) for f in every_file if f["attempts"] > 1]
    assert retried == [("decoder-killer.jpg", MAX_ATTEMPTS)], retried

    # The decoder killer: three real crashes, then FAILED; nobody else lost an attempt.
    crashes = (served.data_dir / "crashes.log").read_text().splitlines()
    assert len(crashes) == MAX_ATTEMPTS, crashes
    assert len({line.split()[0] for line in crashes}) == 1, crashes
    for files in (baseline, during):
        assert [(f["status"], f["attempts"]) for f in files] == [("DONE", 1)] * len(PHOTOS)

    times: dict[str, list[float]] = defaultdict(list)
    for name, _, ms in results:
        times[by_name[name].kind if name in by_name else "shared-edge-corpus"].append(ms)
    _report("time to an outcome per class (4xx: the upload; else upload to final):", times)
    _report(
        "the ordinary user's photos (upload to DONE):",
        {"alone": [_ms(f) for f in baseline], "during the storm": [_ms(f) for f in during]},
    )
    memory = watch.memory
    children = sorted(memory.children_kib.values(), reverse=True)
    print(  # noqa: T201
        f"\npeak RSS: server {memory.server_kib / 1024:.0f} MiB; "
        f"{len(children)} pool children, peaks {[round(c / 1024) for c in children]} MiB; "
        f"server + children at once {memory.total_kib / 1024:.0f} MiB "
        f"({memory.samples} samples, {len(watch.health)} health checks)"
    )
    assert memory.server_kib / 1024 < SERVER_PEAK_MIB
    assert children
    assert children[0] / 1024 < CHILD_PEAK_MIB
