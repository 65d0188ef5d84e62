"""``python -m bench.history``: what the embedded stack's costs do with the size of history.

Issue 26's rule: a per-request, per-file or periodic cost is bounded by what
it touches, never by every file ever processed. For each size of history
(1k, 100k and 1M files by default) a fresh SQLite database is seeded in bulk
with that many finished files of one user (instructions of 50), a tenth of
them, at most 100k, still due for cleanup with their originals and outputs
stored. The service's own use cases then run against every size, the sizes
alternating call by call (the SQLite repository, the filesystem storage,
libvips in a thread): a new file's upload to DONE, one instruction's reads,
the first and a deep page of the user's list, the SSE replay and a reaper
pass (medians); then cleanup's throughput over the backlog, and the longest
wait of a point read, counted from when it was due, while cleanup and a
reaper pass run. Growth is the largest history's figure over the smallest's.
It writes ``bench/results/history.json`` and the History section of
BENCHMARKS.md (kept when ``python -m bench`` rewrites the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from adapters.documents import detail_to_document, instruction_to_document
from adapters.filesystem import FilesystemImageStorage
from adapters.memory import MemoryMessageBroker
from adapters.sqlite.repository import SqliteInstructionRepository, _dumps, _micros
from adapters.vips.processor import VipsImageProcessor
from bench import environment
from imagecore import processing, recovery, services
from imagecore.model import Instruction, InstructionDetail, OutputFile, Status, new_id
from imagecore.ports import (
    ImageStorage,
    InstructionQuery,
    InstructionRepository,
    MessageBroker,
    ProcessingRequest,
    ProcessingResult,
)
from imagecore.products import find_product

__all__ = ["kept_sections", "main", "section"]

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "history.json"
BENCHMARKS = ROOT.parent / "BENCHMARKS.md"
START, END = "<!-- history:start -->", "<!-- history:end -->"
#: The markers of `bench.history_production`'s part, which follows this one.
PRODUCTION_START = "<!-- history-production:start -->"
PRODUCTION_END = "<!-- history-production:end -->"

SIZES = (1_000, 100_000, 1_000_000)
PER_INSTRUCTION = 50
USER = "history"
#: When the history was made, and when the bench runs: history is a month old.
LONG_AGO = datetime(2026, 11, 1, tzinfo=UTC)
SETTINGS = processing.PipelineSettings(retention_seconds=24 * 3600)
#: Per-request figures and the goal on their growth (largest history over smallest).
GROWTH_GOAL = 1.2
CLEANUP_GOAL = 1_000.0  # files per second
STALL_GOAL_MS = 50.0


@attrs.frozen
class Seeded:
    """What a seeded database holds: instruction ids newest last, and the due backlog."""

    instructions: list[str]
    due: int


@functools.cache
def small_jpeg() -> bytes:
    """The image every file of the bench holds: 64x48, a few hundred bytes."""
    import pyvips  # noqa: PLC0415 - only the bench's runs need libvips

    image = pyvips.Image.black(64, 48, bands=3).linear(1, [40, 90, 160])
    return bytes(image.cast("uchar").jpegsave_buffer(Q=85))


def history_instruction(moment: datetime) -> Instruction:
    """An instruction of the history, created at ``moment``."""
    return Instruction(
        id=new_id(moment.timestamp()),
        user_id=USER,
        product_id=find_product("images/resize").id,
        product_key="images/resize",
        params={"width": 32},
        created_at=moment,
        updated_at=moment,
    )


def history_file(job: Instruction, moment: datetime, *, cleaned: bool) -> InstructionDetail:
    """A file of ``job`` uploaded and finished at ``moment``; its bytes ``cleaned`` or not."""
    file_id = new_id(moment.timestamp())
    output = OutputFile(f"outputs/{job.id}/{file_id}.jpg", "kite.jpg", 1000, "image/jpeg", 64, 48)
    return InstructionDetail(
        id=file_id,
        instruction_id=job.id,
        user_id=USER,
        product_key="images/resize",
        original_name="kite.jpg",
        original_key=f"originals/{job.id}/{file_id}",
        size=len(small_jpeg()),
        mime_type="image/jpeg",
        created_at=moment,
        updated_at=moment,
        status=Status.DONE,
        output=output,
        attempts=1,
        finished_at=moment,
        is_cleaned=cleaned,
        version=4,
    )


async def seed(path: Path, storage: FilesystemImageStorage, files: int) -> Seeded:
    """``files`` finished files of history, written straight into the tables in bulk."""
    repo = await SqliteInstructionRepository.open(path)  # the schema
    await repo.close()
    due = min(files // 10, 100_000)
    instructions: list[str] = []
    instruction_rows, detail_rows = [], []
    for number in range(files):
        moment = LONG_AGO + timedelta(milliseconds=number)
        if number % PER_INSTRUCTION == 0:
            job = history_instruction(moment)
            instructions.append(job.id)
            held = min(PER_INSTRUCTION, files - number)
            instruction_rows.append(
                (job.id, USER, _micros(moment), "DONE", _dumps(instruction_to_document(job)), held)
            )
        cleaned = number >= due  # the oldest tenth is still due for cleanup
        record = history_file(job, moment, cleaned=cleaned)
        file_id = record.id
        detail_rows.append(
            (
                file_id,
                job.id,
                "DONE",
                _micros(moment),
                _micros(moment),
                int(cleaned),
                0,
                4,
                _dumps(detail_to_document(record)),
            )
        )
    with sqlite3.connect(path, isolation_level=None) as connection:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO instructions (id, user_id, created_at, status, document, done) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            instruction_rows,
        )
        connection.execute(  # what the repository keeps per user as it adds instructions
            "INSERT INTO user_counts (user_id, status, instructions) VALUES (?, 'DONE', ?)",
            (USER, len(instruction_rows)),
        )
        connection.executemany(
            "INSERT INTO details (id, instruction_id, status, created_at, updated_at, "
            "is_cleaned, outbox, version, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            detail_rows,
        )
        connection.execute("COMMIT")
    connection.close()
    semaphore = asyncio.Semaphore(16)

    async def stored(key: str) -> None:
        async with semaphore:
            await storage.put(key, _one(small_jpeg()), "image/jpeg")

    # The due files' originals and outputs, for cleanup to delete.
    keys = [f"originals/{row[1]}/{row[0]}" for row in detail_rows[:due]]
    keys += [f"outputs/{row[1]}/{row[0]}.jpg" for row in detail_rows[:due]]
    await asyncio.gather(*(stored(key) for key in keys))
    return Seeded(instructions, due)


async def _one(data: bytes):  # noqa: ANN202 - an async generator of one chunk
    yield data


async def inline(request: ProcessingRequest) -> ProcessingResult:
    return await asyncio.to_thread(VipsImageProcessor().process, request)


@attrs.define
class Subject:
    """One size of history, seeded and open: what the figures run against."""

    files: int
    folder: Path
    repo: InstructionRepository
    storage: ImageStorage
    broker: MessageBroker
    seeded: Seeded
    fresh: str  # an instruction for new files
    middle: Instruction  # an instruction half-way down the user's list
    seed_seconds: float
    close: Callable[[], Awaitable[None]]  # ends what ``prepare`` opened


async def prepare(files: int, folder: Path) -> Subject:
    """Seed ``files`` of history in ``folder`` and open the stack on it."""
    storage = FilesystemImageStorage(folder / "files")
    started = time.perf_counter()
    seeded = await seed(folder / "imagecore.sqlite3", storage, files)
    seed_seconds = time.perf_counter() - started
    repo = await SqliteInstructionRepository.open(folder / "imagecore.sqlite3")
    fresh = await services.create_instruction(
        repo, user_id=USER, product_ref="images/resize", params={"width": 32}, now=_now()
    )
    middle = await repo.get_instruction(seeded.instructions[len(seeded.instructions) // 2])
    return Subject(
        files,
        folder,
        repo,
        storage,
        MemoryMessageBroker(),
        seeded,
        fresh.instruction.id,
        middle,
        round(seed_seconds, 1),
        repo.close,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def requests(subject: Subject) -> dict[str, Callable[[], Awaitable[object]]]:
    """The per-request and per-pass work, by figure: each call is timed alone."""
    repo, storage, broker = subject.repo, subject.storage, subject.broker
    middle = subject.middle

    async def upload_to_done() -> None:
        held = await repo.count_details(subject.fresh)
        if held == find_product("images/resize").limits.max_files_per_instruction:
            new = await services.create_instruction(
                repo, user_id=USER, product_ref="images/resize", params={"width": 32}, now=_now()
            )
            subject.fresh = new.instruction.id
        detail = await services.upload_file(
            repo,
            storage,
            broker,
            user_id=USER,
            instruction_id=subject.fresh,
            filename="new.jpg",
            chunks=_one(small_jpeg()),
            now=_now(),
        )
        handled = await processing.process_detail(
            repo,
            storage,
            broker,
            inline,
            detail_id=detail.id,
            scratch=subject.folder,
            clock=_now,
            settings=SETTINGS,
        )
        if handled.final is None or handled.final.status is not Status.DONE:
            raise RuntimeError(f"the new file did not end DONE: {handled}")

    async def one_instruction() -> None:
        await services.get_instruction(repo, user_id=USER, instruction_id=middle.id)
        await services.list_details(repo, user_id=USER, instruction_id=middle.id)

    async def sse_replay() -> None:  # what GET /events with Last-Event-ID reads
        page = await repo.list_instructions(InstructionQuery(USER, size=50))
        for instruction in page.items:
            await repo.list_details(instruction.id)

    first = InstructionQuery(USER, size=10)
    deep = InstructionQuery(USER, size=10, after=(middle.created_at, middle.id))
    by_number = InstructionQuery(USER, size=10, page=max(1, len(subject.seeded.instructions) // 20))
    return {
        "upload_to_done_ms": upload_to_done,
        "instruction_read_ms": one_instruction,
        "list_first_page_ms": lambda: services.list_instructions(repo, first),
        "list_deep_cursor_ms": lambda: services.list_instructions(repo, deep),
        "list_deep_page_ms": lambda: services.list_instructions(repo, by_number),
        "sse_replay_ms": sse_replay,
        "reap_pass_ms": lambda: recovery.reap(repo, broker, now=_now(), settings=SETTINGS),
    }


async def periodic(subject: Subject) -> dict[str, Any]:
    """Cleanup over the backlog, and the longest point read while it and a reaper pass run."""
    repo = subject.repo
    stalls: list[float] = []
    running = True
    detail_id = (await repo.list_details(subject.middle.id))[0].id

    async def point_reads() -> None:
        # Each read is due 1 ms after the last: its wait counts from then, so a
        # loop held by the periodic work counts as well as a queue behind it.
        while running:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            await repo.get_detail(detail_id)
            stalls.append((time.perf_counter() - due) * 1000)

    reader = asyncio.create_task(point_reads())
    started = time.perf_counter()
    cleaned, _ = await recovery.cleanup(
        repo, subject.storage, subject.broker, now=_now(), settings=SETTINGS
    )
    seconds = time.perf_counter() - started
    await recovery.reap(repo, subject.broker, now=_now(), settings=SETTINGS)
    running = False
    await reader
    return {
        "cleanup_files": cleaned,
        "cleanup_drained": cleaned == subject.seeded.due,
        "cleanup_files_per_second": round(cleaned / seconds, 1),
        "point_read_max_stall_ms": round(max(stalls), 2),
        "point_reads": len(stalls),
    }


Prepare = Callable[[int, Path], Awaitable[Subject]]


async def measure(
    sizes: list[int], folder: Path, runs: int, prepare: Prepare = prepare
) -> list[dict[str, Any]]:
    """Every figure against every size, the sizes alternating call by call (medians of ``runs``).

    A slow spell of a shared machine then falls on every size alike: the
    growth from one to the next is measured side by side.
    """
    subjects = [await prepare(size, folder / str(size)) for size in sizes]
    try:
        works = [requests(subject) for subject in subjects]
        times: list[dict[str, list[float]]] = [{} for _ in subjects]
        for round_number in range(runs):
            for figure in works[0]:
                # A different size goes first each round.
                order = list(range(len(subjects)))
                order = order[round_number % len(order) :] + order[: round_number % len(order)]
                for index in order:
                    started = time.perf_counter()
                    await works[index][figure]()
                    elapsed = (time.perf_counter() - started) * 1000
                    times[index].setdefault(figure, []).append(elapsed)
        results = []
        for subject, measured in zip(subjects, times, strict=True):
            figures: dict[str, Any] = {
                "files": subject.files,
                "due": subject.seeded.due,
                "seed_seconds": subject.seed_seconds,
            }
            figures |= {name: statistics.median(values) for name, values in measured.items()}
            figures |= await periodic(subject)
            results.append(figures)
    finally:
        for subject in subjects:
            await subject.close()
    return results


#: Files in the SSE replay's window: below this the history is smaller than the window.
REPLAY_FILES = 50 * PER_INSTRUCTION
PER_REQUEST = (
    "upload_to_done_ms",
    "instruction_read_ms",
    "list_first_page_ms",
    "list_deep_cursor_ms",
    "sse_replay_ms",
    "reap_pass_ms",
)
LABELS = {
    "upload_to_done_ms": "a new file's upload to DONE (ms)",
    "instruction_read_ms": "one instruction and its files (ms)",
    "list_first_page_ms": "first page of the user's list (ms)",
    "list_deep_cursor_ms": "a page half-way down, by cursor (ms)",
    "list_deep_page_ms": "a page half-way down, by page number (ms)",
    "sse_replay_ms": "SSE replay, 50 newest instructions (ms)",
    "reap_pass_ms": "a reaper pass (ms)",
    "cleanup_files_per_second": "cleanup, files per second",
    "point_read_max_stall_ms": "longest point read during cleanup and reap (ms)",
}


def section(document: dict[str, Any]) -> str:
    """The History section of BENCHMARKS.md, from a run's results."""
    runs = document["runs"]
    sizes = [f"{run['files']:,} files" for run in runs]
    lines = [
        START,
        "## History",
        "",
        (
            f"`python -m bench.history` at {document['commit']}, {document['date']} "
            f"({document['minutes']} min): the embedded stack (SQLite, filesystem storage, libvips "
            "in a thread) against histories of finished files of one user; medians. "
            f"Goals: every per-request figure grows at most {GROWTH_GOAL}x from the smallest "
            f"history to the largest; cleanup at least {CLEANUP_GOAL:,.0f} files per second, each "
            f"backlog (a tenth of the files, at most 100k) drained in one run; no point read waits "
            f"more than {STALL_GOAL_MS:.0f} ms while the reaper and cleanup run. The SSE replay "
            f"reads the files of the user's 50 newest instructions: its growth is counted from the "
            f"first history that fills that window ({REPLAY_FILES:,} files)."
        ),
        "",
        "| figure | " + " | ".join(sizes) + " | growth | goal |",
        "| --- |" + " ---: |" * (len(sizes) + 1) + " --- |",
    ]
    for key, label in LABELS.items():
        values = [run[key] for run in runs]
        cells = [f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" for v in values]
        growth, verdict = "", ""
        if key in PER_REQUEST or key == "list_deep_page_ms":
            base = 0
            if key == "sse_replay_ms":  # the replay's window: 50 instructions of 50 files
                full = [i for i, run in enumerate(runs) if run["files"] >= REPLAY_FILES]
                base = full[0] if full else 0
            ratio = values[-1] / values[base] if values[base] else float("inf")
            # Decimals enough to show which side of the goal a ratio beside it falls.
            shown = f"{ratio:.2f}" if f"{ratio:.2f}" != f"{GROWTH_GOAL:.2f}" else f"{ratio:.4f}"
            growth = f"{shown}x" + (f" (from {sizes[base]})" if base else "")
            if key in PER_REQUEST:
                verdict = "met" if ratio <= GROWTH_GOAL else "MISSED"
            else:
                verdict = "no goal: an offset walks the pages before it"
        elif key == "cleanup_files_per_second":
            drained = all(run["cleanup_drained"] for run in runs)
            met = min(values) >= CLEANUP_GOAL and drained
            verdict = ("met" if met else "MISSED") + ("" if drained else " (a backlog was left)")
        elif key == "point_read_max_stall_ms":
            verdict = "met" if values[-1] <= STALL_GOAL_MS else "MISSED"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {growth} | {verdict} |")
    seeds = ", ".join(f"{run['seed_seconds']} s" for run in runs)
    lines += ["", f"Seeding took {seeds}.", END]
    return "\n".join(lines)


def write_section(text: str, path: Path = BENCHMARKS) -> None:
    """Put the History section into BENCHMARKS.md, replacing the one there."""
    current = path.read_text() if path.exists() else ""
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1]
        path.write_text(before + text + after)
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + text + "\n")


def kept_sections(path: Path) -> str:
    """Both History parts of the BENCHMARKS.md at ``path``, for `bench.report` to keep (or "")."""
    current = path.read_text() if path.exists() else ""
    kept = ""
    for start, end in ((START, END), (PRODUCTION_START, PRODUCTION_END)):
        if start in current and end in current:
            kept += f"\n{start}{current.split(start, 1)[1].split(end, 1)[0]}{end}\n"
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="files of history")
    parser.add_argument("--runs", type=int, default=20, help="runs per figure (medians)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imagecore-history-") as folder:
        runs = asyncio.run(measure(sizes, Path(folder), args.runs))
    document = report(runs, began, section, RESULTS, write_section, write=not args.no_write)
    return 0 if document["runs"] else 1


def report(  # noqa: PLR0913 - what one History part's run writes where
    runs: list[dict[str, Any]],
    began: float,
    section: Callable[[dict[str, Any]], str],
    results: Path,
    write_section: Callable[[str], None],
    *,
    write: bool,
) -> dict[str, Any]:
    """Print a run's figures and its section; with ``write``, keep both. Returns the document."""
    for figures in runs:
        print(json.dumps(figures), flush=True)
    document = {
        "commit": environment.describe()["git"],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": round((time.monotonic() - began) / 60, 1),
        "runs": runs,
    }
    text = section(document)
    print(text)
    if write:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(document, indent=2))
        write_section(text)
    return document


if __name__ == "__main__":
    sys.exit(main())
