"""What the old service's clients rely on (../shared/spec/seed-openapi.json), kept beside ours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from http_support import Api, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as api:
        yield api


async def test_creating_an_instruction_answers_200_as_the_contract_says(api: Api) -> None:
    request = {"product_key": "images/thumbnail"}
    status, body = await api.call("POST", "/instructions", json=request)
    assert status == 200, body
    assert body["data"]["instruction"]["product_key"] == "images/thumbnail"


async def test_health_has_the_old_top_level_status_beside_the_envelope(api: Api) -> None:
    status, body = await api.call("GET", "/health", user=None)
    assert (status, body["status"]) == (200, "ok")
    assert body["data"]["status"] == "ok"
    assert body["errors"] is None


async def test_unhealthy_health_says_so_in_the_old_status_key(tmp_path: Path) -> None:
    async with running_api(tmp_path, min_free_disk_bytes=2**62) as api:
        status, body = await api.call("GET", "/health", user=None)
    assert (status, body["status"]) == (503, "unavailable")


async def test_products_carry_the_old_camel_case_times_and_ours(api: Api) -> None:
    _, body = await api.call("GET", "/products", user=None)
    for product in body["data"]["products"]:
        assert product["createdAt"] == product["created_at"]
        assert product["updatedAt"] == product["updated_at"]


async def test_uploading_answers_200_as_the_contract_says(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    status, body = await api.upload(instruction_id, [("kite.jpg", kite)])
    assert status == 200, body
    assert [f["status"] for f in body["data"]["files"]] == ["PENDING"]


def old_gateway(user: str, *, authenticated: str = "true", **more: str) -> dict[str, str]:
    """The headers the old gateway sends for ``user`` (seed-openapi.json's security schemes)."""
    return {
        "x-authenticated": authenticated,
        "x-user-id": user,
        "x-user-origin": "https://app.example",
        **more,
    }


async def test_behind_the_old_gateway_its_headers_name_the_caller(tmp_path: Path) -> None:
    async with running_api(tmp_path, trust_gateway_headers=True) as api:
        status, body = await api.call("GET", "/instructions", user=None, headers=old_gateway("u1"))
        assert status == 200, body
        refused = old_gateway("u1", authenticated="false")
        status, body = await api.call("GET", "/instructions", user=None, headers=refused)
        assert status == 401, body
        status, _ = await api.call("GET", "/files", user=None, headers=old_gateway("u1"))
        assert status == 403
        admin = old_gateway("root", **{"x-user-roles": "admin"})
        status, body = await api.call("GET", "/files", user=None, headers=admin)
        assert status == 200, body


async def test_the_old_gateway_headers_count_for_nothing_unless_trusted(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        status, _ = await api.call("GET", "/instructions", user=None, headers=old_gateway("u1"))
    assert status == 401


async def test_an_origin_the_deployment_does_not_list_is_a_403(tmp_path: Path) -> None:
    origins = ("https://app.example",)
    async with running_api(tmp_path, trust_gateway_headers=True, gateway_origins=origins) as api:
        ok_status, _ = await api.call("GET", "/instructions", user=None, headers=old_gateway("u"))
        elsewhere = {**old_gateway("u"), "x-user-origin": "https://elsewhere.example"}
        status, body = await api.call("GET", "/instructions", user=None, headers=elsewhere)
    assert (ok_status, status, body["errors"][0]["code"]) == (200, 403, "forbidden_origin")
