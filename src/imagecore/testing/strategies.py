"""Hypothesis strategies for products' parameters and the domain's records.

``params(product)`` draws parameters the product accepts (`Product.validate`
passes them; ``invalid_params`` draws ones it refuses); ``instructions()``,
``details()``, ``outputs()`` and ``image_infos()`` draw records as the
services make them: 24-hex ids, aware UTC times at millisecond precision
(what every repository keeps), JSON-like parameters and metadata.

Importing this module registers them for `hypothesis.strategies.from_type`,
and the ``hypothesis`` entry point of the package does so whenever
Hypothesis loads, so ``st.from_type(Instruction)`` (and ``st.builds`` of a
host's class with an `Instruction` field) works without importing anything.
``st.builds(Instruction)`` itself infers each field from its annotation, and
``params: dict[str, Any]`` has none to infer from: use ``instructions()``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from imagecore.formats import MIME_TYPES
from imagecore.model import ImageInfo, Instruction, InstructionDetail, OutputFile, Status
from imagecore.params import Kind, Parameter
from imagecore.products import CATALOGUE, Product, find_product

__all__ = [
    "details",
    "image_infos",
    "instructions",
    "invalid_params",
    "json_values",
    "object_ids",
    "outputs",
    "params",
    "products",
    "times",
    "user_ids",
]

#: The start of `times`.
T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
#: A 1x1 PNG: the image a drawn ``images/watermark`` ``image`` parameter carries.
PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
    "nGNg+M/wHwAFAAIBo+HTpwAAAABJRU5ErkJggg=="
)
_IMAGE_FORMATS = tuple(name for name in MIME_TYPES if name != "json")


def products() -> st.SearchStrategy[Product]:
    """A product of the catalogue."""
    return st.sampled_from(CATALOGUE)


def times(days: int = 30) -> st.SearchStrategy[datetime]:
    """An aware UTC time at millisecond precision, within ``days`` of `T0`."""
    return st.integers(0, days * 86_400_000).map(lambda ms: T0 + timedelta(milliseconds=ms))


def object_ids() -> st.SearchStrategy[str]:
    """A 24-hex id as `imagecore.model.new_id` makes (its output bit unset)."""
    return st.binary(min_size=12, max_size=12).map(
        lambda raw: (raw[:4] + bytes([raw[4] & 0x7F]) + raw[5:]).hex()
    )


def user_ids() -> st.SearchStrategy[str]:
    """A user id the HTTP layer accepts: 1 to 128 printable characters."""
    return st.text(
        st.characters(categories=["L", "N"], max_codepoint=0x2FF), min_size=1, max_size=32
    )


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """A JSON value every repository stores: 64-bit integers, finite floats, string keys."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def _documents() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.text(max_size=6), json_values(), max_size=4)


def _integers(p: Parameter) -> st.SearchStrategy[Any]:
    return st.integers(
        None if p.minimum is None else int(p.minimum), None if p.maximum is None else int(p.maximum)
    )


def _text(p: Parameter) -> st.SearchStrategy[Any]:
    alphabet = st.characters(categories=["L", "N", "P", "Zs"], max_codepoint=0x2FF)
    size = min(p.max_length or 40, 40)
    return st.text(alphabet, min_size=1, max_size=size).filter(str.strip)


_BY_KIND: dict[Kind, Callable[[Parameter], st.SearchStrategy[Any]]] = {
    Kind.INTEGER: _integers,
    Kind.NUMBER: lambda p: st.floats(p.minimum, p.maximum, allow_nan=False, allow_infinity=False),
    Kind.BOOLEAN: lambda _: st.booleans(),
    Kind.CHOICE: lambda p: st.sampled_from(p.choices),
    Kind.COLOR: lambda _: st.from_regex(r"#[0-9a-f]{6}([0-9a-f]{2})?", fullmatch=True),
    Kind.STRING: _text,
}
#: Strings with a form of their own, by parameter name.
_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "aspect_ratio": st.tuples(st.integers(1, 32), st.integers(1, 32), st.sampled_from(":/x")).map(
        lambda t: f"{t[0]}{t[2]}{t[1]}"
    ),
    "image": st.just(PIXEL_PNG),
}


def _value(parameter: Parameter) -> st.SearchStrategy[Any]:
    """A value ``parameter`` accepts, as a JSON client would send it."""
    if parameter.kind is Kind.STRING and parameter.name in _BY_NAME:
        return _BY_NAME[parameter.name]
    return _BY_KIND[parameter.kind](parameter)


@st.composite
def _params(draw: st.DrawFn, product: Product) -> dict[str, Any]:
    chosen = {
        p.name: draw(_value(p)) for p in product.parameters if p.required or draw(st.booleans())
    }
    for group in product.one_of:
        if not any(name in chosen for name in group):
            name = draw(st.sampled_from(group))
            chosen[name] = draw(_value(next(p for p in product.parameters if p.name == name)))
    return chosen


def params(product: Product | str) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters ``product`` (a `Product`, its key or its id) accepts, some left to defaults."""
    return _params(product if isinstance(product, Product) else find_product(product))


@st.composite
def _invalid_params(draw: st.DrawFn, product: Product) -> dict[str, Any]:
    chosen = draw(_params(product))
    parameter = draw(st.sampled_from(product.parameters)) if product.parameters else None
    if parameter is None or parameter.kind in (Kind.BOOLEAN, Kind.STRING) or draw(st.booleans()):
        chosen[draw(st.sampled_from(["colour", "widht", "qualty"]))] = 1  # not a parameter
    elif parameter.kind is Kind.CHOICE:
        chosen[parameter.name] = "not-" + parameter.choices[0]
    elif parameter.kind is Kind.COLOR:
        chosen[parameter.name] = "#ff88"
    else:
        chosen[parameter.name] = (
            (parameter.maximum or 0) + 1 if parameter.maximum is not None else "x"
        )
    return chosen


def invalid_params(product: Product | str) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters ``product`` refuses with `InvalidParameter`: an unknown name or a wrong value."""
    return _invalid_params(product if isinstance(product, Product) else find_product(product))


def image_infos() -> st.SearchStrategy[ImageInfo]:
    """What a header says: a decoded format, its MIME type, sizes and frames."""
    return st.sampled_from(_IMAGE_FORMATS).flatmap(
        lambda fmt: st.builds(
            ImageInfo,
            format=st.just(fmt),
            mime_type=st.just(MIME_TYPES[fmt]),
            width=st.integers(1, 20_000),
            height=st.integers(1, 20_000),
            frames=st.integers(1, 100),
        )
    )


def outputs() -> st.SearchStrategy[OutputFile]:
    """A stored output file."""
    return st.builds(
        OutputFile,
        key=object_ids().map(lambda i: f"outputs/{i}.webp"),
        name=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=10).map(
            lambda n: n + ".webp"
        ),
        size=st.integers(0, 10**9),
        mime_type=st.sampled_from(["image/webp", "image/png", "image/jpeg"]),
        width=st.none() | st.integers(1, 20_000),
        height=st.none() | st.integers(1, 20_000),
    )


@st.composite
def _instruction(draw: st.DrawFn, product: Product | None, user_id: str | None) -> Instruction:
    product = product or draw(products())
    created = draw(times())
    return Instruction(
        id=draw(object_ids()),
        user_id=user_id or draw(user_ids()),
        product_id=product.id,
        product_key=product.key,
        params=product.validate(draw(params(product))),
        created_at=created,
        updated_at=created + draw(st.integers(0, 60_000)) * timedelta(milliseconds=1),
        notify_url=draw(st.none() | st.just("https://hooks.example.com/imagecore")),
    )


def instructions(
    product: Product | str | None = None, user_id: str | None = None
) -> st.SearchStrategy[Instruction]:
    """An instruction with validated parameters, for ``product`` and ``user_id`` if given."""
    found = find_product(product) if isinstance(product, str) else product
    return _instruction(found, user_id)


@st.composite
def _detail(
    draw: st.DrawFn, parent: Instruction | None, status: Status | None
) -> InstructionDetail:
    job = parent or draw(instructions())
    detail_id = draw(object_ids())
    created = max(job.created_at, draw(times()))
    fmt = draw(st.sampled_from(_IMAGE_FORMATS))
    detail = InstructionDetail(
        id=detail_id,
        instruction_id=job.id,
        user_id=job.user_id,
        product_key=job.product_key,
        original_name=f"photo.{fmt}",
        original_key=f"originals/{job.user_id}/{job.id}/{detail_id}",
        size=draw(st.integers(1, 200 * 1024 * 1024)),
        mime_type=MIME_TYPES[fmt],
        created_at=created,
        updated_at=created,
        width=draw(st.none() | st.integers(1, 20_000)),
        height=draw(st.none() | st.integers(1, 20_000)),
    )
    status = status or draw(st.sampled_from(Status))
    if status is Status.PENDING:
        return detail
    step = timedelta(milliseconds=draw(st.integers(1, 60_000)))
    claimed = detail.claim("lease-1", created + step, created + 61 * step)
    if status is Status.PROCESSING:
        return claimed
    if status is Status.DONE:
        return claimed.complete(draw(outputs()), draw(_documents()), created + 2 * step)
    return claimed.fail("corrupt_image", "the JPEG data ends early", created + 2 * step)


def details(
    parent: Instruction | None = None, status: Status | None = None
) -> st.SearchStrategy[InstructionDetail]:
    """A file of ``parent`` (or of a drawn instruction) in ``status`` (or any).

    It is moved there through the state machine, as a worker would move it.
    """
    return _detail(parent, status)


def _register() -> None:
    """Make `st.from_type` draw the records with these strategies."""
    st.register_type_strategy(Instruction, instructions())
    st.register_type_strategy(InstructionDetail, details())
    st.register_type_strategy(OutputFile, outputs())
    st.register_type_strategy(ImageInfo, image_infos())


def _hypothesis_setup_hook() -> None:
    """The ``hypothesis`` entry point: Hypothesis calls it as it loads."""
    _register()


_register()
