"""What an output file's name says about its format, for ``imagecore process``.

A name ending in an image extension (``.webp``, ``.jpg``, ...) asks for that
format. A product that takes ``format`` is given it when no ``-p format`` was;
any other disagreement (``-p format`` naming another format, a product that
keeps the input's format or writes JSON, a format imagecore does not write) is
a `ValidationError` naming both, before anything is written. A name without an
image extension says nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagecore.errors import ValidationError
from imagecore.formats import EXTENSIONS, FORMAT_OF_SUFFIX, MIME_TYPES, NAMES, SNIFF_BYTES, sniff
from imagecore.products import OUTPUT_FORMATS, Product

__all__ = ["check_named_format", "with_named_format"]


def _named(destination: Path) -> str | None:
    return FORMAT_OF_SUFFIX.get(destination.suffix.lower().lstrip("."))


def with_named_format(
    product: Product, params: dict[str, object], destination: Path
) -> dict[str, object]:
    """``params`` with the format the output's name asks for, if the product takes one."""
    named = _named(destination)
    takes_format = any(p.name == "format" for p in product.parameters)
    if named in OUTPUT_FORMATS and takes_format and "format" not in params:
        return {**params, "format": named}
    return params


def check_named_format(
    product: Product, params: Mapping[str, object], source: Path, destination: Path
) -> None:
    """Refuse an output name whose extension names another format than the one written."""
    named = _named(destination)
    if named is None:
        return  # a name without an image extension says nothing about the format
    asked = str(params.get("format") or "")
    if named not in OUTPUT_FORMATS and product.output_mime_type != MIME_TYPES[named]:
        names = ", ".join(f".{EXTENSIONS[f]}" for f in OUTPUT_FORMATS)
        raise ValidationError(
            f"{destination.name} names {_name(named)}, which imagecore does not write: "
            f"use one of {names}"
        )
    if product.output_mime_type is not None:
        writes = next(f for f, mime in MIME_TYPES.items() if mime == product.output_mime_type)
        why = f"{product.key} writes {_name(writes)}"
    elif asked:
        writes, why = asked, f"format={asked} asks for {_name(asked)}"
    else:
        with source.open("rb") as image:
            writes = sniff(image.read(SNIFF_BYTES)) or named  # not an image: process says so
        why = f"{product.key} keeps the input's format, {_name(writes)}"
    if writes != named:
        drop = ", or drop -p format" if asked and named in OUTPUT_FORMATS else ""
        raise ValidationError(
            f"{destination.name} names {_name(named)}, but {why}: "
            f"name it .{EXTENSIONS[writes]}{drop}"
        )


def _name(image_format: str) -> str:
    return NAMES.get(image_format, image_format.upper())
