"""An HTTP client of the imagecore API, and the closed-loop drivers built on it.

`end_to_end` keeps ``concurrency`` images in flight: each is uploaded (one
multipart request), awaited on the live event stream (``GET /events``) until
DONE, then downloaded; its latency runs from the first byte of the upload to
the last byte of the download. `requests_loop` drives a plain GET service
(thumbor) the same way, so the two are compared at the same concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Self

import aiohttp

from bench.workloads import Step

__all__ = ["ApiClient", "end_to_end", "percentiles", "requests_loop"]

_PER_INSTRUCTION = 50
_FINAL = frozenset({"DONE", "FAILED"})
#: Files up to this size are uploaded from a body built once and kept: the client
#: shares the machine's cores with the service, and reading the file again for
#: every upload costs it trips to a thread. Larger files stream from disk.
_KEPT_BODY = 4 * 1024 * 1024
_BOUNDARY = "imagecore-bench-boundary"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": statistics.median(ordered), "p95": rank(0.95), "p99": rank(0.99)}


class ApiClient:
    """One user's session with the API, following its own file events."""

    def __init__(self, base: str, token: str) -> None:
        self._session = aiohttp.ClientSession(
            base,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
            connector=aiohttp.TCPConnector(limit=64),
        )
        self._final: dict[str, str] = {}
        self._bodies: dict[Path, bytes] = {}
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        ready = asyncio.get_running_loop().create_future()
        self._listener = asyncio.create_task(self._listen(ready))
        await ready
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._session.close()

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        async with self._session.get("/events") as response:
            response.raise_for_status()
            ready.set_result(None)
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line.removeprefix("data:"))
                if event.get("status") in _FINAL:
                    detail_id = event["instruction_detail_id"]
                    self._final[detail_id] = event["status"]
                    waiter = self._waiting.pop(detail_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(event["status"])

    async def instruction(self, step: Step) -> str:
        """Create an instruction for ``step``; its id."""
        body = {"product_key": step.product, "params": step.params}
        async with self._session.post("/instructions", json=body) as response:
            response.raise_for_status()
            return str((await response.json())["data"]["instruction"]["id"])

    async def upload(self, instruction_id: str, path: Path) -> str:
        """Upload one file as the multipart part ``file``; its detail id."""
        url = f"/instructions/{instruction_id}/details"
        body = self._kept_body(path)
        if body is not None:
            headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"}
            async with self._session.post(url, data=body, headers=headers) as response:
                return await _uploaded(response)
        form = aiohttp.FormData()
        with path.open("rb") as stream:
            form.add_field("file", stream, filename=path.name, content_type="image/jpeg")
            async with self._session.post(url, data=form) as response:
                return await _uploaded(response)

    def _kept_body(self, path: Path) -> bytes | None:
        """The whole multipart body for a small file, built on its first upload."""
        body = self._bodies.get(path)
        if body is None and path.stat().st_size <= _KEPT_BODY:
            body = self._bodies[path] = _multipart_body(path)
        return body

    async def finished(self, detail_id: str, seconds: float = 120) -> str:
        """Wait for the file's DONE or FAILED event; the status."""
        if detail_id in self._final:
            return self._final.pop(detail_id)
        waiter = self._waiting.setdefault(detail_id, asyncio.get_running_loop().create_future())
        status = await asyncio.wait_for(waiter, seconds)
        self._final.pop(detail_id, None)
        return status

    async def download(self, instruction_id: str, detail_id: str) -> int:
        """Download the output; its size."""
        url = f"/instructions/{instruction_id}/details/{detail_id}/file"
        size = 0
        async with self._session.get(url) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(256 * 1024):
                size += len(chunk)
        return size

    async def detail(self, instruction_id: str, detail_id: str) -> dict[str, Any]:
        """``GET .../details/{id}`` data."""
        async with self._session.get(f"/instructions/{instruction_id}/details/{detail_id}") as r:
            r.raise_for_status()
            return dict((await r.json())["data"]["detail"])


def _multipart_body(path: Path) -> bytes:
    """A multipart/form-data body with ``path`` as its one part, ``file``."""
    head = (
        f"--{_BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + path.read_bytes() + f"\r\n--{_BOUNDARY}--\r\n".encode()


async def _uploaded(response: aiohttp.ClientResponse) -> str:
    """The detail id an upload's answer names."""
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {await response.text()}")
    return str((await response.json())["data"]["files"][0]["id"])


async def _instruction_ids(client: ApiClient, step: Step, count: int) -> AsyncIterator[str]:
    for _ in range(0, count, _PER_INSTRUCTION):
        instruction_id = await client.instruction(step)
        for _ in range(_PER_INSTRUCTION):
            yield instruction_id


async def end_to_end(
    client: ApiClient,
    step: Step,
    sources: Sequence[Path],
    concurrency: int,
    *,
    on_done: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Upload -> DONE -> download for every source, ``concurrency`` at a time."""
    slots = [i async for i in _instruction_ids(client, step, len(sources))]
    work = asyncio.Queue[tuple[int, Path]]()
    for index, source in enumerate(sources):
        work.put_nowait((index, source))
    latencies: list[float] = []
    sizes: list[int] = []
    failed = 0

    async def run() -> None:
        nonlocal failed
        while not work.empty():
            index, source = work.get_nowait()
            started = time.perf_counter()
            detail_id = await client.upload(slots[index], source)
            if await client.finished(detail_id) != "DONE":
                failed += 1
                continue
            sizes.append(await client.download(slots[index], detail_id))
            latencies.append(time.perf_counter() - started)
            if on_done is not None:
                on_done(len(latencies))

    started = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "images": len(sources),
        "failed": failed,
        "seconds": seconds,
        "images_per_second": len(latencies) / seconds,
        "latency": percentiles(latencies),
        "mean_output_bytes": statistics.fmean(sizes) if sizes else 0,
    }


async def requests_loop(
    bases: Sequence[str], paths: Sequence[str], concurrency: int
) -> dict[str, Any]:
    """GET every path, ``concurrency`` at a time spread evenly over the servers ``bases``.

    Each of the ``concurrency`` request loops keeps to one server and takes
    the next path when its request ends, so every server always has its
    share in flight and a faster one serves more.
    """
    work = asyncio.Queue[str]()
    for path in paths:
        work.put_nowait(path)
    latencies: list[float] = []
    sizes: list[int] = []
    failed = 0
    timeout = aiohttp.ClientTimeout(total=300)
    sessions = [aiohttp.ClientSession(base, timeout=timeout) for base in bases]

    async def run(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        while not work.empty():
            path = work.get_nowait()
            started = time.perf_counter()
            async with session.get(path) as response:
                body = await response.read()
            if response.status != 200:
                failed += 1
                continue
            latencies.append(time.perf_counter() - started)
            sizes.append(len(body))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(run(sessions[i % len(sessions)]) for i in range(concurrency)))
        seconds = time.perf_counter() - started
    finally:
        for session in sessions:
            await session.close()
    return {
        "images": len(paths),
        "failed": failed,
        "seconds": seconds,
        "images_per_second": len(latencies) / seconds,
        "latency": percentiles(latencies),
        "mean_output_bytes": statistics.fmean(sizes) if sizes else 0,
    }
