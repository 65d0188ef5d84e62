"""Running the app on a socket, with unparsable requests answered in our words.

aiohttp answers a request it cannot parse (an oversized header, a bad request
line) before any middleware runs, with a text body that quotes the offending
bytes and an ERROR log line with a traceback. For an oversized
``Authorization`` header the quote is the start of a bearer token, and any
client can fill the log. `GuardedRunner` swaps in a connection handler whose
answer is the JSON envelope, naming the limit and quoting nothing, logged at
INFO in one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong

from entrypoints.http.middleware import envelope
from imagecore.errors import ValidationError

__all__ = ["GuardedRunner", "run"]

_log = logging.getLogger(__name__)


def _said(exc: BaseException | None) -> tuple[str, str]:
    """The code and the message for a request aiohttp could not parse."""
    if isinstance(exc, LineTooLong):
        return "header_too_large", "a request line or header is longer than the server accepts"
    if isinstance(exc, BadHttpMethod):
        return "bad_request", "the request method is not valid HTTP"
    return "bad_request", "the request is not valid HTTP"


class _GuardedRequestHandler(web.RequestHandler):
    """aiohttp's handler of one connection; only its answer to a broken request differs."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:  # noqa: PLR2004 - not a bad request
            return super().handle_error(request, status, exc, message)
        code, said = _said(exc)
        _log.info("unparsable request from %s: %s (%s)", request.remote, said, type(exc).__name__)
        errors = [{"code": code, "message": said, "request_id": None}]
        response = web.json_response(envelope(said, None, errors), status=status)
        response.force_close()
        return response


class _GuardedServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer a broken request in our words."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # the same object; only the handler it makes differs
        return server


def run(
    app: web.Application,
    *,
    host: str,
    port: int,
    loop: asyncio.AbstractEventLoop,
    listening: Callable[[str], object],
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut it down gracefully.

    ``listening`` is told the address once the socket is bound, so a taken
    port fails before anything says the service is up: with `ValidationError`.
    """
    runner = GuardedRunner(app, handle_signals=True, access_log=None)

    async def serve() -> None:
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ValidationError(f"cannot listen on {host}:{port}: {reason}") from exc
        listening(f"http://{host}:{port}")
        await asyncio.Event().wait()

    try:
        loop.run_until_complete(serve())
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
