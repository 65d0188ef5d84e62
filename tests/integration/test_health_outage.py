"""/health on the production stack: 503 within 2 s when a dependency stops, 200 when it is back."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import Served, start

from devtools import devstack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPENDENCY = {"ferretdb": "repository", "seaweedfs": "storage", "nats": "broker"}


def health(served: Served) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(served.base + "/health", timeout=10) as response:  # noqa: S310
            status, body = response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, json.load(exc)
        exc.close()
    return status, body["data"], time.monotonic() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[devstack.Devstack, Served]]:
    root = tmp_path_factory.mktemp("outage")
    with devstack.Devstack(root / "servers") as servers:
        served = start("serve", root / "service", servers.env)
        try:
            yield servers, served
        finally:
            served.stop()


@pytest.mark.parametrize("server", ["nats", "ferretdb", "seaweedfs"])
def test_health_names_a_stopped_dependency_and_recovers(
    stack: tuple[devstack.Devstack, Served], server: devstack.ServerName
) -> None:
    servers, served = stack
    status, data, _ = health(served)
    assert status == 200, data
    devstack.kill(servers.servers[server])
    try:
        # The first probe after the kill may still see a live connection: allow a few.
        for _ in range(20):
            status, data, seconds = health(served)
            assert seconds < 2.5, f"/health took {seconds:.2f} s"
            if status == 503:
                break
            time.sleep(0.25)
        assert status == 503
        dependencies = data["dependencies"]
        assert isinstance(dependencies, dict)
        assert dependencies[DEPENDENCY[server]]["status"] == "down"
        assert [k for k, v in dependencies.items() if v["status"] == "down"] == [DEPENDENCY[server]]
    finally:
        servers.restart(server)
    deadline = time.monotonic() + 30
    while (status := health(served)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200
    assert Path(served.log).exists()
