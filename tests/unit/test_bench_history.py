"""The history bench: its figures on a small history, and the section it writes."""

from __future__ import annotations

from pathlib import Path

from adapters.filesystem import FilesystemImageStorage
from adapters.sqlite.repository import SqliteInstructionRepository
from bench import history, history_production
from imagecore.model import Status
from imagecore.ports import DetailQuery, InstructionQuery


async def test_a_small_history_gives_every_figure_and_drains_its_backlog(tmp_path: Path) -> None:
    [figures] = await history.measure([120], tmp_path, runs=2)
    assert (figures["files"], figures["due"]) == (120, 12)
    assert figures["cleanup_files"] == 12
    assert figures["cleanup_drained"] is True
    for key in history.LABELS:
        assert figures[key] > 0, key
    assert figures["point_reads"] > 0


async def test_the_seeded_history_reads_as_the_repository_would_have_written_it(
    tmp_path: Path,
) -> None:
    storage = FilesystemImageStorage(tmp_path / "files")
    seeded = await history.seed(tmp_path / "imagecore.sqlite3", storage, 120)
    repo = await SqliteInstructionRepository.open(tmp_path / "imagecore.sqlite3")
    try:
        page = await repo.list_instructions(InstructionQuery(history.USER, status=Status.DONE))
        assert page.total == len(seeded.instructions) == 3
        counts = await repo.file_counts(seeded.instructions)
        assert [c[Status.DONE] for c in counts.values()] == [50, 50, 20]
        due = await repo.find_details(DetailQuery(is_cleaned=False, limit=1000))
        assert len(due) == seeded.due == 12
        assert all([await storage.exists(d.original_key) for d in due])
    finally:
        await repo.close()


def run(files: int, scale: float) -> dict[str, object]:
    figures: dict[str, object] = dict.fromkeys(history.LABELS, 1.0 * scale)
    figures |= {"files": files, "cleanup_drained": True, "seed_seconds": 0.1}
    figures["cleanup_files_per_second"] = 2_000.0
    figures["point_read_max_stall_ms"] = 3.0
    return figures


def test_the_section_judges_growth_from_the_smallest_history_to_the_largest() -> None:
    document = {
        "commit": "abc1234",
        "date": "2026-12-06 12:00 UTC",
        "minutes": 1.0,
        "runs": [run(1_000, 1.0), run(100_000, 1.1), run(1_000_000, 1.5)],
    }
    text = history.section(document)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert "1.50x | MISSED" in rows["a reaper pass (ms)"]
    # The replay's growth counts from the first history that fills its window.
    assert "1.36x (from 100,000 files) | MISSED" in rows["SSE replay, 50 newest instructions (ms)"]
    assert rows["cleanup, files per second"].endswith("| met |")
    document["runs"] = [run(1_000, 1.0), run(1_000_000, 1.1)]
    assert "1.10x | met" in history.section(document)
    document["runs"] = [run(1_000, 1.0), run(1_000_000, 1.2002)]  # beside the goal: which side
    assert "1.2002x | MISSED" in history.section(document)


def test_the_section_replaces_its_old_self_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nthe rest\n")
    history.write_section(f"{history.START}\nfirst\n{history.END}", path)
    history.write_section(f"{history.START}\nsecond\n{history.END}", path)
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nthe rest\n")
    assert "second" in text
    assert "first" not in text
    assert text.count(history.START) == 1


def test_the_production_section_follows_history_and_the_report_keeps_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n")
    history.write_section(f"{history.START}\nembedded\n{history.END}", path)
    production = history_production
    production.write_section(f"{production.START}\nfirst\n{production.END}", path)
    production.write_section(f"{production.START}\nsecond\n{production.END}", path)
    text = path.read_text()
    assert text.index("embedded") < text.index("second")
    assert "first" not in text
    kept = history.kept_sections(path)
    assert kept.index("embedded") < kept.index("second")
    assert kept.count(production.START) == 1


def test_the_production_section_allows_twice_the_growth_and_names_the_list_walk() -> None:
    document = {
        "commit": "abc1234",
        "date": "2026-12-06 12:00 UTC",
        "minutes": 1.0,
        "runs": [run(1_000, 1.0), run(10_000, 1.9), run(100_000, 2.1)],
    }
    text = history_production.section(document)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert "2.10x | MISSED |" in rows["a reaper pass (ms)"]
    assert "MISSED: FerretDB walks every instruction" in rows["first page of the user's list (ms)"]
    # The replay counts from 10k files, the first history that fills its window: 2.1/1.9.
    assert "1.11x (from 10,000 files) | met" in rows["SSE replay, 50 newest instructions (ms)"]
    document["runs"] = [run(1_000, 1.0), run(100_000, 1.9)]
    assert "1.90x | met" in history_production.section(document)
