"""Smoke tests: each real server does what our adapters will ask of it."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pymongo
import pytest
from minio import Minio
from minio.error import S3Error
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from devtools import devstack

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SUBJECT = "smoke.image.requests"  # apart from the service streams other tests create


async def test_ferretdb_inserts_finds_and_updates_only_when_the_filter_matches(ferretdb_server):
    async with AsyncMongoClient[dict[str, object]](ferretdb_server.url) as client:
        instructions = client[ferretdb_server.env["MONGO_DB"]]["smoke_instructions"]
        await instructions.create_index("request_id", unique=True)
        await instructions.insert_one({"request_id": "req-1", "state": "queued", "version": 1})

        found = await instructions.find_one({"request_id": "req-1"}, {"_id": False})
        claimed = await instructions.update_one(
            {"request_id": "req-1", "state": "queued"},
            {"$set": {"state": "processing"}, "$inc": {"version": 1}},
        )
        claimed_again = await instructions.update_one(
            {"request_id": "req-1", "state": "queued"}, {"$set": {"state": "processing"}}
        )
        with pytest.raises(DuplicateKeyError):
            await instructions.insert_one({"request_id": "req-1", "state": "queued"})
        after = await instructions.find_one({"request_id": "req-1"}, {"_id": False})
        index_names = set(await instructions.index_information())

    assert found == {"request_id": "req-1", "state": "queued", "version": 1}
    assert (claimed.matched_count, claimed.modified_count) == (1, 1)
    assert claimed_again.matched_count == 0
    assert after == {"request_id": "req-1", "state": "processing", "version": 2}
    assert "request_id_1" in index_names


def test_seaweedfs_streams_stats_reads_and_deletes_an_object(seaweedfs_server):
    env = seaweedfs_server.env
    client = Minio(
        env["S3_ENDPOINT"],
        access_key=env["S3_ACCESS_KEY"],
        secret_key=env["S3_SECRET_KEY"],
        secure=env["S3_USE_SSL"] == "true",
        region=env["S3_REGION"],
    )
    bucket, key = "smoke-originals", "originals/req-1.jpg"
    original = random.Random(1).randbytes(12 * MiB)  # three parts of 5 MiB at most

    client.make_bucket(bucket)
    client.put_object(
        bucket, key, io.BytesIO(original), length=-1, part_size=5 * MiB, content_type="image/jpeg"
    )
    stat = client.stat_object(bucket, key)
    response = client.get_object(bucket, key)
    try:
        downloaded = response.read()
    finally:
        response.close()
        response.release_conn()
    client.remove_object(bucket, key)
    with pytest.raises(S3Error) as after_delete:
        client.stat_object(bucket, key)
    with pytest.raises(S3Error) as get_after_delete:
        client.get_object(bucket, key)

    assert client.bucket_exists(env["S3_BUCKET"])  # the devstack's own bucket
    assert (stat.size, stat.content_type) == (len(original), "image/jpeg")
    assert downloaded == original
    assert after_delete.value.code == "NoSuchKey"
    assert get_after_delete.value.code == "NoSuchKey"


async def add_work_queue(js: JetStreamContext, name: str) -> None:
    await js.add_stream(
        name=name,
        subjects=[SUBJECT],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=120.0,
    )


async def test_nats_drops_a_duplicate_request_and_delivers_the_first_once(nats_server):
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await add_work_queue(js, "SMOKE_REQUESTS")
        first = await js.publish(SUBJECT, b'{"id": "req-1"}', headers={"Nats-Msg-Id": "req-1"})
        second = await js.publish(SUBJECT, b'{"id": "req-1"}', headers={"Nats-Msg-Id": "req-1"})
        workers = await js.pull_subscribe(
            SUBJECT,
            durable="workers",
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0, max_deliver=3),
        )
        messages = await workers.fetch(batch=10, timeout=5.0)
        await messages[0].ack_sync()
        left = (await js.stream_info("SMOKE_REQUESTS")).state.messages
        await js.delete_stream("SMOKE_REQUESTS")
    finally:
        await nc.close()

    assert (first.duplicate, second.duplicate) == (None, True)
    assert second.seq == first.seq
    assert [m.data for m in messages] == [b'{"id": "req-1"}']
    assert left == 0  # a work queue forgets acknowledged messages


async def test_an_unacked_request_survives_kill_9_and_is_redelivered_after_restart(tmp_path):
    handle = devstack.start_nats(tmp_path / "nats")  # its own: this test kills it
    try:
        nc = await nats.connect(handle.url)
        js = nc.jetstream()
        await add_work_queue(js, "REQUESTS")
        await js.publish(SUBJECT, b"req-7", headers={"Nats-Msg-Id": "req-7"})
        workers = await js.pull_subscribe(
            SUBJECT, durable="workers", config=ConsumerConfig(ack_wait=1.0)
        )
        (taken,) = await workers.fetch(batch=1, timeout=5.0)  # and never acknowledged
        await nc.close()

        assert devstack.kill(handle) == -signal.SIGKILL
        handle = devstack.restart(handle)

        nc = await nats.connect(handle.url)
        js = nc.jetstream()
        workers = await js.pull_subscribe(SUBJECT, durable="workers", stream="REQUESTS")
        (redelivered,) = await workers.fetch(batch=1, timeout=10.0)
        await redelivered.ack_sync()
        await nc.close()
    finally:
        devstack.stop(handle)

    assert taken.data == redelivered.data == b"req-7"
    assert redelivered.metadata.sequence.stream == taken.metadata.sequence.stream
    # The stream writes the message before it acknowledges the publish; the consumer's record
    # of the first delivery is written behind it, so a SIGKILL may lose that: 1 or 2.
    assert redelivered.metadata.num_delivered in (1, 2)


@pytest.mark.slow
def test_devstack_main_prints_the_environment_and_stops_on_sigterm(tmp_path):
    stderr_path = tmp_path / "devstack.stderr"
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(  # noqa: S603 - our own module, run by this interpreter
            [sys.executable, "-m", "devtools.devstack", "--data-dir", str(tmp_path / "stack")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "error"},
            cwd=Path(__file__).resolve().parents[2],  # devtools is beside src, not installed
        ) as process,
    ):
        try:
            assert process.stdout is not None
            exports = [process.stdout.readline().rstrip("\n") for _ in range(9)]
            env = dict(line.removeprefix("export ").split("=", 1) for line in exports)
            with pymongo.MongoClient[dict[str, object]](env["MONGO_URI"]) as mongo:
                pong = mongo.admin.command("ping")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)

    assert sorted(env) == [
        "MONGO_DB",
        "MONGO_URI",
        "NATS_URI",
        "S3_ACCESS_KEY",
        "S3_BUCKET",
        "S3_ENDPOINT",
        "S3_REGION",
        "S3_SECRET_KEY",
        "S3_USE_SSL",
    ], stderr_path.read_text()
    assert env["S3_REGION"] == "us-east-1"
    assert env["S3_USE_SSL"] == "false"
    assert env["NATS_URI"].startswith("nats://127.0.0.1:")
    assert pong["ok"] == 1.0
    assert code == 0, stderr_path.read_text()
