"""JSON views of domain values: the seed's field names, and the richer ones of our model.

One detail carries its own output; the seed had separate input and output
records, and its clients still read them: a detail is shown as its input
record (``output_id`` names the output record, ``output`` describes the
output), and `output_record_view` shows the output record, a view of the
same detail under `imagecore.model.paired_record_id` of its id.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from imagecore.model import Instruction, InstructionDetail, paired_record_id
from imagecore.params import Parameter
from imagecore.products import Product
from imagecore.services import DetailRecord, InstructionView, instruction_view

__all__ = [
    "attachment",
    "detail_view",
    "finished_webhook",
    "instruction_json",
    "output_record_view",
    "parameter_json",
    "product_json",
    "product_view",
    "record_view",
]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def detail_view(detail: InstructionDetail) -> dict[str, Any]:
    """One file of an instruction, as ``GET .../details/{id}`` shows it."""
    output = detail.output
    return {
        "id": detail.id,
        "instruction_id": detail.instruction_id,
        "product_key": detail.product_key,
        "file_name": detail.original_name,
        "original_name": detail.original_name,
        "file_size": detail.size,
        "size": detail.size,
        "mime_type": detail.mime_type,
        "width": detail.width,
        "height": detail.height,
        "status": detail.status.value,
        "output_id": paired_record_id(detail.id),
        "output": None
        if output is None
        else {
            "name": output.name,
            "size": output.size,
            "mime_type": output.mime_type,
            "width": output.width,
            "height": output.height,
        },
        "error": None
        if detail.error_code is None
        else {"code": detail.error_code, "message": detail.error_message},
        "error_message": detail.error_message,
        "metadata": detail.metadata,
        "attempts": detail.attempts,
        "is_cleaned": detail.is_cleaned,
        "created_at": _iso(detail.created_at),
        "updated_at": _iso(detail.updated_at),
        "started_at": _iso(detail.started_at),
        "finished_at": _iso(detail.finished_at),
    }


def output_record_view(detail: InstructionDetail) -> dict[str, Any]:
    """The output record of ``detail``, as the old service's clients read one.

    Its name, size and type are the output's once it exists; until then the
    upload's name and type with size 0. Its status is the file's.
    """
    output = detail.output
    return {
        "id": paired_record_id(detail.id),
        "instruction_id": detail.instruction_id,
        "input_id": detail.id,
        "product_key": detail.product_key,
        "file_name": output.name if output else detail.original_name,
        "file_size": output.size if output else 0,
        "mime_type": output.mime_type if output else detail.mime_type,
        "width": output.width if output else None,
        "height": output.height if output else None,
        "status": detail.status.value,
        "output_id": None,
        "error_message": detail.error_message,
        "is_cleaned": detail.is_cleaned,
        "created_at": _iso(detail.created_at),
        "updated_at": _iso(detail.updated_at),
        "finished_at": _iso(detail.finished_at),
    }


def record_view(record: DetailRecord) -> dict[str, Any]:
    """The input or the output record, as ``GET .../details/{id}`` shows it."""
    return output_record_view(record.detail) if record.is_output else detail_view(record.detail)


def parameter_json(parameter: Parameter) -> dict[str, Any]:
    """A product's parameter as ``GET /products`` and the console describe it."""
    described: dict[str, Any] = {
        "name": parameter.name,
        "type": parameter.kind.value,
        "description": parameter.description,
        "required": parameter.required,
        "default": parameter.default,
    }
    bounds = {
        "minimum": parameter.minimum,
        "maximum": parameter.maximum,
        "max_length": parameter.max_length,
    }
    described.update({k: v for k, v in bounds.items() if v is not None})
    if parameter.choices:
        described["choices"] = list(parameter.choices)
    return described


def product_json(product: Product) -> dict[str, Any]:
    """A product as clients see it: the old service's fields and ours."""
    limits = product.limits
    return {
        "id": product.id,
        "key": product.key,
        "title": product.title,
        "description": product.description,
        "product_type": "IMAGE_PROCESSING",
        "is_active": True,
        "is_free": True,
        "parameters": [parameter_json(p) for p in product.parameters],
        "limits": {
            "max_file_bytes": limits.max_file_bytes,
            "max_pixels": limits.max_pixels,
            "max_frames": limits.max_frames,
            "max_files_per_instruction": limits.max_files_per_instruction,
            "input_formats": list(limits.input_formats),
        },
    }


def product_view(
    product: Product,
    created: datetime,
    updated: datetime,
    max_file_bytes: int = 0,
    product_id: str | None = None,
) -> dict[str, Any]:
    """A product as ``GET /products`` lists it, with a deployment's lower size cap applied.

    ``product_id``: the id clients know it by (``PRODUCT_IDS``), when not ours.
    """
    created_at, updated_at = _iso(created), _iso(updated)
    view = {**product_json(product), "created_at": created_at, "updated_at": updated_at}
    if product_id is not None:
        view["id"] = product_id
    # The old service's Product spelt these two in camelCase; its clients read them so.
    view.update(createdAt=created_at, updatedAt=updated_at)
    if max_file_bytes:
        limits = view["limits"]
        limits["max_file_bytes"] = min(limits["max_file_bytes"], max_file_bytes)
    return view


def attachment(name: str) -> str:
    """A ``Content-Disposition`` that downloads as ``name`` (RFC 6266), in ASCII.

    ``filename*`` carries the whole name (RFC 8187); the plain ``filename``,
    for clients that read only that one (``curl -OJ``), keeps the name's
    printable ASCII and its extension, and is ``download`` when no letter of
    the stem is left: a bare ``.webp`` would be a hidden file.
    """
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    fallback = (_ascii(stem).strip("_ .") or "download") + (dot + _ascii(extension) if dot else "")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name)}"


def _ascii(text: str) -> str:
    # Printable ASCII but the quote and the backslash, which would end or escape the value.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in text)


def instruction_json(
    view: InstructionView, product_ids: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An instruction as ``data.instruction`` shows it, with its status and counts.

    ``product_ids`` (``PRODUCT_IDS``) gives the product's id clients know, by key.
    """
    i = view.instruction
    return {
        "id": i.id,
        "user_id": i.user_id,
        "product_id": (product_ids or {}).get(i.product_key, i.product_id),
        "product_key": i.product_key,
        "params": i.params,
        "notify_url": i.notify_url,
        "status": view.status.value,
        "counts": view.counts,
        "created_at": i.created_at.isoformat(),
        "updated_at": i.updated_at.isoformat(),
    }


def finished_webhook(instruction: Instruction, details: list[InstructionDetail]) -> dict[str, Any]:
    """The body of the webhook POSTed when ``instruction`` finishes."""
    return {
        "event": "instruction.finished",
        "instruction": instruction_json(instruction_view(instruction, details)),
        "files": [
            {
                "id": d.id,
                "original_name": d.original_name,
                "status": d.status.value,
                "output_size": d.output.size if d.output else None,
                "error_code": d.error_code,
                "error_message": d.error_message,
            }
            for d in details
        ],
    }
