"""Live progress over Server-Sent Events, on the in-memory app of http_support."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from http_support import Api, running_api

from entrypoints.http import events
from entrypoints.http.context import RUNTIME
from imagecore.model import Status
from imagecore.processing import notification_for


@attrs.frozen
class Event:
    """One SSE frame: an event, or a comment (a heartbeat) when ``comment`` is set."""

    id: str = ""
    name: str = ""
    data: dict[str, Any] = attrs.field(factory=dict)
    comment: str = ""


class Stream:
    """Reads SSE frames off one open response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def frame(self, seconds: float = 30) -> Event | None:
        """The next event or comment, or None at the end of the stream."""
        fields: dict[str, str] = {}
        comment = ""
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), seconds)
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if line:
                if line.startswith(":"):
                    comment = line[1:].strip()
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                return Event(
                    fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])
                )
            if comment:
                return Event(comment=comment)
            fields, comment = {}, ""  # a frame without data (retry:) carries no event

    async def events_until(self, done: Any, seconds: float = 60) -> list[Event]:
        """Events (heartbeats skipped) until ``done(events)`` holds."""
        seen: list[Event] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while not done(seen):
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, seen
            frame = await self.frame(left)
            assert frame is not None, f"the stream ended after {seen}"
            if not frame.comment:
                seen.append(frame)
        return seen


@contextlib.asynccontextmanager
async def stream(
    api: Api, path: str, user: str = "alice", last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    headers = {**api.token(user), "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with api.session.get(api.base + path, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield Stream(response)


def statuses_of(seen: list[Event], detail_id: str) -> list[str]:
    return [e.data["status"] for e in seen if e.data["instruction_detail_id"] == detail_id]


def final(detail_id: str) -> Any:
    return lambda seen: any(s in {"DONE", "FAILED"} for s in statuses_of(seen, detail_id))


def wire(notification: Any) -> dict[str, Any]:
    """The JSON of a notification as the broker publishes it."""
    return {**notification.to_dict(), "status": notification.status.value}


async def changed_at(api: Api, detail_id: str, moment: datetime) -> None:
    """Rewrite a final file's record as if it had last changed at ``moment``."""
    stored = await api.repo.get_detail(detail_id)
    moved = attrs.evolve(stored, updated_at=moment, finished_at=moment, version=stored.version + 1)
    assert await api.repo.update_detail(moved)


def millisecond(moment: datetime) -> str:
    """The event id of a change at ``moment``."""
    return str(int(moment.timestamp() * 1000))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as api:
        yield api


async def test_an_upload_streams_processing_then_done_with_the_notification_json(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/resize", {"width": 320})
    async with stream(api, f"/instructions/{instruction_id}/events") as events_:
        _, body = await api.upload(instruction_id, [("kite.jpg", kite)])
        detail_id = body["data"]["files"][0]["id"]
        seen = await events_.events_until(final(detail_id))
    assert statuses_of(seen, detail_id)[-2:] == ["PROCESSING", "DONE"]
    done = seen[-1]
    assert done.name == "status"
    stored = await api.repo.get_detail(detail_id)
    assert done.data == wire(notification_for(stored))
    assert {"user_id", "instruction_id", "instruction_detail_id", "status"} <= set(done.data)
    assert done.data["user_id"] == "alice"
    assert done.data["instruction_id"] == instruction_id
    assert stored.output is not None
    assert done.data["output_size"] == stored.output.size
    assert done.data["error_code"] is None
    assert int(done.id) == int(stored.updated_at.timestamp() * 1000)


async def test_a_failed_file_streams_its_reason(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    async with stream(api, f"/instructions/{instruction_id}/events") as events_:
        _, body = await api.upload(instruction_id, [("half.jpg", kite[: len(kite) // 3])])
        detail_id = body["data"]["files"][0]["id"]
        seen = await events_.events_until(final(detail_id))
    failed = seen[-1].data
    assert failed["status"] == "FAILED"
    assert failed["error_code"]
    assert failed["error_message"]
    assert failed["output_size"] is None


async def test_a_new_stream_starts_with_where_every_file_stands(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("a.jpg", kite), ("b.jpg", kite)])
    files = await api.wait_final(instruction_id)
    async with stream(api, f"/instructions/{instruction_id}/events") as events_:
        seen = await events_.events_until(lambda seen: len(seen) == 2)
    assert {e.data["instruction_detail_id"] for e in seen} == {f["id"] for f in files}
    assert [e.data["status"] for e in seen] == ["DONE", "DONE"]
    assert [int(e.id) for e in seen] == sorted(int(e.id) for e in seen)


async def test_reconnecting_with_last_event_id_replays_what_changed_since_and_nothing_older(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    path = f"/instructions/{instruction_id}/events"
    await api.upload(instruction_id, [("first.jpg", kite)])
    [first] = await api.wait_final(instruction_id)
    await api.upload(instruction_id, [("second.jpg", kite)])
    second = (await api.wait_final(instruction_id))[1]
    # The first changed a second before the second, whatever the clock did meanwhile.
    latest = (await api.repo.get_detail(second["id"])).updated_at
    await changed_at(api, first["id"], latest - timedelta(seconds=1))
    async with stream(api, path) as events_:
        seen = await events_.events_until(lambda seen: len(seen) == 2)
    last_id = seen[-1].id
    assert seen[-1].data["instruction_detail_id"] == second["id"]

    # While the client is away, a third file is processed.
    await api.upload(instruction_id, [("third.jpg", kite)])
    third = (await api.wait_final(instruction_id))[2]

    async with stream(api, path, last_event_id=last_id) as events_:
        replay = await events_.events_until(final(third["id"]))
    replayed = {e.data["instruction_detail_id"] for e in replay}
    assert first["id"] not in replayed  # older than Last-Event-ID: not sent again
    assert third["id"] in replayed
    assert replayed <= {second["id"], third["id"]}  # the boundary millisecond may repeat
    assert all(int(e.id) >= int(last_id) for e in replay)


async def test_a_change_in_the_millisecond_of_last_event_id_is_replayed(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("a.jpg", kite), ("b.jpg", kite), ("c.jpg", kite)])
    seen, same, older = await api.wait_final(instruction_id)
    moment = (await api.repo.get_detail(seen["id"])).updated_at.replace(microsecond=250_000)
    # The client saw ``seen``; ``same`` changed 0.5 ms later, in the same millisecond.
    await changed_at(api, seen["id"], moment)
    await changed_at(api, same["id"], moment + timedelta(microseconds=500))
    await changed_at(api, older["id"], moment - timedelta(milliseconds=1))
    path = f"/instructions/{instruction_id}/events"
    async with stream(api, path, last_event_id=millisecond(moment)) as events_:
        # A live event after the replay marks its end.
        marker = notification_for(await api.repo.get_detail(older["id"]))
        await api.app[RUNTIME].broker.publish_notification(marker)
        *replay, last = await events_.events_until(
            lambda got: any(e.data["instruction_detail_id"] == older["id"] for e in got)
        )
    assert last.data == wire(marker)
    assert {e.data["instruction_detail_id"] for e in replay} == {seen["id"], same["id"]}
    assert [e.id for e in replay] == [millisecond(moment)] * 2


async def test_the_user_stream_replays_across_instructions_only_with_last_event_id(
    api: Api, kite: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT", 0.05)
    one = await api.instruction("images/thumbnail", {})
    two = await api.instruction("images/thumbnail", {})
    await api.upload(one, [("one.jpg", kite)])
    await api.upload(two, [("two.jpg", kite)])
    await api.wait_final(one)
    await api.wait_final(two)
    async with stream(api, "/events", last_event_id="0") as events_:
        seen = await events_.events_until(lambda seen: len(seen) == 2)
    assert {e.data["instruction_id"] for e in seen} == {one, two}
    async with stream(api, "/events") as events_:
        frames = [await events_.frame(5) for _ in range(3)]
    assert all(f is not None and f.comment == "heartbeat" for f in frames), frames


async def test_another_users_instruction_answers_404_and_never_leaks_on_their_stream(
    api: Api, kite: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT", 0.05)
    instruction_id = await api.instruction("images/thumbnail", {})
    theirs = await api.call("GET", f"/instructions/{instruction_id}/events", user="mallory")
    missing = await api.call("GET", f"/instructions/{'f' * 24}/events", user="mallory")
    assert theirs[0] == missing[0] == 404
    assert theirs[1]["message"] == missing[1]["message"]
    async with (
        stream(api, "/events", user="mallory") as mallory,
        stream(api, "/events") as alice,
    ):
        _, body = await api.upload(instruction_id, [("kite.jpg", kite)])
        detail_id = body["data"]["files"][0]["id"]
        await alice.events_until(final(detail_id))
        frames = [await mallory.frame(5) for _ in range(5)]
    assert all(f is not None and f.comment == "heartbeat" for f in frames), frames


async def test_heartbeats_keep_an_idle_stream_alive(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT", 0.05)
    instruction_id = await api.instruction("images/thumbnail", {})
    async with stream(api, f"/instructions/{instruction_id}/events") as events_:
        frames = [await events_.frame(5) for _ in range(3)]
    assert [f.comment if f else None for f in frames] == ["heartbeat"] * 3


async def test_streams_need_credentials(api: Api) -> None:
    status, body = await api.call("GET", "/events", user=None)
    assert status == 401
    assert body["errors"][0]["code"] == "unauthorized"


async def test_open_streams_end_when_the_server_shuts_down(api: Api) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    async with stream(api, f"/instructions/{instruction_id}/events") as events_:
        await api.app.shutdown()
        assert await events_.frame(5) is None


async def test_a_live_event_older_than_the_snapshot_or_repeated_is_not_sent_after_it(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("a.jpg", kite), ("b.jpg", kite)])
    first, second = await api.wait_final(instruction_id)
    broker = api.app[RUNTIME].broker
    done = await api.repo.get_detail(first["id"])
    async with stream(api, f"/instructions/{instruction_id}/events") as events_:
        await events_.events_until(lambda seen: len(seen) == 2)
        # Published before the snapshot was read, delivered after it: a stale state.
        stale = attrs.evolve(
            notification_for(done),
            status=Status.PROCESSING,
            at=(done.updated_at - timedelta(seconds=1)).isoformat(),
        )
        await broker.publish_notification(stale)
        # The final notification again, identical (the outbox delivers at least once).
        await broker.publish_notification(notification_for(done))
        fresh = attrs.evolve(
            notification_for(await api.repo.get_detail(second["id"])),
            at=(done.updated_at + timedelta(seconds=1)).isoformat(),
        )
        await broker.publish_notification(fresh)
        [after] = await events_.events_until(lambda seen: len(seen) == 1)
    assert after.data["instruction_detail_id"] == second["id"]


async def test_an_instruction_stream_carries_only_that_instructions_events(
    api: Api, kite: bytes
) -> None:
    mine = await api.instruction("images/thumbnail", {})
    other = await api.instruction("images/thumbnail", {})
    async with stream(api, f"/instructions/{mine}/events") as events_:
        headers = events_.response.headers
        assert (headers["Cache-Control"], headers["X-Accel-Buffering"]) == ("no-cache", "no")
        _, body = await api.upload(other, [("other.jpg", kite)])
        _, body = await api.upload(mine, [("mine.jpg", kite)])
        detail_id = body["data"]["files"][0]["id"]
        seen = await events_.events_until(final(detail_id))
    assert {e.data["instruction_id"] for e in seen} == {mine}


async def test_a_stream_tells_the_client_when_to_reconnect_and_takes_the_id_in_the_query(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("a.jpg", kite)])
    [done] = await api.wait_final(instruction_id)
    path = f"/instructions/{instruction_id}/events"
    async with stream(api, path) as events_:
        assert await events_.response.content.readline() == b"retry: 2000\n"
    newest = millisecond((await api.repo.get_detail(done["id"])).updated_at)
    later = str(int(newest) + 1)
    async with stream(api, f"{path}?last_event_id={later}") as events_:
        # Nothing changed since: the replay is empty, so a live event comes first.
        marker = notification_for(await api.repo.get_detail(done["id"]))
        await api.app[RUNTIME].broker.publish_notification(attrs.evolve(marker, at=""))
        [first] = await events_.events_until(lambda seen: len(seen) == 1)
    assert first.data["at"] == ""


async def test_the_user_stream_replays_more_than_a_page_of_instructions(
    api: Api, kite: bytes
) -> None:
    jobs = [await api.instruction("images/thumbnail", {}) for _ in range(12)]
    for job in jobs:
        await api.upload(job, [("a.jpg", kite)])
    for job in jobs:
        await api.wait_final(job)
    async with stream(api, "/events", last_event_id="0") as events_:
        seen = await events_.events_until(lambda seen: len(seen) == len(jobs))
    assert {e.data["instruction_id"] for e in seen} == set(jobs)
