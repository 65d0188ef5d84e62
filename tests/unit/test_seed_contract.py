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


async def file_bytes(api: Api, path: str) -> tuple[int, bytes, str]:
    async with api.session.get(api.base + path, headers=api.token("alice")) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


async def test_an_upload_has_an_input_and_an_output_record_each_readable(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/resize", {"width": 320, "format": "webp"})
    status, body = await api.upload(instruction_id, [("kite.jpg", kite)])
    assert status == 200, body
    record_in, record_out = body["data"]["input"], body["data"]["output"]
    assert record_in["id"] != record_out["id"]
    assert record_in["output_id"] == record_out["id"]
    assert (record_in["file_name"], record_in["file_size"]) == ("kite.jpg", len(kite))
    assert record_in["id"] == body["data"]["files"][0]["id"]
    await api.wait_final(instruction_id)
    details = f"/instructions/{instruction_id}/details"
    _, read = await api.call("GET", f"{details}/{record_out['id']}")
    output = read["data"]["detail"]
    assert (output["id"], output["status"]) == (record_out["id"], "DONE")
    assert (output["file_name"], output["mime_type"]) == ("kite.webp", "image/webp")
    status, data, kind = await file_bytes(api, f"{details}/{record_out['id']}/file")
    assert (status, kind, len(data)) == (200, "image/webp", output["file_size"])
    assert data[8:12] == b"WEBP"
    _, read = await api.call("GET", f"{details}/{record_in['id']}")
    assert read["data"]["detail"]["file_name"] == "kite.jpg"
    status, data, kind = await file_bytes(api, f"{details}/{record_in['id']}/file")
    assert (status, kind, data) == (200, "image/jpeg", kite)


async def test_variant_asks_for_either_file_whichever_record_is_named(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/resize", {"width": 320, "format": "webp"})
    _, body = await api.upload(instruction_id, [("kite.jpg", kite)])
    await api.wait_final(instruction_id)
    details = f"/instructions/{instruction_id}/details"
    for record in (body["data"]["input"]["id"], body["data"]["output"]["id"]):
        _, original, _ = await file_bytes(api, f"{details}/{record}/file?variant=original")
        _, output, _ = await file_bytes(api, f"{details}/{record}/file?variant=output")
        assert (original, output[8:12]) == (kite, b"WEBP")


async def test_the_output_record_before_its_output_exists(api: Api, kite: bytes) -> None:
    await api.worker.stop()  # nothing processes: the file stays PENDING
    instruction_id = await api.instruction("images/thumbnail", {})
    _, body = await api.upload(instruction_id, [("kite.jpg", kite)])
    output = body["data"]["output"]
    assert (output["status"], output["file_size"], output["output_id"]) == ("PENDING", 0, None)
    path = f"/instructions/{instruction_id}/details/{output['id']}/file"
    status, _, _ = await file_bytes(api, path)
    assert status == 404


async def test_a_file_list_shows_one_record_per_file_as_before(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    _, body = await api.upload(instruction_id, [("a.jpg", kite), ("b.jpg", kite)])
    _, listed = await api.call("GET", f"/instructions/{instruction_id}/details")
    assert [f["id"] for f in listed["data"]["files"]] == [f["id"] for f in body["data"]["files"]]


async def test_an_output_id_is_found_under_its_own_instruction_only(api: Api, kite: bytes) -> None:
    first = await api.instruction("images/thumbnail", {})
    second = await api.instruction("images/thumbnail", {})
    _, body = await api.upload(first, [("kite.jpg", kite)])
    output_id = body["data"]["output"]["id"]
    status, _ = await api.call("GET", f"/instructions/{second}/details/{output_id}")
    assert status == 404
    status, _ = await api.call("GET", f"/instructions/{first}/details/{output_id}", user="bob")
    assert status == 404


async def test_the_old_deployments_product_ids_are_kept_when_configured(tmp_path: Path) -> None:
    old_id = "507f1f77bcf86cd799439011"
    async with running_api(tmp_path, product_ids=(f"images/thumbnail={old_id}",)) as api:
        _, body = await api.call("GET", "/products", user=None)
        [thumbnail] = [p for p in body["data"]["products"] if p["key"] == "images/thumbnail"]
        assert thumbnail["id"] == old_id
        status, body = await api.call("POST", "/instructions", json={"product_id": old_id})
        assert status == 200, body
        instruction = body["data"]["instruction"]
        assert (instruction["product_key"], instruction["product_id"]) == (
            "images/thumbnail",
            old_id,
        )
        _, body = await api.call("GET", f"/instructions/{instruction['id']}")
        assert body["data"]["instruction"]["product_id"] == old_id
