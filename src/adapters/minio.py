"""The S3 storage: objects in one bucket of any S3 server, through the minio SDK.

The SDK is synchronous, so every call runs on threads this adapter owns and
the event loop never blocks. Short calls (stat, get's reads, deletes, ping)
share a small pool; each put holds a thread of a second pool for as long as
its caller takes to send the bytes, so slow uploads never starve ``ping``.

A put is a multipart upload of 8 MiB parts fed from the caller's async
iterator through a byte-bounded hand-over, never the whole object: memory
stays near three parts per upload (the SDK copies each part once and keeps
the previous one while it reads the next) whatever the object's size. S3
shows an object only once its upload completes, so a stream that fails
aborts the upload and leaves any earlier object under the key untouched.

Why one module: one port's adapter with one place that translates the
SDK's errors; the multipart upload is most of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import tempfile
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterator,
    Sequence,
)
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final, ParamSpec, Self, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteError, DeleteObject
from minio.error import MinioException, S3Error

from adapters.local_files import copied, put_file
from imagecore.errors import DependencyUnavailable, ObjectNotFound, ValidationError
from imagecore.ports import StoredObject

__all__ = ["PART_SIZE", "MinioImageStorage"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: Bytes per part of a multipart upload (S3 wants at least 5 MiB but for the last).
PART_SIZE: Final = 8 * 1024 * 1024
_HANDOVER_BYTES = 1024 * 1024  # caller's chunks queued for the upload thread, at most
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})
_CREATED = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class _Refused(Exception):
    """One key's error in a DeleteObjects answer, which S3 reports in a 200, not as an S3Error."""

    def __init__(self, error: DeleteError) -> None:
        super().__init__(error.code)
        self.code: str | None = error.code
        self.message: str | None = error.message


@contextlib.contextmanager
def _translated(key: str, *, writing: bool = False) -> Iterator[None]:
    """Turn SDK and HTTP errors into `imagecore.errors`, the one place this adapter does."""
    try:
        yield
    except (S3Error, _Refused) as exc:
        if exc.code in _MISSING and not writing:
            raise ObjectNotFound(f"no object {key!r}") from exc
        # Refused credentials, a missing bucket on write, a 5xx: all are the deployment's
        # problem, not the caller's, and retrying later may work.
        raise DependencyUnavailable(
            "the object storage refused the request", f"S3 {key!r}: {exc.code}: {exc.message}"
        ) from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        # MaxRetryError, ProtocolError and timeouts are urllib3's HTTPError; a socket's OSError.
        raise DependencyUnavailable(
            "the object storage did not answer", f"S3 {key!r}: {exc}"
        ) from exc
    except ValueError as exc:  # the SDK's own argument checks (an empty key, say)
        raise ValidationError(f"invalid S3 object or bucket name ({key!r}): {exc}") from exc


class _SourceFailed(Exception):
    """The caller's stream broke off: the SDK aborts the upload on any exception."""


_END: Final = b""  # marks the end of the caller's stream (empty chunks are never queued)


class _Handover:
    """The caller's chunks, from the event loop to the SDK's ``read(n)`` on an upload thread.

    Queued bytes are bounded: `feed` waits while the thread is behind. The
    loop side (`feed`, `end`, `fail`) runs only on the event loop, ``read``
    only on the upload thread; they share the thread-safe queue and nothing else.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._items: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._queued = 0  # loop side only
        self._room = asyncio.Event()
        self._pending = memoryview(b"")  # thread side only
        self._ended = False  # thread side only
        self.size = 0

    async def feed(self, chunk: bytes, upload: asyncio.Future[str]) -> None:
        while self._queued >= self._limit and not upload.done():
            self._room.clear()
            await self._room.wait()
        if chunk:
            self._queued += len(chunk)
            self.size += len(chunk)
            self._items.put(chunk)

    def end(self) -> None:
        self._items.put(_END)

    def fail(self) -> None:
        self._items.put(None)

    def wake(self) -> None:
        self._room.set()

    def _taken(self, size: int) -> None:
        self._queued -= size
        if self._queued < self._limit:
            self._room.set()

    def read(self, size: int = -1) -> bytes:
        # A whole part per call spares the SDK its quadratic ``bytes +=`` of small reads,
        # and BytesIO.getvalue() hands its buffer over without copying it.
        out = io.BytesIO()
        while size < 0 or out.tell() < size:
            if not self._pending:
                if self._ended:
                    break
                item = self._items.get()
                if item is None:
                    raise _SourceFailed
                if not item:  # _END
                    self._ended = True
                    break
                self._pending = memoryview(item)
                with contextlib.suppress(RuntimeError):  # the loop is gone, and its feeder too
                    self._loop.call_soon_threadsafe(self._taken, len(item))
            take = len(self._pending) if size < 0 else size - out.tell()
            out.write(self._pending[:take])
            self._pending = self._pending[take:]
        return out.getvalue()


class MinioImageStorage:
    """`ImageStorage` on one S3 bucket (SeaweedFS, MinIO, AWS S3, ...).

    Open with `open`, close with `close`; nothing connects before `open`.
    Keys are S3 object names, used as given. Etags are the server's: an MD5
    of the content for a small object, not for a multipart one, but always
    equal between `put` and `stat` and different for different content.
    Every backend failure raises `DependencyUnavailable`; the HTTP client
    gives up after ``connect_timeout`` / ``timeout`` seconds and two quick
    reconnects, so a stopped server is reported at once.
    """

    def __init__(  # noqa: PLR0913 - private: the pieces `open` builds
        self,
        client: Any,  # noqa: ANN401 - a minio.Minio (untyped)
        probe: Any,  # noqa: ANN401 - see client
        pools: list[urllib3.PoolManager],
        bucket: str,
        *,
        uploads: int,
        scratch: Path,
    ) -> None:
        # Private: use ``open``. ``probe`` is a client with shorter timeouts, for ``ping``.
        self._scratch = scratch
        self._client = client
        self._probe = probe
        self._pools = pools
        self._bucket = bucket
        self._calls = ThreadPoolExecutor(4, thread_name_prefix="imagecore-s3")
        self._uploads = ThreadPoolExecutor(uploads, thread_name_prefix="imagecore-s3-put")
        self._handovers: set[_Handover] = set()

    @classmethod
    async def open(  # noqa: PLR0913 - the settings of one S3 connection
        cls,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        secure: bool = False,
        timeout: float = 10.0,  # noqa: ASYNC109 - the client's socket timeout, not open's deadline
        connect_timeout: float = 1.0,
        max_uploads: int = 16,
        scratch: Path | None = None,
    ) -> Self:
        """Connect to ``endpoint`` (``host:port``) and create ``bucket`` if it is missing.

        ``timeout`` bounds each wait for the server to answer, ``max_uploads``
        the puts that stream at once (more wait for a free thread), ``scratch``
        is where `local_copy` copies objects (the system's temporary folder by
        default). Raises
        `DependencyUnavailable` if the server does not answer or refuses.
        """
        pools = [
            _pool(connect_timeout, timeout, retries=2, size=max_uploads + 4),
            # The probe fails fast: one try, and an answer within /health's two seconds.
            _pool(connect_timeout, min(timeout, 1.5), retries=0, size=1),
        ]
        client, probe = (
            Minio(endpoint, access_key, secret_key, secure=secure, region=region, http_client=pool)
            for pool in pools
        )
        scratch = scratch or Path(tempfile.gettempdir())
        storage = cls(client, probe, pools, bucket, uploads=max_uploads, scratch=scratch)
        try:
            await storage._ensure_bucket()
        except BaseException:
            await storage.close()
            raise
        return storage

    async def _ensure_bucket(self) -> None:
        with _translated(f"bucket {self._bucket}", writing=True):
            if await self._call(self._client.bucket_exists, self._bucket):
                return
            try:
                await self._call(self._client.make_bucket, self._bucket)
            except S3Error as exc:
                if exc.code not in _CREATED:  # another process made it in between
                    raise

    async def close(self) -> None:
        """Stop the threads and drop pooled connections (idempotent)."""
        for handover in self._handovers:
            handover.fail()  # an upload thread waiting for bytes that will never come
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._uploads.shutdown(wait=True, cancel_futures=True)
        self._calls.shutdown(wait=True, cancel_futures=True)
        for pool in self._pools:
            pool.clear()

    def _submit(
        self,
        executor: ThreadPoolExecutor,
        call: Callable[_P, _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Future[_T]:
        try:
            return executor.submit(call, *args, **kwargs)
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown"
            raise DependencyUnavailable("the S3 storage is closed") from exc

    async def _call(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.wrap_future(self._submit(self._calls, call, *args, **kwargs))

    # ------------------------------------------------------------------ the port

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> StoredObject:
        handover = _Handover(asyncio.get_running_loop(), _HANDOVER_BYTES)
        started = self._submit(self._uploads, self._upload, key, handover, content_type)
        upload = asyncio.wrap_future(started)
        upload.add_done_callback(lambda _: handover.wake())
        self._handovers.add(handover)
        try:
            # The caller's stream stays outside the translation: its errors pass unchanged.
            async for chunk in chunks:
                if upload.done():
                    break  # the upload failed: its error is raised below
                await handover.feed(chunk, upload)
        except BaseException:
            handover.fail()
            if not started.cancel():
                # Let the SDK abort the multipart upload before the error goes on, so
                # that nothing is left behind; whatever the abort meets is dropped.
                await asyncio.wait([upload])
                upload.exception()
            raise
        finally:
            self._handovers.discard(handover)
        handover.end()
        with _translated(key, writing=True):
            etag = await upload
        return StoredObject(key, handover.size, etag, content_type)

    def _upload(self, key: str, handover: _Handover, content_type: str) -> str:
        # One part at a time: parallel parts would each hold 8 MiB more.
        result = self._client.put_object(
            self._bucket,
            key,
            handover,
            length=-1,
            part_size=PART_SIZE,
            content_type=content_type,
            num_parallel_uploads=1,
        )
        return str(result.etag).strip('"')

    async def stat(self, key: str) -> StoredObject:
        with _translated(key):
            found = await self._call(self._client.stat_object, self._bucket, key)
        etag, content_type = str(found.etag).strip('"'), str(found.content_type)
        return StoredObject(key, int(found.size), etag, content_type)

    async def get(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        response = await self._get_object(key)
        async with contextlib.aclosing(self._body(key, response, chunk_size)) as parts:
            async for part in parts:
                yield part

    async def fetch(
        self, key: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredObject, AsyncIterator[bytes]]:
        # One GET: its headers (S3 always sends these three) describe the very body it streams.
        response = await self._get_object(key)
        headers = response.headers
        etag, content_type = headers["ETag"].strip('"'), headers["Content-Type"]
        stored = StoredObject(key, int(headers["Content-Length"]), etag, content_type)
        return stored, self._body(key, response, chunk_size)

    async def _get_object(self, key: str) -> Any:  # noqa: ANN401 - urllib3's response
        opening = self._submit(self._calls, self._client.get_object, self._bucket, key)
        try:
            with _translated(key):
                return await asyncio.wrap_future(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_release_opened)  # it may still open: close it then
            raise

    async def _body(
        self,
        key: str,
        response: Any,  # noqa: ANN401 - urllib3's response
        chunk_size: int,
    ) -> AsyncGenerator[bytes, None]:
        """The body of an open GET, ``chunk_size`` at a time; the connection is given back after."""
        reading: Future[bytes] | None = None
        finished = False
        try:
            while True:
                reading = self._submit(self._calls, response.read, chunk_size)
                with _translated(key):
                    chunk = await asyncio.wrap_future(reading)
                if not chunk:
                    finished = True
                    return
                yield chunk
        finally:
            if reading is None or reading.done():
                _release(response, finished=finished)
            else:
                # Closed while a read was in flight: let it end before the connection goes.
                reading.add_done_callback(lambda _: _release(response, finished=False))

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        return copied(self.get, key, self._scratch)  # objects live on the S3 server

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        return await put_file(self.put, key, path, content_type)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), _translated(key):
            await self._call(self._client.remove_object, self._bucket, key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with (
            contextlib.suppress(ObjectNotFound),
            _translated(f"{keys[0]} and {len(keys) - 1} more"),
        ):
            errors = await self._call(self._remove_objects, keys)
        for error in errors:
            # A key's error is what `delete` would have met for it alone.
            with contextlib.suppress(ObjectNotFound), _translated(error.name or "(delete)"):
                raise _Refused(error)

    def _remove_objects(self, keys: Sequence[str]) -> list[DeleteError]:
        # S3's DeleteObjects: the SDK sends 1,000 keys a request (S3's limit), lazily, as
        # its iterator of errors is consumed; so it is consumed here, on the thread.
        return list(self._client.remove_objects(self._bucket, [DeleteObject(k) for k in keys]))

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def ping(self) -> None:
        with _translated(f"bucket {self._bucket}"):
            found = await self._call(self._probe.bucket_exists, self._bucket)
        if not found:
            raise DependencyUnavailable(f"S3 bucket {self._bucket!r} does not exist")


def _pool(connect: float, read: float, *, retries: int, size: int) -> urllib3.PoolManager:
    # A refused connect fails at once, so retrying it costs nothing. A read is retried at most
    # once (a pooled connection the server had closed), and only for idempotent methods.
    retry = urllib3.Retry(
        total=retries, connect=retries, read=min(retries, 1), status=0, other=0, backoff_factor=0.1
    )
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect, read=read), retries=retry, maxsize=size
    )


def _release_opened(opening: Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _release(opening.result(), finished=False)


def _release(response: Any, *, finished: bool) -> None:  # noqa: ANN401 - urllib3's response
    """Give the connection back: reusable if the body was read to its end, else closed."""
    if not finished:
        response.close()
    response.release_conn()
