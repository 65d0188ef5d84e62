"""An HTTP client of the imagecore API, and the closed-loop drivers built on it.

`end_to_end` keeps ``concurrency`` images in flight: each is uploaded (one
multipart request), awaited on the live event stream (``GET /events``) until
DONE, then downloaded; its latency runs from the first byte of the upload to
the last byte of the download. `requests_loop` drives a plain GET service
(thumbor) the same way, so the two are compared at the same concurrency.
Both speak through the same lean connection (`bench.connection`): the client
shares the cores with the servers it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from bench.connection import Body, Connection, HttpError
from bench.workloads import Step

_Item = TypeVar("_Item")

__all__ = ["ApiClient", "drive", "end_to_end", "percentiles", "requests_loop"]

_PER_INSTRUCTION = 50
_FINAL = frozenset({"DONE", "FAILED"})
#: Files up to this size are uploaded from a body built once and kept: the client
#: shares the machine's cores with the service. Larger files stream from disk.
_KEPT_BODY = 4 * 1024 * 1024
_BOUNDARY = "imagecore-bench-boundary"
_MULTIPART = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"}
_JSON = {"Content-Type": "application/json"}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": statistics.median(ordered), "p95": rank(0.95), "p99": rank(0.99)}


def _connection(
    base: str, headers: dict[str, str] | None = None, request_seconds: float = 600
) -> Connection:
    url = urlsplit(base)
    return Connection(url.hostname or "127.0.0.1", url.port or 80, headers, request_seconds)


class ApiClient:
    """One user's session with the API, following its own file events.

    Each call takes a kept connection that is not in use (or opens one), so
    ``end_to_end``'s loops each keep to a connection of their own.
    """

    def __init__(self, base: str, token: str) -> None:
        self._base = base
        self._auth = {"Authorization": f"Bearer {token}"}
        self._idle: list[Connection] = []
        self._final: dict[str, str] = {}
        self._outputs: dict[str, str] = {}  # a detail's id -> its output record's id
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
        for connection in self._idle:
            connection.close()

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        events = _connection(self._base, self._auth).stream("/events")
        pending = b""
        try:
            async with contextlib.aclosing(events) as chunks:
                async for chunk in chunks:
                    if not ready.done():
                        ready.set_result(None)  # the stream has begun: we are subscribed
                    pending += chunk
                    *frames, pending = pending.split(b"\n\n")
                    for frame in frames:
                        self._event(frame)
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def _event(self, frame: bytes) -> None:
        if b'"DONE"' not in frame and b'"FAILED"' not in frame:
            return  # only the final events are waited for
        for line in frame.split(b"\n"):
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                if event.get("status") in _FINAL:
                    detail_id = event["instruction_detail_id"]
                    self._final[detail_id] = event["status"]
                    waiter = self._waiting.pop(detail_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(event["status"])

    async def _call(
        self, method: str, target: str, body: Body = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        connection = self._idle.pop() if self._idle else _connection(self._base, self._auth)
        status, answer = await connection.request(method, target, body, headers)
        self._idle.append(connection)
        if not 200 <= status < 300:
            raise HttpError(status, answer)
        return answer

    async def instruction(self, step: Step) -> str:
        """Create an instruction for ``step``; its id."""
        body = json.dumps({"product_key": step.product, "params": step.params}).encode()
        answer = await self._call("POST", "/instructions", body, _JSON)
        return str(json.loads(answer)["data"]["instruction"]["id"])

    async def upload(self, instruction_id: str, path: Path) -> str:
        """Upload one file as the multipart part ``file``; its detail id."""
        body = self._kept_body(path) or _multipart_parts(path)
        answer = await self._call(
            "POST", f"/instructions/{instruction_id}/details", body, _MULTIPART
        )
        output = json.loads(answer)["data"]["output"]
        self._outputs[output["input_id"]] = output["id"]
        return str(output["input_id"])

    def _kept_body(self, path: Path) -> bytes | None:
        """The whole multipart body for a small file, built on its first upload."""
        body = self._bodies.get(path)
        if body is None and path.stat().st_size <= _KEPT_BODY:
            body = self._bodies[path] = b"".join(
                p if isinstance(p, bytes) else p.read_bytes() for p in _multipart_parts(path)
            )
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
        """Download the output (by its output record, named at the upload); its size."""
        output_id = self._outputs.pop(detail_id)
        answer = await self._call("GET", f"/instructions/{instruction_id}/details/{output_id}/file")
        return len(answer)

    async def detail(self, instruction_id: str, detail_id: str) -> dict[str, Any]:
        """``GET .../details/{id}`` data."""
        answer = await self._call("GET", f"/instructions/{instruction_id}/details/{detail_id}")
        return dict(json.loads(answer)["data"]["detail"])


def _multipart_parts(path: Path) -> tuple[bytes, Path, bytes]:
    """A multipart/form-data body with ``path`` as its one part, ``file``: head, file, tail."""
    head = (
        f"--{_BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode(), path, f"\r\n--{_BOUNDARY}--\r\n".encode()


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
    """GET every path, ``concurrency`` at a time spread evenly over the servers ``bases``."""

    async def get(connection: Connection, path: str) -> bytes | None:
        status, body = await connection.request("GET", path)
        return body if status == 200 else None

    return await drive(bases, paths, concurrency, get)


async def drive(
    bases: Sequence[str],
    items: Sequence[_Item],
    concurrency: int,
    one: Callable[[Connection, _Item], Awaitable[bytes | None]],
) -> dict[str, Any]:
    """Run ``one(connection, item)`` for every item, ``concurrency`` at a time.

    Each of the ``concurrency`` loops keeps one connection to one server (spread
    evenly over ``bases``) and takes the next item when its own ends, so every
    server always has its share in flight and a faster one serves more. ``one``
    answers the result's bytes, or None for a failure; an item's latency runs
    from its first byte sent to the last received.
    """
    work = asyncio.Queue[_Item]()
    for item in items:
        work.put_nowait(item)
    latencies: list[float] = []
    sizes: list[int] = []
    failed = 0
    connections = [
        _connection(bases[i % len(bases)], request_seconds=300) for i in range(concurrency)
    ]

    async def run(connection: Connection) -> None:
        nonlocal failed
        while not work.empty():
            item = work.get_nowait()
            started = time.perf_counter()
            body = await one(connection, item)
            if body is None:
                failed += 1
                continue
            latencies.append(time.perf_counter() - started)
            sizes.append(len(body))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(run(connection) for connection in connections))
        seconds = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.close()
    return {
        "images": len(items),
        "failed": failed,
        "seconds": seconds,
        "images_per_second": len(latencies) / seconds,
        "latency": percentiles(latencies),
        "mean_output_bytes": statistics.fmean(sizes) if sizes else 0,
    }
