"""Hostile uploads through the HTTP API: a 4xx, a FAILED file with a reason, or a clean output.

The corpus is `hostile.cases`, made in code. libvips runs in a thread of
this process here (``http_support.running_api``), so the cases that may
kill the decoding process only run in the integration test. A Hypothesis
fuzz test mutates small valid images and checks that the processor ends
every one with an `imagecore.errors` exception or an output that decodes.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import statistics
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pyvips
from http_support import Api, running_api
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.vips.processor import VipsImageProcessor
from hostile import (
    MAX_FILE_BYTES,
    Case,
    Done,
    Failed,
    Rejected,
    cases,
    multipart,
    output_problems,
    valid,
)
from imagecore.errors import ImageCoreError
from imagecore.model import Status
from imagecore.ports import DetailQuery, ProcessingRequest
from imagecore.products import find_product

IN_PROCESS = [case for case in cases() if case.in_process and not case.slow]
KEY = re.compile(r"^(originals|outputs)/[0-9a-f]{24}/[0-9a-f]{24}(\.[a-z]+)?$")


async def upload(api: Api, instruction_id: str, case: Case) -> tuple[int, dict[str, Any]]:
    body, content_type = multipart([(case.filename, case.data, case.content_type)])
    return await api.call(
        "POST",
        f"/instructions/{instruction_id}/details",
        data=io.BytesIO(body),
        headers={"Content-Type": content_type},
    )


async def download(api: Api, instruction_id: str, detail: dict[str, Any]) -> tuple[bytes, str]:
    path = f"/instructions/{instruction_id}/details/{detail['output_id']}/file"
    async with api.session.get(api.base + path, headers=api.token("alice")) as response:
        assert response.status == 200
        return await response.read(), response.headers["Content-Disposition"]


def elapsed_ms(detail: dict[str, Any]) -> float:
    created = datetime.fromisoformat(detail["created_at"])
    finished = datetime.fromisoformat(detail["finished_at"] or detail["updated_at"])
    return (finished - created).total_seconds() * 1000


async def run_case(api: Api, case: Case, scratch: str) -> tuple[list[str], float]:
    """Upload one case to its own instruction; return its problems and its time to an outcome."""
    instruction_id = await api.instruction(case.product, case.params)
    started = asyncio.get_running_loop().time()
    status, body = await upload(api, instruction_id, case)
    upload_ms = (asyncio.get_running_loop().time() - started) * 1000
    expect = case.expect
    if isinstance(expect, Rejected):
        problems = refusal_problems(expect, status, body)
        if any(instruction_id in key for key in api.storage.stored_keys()):
            problems.append("a refused upload left bytes in storage")
        return problems, upload_ms
    if status != 200:
        return [f"upload answered {status}: {body.get('message')}"], upload_ms
    [detail] = await api.wait_final(instruction_id, seconds=30)
    if isinstance(expect, Failed):
        return failure_problems(expect, detail, scratch), elapsed_ms(detail)
    assert isinstance(expect, Done)
    if detail["status"] != "DONE":
        return [f"{detail['status']} {detail['error']}, expected DONE"], elapsed_ms(detail)
    data, disposition = await download(api, instruction_id, detail)
    return done_problems(expect, detail, data, disposition), elapsed_ms(detail)


def refusal_problems(expect: Rejected, status: int, body: dict[str, Any]) -> list[str]:
    if status != expect.status:
        return [f"status {status}, expected {expect.status}: {body.get('message')}"]
    if expect.says not in body["message"] or not body["errors"][0]["code"]:
        return [f"unclear refusal: {body}"]
    return []


def failure_problems(expect: Failed, detail: dict[str, Any], scratch: str) -> list[str]:
    error = detail["error"] or {}
    if detail["status"] != "FAILED" or error.get("code") not in expect.codes:
        return [f"{detail['status']} {error}, expected FAILED with {set(expect.codes)}"]
    message = error.get("message") or ""
    if not message or scratch in message or tempfile.gettempdir() + "/" in message:
        return [f"unclear or leaky reason: {message!r}"]
    return []


def done_problems(expect: Done, detail: dict[str, Any], data: bytes, disposition: str) -> list[str]:
    problems = output_problems(expect, data)
    if expect.name is not None and detail["original_name"] != expect.name:
        problems.append(f"original_name {detail['original_name']!r}, expected {expect.name!r}")
    if expect.mime_type is not None and detail["mime_type"] != expect.mime_type:
        problems.append(f"mime_type {detail['mime_type']}, expected {expect.mime_type}")
    if any(c in disposition for c in "\r\n\x00") or "../" in disposition:
        problems.append(f"Content-Disposition carries the hostile name: {disposition!r}")
    return problems


async def test_every_hostile_upload_ends_as_expected(tmp_path: Path) -> None:
    problems: dict[str, list[str]] = {}
    times: dict[str, list[float]] = defaultdict(list)
    # One user sends every case and polls each file: not what rate limits are tested on.
    unlimited = {"rate_limit_user_per_minute": 0, "rate_limit_address_per_minute": 0}
    async with running_api(tmp_path, max_file_bytes=MAX_FILE_BYTES, **unlimited) as api:
        for case in IN_PROCESS:
            found, ms = await run_case(api, case, str(tmp_path))
            times[case.kind].append(ms)
            if found:
                problems[case.name] = found
        status, health = await api.call("GET", "/health", user=None)
        assert status == 200, health
        keys = api.storage.stored_keys()
        unfinished = await api.repo.find_details(
            DetailQuery(statuses=frozenset({Status.PENDING, Status.PROCESSING}))
        )
    assert not problems, json.dumps(problems, indent=1)
    assert [k for k in keys if not KEY.match(k)] == []
    assert unfinished == []
    report = [f"{'class':24} {'cases':>5} {'median ms':>10} {'max ms':>8}"]
    for kind, values in sorted(times.items()):
        report.append(
            f"{kind:24} {len(values):5} {statistics.median(values):10.1f} {max(values):8.1f}"
        )
    print("\ntime to an outcome per class (4xx: the upload; else upload to final):")  # noqa: T201
    print("\n".join(report))  # noqa: T201


def test_the_corpus_covers_what_the_issue_lists() -> None:
    everything = cases()
    assert len(everything) >= 30
    kinds = {case.kind for case in everything}
    assert kinds >= {
        "not-an-image",
        "empty",
        "too-big-upload",
        "pixel-or-frame-flood",
        "legal-flood",
        "truncated",
        "random-behind-magic",
        "malformed",
        "lying-name-or-polyglot",
        "exif",
        "hostile-file-name",
        "decoder-crash",
    }
    truncated = {case.name.split("-cut")[0] for case in everything if case.kind == "truncated"}
    assert truncated == {"jpeg", "png", "gif", "webp", "tiff", "avif"}
    assert {f"exif-orientation-{o}-with-gps" for o in range(2, 9)} <= {c.name for c in everything}


# ----------------------------------------------------------------------------- fuzzing

FUZZ_FORMATS = ("jpeg", "png", "gif", "webp", "tiff", "avif")
FUZZ_PRODUCTS = {
    "images/thumbnail": {},
    "images/strip-metadata": {},
    "images/metadata": {},
    "images/convert": {"format": "png"},
}
PROCESSOR = VipsImageProcessor()
_SIGNATURE = 16


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A small valid image, then one to three bit flips, overwrites, cuts or splices.

    The first 16 bytes are left alone: a broken signature is refused before
    any decoder runs, which the corpus covers; the fuzzing is for decoders.
    """
    data = bytearray(valid(draw(st.sampled_from(FUZZ_FORMATS))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(_SIGNATURE, max(_SIGNATURE, len(data) - 1)))
        operation = draw(st.sampled_from(["flip", "overwrite", "cut", "splice"]))
        if operation == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(patch)] = patch
        elif operation == "cut":
            del data[at:]
        else:
            donor = valid(draw(st.sampled_from(FUZZ_FORMATS)))
            start = draw(st.integers(0, len(donor) - 1))
            data[at:at] = donor[start : start + draw(st.integers(1, 256))]
    return bytes(data)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutated_images(), product=st.sampled_from(sorted(FUZZ_PRODUCTS)))
def test_mutated_images_end_in_an_imagecore_error_or_a_valid_output(data, product):
    with tempfile.TemporaryDirectory(prefix="imagecore-fuzz-") as folder:
        source, destination = Path(folder) / "in", Path(folder) / "out"
        source.write_bytes(data)
        limits = find_product(product).limits
        request = ProcessingRequest(
            product,
            find_product(product).validate(FUZZ_PRODUCTS[product]),
            source,
            destination,
            limits.max_pixels,
            limits.max_frames,
        )
        try:
            result = PROCESSOR.process(request)
        except ImageCoreError as exc:
            refused: ImageCoreError | None = exc
        else:
            refused = None
        if refused is not None:
            event(f"refused: {refused.code}")
            assert refused.message
            assert folder not in refused.message
            return
        event(f"processed: {result.format}")
        written = destination.read_bytes()
        assert len(written) == result.size
        if result.format == "json":
            assert json.loads(written)["width"] == result.input.width
            return
        image = pyvips.Image.new_from_buffer(written, "")
        assert (
            image.width,
            image.get("page-height") if image.get_typeof("page-height") else image.height,
        ) == (
            result.width,
            result.height,
        )
        image.avg()


@pytest.mark.parametrize("fmt", FUZZ_FORMATS)
def test_the_fuzz_seeds_are_valid_images(fmt: str) -> None:
    assert pyvips.Image.new_from_buffer(valid(fmt), "").avg() > 0
