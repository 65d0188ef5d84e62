"""The test kit (imagecore.testing) as a host's tests use it: strategies, fake, plugin fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagecore import processing, services
from imagecore.errors import CorruptImage, InvalidParameter, UnsupportedMediaType
from imagecore.model import Instruction, InstructionDetail, Status, is_object_id
from imagecore.ports import ProcessingRequest
from imagecore.products import CATALOGUE, Product
from imagecore.testing import FakeImageProcessor, strategies

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
SETTINGS = processing.PipelineSettings(
    lease_seconds=60,
    max_attempts=3,
    republish_after_seconds=30,
    retention_seconds=3600,
    stale_after_seconds=7200,
)


@pytest.mark.parametrize("product", CATALOGUE, ids=lambda p: p.key)
@given(data=st.data())
def test_drawn_parameters_are_accepted_by_their_product(product: Product, data) -> None:
    params = data.draw(strategies.params(product))
    checked = product.validate(params)
    assert set(params) <= set(checked)


@pytest.mark.parametrize("product", [p for p in CATALOGUE if p.parameters], ids=lambda p: p.key)
@given(data=st.data())
def test_drawn_invalid_parameters_are_refused(product: Product, data) -> None:
    with pytest.raises(InvalidParameter):
        product.validate(data.draw(strategies.invalid_params(product)))


@given(st.from_type(Instruction))
def test_from_type_draws_instructions_as_the_services_make_them(job: Instruction) -> None:
    assert is_object_id(job.id)
    assert job.created_at.tzinfo is UTC
    assert job.created_at <= job.updated_at
    assert job.product_id == next(p.id for p in CATALOGUE if p.key == job.product_key)


@given(st.from_type(InstructionDetail))
def test_drawn_details_went_through_the_state_machine(detail: InstructionDetail) -> None:
    assert (detail.output is not None) is (detail.status is Status.DONE)
    assert (detail.error_code is not None) is (detail.status is Status.FAILED)
    assert detail.attempts == (0 if detail.status is Status.PENDING else 1)


@given(st.builds(Instruction), st.builds(InstructionDetail))
def test_builds_makes_records_from_the_fields_types(job: Instruction, detail) -> None:
    # Any values of the fields' types: not what the services make, but a record.
    assert isinstance(job.params, dict)
    assert isinstance(job.created_at, datetime)
    assert isinstance(detail.status, Status)


@attrs.frozen
class Upload:
    """A host's own record holding imagecore's: builds() finds the kit's strategies."""

    name: str
    instruction: Instruction


# Hypothesis reads attrs annotations as types, and `from __future__ import annotations`
# leaves them strings until resolved.
attrs.resolve_types(Upload)


@given(st.builds(Upload))
def test_a_host_record_with_domain_fields_builds(upload: Upload) -> None:
    assert is_object_id(upload.instruction.id)


@given(strategies.details(status=Status.DONE))
def test_details_in_a_chosen_status(detail: InstructionDetail) -> None:
    assert detail.status is Status.DONE
    assert detail.finished_at is not None


def _request(tmp_path: Path, data: bytes, **params: object) -> ProcessingRequest:
    source = tmp_path / "in"
    source.write_bytes(data)
    return ProcessingRequest("images/resize", params, source, tmp_path / "out", 10**8, 100)


async def test_the_fake_processor_copies_and_answers_like_a_resize(tmp_path: Path) -> None:
    fake = FakeImageProcessor(input_size=(400, 300))
    result = await fake(_request(tmp_path, JPEG, width=200))
    assert (tmp_path / "out").read_bytes() == JPEG
    assert (result.format, result.mime_type, result.extension) == ("jpeg", "image/jpeg", "jpg")
    assert (result.width, result.height, result.size) == (200, 150, len(JPEG))
    assert (result.input.width, result.input.height) == (400, 300)
    assert fake.calls == 1


def test_the_fake_processor_refuses_what_is_no_image_and_raises_what_it_is_told(
    tmp_path: Path,
) -> None:
    fake = FakeImageProcessor(errors=[CorruptImage("the JPEG data ends early")])
    with pytest.raises(CorruptImage):
        fake.process(_request(tmp_path, JPEG))
    with pytest.raises(UnsupportedMediaType):
        fake.process(_request(tmp_path, b"%PDF-1.7"))
    assert not (tmp_path / "out").exists()
    assert fake.calls == 2


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_the_plugin_fixtures_run_a_file_to_done(
    imagecore_repository, imagecore_storage, imagecore_broker, imagecore_processor, tmp_path
) -> None:
    view = await services.create_instruction(
        imagecore_repository,
        user_id="alice",
        product_ref="images/resize",
        params={"width": 32},
        now=T0,
    )
    detail = await services.upload_file(
        imagecore_repository,
        imagecore_storage,
        imagecore_broker,
        user_id="alice",
        instruction_id=view.instruction.id,
        filename="kite.jpg",
        chunks=_chunks(JPEG),
        now=T0,
    )
    handled = await processing.process_detail(
        imagecore_repository,
        imagecore_storage,
        imagecore_broker,
        imagecore_processor,
        detail_id=detail.id,
        scratch=tmp_path,
        clock=lambda: T0 + timedelta(seconds=1),
        settings=SETTINGS,
    )
    assert handled.outcome is processing.Outcome.FINISHED
    done = await imagecore_repository.get_detail(detail.id)
    assert (done.status, done.output.width, done.output.height) == (Status.DONE, 32, 24)
    assert imagecore_processor.requests[0].params["width"] == 32
