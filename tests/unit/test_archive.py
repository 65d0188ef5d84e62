"""``GET /instructions/{id}/archive``: every output of an instruction as one streamed zip."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from http_support import Api, running_api

from entrypoints.http.archive import archive_names
from imagecore.errors import DependencyUnavailable


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as api:
        yield api


async def fetch(api: Api, path: str, user: str = "alice") -> tuple[int, dict[str, str], bytes]:
    async with api.session.get(api.base + path, headers=api.token(user)) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_archive_holds_every_done_output_under_distinct_names(
    api: Api, kite: bytes
) -> None:
    instruction_id = await api.instruction("images/resize", {"width": 200, "format": "webp"})
    await api.upload(
        instruction_id,
        [("kite.jpg", kite), ("broken.jpg", kite[:2000]), ("KITE.jpg", kite), ("path.jpg", kite)],
    )
    files = await api.wait_final(instruction_id)
    assert [f["status"] for f in files] == ["DONE", "FAILED", "DONE", "DONE"]

    status, headers, body = await fetch(api, f"/instructions/{instruction_id}/archive")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert f'filename="resize-{instruction_id}.zip"' in headers["Content-Disposition"]
    assert headers.get("Transfer-Encoding") == "chunked"  # streamed: the size is not known first
    assert "Content-Length" not in headers
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["kite.webp", "KITE (2).webp", "path.webp"]
        done = [f for f in files if f["status"] == "DONE"]
        for name, detail in zip(archive.namelist(), done, strict=True):
            _, _, single = await fetch(
                api, f"/instructions/{instruction_id}/details/{detail['output_id']}/file"
            )
            assert archive.read(name) == single
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED


async def test_a_json_output_is_deflated(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/metadata", {})
    await api.upload(instruction_id, [("kite.jpg", kite)])
    await api.wait_final(instruction_id)
    _, _, body = await fetch(api, f"/instructions/{instruction_id}/archive")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [info] = archive.infolist()
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert b'"width"' in archive.read(info)


async def test_no_archive_before_a_file_is_done(api: Api) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    status, body = await api.call("GET", f"/instructions/{instruction_id}/archive")
    assert status == 404
    assert "no file of this instruction is DONE" in body["message"]


async def test_another_users_archive_answers_like_a_missing_one(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("kite.jpg", kite)])
    await api.wait_final(instruction_id)
    theirs = await api.call("GET", f"/instructions/{instruction_id}/archive", user="mallory")
    missing = await api.call("GET", f"/instructions/{'f' * 24}/archive", user="mallory")
    assert theirs[0] == missing[0] == 404
    assert theirs[1]["message"] == missing[1]["message"]


async def test_an_output_gone_from_storage_is_left_out(api: Api, kite: bytes) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("a.jpg", kite), ("b.jpg", kite)])
    first, _ = await api.wait_final(instruction_id)
    gone = await api.repo.get_detail(first["id"])
    assert gone.output is not None
    await api.storage.delete(gone.output.key)
    status, _, body = await fetch(api, f"/instructions/{instruction_id}/archive")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["b.jpg"]


async def test_a_storage_failure_mid_archive_breaks_the_transfer(
    api: Api, kite: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    instruction_id = await api.instruction("images/thumbnail", {})
    await api.upload(instruction_id, [("a.jpg", kite), ("b.jpg", kite)])
    await api.wait_final(instruction_id)
    real_get = api.storage.get
    opened: list[str] = []

    async def failing_get(key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        opened.append(key)
        if len(opened) > 1 and key.startswith("outputs"):
            raise DependencyUnavailable("storage went away")
        async for chunk in real_get(key, chunk_size):
            yield chunk

    monkeypatch.setattr(api.storage, "get", failing_get)
    async with api.session.get(
        f"{api.base}/instructions/{instruction_id}/archive", headers=api.token("alice")
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()  # never a complete-looking zip with a file missing


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a.jpg", "b.jpg"], ["a.jpg", "b.jpg"]),
        (["a.jpg", "a.jpg", "A.JPG"], ["a.jpg", "a (2).jpg", "A (3).JPG"]),
        (["dir/a.png", "..\\a.png"], ["a.png", "a (2).png"]),
        (["README", "README", ""], ["README", "README (2)", "output"]),
        (["a (2).jpg", "a.jpg", "a.jpg"], ["a (2).jpg", "a.jpg", "a (3).jpg"]),
    ],
)
def test_archive_names_never_clash_or_escape(names: list[str], expected: list[str]) -> None:
    assert archive_names(names) == expected
