"""A lean keep-alive HTTP/1.1 connection: the benchmark's load generator.

The benchmark's client runs on the same two cores as the servers it
measures, so every millisecond it spends is taken from them. With aiohttp's
client an end-to-end W1 image (upload, its DONE event, download) cost the
client 1.34-1.37 ms of CPU; on this connection 0.65-0.68 ms (throwaway
driver, 600 images at 4 in flight, twice each). A request goes out in one
write (two with a body), its answer comes back in two reads, and there is no
timer per read, only one per request.

It speaks what the servers under test answer: bodies framed by
Content-Length, chunked, or by the end of the connection; keep-alive unless
the server says ``Connection: close``. A request on a kept connection that
the server has closed meanwhile (an idle timeout) goes out once more on a
new one, but only if no byte of an answer came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

__all__ = ["Body", "Connection", "HttpError"]

#: A request body: bytes, or parts of bytes and files sent one after another.
Body = bytes | Sequence[bytes | Path]
#: A file body goes out in blocks of this size, as aiohttp's client and curl send one: the
#: API spent more CPU per MB on 1 MiB writes (ingest stage alone, two runs each: 505/505
#: against 608/552 MB per CPU-second at 64 KiB, 671/582 with aiohttp's client).
_FILE_BLOCK = 64 * 1024
_NO_BODY = frozenset({204, 304})


class HttpError(Exception):
    """The server answered with a status outside 2xx."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300].decode(errors='replace')}")
        self.status = status
        self.body = body


class Connection:
    """One connection to ``host``:``port``, one request at a time, opened when first used.

    ``headers`` go with every request; a request with its answer may take
    ``request_seconds``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        headers: Mapping[str, str] | None = None,
        request_seconds: float = 600,
    ) -> None:
        self._host = host
        self._port = port
        self._request_seconds = request_seconds
        fields = {"Host": f"{host}:{port}", **(headers or {})}
        self._fields = "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        target: str,
        body: Body = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send a request and read its whole answer: (status, body)."""
        status, answer, _ = await self.exchange(method, target, body, headers)
        return status, answer

    async def exchange(
        self,
        method: str,
        target: str,
        body: Body = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, dict[bytes, bytes]]:
        """`request`, with the answer's header fields too (names in lower case, undecoded)."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        for last_try in (False, True):
            reused = self._writer is not None
            try:
                async with asyncio.timeout(self._request_seconds):
                    await self._send(method, target, extra, body)
                    return await self._answer(method)
            except _ClosedBeforeAnswer:
                self.close()
                if last_try or not reused:
                    raise ConnectionResetError("the server closed the connection") from None
            except BaseException:
                self.close()
                raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def stream(self, target: str) -> AsyncIterator[bytes]:
        """GET ``target`` and yield its body as it comes (a live event stream); 2xx or HttpError.

        The connection is used up: it is closed when the stream ends or is dropped.
        """
        try:
            await self._send("GET", target, "", b"")
            reader = self._opened()[0]
            status, fields = await self._head(reader)
            if not 200 <= status < 300:
                raise HttpError(status, await self._body("GET", status, fields, reader))
            if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                while chunk := await _chunk(reader):
                    yield chunk
            else:
                while block := await reader.read(65536):
                    yield block
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket; the next request opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _send(self, method: str, target: str, extra: str, body: Body) -> None:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        writer = self._writer
        parts = [body] if isinstance(body, bytes) else list(body)
        length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in parts)
        head = f"{method} {target} HTTP/1.1\r\n{extra}".encode() + self._fields
        if length or method in ("POST", "PUT", "PATCH"):
            head += b"Content-Length: %d\r\n" % length
        try:
            writer.write(head + b"\r\n")
            for part in parts:
                if isinstance(part, Path):
                    with part.open("rb") as source:
                        while block := source.read(_FILE_BLOCK):
                            writer.write(block)
                            await writer.drain()
                elif part:
                    writer.write(part)
            await writer.drain()
        except ConnectionError:
            raise _ClosedBeforeAnswer from None

    async def _answer(self, method: str) -> tuple[int, bytes, dict[bytes, bytes]]:
        reader = self._opened()[0]
        status, fields = await self._head(reader)
        body = await self._body(method, status, fields, reader)
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body, fields

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _ClosedBeforeAnswer from None
            raise
        except ConnectionError:
            raise _ClosedBeforeAnswer from None
        lines = raw[:-4].split(b"\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        return int(lines[0].split(b" ", 2)[1]), fields

    async def _body(
        self, method: str, status: int, fields: dict[bytes, bytes], reader: asyncio.StreamReader
    ) -> bytes:
        if method == "HEAD" or status in _NO_BODY or status < 200:
            return b""
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            chunks = []
            while chunk := await _chunk(reader):
                chunks.append(chunk)
            return b"".join(chunks)
        if b"content-length" in fields:
            return await reader.readexactly(int(fields[b"content-length"]))
        body = await reader.read()  # framed by the end of the connection
        self.close()
        return body

    def _opened(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise ConnectionResetError("the connection is closed")
        return self._reader, self._writer


class _ClosedBeforeAnswer(Exception):
    """The server closed the connection before a byte of the answer came."""


async def _chunk(reader: asyncio.StreamReader) -> bytes:
    """The next chunk of a chunked body; empty at its end (the trailer is read too)."""
    size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
    if size == 0:
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailer fields, if any
        return b""
    data = await reader.readexactly(size + 2)
    return data[:-2]
