"""Webhooks: one signed POST when an instruction finishes, retried, never to private addresses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from http_support import running_api

from entrypoints.webhooks import WebhookSender, signature

SECRET = "webhook-test-secret"  # noqa: S105 - a test key


@attrs.define
class Receiver:
    """A webhook endpoint on loopback that answers with the statuses it is given."""

    answers: list[int] = attrs.field(factory=list)
    calls: list[tuple[dict[str, str], bytes]] = attrs.field(factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        return web.Response(status=self.answers.pop(0) if self.answers else 204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url("/hook"))
    yield receiver
    await server.close()


def verify(headers: dict[str, str], body: bytes) -> None:
    """Check the signature as a receiver would, from the documented recipe alone."""
    fields = dict(part.split("=", 1) for part in headers["Imagecore-Signature"].split(","))
    assert set(fields) == {"t", "v1"}
    signed = fields["t"].encode() + b"." + body  # the time is signed: a replay shows
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)


def test_the_signature_covers_the_time_as_well_as_the_body() -> None:
    body = b'{"event":"instruction.finished"}'
    assert signature(SECRET, 1_700_000_000, body) != signature(SECRET, 1_700_000_001, body)
    assert signature(SECRET, 1_700_000_000, body) != signature(SECRET, 1_700_000_000, body + b" ")
    assert signature(SECRET, 1_700_000_000, body) != signature("another", 1_700_000_000, body)


async def test_a_finished_instruction_posts_one_signed_webhook(
    tmp_path: Path, corpus: Path, receiver: Receiver
) -> None:
    photo = (corpus / "photos" / "kite-2560x1600.jpg").read_bytes()
    async with running_api(tmp_path, webhook_secret=SECRET, webhook_allow_private=True) as api:
        status, body = await api.call(
            "POST",
            "/instructions",
            json={"product_key": "images/thumbnail", "notify_url": receiver.url},
        )
        assert status == 201
        instruction_id = body["data"]["instruction"]["id"]
        assert body["data"]["instruction"]["notify_url"] == receiver.url
        await api.upload(instruction_id, [("a.jpg", photo), ("b.jpg", photo[:5000])])
        await api.wait_final(instruction_id)
        for _ in range(100):
            if receiver.calls:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    [(headers, raw)] = receiver.calls
    verify(headers, raw)
    assert headers["Imagecore-Delivery"] == f"{instruction_id}:2"
    event = json.loads(raw)
    assert event["event"] == "instruction.finished"
    assert event["instruction"]["status"] == "DONE"
    assert sorted(f["status"] for f in event["files"]) == ["DONE", "FAILED"]


async def test_a_failed_delivery_is_retried_until_it_succeeds(receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    sender = WebhookSender(SECRET, allow_private=True, first_delay=0.01)
    try:
        assert await sender.deliver(receiver.url, b'{"x":1}', "id:1")
    finally:
        await sender.close()
    assert len(receiver.calls) == 3
    for headers, raw in receiver.calls:
        verify(headers, raw)


async def test_a_delivery_gives_up_after_its_attempts(receiver: Receiver) -> None:
    receiver.answers = [500] * 10
    sender = WebhookSender(SECRET, allow_private=True, attempts=3, first_delay=0.01)
    try:
        assert not await sender.deliver(receiver.url, b"{}", "id:1")
    finally:
        await sender.close()
    assert len(receiver.calls) == 3


async def test_private_addresses_are_refused_by_default(receiver: Receiver) -> None:
    sender = WebhookSender(SECRET, first_delay=0.01)
    try:
        assert not await sender.deliver(receiver.url, b"{}", "id:1")
        assert not await sender.deliver("http://10.1.2.3/hook", b"{}", "id:2")
    finally:
        await sender.close()
    assert receiver.calls == []


@attrs.define
class FakeResolver:
    """Answers every name with the same addresses, and notes the names it is asked."""

    addresses: list[str]
    asked: list[str] = attrs.field(factory=list)

    async def __call__(self, host: str, _port: int) -> list[str]:
        self.asked.append(host)
        return self.addresses


@pytest.mark.parametrize(
    "addresses",
    [
        ("93.184.215.14", "10.0.0.7"),
        ("93.184.215.14", "127.0.0.1"),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", "fd00::1"),
        ("169.254.169.254",),
    ],
)
async def test_a_name_resolving_to_any_private_address_is_refused(
    receiver: Receiver, addresses: tuple[str, ...]
) -> None:
    resolver = FakeResolver(list(addresses))
    sender = WebhookSender(SECRET, first_delay=0.01, resolver=resolver)
    try:
        assert not await sender.deliver(receiver.url, b"{}", "id:1")
    finally:
        await sender.close()
    assert resolver.asked == ["127.0.0.1"]
    assert receiver.calls == []


async def test_a_name_resolving_only_to_public_addresses_is_delivered(receiver: Receiver) -> None:
    # The receiver listens on loopback; the resolver says the name is public.
    resolver = FakeResolver(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    sender = WebhookSender(SECRET, first_delay=0.01, resolver=resolver)
    try:
        assert await sender.deliver(receiver.url, b'{"x":1}', "id:1")
    finally:
        await sender.close()
    [(headers, raw)] = receiver.calls
    verify(headers, raw)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http://user:pw@example.com/", "example.com/hook", "http:// x"]
)
async def test_a_bad_notify_url_is_a_400(tmp_path: Path, url: str) -> None:
    async with running_api(tmp_path) as api:
        status, body = await api.call(
            "POST", "/instructions", json={"product_key": "images/thumbnail", "notify_url": url}
        )
    assert status == 400
    assert "notify_url" in body["message"]
