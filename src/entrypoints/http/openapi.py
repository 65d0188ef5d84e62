"""The OpenAPI 3.1 document served at ``/swagger``.

Written as data next to the routes; a test fails when a route of the app is
missing here (or the other way round) and when the document is not valid.

Why one module: the document is data, one entry per route, read as one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from imagecore.model import Status
from imagecore.products import OUTPUT_FORMATS

__all__ = ["openapi_document"]

_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$", "example": "6742f0c1a1b2c3d4e5f60718"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_STATUS = {"type": "string", "enum": [s.value for s in Status]}


def _envelope(data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["message", "errors", "data"],
        "properties": {
            "message": {"type": "string"},
            "errors": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/Error"}},
            "data": data if data is not None else {"type": "null"},
        },
    }


def _data(**properties: Any) -> dict[str, Any]:  # noqa: ANN401
    return _envelope({"type": "object", "required": list(properties), "properties": properties})


def _with_status(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the old service's top-level ``status`` (``ok``, ``unavailable``)."""
    status = {"type": "string", "enum": ["ok", "unavailable"]}
    return {
        **schema,
        "required": ["status", *schema["required"]],
        "properties": {"status": status, **schema["properties"]},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/responses/Error"}
_REFUSED = {
    "type": "object",
    "required": ["name", "code", "message"],
    "properties": {
        "name": {"type": "string"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}
_ERRORS = {"400": _ERROR, "401": _ERROR, "404": _ERROR, "429": _ERROR, "503": _ERROR}
_PATH_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PATH_DETAIL = {"name": "detail_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURE: list[dict[str, list[str]]] = [
    {"bearer": []},
    {"gateway": []},
    {"x-authenticated": [], "x-user-id": [], "x-user-origin": []},  # the old gateway's
]


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    operation = {"summary": summary, "responses": {**_ERRORS, **responses}, "security": _SECURE}
    operation.update(extra)
    return operation


def _public(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, "security": []}


_INSTRUCTION = {
    "type": "object",
    "required": ["id", "user_id", "product_id", "product_key", "status", "counts", "created_at"],
    "properties": {
        "id": _ID,
        "user_id": {"type": "string"},
        "product_id": _ID,
        "product_key": {"type": "string"},
        "params": {"type": "object"},
        "notify_url": {"type": ["string", "null"]},
        "status": _STATUS,
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}
_OUTPUT = {
    "type": ["object", "null"],
    "properties": {
        "name": {"type": "string"},
        "size": {"type": "integer"},
        "mime_type": {"type": "string"},
        "width": {"type": ["integer", "null"]},
        "height": {"type": ["integer", "null"]},
    },
}
_DETAIL = {
    "type": "object",
    "required": ["id", "instruction_id", "file_name", "file_size", "mime_type", "status"],
    "properties": {
        "id": _ID,
        "instruction_id": _ID,
        "product_key": {"type": "string"},
        "file_name": {"type": "string"},
        "original_name": {"type": "string"},
        "file_size": {"type": "integer"},
        "size": {"type": "integer"},
        "mime_type": {"type": "string"},
        "width": {"type": ["integer", "null"]},
        "height": {"type": ["integer", "null"]},
        "status": _STATUS,
        "output_id": {
            "type": ["string", "null"],
            "description": "an input record's: its output record's id; an output record's: null",
        },
        "input_id": {"type": "string", "description": "an output record's: its input's id"},
        "output": _OUTPUT,
        "error": {"type": ["object", "null"]},
        "error_message": {"type": ["string", "null"]},
        "metadata": {"type": "object"},
        "attempts": {"type": "integer"},
        "is_cleaned": {"type": "boolean"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
    },
}
_PRODUCT = {
    "type": "object",
    "required": ["id", "key", "title", "parameters", "limits"],
    "properties": {
        "id": _ID,
        "key": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "product_type": {"type": "string"},
        "is_active": {"type": "boolean"},
        "is_free": {"type": "boolean"},
        "parameters": {"type": "array", "items": {"type": "object"}},
        "limits": {"type": "object"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "createdAt": {**_TIME, "description": "created_at, as the old service spelt it"},
        "updatedAt": {**_TIME, "description": "updated_at, as the old service spelt it"},
    },
}
_CREATE = {
    "type": "object",
    "properties": {
        "product_id": {"type": "string", "description": "A product id from GET /products"},
        "product_key": {"type": "string", "example": "images/resize"},
        "params": {"type": "object", "example": {"width": 512, "format": OUTPUT_FORMATS[2]}},
        "notify_url": {
            "type": "string",
            "description": "Receives one signed POST each time the instruction finishes",
        },
    },
}
_SSE = {
    "description": "Server-Sent Events",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_SSE_NOTES = (
    "Each event (`event: status`) carries the JSON of the notifications.sse message: "
    "user_id, instruction_id, instruction_detail_id, status, product_key, output_size, "
    "error_code, error_message, at. Its id is the millisecond of the change; a comment "
    "line is sent every 15 s of silence. Authenticate with the Authorization header: "
    "browsers read the stream with fetch() (EventSource cannot send headers, and no "
    "token is ever accepted in the URL). The stream ends when the token expires. A user, "
    "and a client address, have a few streams open at most: past them a new one is a 429 "
    "with Retry-After (MAX_EVENT_STREAMS_PER_USER, MAX_EVENT_STREAMS_PER_ADDRESS)."
)
_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,15}$"}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "description": "Resume: first replay every file changed at or after this event id",
    "schema": _EVENT_ID,
}
_LAST_EVENT_ID_QUERY = {
    "name": "last_event_id",
    "in": "query",
    "description": "The same as the Last-Event-ID header, which wins when both are given",
    "schema": _EVENT_ID,
}

_PATHS: dict[str, dict[str, Any]] = {
    "/instructions": {
        "post": _op(
            "Create an instruction (a job) for a product",
            {
                "200": _json(
                    _data(instruction=_ref("Instruction")), "created (200, as the old service)"
                )
            },
            requestBody={"required": True, "content": {"application/json": {"schema": _CREATE}}},
        ),
        "get": _op(
            "List your instructions, newest first",
            {
                "200": _json(
                    _data(
                        instructions={"type": "array", "items": _ref("Instruction")},
                        pagination={
                            "type": "object",
                            "properties": {
                                "page": {"type": "integer"},
                                "size": {"type": "integer"},
                                "total": {"type": ["integer", "null"]},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                    ),
                    "a page; next_cursor (null on the last page) asks for the next one",
                )
            },
            parameters=[
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "a next_cursor: the page after it, in place of page; "
                    "total is then not counted (null)",
                    "schema": {"type": "string"},
                },
                {
                    "name": "size",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                {"name": "status", "in": "query", "schema": _STATUS},
                {"name": "created_from", "in": "query", "schema": _TIME},
                {"name": "created_to", "in": "query", "schema": _TIME},
            ],
        ),
    },
    "/instructions/{id}": {
        "get": _op(
            "One instruction with its status and counts",
            {"200": _json(_data(instruction=_ref("Instruction")), "found")},
            parameters=[_PATH_ID],
        ),
    },
    "/instructions/{id}/details": {
        "post": _op(
            "Upload one or more files (multipart parts named 'file')",
            {
                "200": _json(
                    _data(
                        input=_ref("Detail"),
                        output=_ref("Detail"),
                        files={"type": "array", "items": _ref("Detail")},
                        refused={"type": "array", "items": _REFUSED},
                    ),
                    "the files stored (input and output: the first one's two records, "
                    "as the old service answered); the first file refused, if any, with "
                    "its reason (the parts after it are not read)",
                ),
                "408": _ERROR,
                "413": _ERROR,
                "415": _ERROR,
            },
            parameters=[_PATH_ID],
            requestBody={
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                        }
                    }
                },
            },
        ),
        "get": _op(
            "The files of an instruction, and how long results are kept",
            {
                "200": _json(
                    _data(
                        files={"type": "array", "items": _ref("Detail")},
                        retention_seconds={"type": "number"},
                    ),
                    "files",
                )
            },
            parameters=[_PATH_ID],
        ),
        "delete": _op(
            "Delete an instruction's stored files now (unfinished ones end FAILED, cancelled); "
            "its records stay, marked is_cleaned",
            {"200": _json(_data(files={"type": "array", "items": _ref("Detail")}), "deleted")},
            parameters=[_PATH_ID],
        ),
    },
    "/instructions/{id}/details/{detail_id}": {
        "get": _op(
            "One file's input record, or its output record (by its output_id)",
            {"200": _json(_data(detail=_ref("Detail")), "found")},
            parameters=[_PATH_ID, _PATH_DETAIL],
        ),
    },
    "/instructions/{id}/details/{detail_id}/file": {
        "get": _op(
            "An input record's original, an output record's result (?variant= picks either)",
            {
                "200": {
                    "description": "the file",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "304": {"description": "not modified (If-None-Match)"},
            },
            parameters=[
                _PATH_ID,
                _PATH_DETAIL,
                {
                    "name": "variant",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["output", "original"]},
                },
            ],
        ),
    },
    "/instructions/{id}/events": {
        "get": _op(
            "Live file events of one instruction (SSE)",
            {"200": _SSE},
            parameters=[_PATH_ID, _LAST_EVENT_ID, _LAST_EVENT_ID_QUERY],
            description=_SSE_NOTES + " A new stream starts with where every file stands.",
        ),
    },
    "/events": {
        "get": _op(
            "Live file events of all your instructions (SSE)",
            {"200": _SSE},
            parameters=[_LAST_EVENT_ID, _LAST_EVENT_ID_QUERY],
            description=_SSE_NOTES + " The replay covers your 50 newest instructions.",
        )
    },
    "/products": {
        "get": _public(
            "The tools with their parameters and limits",
            {"200": _json(_data(products={"type": "array", "items": _ref("Product")}), "products")},
        ),
    },
    "/files": {
        "get": _op(
            "Files not cleaned up yet (admin)",
            {
                "200": _json(_data(files={"type": "array", "items": _ref("Detail")}), "files"),
                "403": _ERROR,
            },
            parameters=[
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                }
            ],
        ),
    },
    "/health": {
        "get": _public(
            "Status of each dependency",
            {
                "200": _json(
                    _with_status(_data(status={"type": "string"}, dependencies={"type": "object"})),
                    "healthy; the top-level status is the old service's body ({status: ok})",
                ),
                "503": _json(_with_status(_envelope({"type": "object"})), "a dependency is down"),
            },
        ),
    },
    "/metrics": {
        "get": _public(
            "Prometheus metrics",
            {
                "200": {
                    "description": "text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
    },
    "/swagger": {
        "get": _public(
            "This document",
            {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        ),
    },
}


# --- beyond the seed: the zip of outputs, and the web console with its development sign-in
_CONSOLE_PATHS: dict[str, dict[str, Any]] = {
    "/instructions/{id}/archive": {
        "get": _op(
            "Download every processed file of an instruction as one zip",
            {
                "200": {
                    "description": "a zip, streamed (chunked; no Content-Length)",
                    "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
            },
            parameters=[_PATH_ID],
            description="Holds the output of every DONE file, under its output name (a "
            "clash gets ' (2)'); 404 while no file is DONE.",
        ),
    },
    "/": {
        "get": _public(
            "The web console (HTML)",
            {"200": {"description": "the page", "content": {"text/html": {}}}},
        ),
    },
    "/console/{name}": {
        "get": {
            **_public(
                "A script, style sheet or icon of the web console",
                {
                    "200": {
                        "description": "the file",
                        "content": {"text/javascript": {}, "text/css": {}, "image/svg+xml": {}},
                    },
                    "404": _ERROR,
                },
            ),
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
        },
    },
    "/auth/dev-token": {
        "get": _public(
            "Whether this client may use the development sign-in (DEV_LOGIN=true, loopback)",
            {"200": _json(_data(available={"type": "boolean"}), "the answer")},
        ),
        "post": {
            **_public(
                "Development only: a one-hour token for a user id",
                {
                    "201": _json(
                        _data(
                            token={"type": "string"},
                            token_type={"type": "string"},
                            expires_in={"type": "integer"},
                            user_id={"type": "string"},
                        ),
                        "a token",
                    ),
                    "400": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                },
            ),
            "description": "Answers 404 unless DEV_LOGIN=true, and 403 unless the client "
            "and the Host are loopback addresses and no proxy header is present.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["user_id"],
                            "properties": {"user_id": {"type": "string", "maxLength": 128}},
                        }
                    }
                },
            },
        },
    },
}


def _header(name: str, description: str) -> dict[str, str]:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


#: The old gateway's headers: read only with TRUST_GATEWAY_HEADERS=true, from TRUSTED_PROXIES.
_OLD_GATEWAY = {
    "x-authenticated": _header("x-authenticated", "true: x-user-id names the caller; false: 401"),
    "x-user-id": _header("x-user-id", "the caller's user id (the same header as X-User-ID)"),
    "x-user-origin": _header("x-user-origin", "the end user's origin (GATEWAY_ORIGINS)"),
    "x-user-roles": _header("x-user-roles", "comma-separated roles; admin opens /files"),
}


def openapi_document(served: Collection[str] | None = None, prefix: str = "") -> dict[str, Any]:
    """The document of the paths ``served`` (all by default), at ``prefix`` (its server)."""
    paths = {**_PATHS, **_CONSOLE_PATHS}
    if served is not None:
        paths = {path: ops for path, ops in paths.items() if path in served}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagecore",
            "version": "0.1.0",
            "description": "Job-based image processing: create an instruction for a product, "
            "upload files to it, follow their status live and download the results.",
        },
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": {
                "Instruction": _INSTRUCTION,
                "Detail": _DETAIL,
                "Product": _PRODUCT,
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": ["string", "null"]},
                    },
                },
            },
            "responses": {"Error": _json(_envelope(None), "an error, with a message to act on")},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "gateway": {"type": "apiKey", "in": "header", "name": "X-User-ID"},
                **_OLD_GATEWAY,
            },
        },
    }
