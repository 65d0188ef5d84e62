"""The HTTP API over a real loopback socket, on in-memory ports and the real libvips processor."""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from http_support import Api, running_api
from openapi_spec_validator import validate

from entrypoints.config import Settings
from entrypoints.http.app import create_app
from entrypoints.http.openapi import openapi_document
from entrypoints.http.views import attachment
from imagecore.products import CATALOGUE


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as api:
        yield api


async def test_products_are_public_and_complete(api: Api) -> None:
    status, body = await api.call("GET", "/products", user=None)
    assert status == 200
    products = body["data"]["products"]
    assert {p["key"] for p in products} == {p.key for p in CATALOGUE}
    assert all(p["created_at"] and p["limits"]["max_file_bytes"] > 0 for p in products)
    assert body["errors"] is None


async def test_health_names_each_dependency(api: Api) -> None:
    status, body = await api.call("GET", "/health", user=None)
    assert status == 200
    assert set(body["data"]["dependencies"]) == {"repository", "storage", "broker", "disk"}
    assert body["data"]["status"] == "ok"
    disk = body["data"]["dependencies"]["disk"]
    assert disk["status"] == "ok"
    assert disk["free_bytes"] >= disk["min_free_bytes"] > 0


async def test_health_is_unavailable_when_the_disk_is_below_its_threshold(tmp_path: Path) -> None:
    async with running_api(tmp_path, min_free_disk_bytes=2**62) as api:
        status, body = await api.call("GET", "/health", user=None)
    assert status == 503
    disk = body["data"]["dependencies"]["disk"]
    assert disk == {
        "status": "down",
        "free_bytes": disk["free_bytes"],
        "min_free_bytes": 2**62,
        "error": "the disk is nearly full",
    }
    assert body["errors"][0]["message"] == "disk down"


async def test_the_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    status, _ = await api.call("GET", "/swagger", user=None)
    assert status == 200
    async with api.session.get(api.base + "/swagger") as response:
        document = await response.json()
    validate(document)
    assert document == openapi_document()
    app = create_app(Settings(), run_worker=False)
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert routes == documented


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"X-User-ID": "alice"},
    ],
)
async def test_requests_without_valid_credentials_get_401(api: Api, headers: dict) -> None:
    status, body = await api.call("GET", "/instructions", user=None, headers=headers)
    assert status == 401
    assert body["errors"][0]["code"] == "unauthorized"
    assert body["message"]


async def test_a_download_names_a_non_ascii_file_in_an_ascii_header(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/resize", {"width": 64, "format": "webp"})
    form = aiohttp.FormData(quote_fields=False)  # the name in UTF-8, as browsers send it
    form.add_field("file", kite, filename="Fête à 東京.jpg", content_type="image/jpeg")
    status, _ = await api.call("POST", f"/instructions/{instruction_id}/details", data=form)
    assert status == 200
    [done] = await api.wait_final(instruction_id)
    path = f"/instructions/{instruction_id}/details/{done['output_id']}/file"
    async with api.session.get(api.base + path, headers=api.token("alice")) as response:
        assert response.status == 200
        [raw] = [v for k, v in response.raw_headers if k.lower() == b"content-disposition"]
    assert raw.isascii(), raw
    # As a browser reads it (RFC 6266): filename* (RFC 8187) gives the whole name
    # back, and the plain filename is a quoted ASCII fallback.
    disposition = raw.decode("ascii")
    assert disposition.startswith("attachment;")
    [extended] = re.findall(r"filename\*=UTF-8''([^;\s]+)", disposition)
    assert urllib.parse.unquote(extended, errors="strict") == "Fête à 東京.webp"
    [fallback] = re.findall(r'filename="([^"]*)"', disposition)
    assert fallback.endswith(".webp")


async def test_a_whole_job_from_upload_to_download(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/resize", {"width": 320, "format": "webp"})
    status, body = await api.upload(instruction_id, [("kite.jpg", kite), ("kite2.jpg", kite)])
    assert status == 200, body
    assert [f["status"] for f in body["data"]["files"]] == ["PENDING", "PENDING"]
    files = await api.wait_final(instruction_id)
    assert [f["status"] for f in files] == ["DONE", "DONE"]
    first = files[0]
    assert (first["output"]["width"], first["output"]["height"]) == (320, 200)
    assert (first["width"], first["height"]) == (2560, 1600)
    path = f"/instructions/{instruction_id}/details/{first['output_id']}/file"
    async with api.session.get(api.base + path, headers=api.token("alice")) as response:
        assert response.status == 200
        data = await response.read()
        assert response.headers["Content-Type"] == "image/webp"
        assert int(response.headers["Content-Length"]) == len(data) == first["output"]["size"]
        assert 'filename="kite.webp"' in response.headers["Content-Disposition"]
        etag = response.headers["ETag"]
    assert data[8:12] == b"WEBP"
    async with api.session.get(
        api.base + path, headers={**api.token("alice"), "If-None-Match": etag}
    ) as response:
        assert response.status == 304
    async with api.session.get(
        api.base + path, headers={**api.token("alice"), "If-None-Match": '"stale"'}
    ) as response:
        assert (response.status, response.headers["ETag"]) == (200, etag)
        assert await response.read() == data
    async with api.session.head(api.base + path, headers=api.token("alice")) as response:
        assert (response.status, response.headers["ETag"]) == (200, etag)
        assert int(response.headers["Content-Length"]) == len(data)
        assert await response.read() == b""
    async with api.session.get(
        api.base + path + "?variant=original", headers=api.token("alice")
    ) as response:
        assert await response.read() == kite
    status, body = await api.call("GET", f"/instructions/{instruction_id}")
    assert body["data"]["instruction"]["status"] == "DONE"
    assert body["data"]["instruction"]["counts"]["DONE"] == 2


async def test_bad_instructions_get_clear_errors(api: Api) -> None:
    status, body = await api.call("POST", "/instructions", json={"product_key": "images/blur"})
    assert status == 404
    assert "images/resize" in body["message"]
    status, body = await api.call(
        "POST", "/instructions", json={"product_key": "images/resize", "params": {"width": 0}}
    )
    assert status == 400
    assert "width" in body["message"]
    status, body = await api.call("POST", "/instructions", data=b"{not json")
    assert status == 400
    status, body = await api.call("POST", "/instructions", json={})
    assert status == 400
    assert "product_id or product_key" in body["message"]


async def test_an_svg_is_refused_with_415(api: Api) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>" + b" " * 64
    status, body = await api.upload(instruction_id, [("cat.jpg", svg)])
    assert status == 415
    assert body["message"].startswith("cat.jpg:")
    assert api.storage.stored_keys() == []


async def test_a_file_over_the_limit_gets_413(tmp_path: Path, kite: bytes) -> None:
    async with running_api(tmp_path, max_file_bytes=100_000) as api:
        instruction_id = await api.instruction("images/thumbnail", {})
        status, body = await api.upload(instruction_id, [("kite.jpg", kite)])
        assert status == 413
        assert "100000 bytes" in body["message"]
        _, products = await api.call("GET", "/products", user=None)
        limits = {p["limits"]["max_file_bytes"] for p in products["data"]["products"]}
        assert limits == {100_000}


async def test_an_upload_without_files_is_a_400(api: Api) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    status, body = await api.call(
        "POST",
        f"/instructions/{instruction_id}/details",
        data=b"x",
        headers={"Content-Type": "text/plain"},
    )
    assert status == 400
    assert "multipart" in body["message"]


async def test_the_multipart_media_type_is_matched_without_case_or_parameters(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    boundary = "imagecore-test-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="kite.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    status, body = await api.call(
        "POST",
        f"/instructions/{instruction_id}/details",
        data=head.encode() + kite + f"\r\n--{boundary}--\r\n".encode(),
        headers={"Content-Type": f"  Multipart/Form-Data ; boundary={boundary}"},
    )
    assert status == 200, body
    assert [f["original_name"] for f in body["data"]["files"]] == ["kite.jpg"]


async def test_another_users_objects_answer_like_missing_ones(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    _, body = await api.upload(instruction_id, [("kite.jpg", kite)])
    detail_id = body["data"]["files"][0]["id"]
    paths = [
        f"/instructions/{instruction_id}",
        f"/instructions/{instruction_id}/details",
        f"/instructions/{instruction_id}/details/{detail_id}",
        f"/instructions/{instruction_id}/details/{detail_id}/file?variant=original",
    ]
    for path in paths:
        theirs = await api.call("GET", path, user="mallory")
        missing = await api.call("GET", path.replace(instruction_id, "f" * 24), user="mallory")
        assert theirs[0] == missing[0] == 404
        assert theirs[1]["message"] == missing[1]["message"]
    status, _ = await api.upload(instruction_id, [("kite.jpg", kite)], user="mallory")
    assert status == 404
    status, _ = await api.call("GET", "/instructions/not-an-id")
    assert status == 404


async def test_instructions_are_listed_newest_first_with_filters(api: Api, kite: bytes) -> None:
    ids = [await api.instruction("images/thumbnail", {}) for _ in range(3)]
    await api.upload(ids[0], [("kite.jpg", kite)])
    await api.wait_final(ids[0])
    status, body = await api.call("GET", "/instructions?size=2")
    assert status == 200
    assert [i["id"] for i in body["data"]["instructions"]] == [ids[2], ids[1]]
    assert body["data"]["pagination"]["total"] == 3
    _, done = await api.call("GET", "/instructions?status=DONE")
    assert [i["id"] for i in done["data"]["instructions"]] == [ids[0]]
    status, body = await api.call("GET", "/instructions?status=LOST")
    assert status == 400
    status, body = await api.call("GET", "/instructions?created_from=yesterday")
    assert status == 400
    _, others = await api.call("GET", "/instructions", user="bob")
    assert others["data"]["instructions"] == []


async def test_files_route_is_for_admins(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("kite.jpg", kite)])
    status, _ = await api.call("GET", "/files")
    assert status == 403
    status, body = await api.call("GET", "/files", user=None, headers=api.token("root", admin=True))
    assert status == 200
    assert [f["instruction_id"] for f in body["data"]["files"]] == [instruction_id]


async def test_metrics_count_requests_and_files(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("kite.jpg", kite)])
    await api.wait_final(instruction_id)
    async with api.session.get(api.base + "/metrics") as response:
        text = await response.text()
    assert (
        'imagecore_http_requests_total{method="POST",route="/instructions",status="200"} 1.0'
        in text
    )
    assert 'imagecore_files_total{product="images/thumbnail",status="DONE"} 1.0' in text
    assert "imagecore_queue_depth 0.0" in text
    assert f"imagecore_uploaded_bytes_total {float(len(kite))}" in text


async def test_a_corrupt_image_ends_failed_with_a_reason(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("half.jpg", kite[: len(kite) // 3])])
    [failed] = await api.wait_final(instruction_id)
    assert failed["status"] == "FAILED"
    assert failed["error"]["code"] in {"corrupt_image", "processing_error"}
    assert failed["error_message"]


async def test_every_error_carries_a_request_id(api: Api) -> None:
    async with api.session.get(
        api.base + "/instructions", headers={"X-Request-ID": "trace-me-42"}
    ) as response:
        body = await response.json()
        assert response.headers["X-Request-ID"] == "trace-me-42"
    assert body["errors"][0]["request_id"] == "trace-me-42"


async def test_instructions_page_by_cursor_to_the_end(api: Api) -> None:
    created = [await api.instruction("images/thumbnail", {}) for _ in range(5)]
    seen: list[str] = []
    path = "/instructions?size=2"
    for _ in range(5):
        status, body = await api.call("GET", path)
        assert status == 200, body
        seen += [i["id"] for i in body["data"]["instructions"]]
        cursor = body["data"]["pagination"]["next_cursor"]
        if cursor is None:
            break
        path = f"/instructions?size=2&cursor={cursor}"
        assert (await api.call("GET", path))[1]["data"]["pagination"]["total"] is None
    assert seen == created[::-1]
    # A time UTC cannot hold would overflow a store's conversion: refused here.
    beyond = base64.urlsafe_b64encode(b"9999-12-31T23:00:00-05:00|x").decode()
    for bad in ["not-base64!", "bm90IGEgY3Vyc29y", "", beyond]:
        status, body = await api.call("GET", f"/instructions?cursor={bad}")
        assert status == 400, (bad, body)
        assert "cursor" in body["message"]
    status, body = await api.call("GET", "/instructions?created_from=0001-01-01T00:00:00%2B01:00")
    assert status == 400, body
    assert "created_from" in body["message"]


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("ключ.webp", "download.webp"),  # no ASCII letter: not the hidden file ".webp"
        ("Fête à 東京.webp", "F_te.webp"),
        ('say "hi"\\.png', "say _hi.png"),
        ("README", "README"),
    ],
)
def test_a_download_s_ascii_fallback_keeps_a_visible_name(name: str, fallback: str) -> None:
    disposition = attachment(name)
    assert disposition.isascii()
    assert re.findall(r'filename="([^"]*)"', disposition) == [fallback]
    [extended] = re.findall(r"filename\*=UTF-8''([^;\s]+)", disposition)
    assert urllib.parse.unquote(extended, errors="strict") == name


async def test_deleting_a_jobs_files_removes_them_and_keeps_its_record(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("kite.jpg", kite)])
    [done] = await api.wait_final(instruction_id)
    assert done["status"] == "DONE"
    status, body = await api.call("DELETE", f"/instructions/{instruction_id}/details", user="bob")
    assert status == 404  # another user's job answers like a missing one
    status, body = await api.call("DELETE", f"/instructions/{instruction_id}/details")
    assert status == 200, body
    assert [(f["status"], f["is_cleaned"]) for f in body["data"]["files"]] == [("DONE", True)]
    path = f"/instructions/{instruction_id}/details/{done['output_id']}/file"
    status, _ = await api.call("GET", path)
    assert status == 404
    status, body = await api.call("GET", f"/instructions/{instruction_id}/details")
    assert body["data"]["files"][0]["is_cleaned"] is True
    assert body["data"]["retention_seconds"] > 0
