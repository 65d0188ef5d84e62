"""The access log: one INFO line per request, and never a credential in it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from http_support import Api, running_api

ACCESS = "entrypoints.http.access"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as api:
        yield api


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS]


async def test_a_refused_request_leaves_one_line_without_its_credentials(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    status, _ = await api.call(
        "GET",
        "/instructions?api_key=query-secret-42",
        user=None,
        headers={"Authorization": "Bearer header-secret-43", "X-Request-ID": "trace-401"},
    )
    assert status == 401
    [line] = access_lines(caplog)
    assert line.levelno == logging.INFO
    fields = {k: getattr(line, k) for k in ("method", "path", "status", "request_id")}
    assert fields == {
        "method": "GET",
        "path": "/instructions",
        "status": 401,
        "request_id": "trace-401",
    }
    assert line.duration_ms >= 0  # type: ignore[attr-defined] - passed as extra=
    assert line.getMessage().startswith("GET /instructions 401 in ")
    said = line.getMessage() + repr(vars(line))
    assert "query-secret-42" not in said
    assert "header-secret-43" not in said


async def test_every_request_leaves_exactly_one_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    await api.call("GET", "/health", user=None)
    await api.call("GET", "/products", user=None)
    await api.call("GET", "/instructions")
    await api.call("GET", "/no-such-route", user=None)
    seen = [(r.path, r.status) for r in access_lines(caplog)]  # type: ignore[attr-defined]
    assert seen == [
        ("/health", 200),
        ("/products", 200),
        ("/instructions", 200),
        ("/no-such-route", 404),
    ]
