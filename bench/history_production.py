"""``python -m bench.history_production``: history's cost on the production stack.

The figures of `bench.history` (see there), measured on FerretDB 1.24 (the
MongoDB repository), SeaweedFS (the S3 storage) and NATS JetStream (the
broker), all started here on loopback, at 1k, 10k and 100k files of history
by default. Each size has its own database, seeded in bulk with what the
repository would have stored (`adapters.mongo.stored_documents`): uploads
came at 1,000 files a day and ended two days ago, so a longer history spans
more days; a tenth of the files, with their stored objects, is still due for
cleanup. The goal is on growth alone: every
per-request figure at most 2x from the smallest history to the largest.
It writes ``bench/results/history_production.json`` and its section of
BENCHMARKS.md (kept when ``python -m bench`` rewrites the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from adapters.documents import Document
from adapters.mongo import stored_documents
from bench.history import (
    LABELS,
    PER_INSTRUCTION,
    PER_REQUEST,
    PRODUCTION_END,
    PRODUCTION_START,
    REPLAY_FILES,
    USER,
    Prepare,
    Seeded,
    Subject,
    _now,
    _one,
    history_file,
    history_instruction,
    measure,
    report,
    small_jpeg,
)
from devtools import devstack
from entrypoints.config import Settings
from entrypoints.container import Runtime
from imagecore import services
from imagecore.model import Instruction, InstructionDetail, new_id

__all__ = ["main", "section"]

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "history_production.json"
BENCHMARKS = ROOT.parent / "BENCHMARKS.md"
START, END = PRODUCTION_START, PRODUCTION_END

SIZES = (1_000, 10_000, 100_000)
GROWTH_GOAL = 2.0
#: The history's upload rate: its length in days grows with its size.
FILES_PER_DAY = 1_000
#: Documents per insert_many.
_BATCH = 1_000


def _history(files: int, end: datetime) -> Iterator[tuple[Instruction, list[InstructionDetail]]]:
    """The instructions of ``files`` finished files up to ``end``, oldest first.

    Uploads come at `FILES_PER_DAY`, so a longer history spans more days; the
    oldest tenth (at most 100k) is not cleaned yet.
    """
    due = min(files // 10, 100_000)
    step = timedelta(days=1) / FILES_PER_DAY
    for start in range(0, files, PER_INSTRUCTION):
        job = history_instruction(end - (files - start) * step)
        numbers = range(start, min(start + PER_INSTRUCTION, files))
        yield job, [history_file(job, end - (files - n) * step, cleaned=n >= due) for n in numbers]


async def seed(runtime: Runtime, uri: str, database: str, files: int) -> Seeded:
    """``files`` finished files of history, inserted in bulk; the due ones' objects stored."""
    instructions: list[str] = []
    pending: dict[str, list[Document]] = {}
    due_keys: list[str] = []
    # History ends two days ago: all of it is past the bench's day of retention.
    end = _now().replace(microsecond=0) - timedelta(days=2)
    async with AsyncMongoClient[Document](uri, tz_aware=True) as client:
        db = client[database]

        async def flush(least: int) -> None:
            for name, documents in pending.items():
                if len(documents) >= least:
                    await db[name].insert_many(documents, ordered=False)
                    documents.clear()

        seq = 0
        for job, details in _history(files, end):
            instructions.append(job.id)
            for name, documents in stored_documents(job, details, seq=seq).items():
                pending.setdefault(name, []).extend(documents)
            seq += len(details)
            for d in details:
                if not d.is_cleaned and d.output is not None:
                    due_keys += [d.original_key, d.output.key]
            await flush(_BATCH)
        await flush(1)
    semaphore = asyncio.Semaphore(16)

    async def stored(key: str) -> None:
        async with semaphore:
            await runtime.storage.put(key, _one(small_jpeg()), "image/jpeg")

    await asyncio.gather(*(stored(key) for key in due_keys))
    return Seeded(instructions, len(due_keys) // 2)


def preparer(env: dict[str, str]) -> Prepare:
    """Seed a database per size on the running servers and open the production stack on it."""

    async def prepare(files: int, folder: Path) -> Subject:
        database = f"history_{files}_{new_id()[-6:]}"
        settings = Settings.from_env(env | {"MONGO_DB": database, "DATA_DIR": str(folder)})
        runtime = await Runtime.open(settings)
        started = time.perf_counter()
        seeded = await seed(runtime, env["MONGO_URI"], database, files)
        seed_seconds = time.perf_counter() - started
        fresh = await services.create_instruction(
            runtime.repository,
            user_id=USER,
            product_ref="images/resize",
            params={"width": 32},
            now=_now(),
        )
        middle_id = seeded.instructions[len(seeded.instructions) // 2]
        return Subject(
            files,
            folder,
            runtime.repository,
            runtime.storage,
            runtime.broker,
            seeded,
            fresh.instruction.id,
            await runtime.repository.get_instruction(middle_id),
            round(seed_seconds, 1),
            runtime.close,
        )

    return prepare


def section(document: dict[str, Any]) -> str:
    """The production History section of BENCHMARKS.md, from a run's results."""
    runs = document["runs"]
    sizes = [f"{run['files']:,} files" for run in runs]
    lines = [
        START,
        "### History on the production stack",
        "",
        (
            f"`python -m bench.history_production` at {document['commit']}, {document['date']} "
            f"({document['minutes']} min): the same figures on FerretDB 1.24 (SQLite), SeaweedFS "
            "and NATS JetStream on loopback; medians. Goal: every per-request figure grows at "
            f"most {GROWTH_GOAL:.0f}x from the smallest history to the largest (the SSE replay "
            "from the first history that fills its window). History was uploaded at "
            f"{FILES_PER_DAY:,} files a day; FerretDB 1.24 on SQLite uses no index, so a file's "
            "reads walk its day's collection, and a user's list walks every instruction (a "
            "scale limit the README states)."
        ),
        "",
        "| figure | " + " | ".join(sizes) + " | growth | goal |",
        "| --- |" + " ---: |" * (len(sizes) + 1) + " --- |",
    ]
    for key, label in LABELS.items():
        values = [run[key] for run in runs]
        cells = [f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" for v in values]
        growth, verdict = "", ""
        if key in PER_REQUEST or key.startswith("list_"):
            base = 0
            if key == "sse_replay_ms":  # the replay's window: 50 instructions of 50 files
                full = [i for i, run in enumerate(runs) if run["files"] >= REPLAY_FILES]
                base = full[0] if full else 0
            ratio = values[-1] / values[base] if values[base] else float("inf")
            growth = f"{ratio:.2f}x" + (f" (from {sizes[base]})" if base else "")
            verdict = "met" if ratio <= GROWTH_GOAL else "MISSED"
            if key == "list_deep_page_ms":
                verdict = "no goal: an offset walks the pages before it"
            elif key.startswith("list_") and verdict == "MISSED":
                verdict += ": FerretDB walks every instruction"
        elif key == "cleanup_files_per_second":
            drained = all(run["cleanup_drained"] for run in runs)
            verdict = "no goal" + ("" if drained else " (a backlog was left)")
        else:
            verdict = "no goal"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {growth} | {verdict} |")
    seeds = ", ".join(f"{run['seed_seconds']} s" for run in runs)
    lines += ["", f"Seeding took {seeds}.", END]
    return "\n".join(lines)


def write_section(text: str, path: Path = BENCHMARKS) -> None:
    """Put this section into BENCHMARKS.md: in place of the last one, else after History's."""
    current = path.read_text() if path.exists() else ""
    if START in current and END in current:
        before, rest = current.split(START, 1)
        path.write_text(before + text + rest.split(END, 1)[1])
    elif "<!-- history:end -->" in current:
        before, after = current.split("<!-- history:end -->", 1)
        path.write_text(before + "<!-- history:end -->\n\n" + text + after)
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_production", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="files of history")
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (medians)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="imagecore-history-") as folder,
        devstack.Devstack(Path(folder) / "servers") as stack,
    ):
        runs = asyncio.run(measure(sizes, Path(folder), args.runs, preparer(stack.env)))
    document = report(runs, began, section, RESULTS, write_section, write=not args.no_write)
    return 0 if document["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
