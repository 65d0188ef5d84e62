"""What the hostile-client tests share: the service's settings, tokens, raw HTTP."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from typing import Any

import jwt

SECRET = "hostile-clients-secret-0123456789-0123456789"  # noqa: S105 - a test key
STREAMS_PER_USER = 3
STREAMS_PER_ADDRESS = 5
UPLOADS_PER_USER = 4
UPLOADS_PER_ADDRESS = 50
UPLOAD_IDLE_SECONDS = 2
UPLOAD_BODY_SECONDS = 15
#: The service's settings: small stream and upload caps, so that a test reaches them with a
#: handful of clients; short upload timeouts, so that a test sees them end; a known signing
#: secret, so that a test mints tokens of any shape; and no leeway on ``exp``, so that a
#: token expires when it says.
SETTINGS = {
    "JWT_SECRET": SECRET,
    "JWT_LEEWAY_SECONDS": "0",
    "MAX_EVENT_STREAMS_PER_USER": str(STREAMS_PER_USER),
    "MAX_EVENT_STREAMS_PER_ADDRESS": str(STREAMS_PER_ADDRESS),
    "MAX_UPLOADS_PER_USER": str(UPLOADS_PER_USER),
    "MAX_UPLOADS_PER_ADDRESS": str(UPLOADS_PER_ADDRESS),
    "UPLOAD_IDLE_TIMEOUT_SECONDS": str(UPLOAD_IDLE_SECONDS),
    "UPLOAD_BODY_TIMEOUT_SECONDS": str(UPLOAD_BODY_SECONDS),
    "WORKER_CONCURRENCY": "1",
}


_ADDRESSES = (f"127.0.0.{n}" for n in itertools.count(2))


def next_address() -> str:
    """A loopback address no other test connects from (all of 127.0.0.0/8 is this machine)."""
    return next(_ADDRESSES)


def bearer(user: str, *, seconds: float = 3600, **claims: Any) -> dict[str, str]:
    """An ``Authorization`` header for ``user``, valid for ``seconds``; ``claims`` override."""
    now = time.time()
    payload = {"sub": user, "iat": int(now), "exp": int(now + seconds), **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def call(
    base: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request on a new connection: status, headers, the JSON body (or {})."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("Content-Type", "")
        data = json.loads(raw) if kind.startswith("application/json") else {}
        return response.status, dict(response.getheaders()), data
    finally:
        connection.close()


def instruction(base: str, user: str, product: str = "images/thumbnail") -> str:
    body = json.dumps({"product_key": product}).encode()
    headers = {**bearer(user), "Content-Type": "application/json"}
    status, _, data = call(base, "POST", "/instructions", headers, body)
    assert status == 200, data
    return str(data["data"]["instruction"]["id"])
