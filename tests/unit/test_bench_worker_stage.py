"""The benchmark's worker stage (`bench.worker_stage.ServiceWorker`): a drain runs
only the service's worker, and the timings are read from the repository after it,
outside the CPU time counted as the worker's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.worker_stage import ServiceWorker
from bench.workloads import WORKLOADS
from entrypoints.config import Settings

_W1 = next(w for w in WORKLOADS if w.key == "W1").steps[0]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ServiceWorker]:
    opened = await ServiceWorker.open(Settings(data_dir=tmp_path / "data"), 1)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_drain_reads_nothing_back_and_the_timings_come_after(
    service: ServiceWorker, corpus: Path
) -> None:
    photo = min((corpus / "photos").glob("*.jpg"))
    ids = await service.queue(_W1, [photo, photo])
    repository = service.runtime.repository
    before = [await repository.get_detail(i) for i in ids]
    assert all(d.finished_at is None for d in before)

    assert await service.drain(ids) is None
    timings = await service.timings(ids)

    assert timings["images"] == 2
    assert 0 < timings["seconds"] < 60
    after = [await repository.get_detail(i) for i in ids]
    assert timings["output_bytes"] == sum(d.output.size for d in after if d.output)
    assert timings["output_bytes"] > 0


async def test_the_timings_refuse_a_drain_whose_files_did_not_all_finish_done(
    service: ServiceWorker, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(4096))  # a JPEG's magic, then nothing
    ids = await service.queue(_W1, [broken])
    await service.drain(ids)
    with pytest.raises(RuntimeError, match="1 files did not finish DONE"):
        await service.timings(ids)
