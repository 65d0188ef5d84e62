"""Fault injection on the production stack, for tests/integration/test_faults.py and the soak.

A `Cluster` runs ``imagecore api`` and ``imagecore worker`` processes over a
`Devstack` (FerretDB, SeaweedFS, NATS) it may kill and restart; a `Load`
uploads files as several users; a `Prober` records what the API answers while
a dependency is down; `Notifications` counts each file's terminal
notifications; `account` waits until every file is final and returns a
`Report` of what became of each one. ``scripts/soak.py`` drives the same
pieces for minutes at a time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp
import attrs
import minio
import nats
from service_support import Served, start

from adapters.mongo import MongoInstructionRepository
from corpus import PHOTOS
from devtools import devstack
from entrypoints.http.auth import mint_token
from imagecore.ports import DetailQuery

FINAL = frozenset({"DONE", "FAILED"})
#: The knobs that make faults play out in seconds rather than minutes.
FAST = {
    "WORKER_CONCURRENCY": "1",
    "RATE_LIMIT_USER_PER_MINUTE": "0",
    "RATE_LIMIT_ADDRESS_PER_MINUTE": "0",
    "LEASE_SECONDS": "6",
    "REAP_INTERVAL_SECONDS": "1",
    # A job nats-server lost when killed is sent again within a scenario's time.
    "REPUBLISH_AFTER_SECONDS": "30",
    "MAX_ATTEMPTS": "5",
    "SHUTDOWN_GRACE_SECONDS": "5",
    "LOG_LEVEL": "info",
}
_OUTPUT_WRITTEN = re.compile(r"output written: (outputs/[0-9a-f]{24}/([0-9a-f]{24})\.\w+)")
_EXPECTED = frozenset({200, 304, 404, 503})  # 404: a download before the file is DONE


def sample_images(count: int = 6, width: int = 480) -> list[tuple[str, bytes]]:
    """Small JPEGs: the shared corpus's photos shrunk, or generated noise without it."""
    import pyvips  # noqa: PLC0415 - only the process that uploads needs libvips

    photos = PHOTOS[:count]
    if photos:
        return [
            (p.name, pyvips.Image.thumbnail(str(p), width).jpegsave_buffer(Q=85)) for p in photos
        ]
    images = []
    for n in range(count):
        noise = pyvips.Image.gaussnoise(width, width * 2 // 3, mean=128, sigma=20 + 10 * n)
        images.append(
            (f"noise-{n}.jpg", noise.bandjoin([noise, noise]).cast("uchar").jpegsave_buffer())
        )
    return images


def _wall() -> float:
    return time.time()


@attrs.define
class Window:
    """A stretch of time (wall clock) during which a fault was in effect."""

    label: str
    start: float
    end: float = float("inf")

    def holds(self, moment: float, slack: float = 0.0) -> bool:
        return self.start - slack <= moment <= self.end + slack


@attrs.define
class Cluster:
    """API and worker processes of one scenario over a shared `Devstack`.

    Every scenario gets its own database, subjects and secret, so scenarios
    never see each other's files. ``workers`` keeps every worker ever
    started, dead ones too: their logs are part of the accounting.
    """

    servers: devstack.Devstack
    root: Path
    env: dict[str, str]
    apis: list[Served] = attrs.field(factory=list)
    workers: list[Served] = attrs.field(factory=list)

    @classmethod
    def create(cls, servers: devstack.Devstack, root: Path, name: str, **knobs: str) -> Cluster:
        run = f"{name}_{secrets.token_hex(3)}"
        env = {
            **servers.env,
            **FAST,
            "MONGO_DB": run,
            "NATS_SUBJECT_IMAGE_REQUESTS": f"image.requests.{run}",
            "NATS_SUBJECT_NOTIFICATIONS_SSE": f"notifications.sse.{run}",
            "JWT_SECRET": f"faults-{run}-{secrets.token_hex(16)}",
            **knobs,
        }
        return cls(servers, root / run, env)

    def start_api(self) -> Served:
        api = start("api", self.root / f"api{len(self.apis)}", self.env)
        self.apis.append(api)
        return api

    def start_worker(self, **knobs: str) -> Served:
        worker = start("worker", self.root / f"worker{len(self.workers)}", {**self.env, **knobs})
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[Served]:
        return [w for w in self.workers if w.process.poll() is None]

    def token(self, user: str) -> str:
        return mint_token(self.env["JWT_SECRET"], user, ttl_seconds=6 * 3600)

    @property
    def api(self) -> Served:
        return self.apis[0]

    def stop(self) -> None:
        for served in [*self.apis, *self.workers]:
            served.stop(timeout=40)

    async def kill_random_worker(self, rng: random.Random) -> Served | None:
        """SIGKILL a live worker that is busy (a crash: no grace, no release).

        Only a worker that has written an output already is a candidate: one
        still starting up holds no file, and killing it would prove nothing.
        """
        live = [w for w in self.live_workers() if "output written" in w.log.read_text()]
        if not live:
            return None
        victim = rng.choice(live)
        victim.process.kill()
        await asyncio.to_thread(victim.process.wait)
        return victim

    async def restart_server(self, name: devstack.ServerName, *, down_for: float) -> None:
        """SIGKILL one backing server, keep it down ``down_for`` s, start it again."""
        devstack.kill(self.servers.servers[name])
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.servers.restart, name)

    def worker_logs(self) -> list[Path]:
        return [w.log for w in self.workers]


@attrs.define
class Answers:
    """What the API answered, by route and status, with the time of each answer."""

    seen: list[tuple[float, str, int]] = attrs.field(factory=list)
    bad: list[str] = attrs.field(factory=list)

    def record(self, route: str, status: int, headers: Mapping[str, str], body: str) -> None:
        self.seen.append((_wall(), route, status))
        if status == 503 and "Retry-After" not in headers:
            self.bad.append(f"{route}: 503 without Retry-After")
        elif status not in _EXPECTED:
            self.bad.append(f"{route}: {status} {body[:300]}")

    def during(self, windows: Iterable[Window]) -> dict[str, dict[str, dict[int, int]]]:
        """Statuses per route seen within each window, by the window's label."""
        found: dict[str, dict[str, collections.Counter[int]]] = {}
        for window in windows:
            per_route = found.setdefault(window.label, {})
            for moment, route, status in self.seen:
                if window.holds(moment):
                    per_route.setdefault(route, collections.Counter())[status] += 1
        return {
            label: {route: dict(sorted(c.items())) for route, c in sorted(routes.items())}
            for label, routes in found.items()
        }


async def _call(
    session: aiohttp.ClientSession,
    answers: Answers,
    route: str,
    method: str,
    path: str,
    **kwargs: Any,
) -> tuple[int, Any]:
    """One request; its status (0 if the transport failed) and its JSON body, recorded."""
    try:
        async with session.request(method, path, **kwargs) as response:
            text = (await response.read()).decode(errors="replace")
            answers.record(route, response.status, response.headers, text)
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            return response.status, body
    except (aiohttp.ClientError, TimeoutError) as exc:
        answers.bad.append(f"{route}: transport {type(exc).__name__}: {exc}")
        return 0, None


@attrs.define
class Load:
    """Users uploading small batches of files through the API, recording every answer.

    ``accepted`` holds each file a 200 announced (its id -> its instruction);
    ``instructions`` each instruction created (-> its user).
    """

    base: str
    tokens: dict[str, str]
    images: list[tuple[str, bytes]]
    answers: Answers
    product: str = "images/thumbnail"
    params: dict[str, object] = attrs.field(factory=lambda: {"width": 128, "height": 128})
    batch: int = 2
    pause: float = 0.5
    max_files: int = 0  # stop once this many files were accepted (0: until stopped)
    accepted: dict[str, str] = attrs.field(factory=dict)
    instructions: dict[str, str] = attrs.field(factory=dict)
    stopped: asyncio.Event = attrs.field(factory=asyncio.Event)

    def done_files(self) -> bool:
        return bool(self.max_files) and len(self.accepted) >= self.max_files

    async def run(self, seconds: float) -> None:
        """Upload until ``seconds`` pass, `stop` is called or ``max_files`` are in.

        Requests under way then are finished, never cut off: a cut-off upload
        could be stored without its answer ever being read.
        """
        timer = asyncio.get_running_loop().call_later(seconds, self.stopped.set)
        try:
            await asyncio.gather(*(self._user(u) for u in self.tokens))
        finally:
            timer.cancel()
            self.stopped.set()

    def stop(self) -> None:
        self.stopped.set()

    async def _user(self, user: str) -> None:
        rng = random.Random(user)
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(self.base, headers=headers, timeout=timeout) as session:
            instruction, held = "", 0
            await asyncio.sleep(rng.uniform(0, self.pause))
            while not self.stopped.is_set() and not self.done_files():
                if not instruction or held + self.batch > 50:
                    body = {"product_key": self.product, "params": self.params}
                    status, answer = await _call(
                        session,
                        self.answers,
                        "POST /instructions",
                        "POST",
                        "/instructions",
                        json=body,
                    )
                    if status != 200:
                        await asyncio.sleep(1.0)
                        continue
                    instruction, held = answer["data"]["instruction"]["id"], 0
                    self.instructions[instruction] = user
                form = aiohttp.FormData()
                for _ in range(self.batch):
                    name, data = rng.choice(self.images)
                    form.add_field("file", data, filename=name, content_type="image/jpeg")
                path = f"/instructions/{instruction}/details"
                status, answer = await _call(
                    session,
                    self.answers,
                    "POST /instructions/{id}/details",
                    "POST",
                    path,
                    data=form,
                )
                if status == 200:
                    for f in answer["data"]["files"]:
                        self.accepted[f["id"]] = instruction
                    held += self.batch
                    await asyncio.sleep(self.pause)
                else:
                    held = 50  # a refused batch may still have stored some files: start afresh
                    await asyncio.sleep(1.0)


@attrs.define
class Prober:
    """Polls a few API routes the whole time and records every answer.

    The routes read the repository (lists, one file), storage (a download of
    a DONE file) and every dependency (``/health``); uploads are the `Load`'s.
    """

    base: str
    token: str
    answers: Answers
    every: float = 0.5
    target: tuple[str, str] | None = None  # (instruction id, detail id) of a DONE file

    async def run(self, stopped: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(self.base, headers=headers, timeout=timeout) as session:
            while not stopped.is_set():
                calls = [
                    _call(session, self.answers, "GET /health", "GET", "/health"),
                    _call(session, self.answers, "GET /instructions", "GET", "/instructions"),
                ]
                if self.target is not None:
                    instruction, detail = self.target
                    route = "/instructions/{id}/details"
                    calls += [
                        _call(
                            session,
                            self.answers,
                            f"GET {route}",
                            "GET",
                            f"/instructions/{instruction}/details",
                        ),
                        _call(
                            session,
                            self.answers,
                            f"GET {route}/{{detailId}}/file",
                            "GET",
                            f"/instructions/{instruction}/details/{detail}/file?variant=output",
                        ),
                    ]
                await asyncio.gather(*calls)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), self.every)


@attrs.define
class Notifications:
    """Counts each file's terminal notifications on the notifications subject (core NATS).

    The client reconnects forever; ``gaps`` are the times it was disconnected.
    """

    uri: str
    subject: str
    #: Each file's distinct terminal notifications (status and time of the change):
    #: the reaper re-sends one a worker may not have, the same one if it had.
    terminal: dict[str, set[tuple[str, str]]] = attrs.field(
        factory=lambda: collections.defaultdict(set)
    )
    repeats: int = 0  # terminal notifications received again, identical
    gaps: list[Window] = attrs.field(factory=list)
    _client: Any = None

    async def __aenter__(self) -> Self:
        async def disconnected() -> None:
            self.gaps.append(Window("notifications", _wall()))

        async def reconnected() -> None:
            if self.gaps:
                self.gaps[-1].end = _wall()

        async def received(msg: Any) -> None:
            event = json.loads(msg.data)
            if event.get("status") in FINAL:
                seen = self.terminal[event["instruction_detail_id"]]
                self.repeats += (event["status"], event["at"]) in seen
                seen.add((event["status"], event["at"]))

        async def error(exc: Exception) -> None:
            del exc  # refused reconnects while the server is down: the gap says it all

        self._client = await nats.connect(
            self.uri,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        await self._client.subscribe(self.subject, cb=received)
        await self._client.flush()
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):
            await self._client.drain()


@attrs.frozen
class Report:
    """What became of every file of a run; `problems` lists what breaks the promise."""

    accepted: int
    stored: int
    done: int
    failed: dict[str, int]
    failed_without_reason: list[str]
    lost: list[str]
    left: dict[str, int]  # files not final at the end, by status
    unannounced: int  # stored files no 200 announced (an upload refused after storing)
    output_keys: dict[str, int]  # files with more than one distinct output key (logs)
    objects: dict[str, int]  # files with more than one output object (storage)
    missing_outputs: list[str]  # DONE, not cleaned, and no output object
    rewritten: int  # files whose one output was written again by a retry
    retried: int  # files that took more than one attempt
    notifications_duplicated: dict[str, int]
    notifications_repeated: int  # the same terminal notification received again
    notifications_missing: list[str]
    notifications_excused: int  # missing, but finished while notifications could not flow
    api_errors: list[str]
    api_during_outages: dict[str, dict[str, dict[int, int]]]
    outages: list[str]
    seconds: float
    drained: float  # from the end of the load until every file was final

    def problems(self) -> list[str]:
        found = []
        checks = {
            "lost files": self.lost,
            "files not final": self.left,
            "FAILED without a reason": self.failed_without_reason,
            "files with two output keys": self.output_keys,
            "files with two output objects": self.objects,
            "DONE without an output": self.missing_outputs,
            "duplicated terminal notifications": self.notifications_duplicated,
            "missing terminal notifications": self.notifications_missing,
            "API answers other than 2xx/404/503+Retry-After": self.api_errors,
        }
        for what, value in checks.items():
            if value:
                found.append(f"{what}: {_brief(value)}")
        return found

    def render(self) -> str:
        failed = sum(self.failed.values())
        lines = [
            (
                f"accepted {self.accepted}, stored {self.stored} ({self.unannounced} unannounced), "
                f"DONE {self.done}, FAILED {failed} {self.failed}"
            ),
            (
                f"lost {len(self.lost)}, not final {self.left}, "
                f"FAILED without reason {len(self.failed_without_reason)}"
            ),
            (
                f"duplicated outputs: {len(self.output_keys)} by key, {len(self.objects)} by "
                f"object; DONE without output {len(self.missing_outputs)}; "
                f"same output rewritten by a retry {self.rewritten}; retried {self.retried}"
            ),
            (
                f"terminal notifications: duplicated {len(self.notifications_duplicated)} "
                f"(+{self.notifications_repeated} identical repeats), "
                f"missing {len(self.notifications_missing)} "
                f"(+{self.notifications_excused} excused: finished while NATS was down)"
            ),
            (
                f"API errors (500, 503 without Retry-After, transport): {len(self.api_errors)} "
                f"{_brief(self.api_errors)}"
            ),
            f"outages: {', '.join(self.outages) or 'none'}",
        ]
        lines += [
            f"API during {label}: {routes}" for label, routes in self.api_during_outages.items()
        ]
        lines.append(
            f"took {self.seconds:.0f} s, of which {self.drained:.0f} s to finish after the load"
        )
        return "\n".join(lines)


def _brief(value: object, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


async def wait_until_final(cluster: Cluster, within: float, stall: float | None = None) -> bool:
    """Wait until every stored file is DONE or FAILED; whether they all are.

    Gives up after ``within`` s, or sooner once ``stall`` s pass without any
    file becoming final (a slow machine still finishing is not a stuck one).
    """
    repo = await MongoInstructionRepository.open(cluster.env["MONGO_URI"], cluster.env["MONGO_DB"])
    try:
        deadline = time.monotonic() + within
        finished, progressed = -1, time.monotonic()
        while time.monotonic() < deadline:
            details = await repo.find_details(DetailQuery(limit=1_000_000))
            done = sum(d.status.value in FINAL for d in details)
            if done == len(details):
                return True
            if done > finished:
                finished, progressed = done, time.monotonic()
            elif stall is not None and time.monotonic() - progressed > stall:
                return False
            await asyncio.sleep(1.0)
        return False
    finally:
        await repo.close()


def _outputs_in_storage(env: Mapping[str, str]) -> collections.Counter[str]:
    client = minio.Minio(
        env["S3_ENDPOINT"],
        env["S3_ACCESS_KEY"],
        env["S3_SECRET_KEY"],
        secure=False,
        region=env["S3_REGION"],
    )
    objects: collections.Counter[str] = collections.Counter()
    for found in client.list_objects(env["S3_BUCKET"], prefix="outputs/", recursive=True):
        objects[found.object_name.rsplit("/", 1)[-1].split(".", 1)[0]] += 1
    return objects


async def account(
    cluster: Cluster,
    load: Load,
    notifications: Notifications,
    answers: Answers,
    outages: list[Window],
    *,
    started: float,
    settle: float = 120.0,
    stall: float | None = None,
) -> Report:
    """Wait up to ``settle`` s for every file to be final, then account for each one.

    With ``stall``, the wait also ends once that long passes without progress.
    """
    waiting = time.monotonic()
    await wait_until_final(cluster, settle, stall)
    drained = time.monotonic() - waiting
    await asyncio.sleep(2.0)  # the last notifications are on their way
    repo = await MongoInstructionRepository.open(cluster.env["MONGO_URI"], cluster.env["MONGO_DB"])
    try:
        details = {d.id: d for d in await repo.find_details(DetailQuery(limit=1_000_000))}
    finally:
        await repo.close()
    keys: dict[str, set[str]] = collections.defaultdict(set)
    writes: collections.Counter[str] = collections.Counter()
    for log in cluster.worker_logs():
        for key, detail_id in _OUTPUT_WRITTEN.findall(log.read_text(errors="replace")):
            keys[detail_id].add(key)
            writes[detail_id] += 1
    objects = await asyncio.to_thread(_outputs_in_storage, cluster.env)
    quiet = [*notifications.gaps, *(w for w in outages if w.label.startswith("nats"))]
    missing, excused = [], 0
    for d in details.values():
        if d.status.value in FINAL and not notifications.terminal.get(d.id):
            finished = d.finished_at.timestamp() if d.finished_at else 0.0
            if any(w.holds(finished, slack=3.0) for w in quiet):
                excused += 1
            else:
                missing.append(d.id)
    failed = collections.Counter(
        d.error_code or "(none)" for d in details.values() if d.status.value == "FAILED"
    )
    return Report(
        accepted=len(load.accepted),
        stored=len(details),
        done=sum(d.status.value == "DONE" for d in details.values()),
        failed=dict(failed),
        failed_without_reason=[
            d.id
            for d in details.values()
            if d.status.value == "FAILED" and not (d.error_code and d.error_message)
        ],
        lost=[i for i in load.accepted if i not in details or details[i].status.value not in FINAL],
        left=dict(
            collections.Counter(
                d.status.value for d in details.values() if d.status.value not in FINAL
            )
        ),
        unannounced=len(set(details) - set(load.accepted)),
        output_keys={i: len(k) for i, k in keys.items() if len(k) > 1},
        objects={i: n for i, n in objects.items() if i in details and n > 1},
        missing_outputs=[
            d.id
            for d in details.values()
            if d.status.value == "DONE" and not d.is_cleaned and objects[d.id] == 0
        ],
        rewritten=sum(n > 1 for n in writes.values()),
        retried=sum(d.attempts > 1 for d in details.values()),
        notifications_duplicated={
            i: len(n) for i, n in notifications.terminal.items() if len(n) > 1
        },
        notifications_repeated=notifications.repeats,
        notifications_missing=missing,
        notifications_excused=excused,
        api_errors=list(answers.bad),
        api_during_outages=answers.during(outages),
        outages=[f"{w.label} {w.end - w.start:.1f} s" for w in outages],
        seconds=time.monotonic() - started,
        drained=drained,
    )


@attrs.define
class Run:
    """One scenario's moving parts: the load, the prober, the notifications, the outages."""

    cluster: Cluster
    load: Load
    answers: Answers
    notifications: Notifications
    prober: Prober
    outages: list[Window] = attrs.field(factory=list)
    started: float = attrs.field(factory=time.monotonic)
    rng: random.Random = attrs.field(factory=lambda: random.Random(7))
    prober_user: str = "user-0"

    @contextlib.asynccontextmanager
    async def outage(self, label: str) -> AsyncIterator[Window]:
        window = Window(label, _wall())
        self.outages.append(window)
        try:
            yield window
        finally:
            window.end = _wall()

    async def server_down(self, name: devstack.ServerName, seconds: float) -> None:
        """SIGKILL a backing server, keep it down ``seconds``, restart it, wait for /health."""
        async with self.outage(f"{name} down"):
            await self.cluster.restart_server(name, down_for=seconds)
            await self.healthy()

    async def server_paused(self, name: devstack.ServerName, seconds: float) -> None:
        """SIGSTOP a backing server for ``seconds`` (it hangs rather than refuses), then SIGCONT."""
        process = self.cluster.servers.servers[name].process
        async with self.outage(f"{name} paused"):
            process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)
            finally:
                process.send_signal(signal.SIGCONT)
            await self.healthy()

    async def healthy(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.cluster.api.base + "/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.3)
        raise AssertionError("the API did not become healthy again")

    async def first_done(self, within: float = 60.0) -> tuple[str, str]:
        """Some DONE file (instruction id, detail id), for the prober's download."""
        repo = await MongoInstructionRepository.open(
            self.cluster.env["MONGO_URI"], self.cluster.env["MONGO_DB"]
        )
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                for d in await repo.find_details(DetailQuery(limit=100_000)):
                    if d.status.value == "DONE" and d.user_id == self.prober_user:
                        return d.instruction_id, d.id
                await asyncio.sleep(0.5)
        finally:
            await repo.close()
        raise AssertionError("no file became DONE")

    async def report(self, settle: float = 120.0, stall: float | None = None) -> Report:
        self.load.stop()
        return await account(
            self.cluster,
            self.load,
            self.notifications,
            self.answers,
            self.outages,
            started=self.started,
            settle=settle,
            stall=stall,
        )


@contextlib.asynccontextmanager
async def running(
    cluster: Cluster,
    *,
    users: int,
    images: list[tuple[str, bytes]],
    **load_options: Any,
) -> AsyncIterator[Run]:
    """Subscribe to notifications and start probing; the caller starts the load."""
    answers = Answers()
    tokens = {f"user-{n}": cluster.token(f"user-{n}") for n in range(users)}
    load = Load(cluster.api.base, tokens, images, answers, **load_options)
    prober = Prober(cluster.api.base, tokens["user-0"], answers)
    async with Notifications(
        cluster.env["NATS_URI"], cluster.env["NATS_SUBJECT_NOTIFICATIONS_SSE"]
    ) as notifications:
        run = Run(cluster, load, answers, notifications, prober)
        probing_stopped = asyncio.Event()
        probing = asyncio.create_task(prober.run(probing_stopped))
        try:
            yield run
        finally:
            load.stop()
            probing_stopped.set()
            await probing


__all__ = [
    "FAST",
    "Answers",
    "Cluster",
    "Load",
    "Notifications",
    "Prober",
    "Report",
    "Run",
    "Window",
    "account",
    "running",
    "sample_images",
    "wait_until_final",
]
