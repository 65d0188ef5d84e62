"""The old service's contract, as a client written from ``seed-openapi.json`` alone sees it.

Every request, header, status code and response key here comes from that
document: the old gateway's three headers (its security schemes), the
routes, the 200s, the keys of each schema. It runs against a real
``imagecore serve`` in gateway mode (``TRUST_GATEWAY_HEADERS=true`` from
loopback, the only way the old gateway's clients can reach it), on the
embedded stack and on the production one (FerretDB, SeaweedFS, NATS).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from service_support import Served, serving

from corpus import KITE, require

pytestmark = pytest.mark.integration

SPEC = json.loads(
    (Path(__file__).resolve().parents[3] / "shared" / "spec" / "seed-openapi.json").read_text()
)
SCHEMAS = SPEC["components"]["schemas"]


def keys(schema: str) -> set[str]:
    """The property names the contract gives ``schema``."""
    return set(SCHEMAS[schema]["properties"])


def gateway(user: str, authenticated: str = "true") -> dict[str, str]:
    """The old gateway's headers (the contract's security schemes)."""
    assert set(SPEC["components"]["securitySchemes"]) == {
        "x-authenticated",
        "x-user-id",
        "x-user-origin",
    }
    return {
        "x-authenticated": authenticated,
        "x-user-id": user,
        "x-user-origin": "https://app.example",
    }


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    """``data`` of a contract answer, after checking the envelope's keys."""
    assert {"message", "errors", "data"} <= set(body), body
    assert isinstance(body["message"], str)
    return body["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["embedded", "production"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    require()
    env = {"TRUST_GATEWAY_HEADERS": "true", "TRUSTED_PROXIES": "127.0.0.1,::1"}
    if request.param == "production":
        unique = uuid.uuid4().hex[:8]
        for server in ("ferretdb_server", "seaweedfs_server", "nats_server"):
            env.update(request.getfixturevalue(server).env)
        env.update({"MONGO_DB": f"contract_{unique}", "S3_BUCKET": f"contract-{unique}"})
    with serving(tmp_path_factory.mktemp(f"contract-{request.param}"), env) as api:
        yield api


@pytest.fixture
async def client(served: Served) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(served.base, headers=gateway("64b7f0c1a1b2c3d4e5f60718")) as s:
        yield s


async def answer(response: aiohttp.ClientResponse, status: int = 200) -> dict[str, Any]:
    assert response.status == status, await response.text()
    return envelope(await response.json())


async def test_health_answers_status_ok(client: aiohttp.ClientSession) -> None:
    async with client.get("/health") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_products_list_with_the_product_keys(client: aiohttp.ClientSession) -> None:
    async with client.get("/products") as response:
        products = (await answer(response))["products"]
    assert products
    for product in products:
        assert keys("Product") <= set(product), product


async def product_id(client: aiohttp.ClientSession, key: str) -> str:
    async with client.get("/products") as response:
        products = (await answer(response))["products"]
    return str(next(p["id"] for p in products if p["key"] == key))


async def test_a_whole_job_as_the_old_client_runs_it(client: aiohttp.ClientSession) -> None:
    # The contract's example product is images/compress; its request names only product_id.
    request = {"product_id": await product_id(client, "images/compress")}
    async with client.post("/instructions", json=request) as response:
        instruction = (await answer(response))["instruction"]
    assert keys("Instruction") <= set(instruction), instruction
    async with client.get("/instructions") as response:
        listed = (await answer(response))["instructions"]
    assert instruction["id"] in [i["id"] for i in listed]
    async with client.get(f"/instructions/{instruction['id']}") as response:
        assert (await answer(response))["instruction"]["id"] == instruction["id"]

    form = aiohttp.FormData()
    form.add_field("file", KITE.read_bytes(), filename=KITE.name, content_type="image/jpeg")
    details = f"/instructions/{instruction['id']}/details"
    async with client.post(details, data=form) as response:
        uploaded = await answer(response)
    record_in, record_out = uploaded["input"], uploaded["output"]
    for record in (record_in, record_out):
        assert keys("InstructionDetail") <= set(record), record
        assert record["instruction_id"] == instruction["id"]
    assert record_in["id"] != record_out["id"]
    assert record_in["output_id"] == record_out["id"]

    output = await finished(client, f"{details}/{record_out['id']}")
    assert output["status"] == "DONE", output
    async with client.get(f"{details}/{record_out['id']}/file") as response:
        assert response.status == 200
        result = await response.read()
    assert len(result) == output["file_size"]
    async with client.get(f"{details}/{record_in['id']}/file") as response:
        assert response.status == 200
        assert await response.read() == KITE.read_bytes()
    async with client.get(details) as response:
        files = (await answer(response))["files"]
    assert record_in["id"] in [f["id"] for f in files]
    for record in files:
        assert keys("InstructionDetail") <= set(record), record


async def finished(client: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    for _ in range(600):
        async with client.get(path) as response:
            detail: dict[str, Any] = (await answer(response))["detail"]
        if detail["status"] in {"DONE", "FAILED"}:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(detail)


async def test_not_authenticated_is_a_401(served: Served) -> None:
    headers = gateway("64b7f0c1a1b2c3d4e5f60718", authenticated="false")
    async with aiohttp.ClientSession(served.base, headers=headers) as session:
        for path in ("/instructions", "/files"):
            async with session.get(path) as response:
                await answer(response, 401)


async def test_a_missing_instruction_is_a_404(client: aiohttp.ClientSession) -> None:
    missing = "507f1f77bcf86cd799439011"
    for path in (f"/instructions/{missing}", f"/instructions/{missing}/details"):
        async with client.get(path) as response:
            assert (await answer(response, 404)) is None


async def test_an_unknown_product_is_a_404(client: aiohttp.ClientSession) -> None:
    async with client.post("/instructions", json={"product_id": "0" * 24}) as response:
        await answer(response, 404)


async def test_a_request_without_a_product_is_a_400(client: aiohttp.ClientSession) -> None:
    async with client.post("/instructions", json={}) as response:
        await answer(response, 400)
