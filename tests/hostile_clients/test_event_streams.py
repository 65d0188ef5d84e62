"""Issue 27, finding 3: event streams are capped per user and per address, and end at ``exp``.

Before the fix, one user opened 500 ``GET /events`` streams, all 200 (only
the request rate limit applied), and a stream outlived its token's expiry.
The service here allows `STREAMS_PER_USER` per user and
`STREAMS_PER_ADDRESS` per client address (`client_support.SETTINGS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import attrs
import pytest
from client_support import (
    STREAMS_PER_ADDRESS,
    STREAMS_PER_USER,
    bearer,
    instruction,
    next_address,
)

from integration.service_support import Served

pytestmark = pytest.mark.hostile_clients

#: The longest a closed stream may keep its place: the service looks every second.
RELEASED_WITHIN = 10.0


@attrs.define
class Client:
    """Streams opened from one loopback address, each on its own connection."""

    session: aiohttp.ClientSession
    opened: list[aiohttp.ClientResponse] = attrs.field(factory=list)

    async def stream(
        self, user: str | dict[str, str], path: str = "/events"
    ) -> aiohttp.ClientResponse:
        """``user``'s stream (or one with these headers); a 200 has sent its first line."""
        headers = bearer(user) if isinstance(user, str) else user
        response = await self.session.get(path, headers=headers)
        self.opened.append(response)
        if response.status == 200:
            async with asyncio.timeout(10):
                assert (await response.content.readline()).startswith(b"retry:")
        return response


@contextlib.asynccontextmanager
async def client(served: Served) -> AsyncIterator[Client]:
    connector = aiohttp.TCPConnector(local_addr=(next_address(), 0), force_close=True, limit=0)
    async with aiohttp.ClientSession(served.base, connector=connector) as session:
        opened = Client(session)
        try:
            yield opened
        finally:
            for response in opened.opened:
                response.close()


async def refused(response: aiohttp.ClientResponse, cap: str) -> None:
    assert response.status == 429, response.status  # not the body: a 200 is endless
    body = await response.json()
    assert int(response.headers["Retry-After"]) >= 1
    assert body["errors"][0]["code"] == "too_many_streams"
    assert f"for this {cap}" in body["message"]


async def test_a_user_past_the_cap_gets_429_and_others_are_not_starved(served: Served) -> None:
    async with client(served) as mallory:
        streams = [await mallory.stream("ursula") for _ in range(STREAMS_PER_USER)]
        assert [s.status for s in streams] == [200] * STREAMS_PER_USER
        # Both routes count: one more of either is refused.
        instruction_id = instruction(served.base, "ursula")
        for path in ("/events", f"/instructions/{instruction_id}/events"):
            await refused(await mallory.stream("ursula", path), "user")
        assert (await mallory.stream("victor")).status == 200


async def test_a_closed_stream_frees_its_place(served: Served) -> None:
    async with client(served) as wendy:
        streams = [await wendy.stream("wendy") for _ in range(STREAMS_PER_USER)]
        await refused(await wendy.stream("wendy"), "user")
        streams[0].close()  # the client goes away without a word
        deadline = time.monotonic() + RELEASED_WITHIN
        while (again := await wendy.stream("wendy")).status != 200:
            await refused(again, "user")
            assert time.monotonic() < deadline, "a closed stream still holds its place"
            await asyncio.sleep(0.2)


async def test_an_address_past_its_cap_gets_429_whoever_signs_in(served: Served) -> None:
    async with client(served) as crowd:
        users = [f"crowd-{n}" for n in range(STREAMS_PER_ADDRESS)]
        streams = [await crowd.stream(user) for user in users]
        assert [s.status for s in streams] == [200] * STREAMS_PER_ADDRESS
        await refused(await crowd.stream("one-more"), "address")
        async with client(served) as elsewhere:
            assert (await elsewhere.stream("one-more")).status == 200


async def test_a_stream_ends_when_its_token_expires(served: Served) -> None:
    token = bearer("yvonne", seconds=3)
    async with client(served) as yvonne:
        started = time.monotonic()
        stream = await yvonne.stream(token)
        assert stream.status == 200
        async with asyncio.timeout(20):  # before the fix: still open after 50 s
            lines = [line async for line in stream.content]
        lasted = time.monotonic() - started
        assert 1.5 < lasted < 10, lasted
        assert b"the token has expired" in b"".join(lines)
        again = await yvonne.stream(token)
        assert again.status == 401
        assert "expired" in (await again.json())["message"]
