"""Domain values as plain documents (dicts) and back, for the document-shaped stores.

One mapping shared by every adapter that stores documents: SQLite keeps them
as JSON, MongoDB as BSON. A document holds only ``str``, ``int``, ``float``,
``bool``, ``None``, lists, dicts and tz-aware UTC ``datetime`` values; ids stay
24-hex strings under ``id`` (a MongoDB adapter maps it to ``_id`` itself).
Reading back gives a value equal to the one written.

Readers are lenient about time values: a naive ``datetime`` is taken as UTC
(what MongoDB returns without ``tz_aware``) and an ISO-8601 string is parsed
(what a JSON store keeps), so each store can encode times its own way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from imagecore.errors import ValidationError
from imagecore.model import Instruction, InstructionDetail, OutputFile, Status
from imagecore.params import Kind, Parameter
from imagecore.products import Limits, Product

__all__ = [
    "Document",
    "detail_from_document",
    "detail_to_document",
    "instruction_from_document",
    "instruction_to_document",
    "product_from_document",
    "product_to_document",
    "time_from_document",
    "time_to_document",
]

Document = dict[str, Any]


def time_to_document(value: datetime) -> datetime:
    """Return ``value`` in UTC; refuse a naive time, whose instant is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"a stored time needs a time zone, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def time_from_document(value: object) -> datetime:
    """Read a stored time: an aware or naive (UTC) ``datetime``, or an ISO-8601 string."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a stored time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _optional_time_to(value: datetime | None) -> datetime | None:
    return None if value is None else time_to_document(value)


def _optional_time_from(value: object) -> datetime | None:
    return None if value is None else time_from_document(value)


# --------------------------------------------------------------------------- instructions


def instruction_to_document(instruction: Instruction) -> Document:
    """The document of an instruction."""
    return {
        "id": instruction.id,
        "user_id": instruction.user_id,
        "product_id": instruction.product_id,
        "product_key": instruction.product_key,
        # Deep copies: a store may annotate its document (MongoDB adds ``_id``)
        # and must never reach into a frozen value's dict.
        "params": copy.deepcopy(instruction.params),
        "created_at": time_to_document(instruction.created_at),
        "updated_at": time_to_document(instruction.updated_at),
        "notify_url": instruction.notify_url,
    }


def instruction_from_document(document: Mapping[str, Any]) -> Instruction:
    """The instruction stored as ``document`` (extra keys are ignored)."""
    return Instruction(
        id=document["id"],
        user_id=document["user_id"],
        product_id=document["product_id"],
        product_key=document["product_key"],
        params=dict(document["params"]),
        created_at=time_from_document(document["created_at"]),
        updated_at=time_from_document(document["updated_at"]),
        notify_url=document.get("notify_url"),
    )


# --------------------------------------------------------------------------- details


def _output_to(output: OutputFile | None) -> Document | None:
    if output is None:
        return None
    return {
        "key": output.key,
        "name": output.name,
        "size": output.size,
        "mime_type": output.mime_type,
        "width": output.width,
        "height": output.height,
    }


def _output_from(document: Mapping[str, Any] | None) -> OutputFile | None:
    if document is None:
        return None
    return OutputFile(
        key=document["key"],
        name=document["name"],
        size=document["size"],
        mime_type=document["mime_type"],
        width=document.get("width"),
        height=document.get("height"),
    )


def detail_to_document(detail: InstructionDetail) -> Document:
    """The document of a detail; ``status`` is the enum's value.

    ``metadata`` is the detail's own mapping, not a copy: both stores write
    the document out as JSON at once, so a copy would be wasted work
    (docs/decisions/0009-documents-share-metadata.md). Serialise the
    document; do not change it.
    """
    return {
        "id": detail.id,
        "instruction_id": detail.instruction_id,
        "user_id": detail.user_id,
        "product_key": detail.product_key,
        "original_name": detail.original_name,
        "original_key": detail.original_key,
        "size": detail.size,
        "mime_type": detail.mime_type,
        "created_at": time_to_document(detail.created_at),
        "updated_at": time_to_document(detail.updated_at),
        "status": detail.status.value,
        "width": detail.width,
        "height": detail.height,
        "output": _output_to(detail.output),
        "error_code": detail.error_code,
        "error_message": detail.error_message,
        "metadata": detail.metadata,
        "attempts": detail.attempts,
        "lease_id": detail.lease_id,
        "lease_expires_at": _optional_time_to(detail.lease_expires_at),
        "started_at": _optional_time_to(detail.started_at),
        "finished_at": _optional_time_to(detail.finished_at),
        "is_cleaned": detail.is_cleaned,
        "outbox": detail.outbox,
        "version": detail.version,
    }


def detail_from_document(document: Mapping[str, Any]) -> InstructionDetail:
    """The detail stored as ``document``; optional fields may be absent."""
    return InstructionDetail(
        id=document["id"],
        instruction_id=document["instruction_id"],
        user_id=document["user_id"],
        product_key=document["product_key"],
        original_name=document["original_name"],
        original_key=document["original_key"],
        size=document["size"],
        mime_type=document["mime_type"],
        created_at=time_from_document(document["created_at"]),
        updated_at=time_from_document(document["updated_at"]),
        status=Status(document["status"]),
        width=document.get("width"),
        height=document.get("height"),
        output=_output_from(document.get("output")),
        error_code=document.get("error_code"),
        error_message=document.get("error_message"),
        metadata=dict(document.get("metadata") or {}),
        attempts=document.get("attempts", 0),
        lease_id=document.get("lease_id"),
        lease_expires_at=_optional_time_from(document.get("lease_expires_at")),
        started_at=_optional_time_from(document.get("started_at")),
        finished_at=_optional_time_from(document.get("finished_at")),
        is_cleaned=bool(document.get("is_cleaned", False)),
        outbox=bool(document.get("outbox", False)),
        version=document.get("version", 1),
    )


# --------------------------------------------------------------------------- products


def _parameter_to(parameter: Parameter) -> Document:
    return {
        "name": parameter.name,
        "kind": parameter.kind.value,
        "description": parameter.description,
        "default": copy.deepcopy(parameter.default),
        "minimum": parameter.minimum,
        "maximum": parameter.maximum,
        "choices": list(parameter.choices),
        "max_length": parameter.max_length,
        "pattern": parameter.pattern,
        "required": parameter.required,
    }


def _parameter_from(document: Mapping[str, Any]) -> Parameter:
    return Parameter(
        name=document["name"],
        kind=Kind(document["kind"]),
        description=document["description"],
        default=document.get("default"),
        minimum=document.get("minimum"),
        maximum=document.get("maximum"),
        choices=tuple(document.get("choices", ())),
        max_length=document.get("max_length"),
        pattern=document.get("pattern"),
        required=bool(document.get("required", False)),
    )


def product_to_document(product: Product) -> Document:
    """The document of a catalogue product, with its derived ``id`` for lookups."""
    limits = product.limits
    return {
        "id": product.id,
        "key": product.key,
        "title": product.title,
        "description": product.description,
        "parameters": [_parameter_to(p) for p in product.parameters],
        "limits": {
            "max_file_bytes": limits.max_file_bytes,
            "max_pixels": limits.max_pixels,
            "max_frames": limits.max_frames,
            "max_files_per_instruction": limits.max_files_per_instruction,
            "input_formats": list(limits.input_formats),
        },
        "one_of": [list(group) for group in product.one_of],
        "output_mime_type": product.output_mime_type,
    }


def product_from_document(document: Mapping[str, Any]) -> Product:
    """The product stored as ``document`` (its ``id`` is derived again from the key)."""
    limits = document["limits"]
    return Product(
        key=document["key"],
        title=document["title"],
        description=document["description"],
        parameters=tuple(_parameter_from(p) for p in document.get("parameters", ())),
        limits=Limits(
            max_file_bytes=limits["max_file_bytes"],
            max_pixels=limits["max_pixels"],
            max_frames=limits["max_frames"],
            max_files_per_instruction=limits["max_files_per_instruction"],
            input_formats=tuple(limits["input_formats"]),
        ),
        one_of=tuple(tuple(group) for group in document.get("one_of", ())),
        output_mime_type=document.get("output_mime_type"),
    )
