"""Reliability under faults: no file lost, none processed twice into two outputs.

Each scenario runs separate ``imagecore api`` and ``imagecore worker``
processes over this module's own FerretDB, SeaweedFS and NATS, uploads files
as several users while a fault is injected, then accounts for every file
(`fault_support.Report`): each accepted file DONE or FAILED with a reason,
none left PENDING or PROCESSING, one output key and one output object per
file, exactly one distinct terminal notification per file (the reaper
re-sends one a worker could not: the same one, so it may arrive twice; a
file that finished while this test's own subscriber was cut off from NATS
is excused), and the API answering 503 with ``Retry-After``, never 500,
while a dependency is down.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import minio
import pytest
from fault_support import Cluster, Report, running, sample_images, wait_until_final
from service_support import IMAGECORE

from adapters.mongo import MongoInstructionRepository
from corpus import KITE
from devtools import devstack
from imagecore.model import InstructionDetail, Status
from imagecore.ports import DetailQuery

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MakeCluster = Callable[..., Cluster]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Devstack]:
    """This module's own servers: killing them disturbs no other test."""
    with devstack.Devstack(tmp_path_factory.mktemp("faults")) as servers:
        yield servers
        devstack.stop(servers.servers["seaweedfs"], timeout=2.0)  # its data is thrown away


@pytest.fixture(scope="module")
def images() -> list[tuple[str, bytes]]:
    return sample_images()


@pytest.fixture
def make_cluster(stack: devstack.Devstack, tmp_path: Path) -> Iterator[MakeCluster]:
    for handle in stack.exited():  # a scenario that failed midway left a server down
        stack.restart(handle.name)
    made: list[Cluster] = []

    def make(name: str, **knobs: str) -> Cluster:
        cluster = Cluster.create(stack, tmp_path, name, **knobs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def check(report: Report) -> None:
    print(report.render())  # noqa: T201 - shown with -s, and under a failure
    assert not report.problems(), "\n".join(report.problems()) + "\n" + report.render()
    assert report.accepted > 0


def saw_503(report: Report, outage: str, route: str) -> bool:
    return 503 in report.api_during_outages.get(outage, {}).get(route, {})


#: Busy workers SIGKILLed in the test below.
_KILLS = 6


async def test_workers_killed_mid_job_lose_no_file_and_write_each_output_once(
    make_cluster: MakeCluster, images: list[tuple[str, bytes]]
) -> None:
    cluster = make_cluster("kill")
    _api_and_workers(cluster, workers=3)
    # Uploads faster than the workers go: a backlog keeps every worker holding files.
    # The load goes on until the kills are done, however slow the machine (the time
    # is only a cap), so the count of kills checks the test, not the machine's speed.
    async with running(cluster, users=3, images=images, batch=4, pause=0.5) as run:
        loading = asyncio.create_task(run.load.run(300))
        kills = 0
        while kills < _KILLS and not loading.done():
            await asyncio.sleep(run.rng.uniform(1.5, 3.0))
            if await cluster.kill_random_worker(run.rng):
                kills += 1
                cluster.start_worker()
        run.load.stop()
        await loading
        report = await run.report()
    print(f"workers SIGKILLed while busy: {kills}, files retried: {report.retried}")  # noqa: T201
    check(report)
    assert kills == _KILLS, f"the load ended after {kills} kills"
    assert report.retried > 0, "no kill caught a worker holding a file"


async def _killed_twice_under_load(
    cluster: Cluster, images: list[tuple[str, bytes]], server: str
) -> Report:
    """SIGKILL ``server`` and restart it twice (down 3 s, then 1 s) while 3 users upload."""
    _api_and_workers(cluster, workers=2)
    async with running(cluster, users=3, images=images, batch=2, pause=1.0) as run:
        loading = asyncio.create_task(run.load.run(20))
        run.prober.target = await run.first_done()
        await asyncio.sleep(1)
        await run.server_down(server, 3.0)
        await asyncio.sleep(6)
        await run.server_down(server, 1.0)
        await loading
        return await run.report()


def _api_and_workers(cluster: Cluster, workers: int) -> None:
    cluster.start_api()
    for _ in range(workers):
        cluster.start_worker()


async def test_nats_killed_and_restarted_under_load(
    make_cluster: MakeCluster, images: list[tuple[str, bytes]]
) -> None:
    report = await _killed_twice_under_load(make_cluster("nats"), images, "nats")
    check(report)
    assert saw_503(report, "nats down", "GET /health")


async def test_storage_stopped_for_30_seconds_under_load(
    make_cluster: MakeCluster, images: list[tuple[str, bytes]]
) -> None:
    cluster = make_cluster("s3")
    _api_and_workers(cluster, workers=2)
    # Uploads faster than two workers go, so files wait in the queue when storage stops.
    async with running(cluster, users=3, images=images, batch=4, pause=0.3) as run:
        loading = asyncio.create_task(run.load.run(40))
        run.prober.target = await run.first_done()
        waiting = [
            d.id for d in await _details(cluster) if d.status.value not in {"DONE", "FAILED"}
        ]
        await run.server_down("seaweedfs", 30.0)
        await loading
        report = await run.report(settle=180)
    check(report)
    for route in ("GET /health", "POST /instructions/{id}/details"):
        assert saw_503(report, "seaweedfs down", route), route
    assert saw_503(report, "seaweedfs down", "GET /instructions/{id}/details/{detailId}/file")
    # Tried again and again while storage was away, yet no attempt was spent on that.
    after = {d.id: d for d in await _details(cluster)}
    assert waiting
    assert {(after[i].status, after[i].attempts) for i in waiting} == {(Status.DONE, 1)}


async def test_database_restarted_under_load(
    make_cluster: MakeCluster, images: list[tuple[str, bytes]]
) -> None:
    report = await _killed_twice_under_load(make_cluster("db"), images, "ferretdb")
    check(report)
    for route in ("GET /health", "GET /instructions", "GET /instructions/{id}/details"):
        assert saw_503(report, "ferretdb down", route), route


async def _details(cluster: Cluster) -> list[InstructionDetail]:
    repo = await MongoInstructionRepository.open(cluster.env["MONGO_URI"], cluster.env["MONGO_DB"])
    try:
        return await repo.find_details(DetailQuery(limit=100_000))
    finally:
        await repo.close()


async def _until(cluster: Cluster, wanted: Callable[[list[InstructionDetail]], bool]) -> None:
    deadline = time.monotonic() + 60
    while not wanted(await _details(cluster)):
        assert time.monotonic() < deadline, await _details(cluster)
        await asyncio.sleep(0.1)


async def _exit_seconds(process: subprocess.Popen[bytes]) -> float:
    sent = time.monotonic()
    await asyncio.to_thread(process.wait, 60)
    return time.monotonic() - sent


def _large_image() -> tuple[str, bytes]:
    if KITE.is_file():
        return KITE.name, KITE.read_bytes()
    import pyvips  # noqa: PLC0415 - only without the corpus

    noise = pyvips.Image.gaussnoise(2560, 1600, sigma=40)
    return "noise.jpg", noise.bandjoin([noise, noise]).cast("uchar").jpegsave_buffer()


async def test_sigterm_hands_back_a_job_that_outlasts_the_grace_period(
    make_cluster: MakeCluster,
) -> None:
    # A lease far longer than the test: only the worker's own release can free the file.
    cluster = make_cluster("sigterm_long", LEASE_SECONDS="120", SHUTDOWN_GRACE_SECONDS="1")
    cluster.start_api()
    first = cluster.start_worker()
    # images/compress on a full-size photo searches the quality for seconds.
    async with running(
        cluster, users=1, images=[_large_image()], product="images/compress", params={},
        batch=1, max_files=1,
    ) as run:  # fmt: skip
        await run.load.run(30)
        assert len(run.load.accepted) == 1
        await _until(cluster, lambda ds: ds[0].status is Status.PROCESSING)
        await asyncio.sleep(0.5)
        first.process.terminate()
        seconds = await _exit_seconds(first.process)
        assert seconds < 1 + 5, f"the worker took {seconds:.1f} s to stop (grace 1 s)"
        (handed_back,) = await _details(cluster)
        assert handed_back.status is Status.PENDING, handed_back
        assert (handed_back.error_code, handed_back.attempts) == ("worker_stopped", 0)
        assert handed_back.lease_id is None
        cluster.start_worker()
        # Normally at once (the job was nak'ed); should the nak be lost, JetStream
        # redelivers after its ack wait (the 120 s lease): the file is late, not lost.
        report = await run.report(settle=200)
    check(report)
    assert report.done == 1
    assert "output written" not in first.log.read_text()


async def test_sigterm_lets_the_job_in_hand_finish_within_the_grace_period(
    make_cluster: MakeCluster, images: list[tuple[str, bytes]]
) -> None:
    cluster = make_cluster("sigterm", SHUTDOWN_GRACE_SECONDS="10")
    cluster.start_api()
    first = cluster.start_worker()
    async with running(cluster, users=2, images=images, batch=4, pause=0.2, max_files=24) as run:
        await run.load.run(30)
        await _until(cluster, lambda ds: any(d.status is Status.DONE for d in ds))
        await _until(cluster, lambda ds: any(d.status is Status.PROCESSING for d in ds))
        first.process.terminate()
        seconds = await _exit_seconds(first.process)
        assert seconds < 10, f"the worker took {seconds:.1f} s to stop (grace 10 s)"
        after = await _details(cluster)
        assert not [d for d in after if d.status is Status.PROCESSING], "a file was left held"
        assert not [d for d in after if d.error_code == "worker_stopped"], "a file was cut off"
        left = sum(d.status is Status.PENDING for d in after)
        assert left > 0, "the worker should have stopped with files still waiting"
        cluster.start_worker()
        report = await run.report(settle=90)
    check(report)
    assert report.done == report.accepted


def _originals_missing(cluster: Cluster, keys: dict[str, str]) -> list[str]:
    env = cluster.env
    client = minio.Minio(
        env["S3_ENDPOINT"],
        env["S3_ACCESS_KEY"],
        env["S3_SECRET_KEY"],
        secure=False,
        region=env["S3_REGION"],
    )
    missing = []
    for detail_id, key in keys.items():
        try:
            client.stat_object(env["S3_BUCKET"], key)
        except minio.error.S3Error:
            missing.append(detail_id)
    return missing


async def _watch_originals(cluster: Cluster, stopped: asyncio.Event, violations: list[str]) -> int:
    """Check again and again that every unfinished file's original is still stored."""
    checks = 0
    while not stopped.is_set():
        unfinished = {
            d.id: d.original_key
            for d in await _details(cluster)
            if d.status.value not in {"DONE", "FAILED"}
        }
        missing = await asyncio.to_thread(_originals_missing, cluster, unfinished)
        if missing:  # it may have finished (and been cleaned) since: read it again
            now = {d.id: d for d in await _details(cluster)}
            violations += [i for i in missing if now[i].status.value not in {"DONE", "FAILED"}]
        checks += len(unfinished)
        await asyncio.sleep(1.0)
    return checks


async def _cleanup_loop(cluster: Cluster, stopped: asyncio.Event) -> int:
    passes = 0
    env = {**cluster.apis[0].env, "RETENTION_SECONDS": "1"}
    while not stopped.is_set():
        process = await asyncio.create_subprocess_exec(
            IMAGECORE,
            "cleanup",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await process.wait() == 0
        passes += 1
        await asyncio.sleep(1.0)
    return passes


async def test_cleanup_running_all_the_time_never_takes_a_file_still_needed(
    make_cluster: MakeCluster, images: list[tuple[str, bytes]]
) -> None:
    cluster = make_cluster("cleanup", CLEANUP_INTERVAL_SECONDS="0.5", RETENTION_SECONDS="1")
    _api_and_workers(cluster, workers=2)
    violations: list[str] = []
    stopped = asyncio.Event()
    async with running(cluster, users=3, images=images, batch=3, pause=1.0) as run:
        watching = asyncio.create_task(_watch_originals(cluster, stopped, violations))
        cleaning = asyncio.create_task(_cleanup_loop(cluster, stopped))
        await run.load.run(20)
        await wait_until_final(cluster, 120)
        stopped.set()
        checks, passes = await watching, await cleaning
        report = await run.report()
    check(report)
    assert not violations, f"originals of unfinished files deleted: {violations}"
    assert report.done == report.stored, report.failed
    cleaned = sum(d.is_cleaned for d in await _details(cluster))
    assert cleaned > 0, "cleanup never deleted anything: the scenario proves nothing"
    assert passes > 0
    assert checks > 0
