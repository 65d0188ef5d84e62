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

from adapters import webhooks
from adapters.webhooks import WebhookSender, signature
from imagecore.errors import ValidationError

SECRET = "webhook-test-secret"  # noqa: S105 - a test key


@attrs.define
class Receiver:
    """A webhook endpoint on loopback that answers with the statuses it is given."""

    answers: list[int] = attrs.field(factory=list)
    calls: list[tuple[dict[str, str], bytes]] = attrs.field(factory=list)
    paths: list[tuple[str, str]] = attrs.field(factory=list)
    url: str = ""
    location: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append((request.path, request.method))
        self.calls.append((dict(request.headers), await request.read()))
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=self.answers.pop(0) if self.answers else 204, headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    app.router.add_route("*", "/inside", receiver.handle)  # where a redirect would lead
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
        assert status == 200
        instruction_id = body["data"]["instruction"]["id"]
        assert body["data"]["instruction"]["notify_url"] == receiver.url
        await api.upload(instruction_id, [("a.jpg", photo), ("b.jpg", photo[:5000])])
        await api.wait_final(instruction_id)
        for _ in range(100):
            if receiver.calls:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        files = {f["original_name"]: f for f in (await api.wait_final(instruction_id))}
    [(headers, raw)] = receiver.calls
    verify(headers, raw)
    assert headers["Imagecore-Delivery"] == f"{instruction_id}:2"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "imagecore-webhook/1"
    assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode()  # compact
    event = json.loads(raw)
    assert event["event"] == "instruction.finished"
    assert event["instruction"]["status"] == "DONE"
    sent = {f["original_name"]: f for f in event["files"]}
    for name, file in files.items():
        output = file["output"]["size"] if file["output"] else None
        expected = {"id": file["id"], "original_name": name, "status": file["status"]}
        error = file["error"] or {"code": None, "message": None}
        expected |= {"output_size": output, "error_code": error["code"]}
        expected["error_message"] = error["message"]
        assert sent[name] == expected
    assert sent["a.jpg"]["output_size"] > 0
    assert sent["b.jpg"]["error_code"]


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


async def test_a_delivery_waits_twice_as_long_before_each_new_attempt(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.answers = [500] * 10
    waits: list[float] = []

    async def noted(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(webhooks.asyncio, "sleep", noted)
    sender = WebhookSender(SECRET, allow_private=True, attempts=4, first_delay=0.5)
    try:
        assert not await sender.deliver(receiver.url, b"{}", "id:1")
    finally:
        await sender.close()
    assert waits == [0.5, 1.0, 2.0]  # none after the last attempt
    assert len(receiver.calls) == 4


@pytest.mark.parametrize(("answer", "delivered"), [(200, True), (299, True), (300, False)])
async def test_only_a_2xx_answer_is_a_delivery(
    receiver: Receiver, answer: int, *, delivered: bool
) -> None:
    receiver.answers = [answer]
    sender = WebhookSender(SECRET, allow_private=True, attempts=1)
    try:
        assert await sender.deliver(receiver.url, b"{}", "id:1") is delivered
    finally:
        await sender.close()


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    # A public receiver could otherwise point the POST at a private address.
    receiver.answers = [302]
    receiver.location = receiver.url.replace("/hook", "/inside")
    sender = WebhookSender(SECRET, allow_private=True, attempts=1)
    try:
        assert not await sender.deliver(receiver.url, b"{}", "id:1")
    finally:
        await sender.close()
    assert [path for path, _ in receiver.paths] == ["/hook"]


async def test_a_name_that_does_not_resolve_now_is_retried(receiver: Receiver) -> None:
    answers: list[list[str] | None] = [None, ["127.0.0.1"]]

    async def flaky(host: str, port: int) -> list[str]:
        if (answer := answers.pop(0)) is None:
            raise OSError(f"{host}:{port} does not resolve")
        return answer

    sender = WebhookSender(SECRET, allow_private=True, first_delay=0.01, resolver=flaky)
    try:
        assert await sender.deliver(named(receiver.url), b"{}", "id:1")
    finally:
        await sender.close()
    assert answers == []
    assert len(receiver.calls) == 1


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


def named(url: str, host: str = "hooks.test") -> str:
    """``url`` with its host given as a name, so that the sender must resolve it."""
    return url.replace("127.0.0.1", host)


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
        assert not await sender.deliver(named(receiver.url), b"{}", "id:1")
    finally:
        await sender.close()
    assert resolver.asked == ["hooks.test"]  # refused at once, not retried
    assert receiver.calls == []


async def test_the_post_goes_to_the_addresses_the_resolver_gave(receiver: Receiver) -> None:
    # No system resolver knows hooks.test: only the sender's own answer can reach the receiver.
    resolver = FakeResolver(["127.0.0.1"])
    sender = WebhookSender(SECRET, allow_private=True, first_delay=0.01, resolver=resolver)
    try:
        assert await sender.deliver(named(receiver.url), b'{"x":1}', "id:1")
    finally:
        await sender.close()
    assert resolver.asked == ["hooks.test"]
    [(headers, raw)] = receiver.calls
    assert headers["Host"].startswith("hooks.test:")
    verify(headers, raw)


async def test_a_name_rebound_to_loopback_after_its_check_is_not_reached(
    receiver: Receiver,
) -> None:
    # "localhost" is loopback to the system; the resolver says public, then loopback. A
    # sender that checked one answer and let the connection resolve again would reach the
    # receiver.
    answers = [["93.184.215.14"], ["127.0.0.1"]]

    async def rebinding(host: str, _port: int) -> list[str]:
        del host
        return answers.pop(0)

    sender = WebhookSender(SECRET, attempts=2, first_delay=0.01, timeout=0.5, resolver=rebinding)
    try:
        assert not await sender.deliver(named(receiver.url, "localhost"), b"{}", "id:1")
    finally:
        await sender.close()
    assert answers == []
    assert receiver.calls == []


@pytest.mark.parametrize(
    ("url", "answer", "refusal"),
    [
        ("http://127.0.0.1:9/hook", None, "private"),
        ("http://[::1]/hook", None, "private"),
        ("https://hooks.test/hook", ["93.184.215.14", "10.0.0.7"], "private"),
        ("https://hooks.test/hook", OSError("no such name"), "does not resolve"),
        ("https://hooks.test/hook", [], "does not resolve"),
    ],
)
async def test_a_webhook_no_delivery_could_reach_is_refused_at_creation(
    url: str, answer: list[str] | OSError | None, refusal: str
) -> None:
    async def resolver(_host: str, _port: int) -> list[str]:
        if isinstance(answer, OSError):
            raise answer
        return answer or []

    sender = WebhookSender(SECRET, resolver=resolver)
    with pytest.raises(ValidationError, match=refusal) as caught:
        await sender.check(url)
    assert "notify_url" in caught.value.message


async def test_a_webhook_to_a_public_name_is_accepted_at_creation() -> None:
    resolver = FakeResolver(["93.184.215.14"])
    await WebhookSender(SECRET, resolver=resolver).check("https://hooks.test/hook")
    assert resolver.asked == ["hooks.test"]


async def test_a_private_notify_url_is_a_400_at_creation(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        status, body = await api.call(
            "POST",
            "/instructions",
            json={"product_key": "images/thumbnail", "notify_url": "http://10.1.2.3/hook"},
        )
        listed = await api.call("GET", "/instructions")
    assert status == 400
    assert "notify_url" in body["message"]
    assert listed[1]["data"]["instructions"] == []


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
