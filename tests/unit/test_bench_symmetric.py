"""The symmetric peer workload's pure parts: ids, order, ratios, goals, report, driver."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench.goals import goals
from bench.peer import THUMBOR_PATHS, thumbor_conf
from bench.symmetric import (
    _measured,
    round_order,
    symmetric_summary,
    upload_and_derive,
    uploaded_id,
)
from bench.symmetric_report import round_ratios, symmetric_section


@pytest.mark.parametrize(
    "location",
    [
        "/image/0f3c9a7d2b8e4c1a9d6e5f4a3b2c1d0e/image.jpg",
        "http://127.0.0.1:8888/image/0f3c9a7d2b8e4c1a9d6e5f4a3b2c1d0e/kite.jpg",
    ],
)
def test_the_image_id_is_read_from_thumbors_upload_location(location: str) -> None:
    assert uploaded_id(location) == "0f3c9a7d2b8e4c1a9d6e5f4a3b2c1d0e"


@pytest.mark.parametrize("location", ["/unsafe/kite.jpg", "/image", "/image//kite.jpg", ""])
def test_a_location_that_names_no_upload_is_refused(location: str) -> None:
    with pytest.raises(ValueError, match="not the location of an upload"):
        uploaded_id(location)


def test_the_subject_that_goes_first_swaps_every_round() -> None:
    orders = [round_order(r) for r in range(4)]
    assert orders == [
        ("imagecore", "thumbor"),
        ("thumbor", "imagecore"),
        ("imagecore", "thumbor"),
        ("thumbor", "imagecore"),
    ]


def _run(per_second: float, per_cpu_second: float, serve_ms: float = 5.0) -> dict[str, Any]:
    return {
        "images": 96,
        "failed": 0,
        "images_per_second": per_second,
        "images_per_cpu_second": per_cpu_second,
        "cpu_ms_per_image": 1000 / per_cpu_second,
        "root_cpu_ms_per_image": serve_ms,
        "client_cpu_ms_per_image": 0.5,
        "mean_output_bytes": 30_000,
        "latency": {"p50": 0.05, "p95": 0.09, "p99": 0.1},
    }


def _runs() -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {
        "W1": {
            "imagecore": [_run(60, 40), _run(72, 48), _run(66, 45)],
            "thumbor": [_run(50, 50), _run(60, 40), _run(55, 30)],
        }
    }


def test_the_ratios_are_of_the_medians_of_the_rounds() -> None:
    row = symmetric_summary(_runs())["W1"]
    assert row["imagecore"]["images_per_second"] == 66
    assert row["thumbor"]["images_per_cpu_second"] == 40
    assert row["ratio_wall"] == pytest.approx(66 / 55)
    assert row["ratio_cpu"] == pytest.approx(45 / 40)


def test_each_rounds_ratio_pairs_the_subjects_of_that_round() -> None:
    ratios = round_ratios(_runs()["W1"])
    assert ratios == [
        pytest.approx((60 / 50, 40 / 50)),
        pytest.approx((72 / 60, 48 / 40)),
        pytest.approx((66 / 55, 45 / 30)),
    ]


def _document(wall: float, cpu: float) -> dict[str, Any]:
    runs = {"imagecore": [_run(60 * wall, 40 * cpu)], "thumbor": [_run(60, 40)]}
    return {"symmetric": {"concurrency": 4, "runs": {"W1": runs, "W2": runs}}}


@pytest.mark.parametrize(
    ("wall", "cpu", "verdict"),
    [(1.3, 1.25, "met"), (1.3, 1.1, "MISSED"), (1.1, 1.3, "MISSED")],
)
def test_the_symmetric_goal_needs_both_wall_clock_and_cpu(
    wall: float, cpu: float, verdict: str
) -> None:
    document = _document(wall, cpu)
    document["symmetric"]["summary"] = symmetric_summary(document["symmetric"]["runs"])
    judged = [g for g in goals(document) if "symmetric" in g.name]
    assert [g.verdict for g in judged] == [verdict, verdict]


def test_the_symmetric_goals_read_not_run_without_the_stage() -> None:
    judged = [g for g in goals({}) if "symmetric" in g.name]
    assert [g.verdict for g in judged] == ["not run", "not run"]
    assert symmetric_section({}) == []


def test_the_section_shows_the_asymmetric_ratios_of_the_same_run_beside_its_own() -> None:
    document = _document(0.9, 0.8)
    document["symmetric"]["summary"] = symmetric_summary(document["symmetric"]["runs"])
    pair = {"imagecore": {"images_per_second": 35, "images_per_cpu_second": 30}}
    pair["thumbor"] = {"images_per_second": 50, "images_per_cpu_second": 40}
    document["e2e"] = {"summary": {"W1": pair}}
    text = "\n".join(symmetric_section(document))
    assert "| W1 | 54.0 (32.0) | 60.0 (40.0) | **0.90** / **0.80** |" in text
    assert "asymmetric rows" in text
    assert "W1 0.70x / 0.75x" in text


def test_thumbor_stores_uploads_in_its_file_storage_only_when_asked(tmp_path: Path) -> None:
    plain = thumbor_conf(tmp_path / "corpus")
    uploads = thumbor_conf(tmp_path / "corpus", tmp_path / "storage")
    assert "UPLOAD_ENABLED" not in plain
    assert uploads.startswith(plain)
    settings: dict[str, Any] = {}
    exec(uploads, settings)  # noqa: S102 - thumbor reads its configuration as Python
    assert settings["STORAGE"] == "thumbor.storages.file_storage"
    assert settings["UPLOAD_PHOTO_STORAGE"] == "thumbor.storages.file_storage"
    assert settings["UPLOAD_ENABLED"] is True
    assert settings["FILE_STORAGE_ROOT_PATH"] == str((tmp_path / "storage").resolve())


class FakeThumbor:
    """thumbor's upload and imaging handlers as a client sees them."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.derived: list[str] = []

    async def upload(self, request: web.Request) -> web.Response:
        image_id = uuid.uuid4().hex
        self.stored[image_id] = await request.read()
        return web.Response(status=201, headers={"Location": f"/image/{image_id}/image.jpg"})

    async def derive(self, request: web.Request) -> web.Response:
        self.derived.append(request.path)
        image_id = request.path.rsplit("/", 1)[1]
        return web.Response(body=self.stored[image_id][:10])


@contextlib.asynccontextmanager
async def serving(fake: FakeThumbor) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/image", fake.upload)
    app.router.add_get("/unsafe/{path:.*}", fake.derive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_each_image_is_uploaded_then_derived_by_the_id_thumbor_gave_it(
    tmp_path: Path,
) -> None:
    sources = []
    for name in ("kite", "path", "cups"):
        source = tmp_path / f"{name}.jpg"
        source.write_bytes(name.encode() * 100)
        sources.append(source)
    fake = FakeThumbor()
    async with serving(fake) as base:
        result = await upload_and_derive([base], "W2", sources * 2, concurrency=2)
    assert result["images"] == 6
    assert result["failed"] == 0
    assert sorted(fake.stored.values()) == sorted(s.read_bytes() for s in sources * 2)
    expected = sorted(THUMBOR_PATHS["W2"].format(name=i) for i in fake.stored)
    assert sorted(fake.derived) == expected
    assert result["mean_output_bytes"] == 10


class StoppedWatch:
    """A probe whose readings are given: 2 s of CPU, 0.5 s of it the serve process's."""

    sampling_cpu = 0.0

    def cpu_seconds(self) -> float:
        return 2.0

    def root_cpu_seconds(self) -> float:
        return 0.5


def test_cpu_is_counted_per_image_done_not_per_image_tried() -> None:
    result = {"images": 10, "failed": 6, "images_per_second": 1.0}
    measured = _measured(result, StoppedWatch(), client_since=time.process_time())
    # 4 images done for 2 s of CPU: failing requests make a side no cheaper.
    assert measured["images_per_cpu_second"] == 2.0
    assert measured["cpu_ms_per_image"] == 500.0
    assert measured["root_cpu_ms_per_image"] == 125.0
