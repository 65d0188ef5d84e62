"""Soak test: users upload for minutes while workers, NATS, S3 and the database fail.

    .venv/bin/python scripts/soak.py --minutes 10 --users 20

Starts its own FerretDB, SeaweedFS and NATS (``devtools.devstack``), one
``imagecore api`` and three ``imagecore worker`` processes, and has ``--users``
users upload small JPEGs the whole time. Meanwhile a busy worker is SIGKILLed
(and replaced) every ``--kill-every`` seconds, and every ``--fault-every``
seconds the next of: nats-server SIGKILLed and restarted, the S3 server
paused (SIGSTOP) for 30 s, the database SIGKILLed and restarted. Then it waits
for every file to be DONE or FAILED and prints what became of them (the
pieces are tests/integration/fault_support.py, shared with test_faults.py).
Exit status 0 when nothing was lost, duplicated or left unfinished and the
API never answered 500 or a 503 without Retry-After.
"""

# ruff: noqa: INP001 - a script, not a package

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "src"), str(ROOT)]

from fault_support import Cluster, Run, running, sample_images  # noqa: E402 - after the path

from devtools import devstack  # noqa: E402 - after the path

Fault = Callable[[Run], Awaitable[None]]
FAULTS: list[tuple[str, Fault]] = [
    ("nats-server SIGKILLed, restarted after 3 s", lambda run: run.server_down("nats", 3.0)),
    ("S3 server paused for 30 s", lambda run: run.server_paused("seaweedfs", 30.0)),
    ("database SIGKILLed, restarted after 3 s", lambda run: run.server_down("ferretdb", 3.0)),
]


def _say(started: float, text: str) -> None:
    sys.stdout.write(f"[{time.monotonic() - started:6.0f} s] {text}\n")
    sys.stdout.flush()


async def _kill_workers(run: Run, every: float, workers: int, stopped: asyncio.Event) -> int:
    """Kill a busy worker every ``every`` s; keep ``workers`` running, as an orchestrator would.

    A worker started while a server is down exits at once (it cannot open its
    adapters), so a replacement may need replacing too.
    """
    kills = 0
    while not stopped.is_set():
        await asyncio.sleep(every)
        if await run.cluster.kill_random_worker(run.rng):
            kills += 1
        for _ in range(workers - len(run.cluster.live_workers())):
            run.cluster.start_worker()
    return kills


async def _inject(run: Run, every: float, stopped: asyncio.Event) -> None:
    n = 0
    while not stopped.is_set():
        with_time = asyncio.create_task(stopped.wait())
        done, _ = await asyncio.wait([with_time], timeout=every)
        if done:
            return
        label, fault = FAULTS[n % len(FAULTS)]
        n += 1
        _say(run.started, label)
        await fault(run)
        _say(run.started, f"{label}: healthy again")


async def soak(args: argparse.Namespace) -> int:
    """Run the soak; 0 if no problem was found."""
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="imagecore-soak-"))
    started = time.monotonic()
    with devstack.Devstack(root / "servers") as servers:
        cluster = Cluster.create(servers, root, "soak")
        try:
            cluster.start_api()
            for _ in range(args.workers):
                cluster.start_worker()
            _say(
                started,
                f"stack and service up in {root}; {args.users} users for {args.minutes} min",
            )
            async with running(
                cluster,
                users=args.users,
                images=sample_images(),
                batch=args.batch,
                pause=args.interval,
            ) as run:
                run.started = started
                loading = asyncio.create_task(run.load.run(args.minutes * 60))
                run.prober.target = await run.first_done()
                stopped = asyncio.Event()
                killing = asyncio.create_task(
                    _kill_workers(run, args.kill_every, args.workers, stopped)
                )
                injecting = asyncio.create_task(_inject(run, args.fault_every, stopped))
                await loading
                stopped.set()
                kills = await killing
                await injecting
                _say(
                    started,
                    f"load over: {len(run.load.accepted)} files accepted; waiting for the rest",
                )
                report = await run.report(settle=args.settle, stall=args.stall)
        finally:
            cluster.stop()
            devstack.stop(servers.servers["seaweedfs"], timeout=2.0)
    sys.stdout.write(f"\nworkers SIGKILLed while busy: {kills}\n{report.render()}\n")
    problems = report.problems()
    sys.stdout.write(
        "\n".join(["", "PROBLEMS:", *problems] if problems else ["", "no problem found"])
    )
    sys.stdout.write("\n")
    return 1 if problems else 0


def main() -> int:
    """Parse the options and run the soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long users upload")
    parser.add_argument("--users", type=int, default=20, help="concurrent users")
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--batch", type=int, default=1, help="files per upload")
    parser.add_argument(
        "--interval", type=float, default=6.0, help="seconds between a user's uploads"
    )
    parser.add_argument(
        "--kill-every", type=float, default=20.0, help="seconds between worker kills"
    )
    parser.add_argument(
        "--fault-every", type=float, default=60.0, help="seconds between server faults"
    )
    parser.add_argument(
        "--settle", type=float, default=3600.0, help="seconds to wait for the last files, at most"
    )
    parser.add_argument(
        "--stall", type=float, default=180.0, help="stop waiting after this long without progress"
    )
    parser.add_argument("--data-dir", help="keep servers' data and every log here")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
