"""Rate limits, stream caps, the bound on queued work, and ownership under random ids."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from http_support import Api, running_api

from entrypoints.http.ratelimit import RateLimiter
from entrypoints.http.streams import StreamSlots
from hostile import valid
from imagecore.model import InstructionDetail
from imagecore.products import find_product


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(user_per_minute=60, address_per_minute=6, clock=clock)
    assert all(limiter.check("address", "10.0.0.1").allowed for _ in range(6))
    refused = limiter.check("address", "10.0.0.1")
    assert not refused.allowed
    assert refused.reset_seconds == 10
    assert limiter.check("address", "10.0.0.2").allowed
    clock.now += 10
    assert limiter.check("address", "10.0.0.1").allowed
    assert not limiter.check("address", "10.0.0.1").allowed


def test_signed_in_users_get_the_larger_bucket() -> None:
    limiter = RateLimiter(user_per_minute=60, address_per_minute=6, clock=FakeClock())
    assert sum(limiter.check("user", "alice").allowed for _ in range(100)) == 60


def test_the_limiter_forgets_the_oldest_keys_past_its_bound() -> None:
    limiter = RateLimiter(user_per_minute=60, address_per_minute=1, max_keys=100, clock=FakeClock())
    for n in range(1000):
        limiter.check("address", f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._buckets) == 100


async def test_past_the_limit_the_api_answers_429_with_retry_after(tmp_path: Path) -> None:
    async with running_api(
        tmp_path, rate_limit_user_per_minute=5, rate_limit_address_per_minute=3
    ) as api:
        statuses = [(await api.call("GET", "/instructions"))[0] for _ in range(7)]
        assert statuses == [200] * 5 + [429] * 2
        async with api.session.get(api.base + "/instructions", headers=api.token("alice")) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["RateLimit-Limit"] == "5"
            assert r.headers["RateLimit-Remaining"] == "0"
            assert (await r.json())["errors"][0]["code"] == "rate_limited"
        assert (await api.call("GET", "/instructions", user="bob"))[0] == 200
        anonymous = [(await api.call("GET", "/products", user=None))[0] for _ in range(4)]
        assert anonymous == [200] * 3 + [429]
        assert (await api.call("GET", "/health", user=None))[0] == 200


@pytest.mark.parametrize("trusted", [True, False])
async def test_a_trusted_gateways_anonymous_clients_do_not_share_one_address_bucket(
    tmp_path: Path, trusted: bool
) -> None:
    settings = {"trust_gateway_headers": trusted, "trusted_proxies": ("127.0.0.1",)}
    async with running_api(tmp_path, rate_limit_address_per_minute=3, **settings) as api:
        anonymous = [(await api.call("GET", "/products", user=None))[0] for _ in range(5)]
    assert anonymous == ([200] * 5 if trusted else [200] * 3 + [429] * 2)


async def test_uploads_are_refused_while_too_much_work_waits(tmp_path: Path, corpus: Path) -> None:
    photo = (corpus / "photos" / "kite-2560x1600.jpg").read_bytes()
    async with running_api(tmp_path, max_queued_files=1) as api:
        worker = api.worker
        await worker.stop()  # nothing drains the queue now
        instruction_id = await api.instruction("images/thumbnail", {})
        first, _ = await api.upload(instruction_id, [("a.jpg", photo)])
        assert first == 200
        status, body = await api.upload(instruction_id, [("b.jpg", photo)])
        assert status == 503
        assert body["errors"][0]["code"] == "service_busy"


async def test_thousands_of_foreign_and_random_ids_find_nothing(
    tmp_path: Path, corpus: Path
) -> None:
    photo = (corpus / "photos" / "kite-2560x1600.jpg").read_bytes()
    rng = random.Random(20261124)
    async with running_api(tmp_path, rate_limit_user_per_minute=0) as api:
        owned: list[tuple[str, str]] = []
        for user in ("alice", "bob"):
            instruction_id = await api.instruction("images/thumbnail", {}, user=user)
            _, body = await api.upload(instruction_id, [("kite.jpg", photo)], user=user)
            owned.append((instruction_id, body["data"]["files"][0]["id"]))
        candidates = [*owned[0], *owned[1]]

        def an_id() -> str:
            kind = rng.randrange(4)
            if kind == 0:
                return rng.choice(candidates)
            if kind == 1:
                return "".join(rng.choice("0123456789abcdef") for _ in range(24))
            if kind == 2:
                return rng.choice(
                    ["..%2fetc", "%00", "0" * 25, "ZZZZZZZZZZZZZZZZZZZZZZZZ", "' OR 1=1"]
                )
            return rng.choice(candidates).upper()

        attempts = successes = 0
        for _ in range(2000):
            instruction_id, detail_id = an_id(), an_id()
            path = rng.choice(
                [
                    f"/instructions/{instruction_id}",
                    f"/instructions/{instruction_id}/details",
                    f"/instructions/{instruction_id}/details/{detail_id}",
                    f"/instructions/{instruction_id}/details/{detail_id}/file?variant=original",
                ]
            )
            status, _ = await api.call("GET", path, user="mallory")
            attempts += 1
            successes += status < 400
            assert status in {404, 400}, path
        assert (attempts, successes) == (2000, 0)
        _, listing = await api.call("GET", "/instructions?size=100", user="mallory")
        assert listing["data"]["instructions"] == []


async def test_a_request_partly_over_the_file_limit_stores_what_fits_and_names_the_refused(
    tmp_path: Path,
) -> None:
    image = valid("jpeg")
    limit = find_product("images/thumbnail").limits.max_files_per_instruction
    async with running_api(tmp_path) as api:
        await api.worker.stop()  # the files only wait: this is about storing them
        instruction_id = await api.instruction("images/thumbnail", {})
        status, _ = await api.upload(instruction_id, [("first.jpg", image)] * (limit - 2))
        assert status == 200
        files = [("fits-1.jpg", image), ("fits-2.jpg", image), ("over.jpg", image)]
        status, body = await api.upload(instruction_id, [*files, ("never-read.jpg", image)])
        assert status == 200, body
        stored = [f["original_name"] for f in body["data"]["files"]]
        assert stored == ["fits-1.jpg", "fits-2.jpg"]
        assert [(r["name"], r["code"]) for r in body["data"]["refused"]] == [
            ("over.jpg", "too_many_files")
        ]
        assert "not read" in body["message"]
        assert len(await api.repo.list_details(instruction_id)) == limit
        assert len(api.storage.stored_keys()) == limit
        # A file that is no image stops the request the same way.
        other = await api.instruction("images/thumbnail", {})
        status, body = await api.upload(other, [("a.jpg", image), ("text.jpg", b"plain text")])
        assert status == 200, body
        assert body["data"]["refused"][0]["code"] == "unsupported_media_type"
        # A request that stores nothing is an error, with its first file's reason.
        status, body = await api.upload(instruction_id, [("late.jpg", image)])
        assert (status, body["errors"][0]["code"]) == (413, "too_many_files")


def test_stream_slots_are_capped_per_user_and_per_address_and_given_back() -> None:
    slots = StreamSlots(per_user=2, per_address=3)
    assert slots.take("alice", "10.0.0.1") is None
    assert slots.take("alice", "10.0.0.2") is None
    assert slots.take("alice", "10.0.0.3") == (
        "2 event streams are open for this user already; close one first"
    )
    assert slots.take("bob", "10.0.0.1") is None
    assert slots.take("carol", "10.0.0.1") is None
    assert slots.take("dave", "10.0.0.1") == (
        "3 event streams are open for this address already; close one first"
    )
    assert slots.take("dave", None) is None  # a trusted gateway's address is not counted
    slots.give_back("alice", "10.0.0.1")
    assert slots.take("alice", "10.0.0.1") is None
    assert slots.take("erin", "10.0.0.1") is not None


def test_a_stream_cap_of_zero_is_no_cap() -> None:
    slots = StreamSlots(per_user=0, per_address=0)
    assert all(slots.take("alice", "10.0.0.1") is None for _ in range(1000))


@pytest.mark.parametrize("trusted", [False, True])
async def test_a_trusted_gateways_address_is_not_capped_as_one_client(
    tmp_path: Path, trusted: bool
) -> None:
    settings = {"trust_gateway_headers": trusted, "trusted_proxies": ("127.0.0.1",)}
    async with (
        running_api(tmp_path, max_event_streams_per_address=1, **settings) as api,
        contextlib.AsyncExitStack() as streams,
    ):

        async def stream(user: str) -> int:
            get = api.session.get(api.base + "/events", headers=api.token(user))
            return (await streams.enter_async_context(get)).status

        assert await stream("alice") == 200
        assert await stream("bob") == (200 if trusted else 429)


def test_upload_slots_name_uploads() -> None:
    slots = StreamSlots(per_user=1, per_address=0, what="uploads")
    assert slots.take("alice", "10.0.0.1") is None
    assert slots.take("alice", "10.0.0.1") == (
        "1 uploads are open for this user already; close one first"
    )


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _stalled_upload(api: Api, instruction_id: str, user: str) -> Connection:
    """An upload that sent its headers and a file's first bytes, then nothing."""
    host, port = api.base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /instructions/{instruction_id}/details HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {api.token(user)['Authorization']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'.encode()
        + valid("png")[:100]
    )
    await writer.drain()
    return reader, writer


async def _answer(connection: Connection) -> tuple[int, dict[str, Any]]:
    reader, writer = connection
    async with asyncio.timeout(30):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(head.lower().split("content-length:")[1].split()[0])
        body = await reader.readexactly(length)
    writer.close()
    return int(head.split()[1]), json.loads(body)


async def test_a_stalled_upload_ends_with_408_and_stores_nothing(tmp_path: Path) -> None:
    async with running_api(tmp_path, upload_idle_timeout_seconds=0.2) as api:
        instruction_id = await api.instruction("images/thumbnail", {})
        status, body = await _answer(await _stalled_upload(api, instruction_id, "alice"))
        assert status == 408
        assert body["errors"][0]["code"] == "upload_timeout"
        assert "no byte for 0.2 s" in body["message"]
        assert not await api.repo.list_details(instruction_id)
        assert not api.storage.stored_keys()


async def test_a_dawdling_upload_ends_with_408_at_the_body_timeout(tmp_path: Path) -> None:
    settings = {"upload_idle_timeout_seconds": 5.0, "upload_body_timeout_seconds": 0.5}
    async with running_api(tmp_path, **settings) as api:
        instruction_id = await api.instruction("images/thumbnail", {})
        connection = await _stalled_upload(api, instruction_id, "alice")
        answer = asyncio.create_task(_answer(connection))
        for _ in range(100):  # a byte every 0.1 s: never idle, never done
            if answer.done():
                break
            connection[1].write(b"y")
            await asyncio.sleep(0.1)
        status, body = await answer
        assert status == 408
        assert "took more than 0.5 s" in body["message"]
        assert not api.storage.stored_keys()


async def test_the_body_timeout_never_cuts_off_the_recording_of_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path
) -> None:
    # The body arrives at once; recording it takes longer than the body may. Cut off there,
    # the record could land after the original was deleted (a file with no original).
    # A small body sent at once arrives well within ``body`` seconds, even on a busy machine;
    # the record step then outlasts the deadline by a whole second.
    body = 2.0
    settings = {"upload_idle_timeout_seconds": 5.0, "upload_body_timeout_seconds": body}
    async with running_api(tmp_path, **settings) as api:
        instruction_id = await api.instruction("images/thumbnail", {})
        add_detail = api.repo.add_detail

        async def slow_add_detail(detail: InstructionDetail, **kwargs: Any) -> None:
            await asyncio.sleep(body + 1.0)
            await add_detail(detail, **kwargs)

        monkeypatch.setattr(api.repo, "add_detail", slow_add_detail)
        photo = (corpus / "edge" / "hopper_orientation_3.jpg").read_bytes()
        status, body = await api.upload(instruction_id, [("hopper.jpg", photo)])
        assert status == 200, body
        [stored] = await api.repo.list_details(instruction_id)
        assert await api.storage.stat(stored.original_key)


async def test_uploads_past_a_users_cap_get_429_and_ended_ones_give_their_place_back(
    tmp_path: Path,
) -> None:
    settings = {"max_uploads_per_user": 2, "upload_idle_timeout_seconds": 1.0}
    async with running_api(tmp_path, **settings) as api:
        mine = await api.instruction("images/thumbnail", {})
        theirs = await api.instruction("images/thumbnail", {}, user="bob")
        stalled = [await _stalled_upload(api, mine, "alice") for _ in range(2)]
        await asyncio.sleep(0.2)
        status, body = await api.upload(mine, [("a.png", valid("png"))])
        assert status == 429, body
        assert body["errors"][0]["code"] == "too_many_uploads"
        assert (await api.upload(theirs, [("b.png", valid("png"))], user="bob"))[0] == 200
        assert [(await _answer(w))[0] for w in stalled] == [408, 408]
        assert (await api.upload(mine, [("a.png", valid("png"))]))[0] == 200
