"""Real servers for the integration tests, one of each per session, on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devtools import devstack

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

SERVER_FIXTURES = ("nats_server", "seaweedfs_server", "ferretdb_server")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.ServerHandle]:
    handle = devstack.start_nats(tmp_path_factory.mktemp("nats"))
    yield handle
    devstack.stop(handle)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.ServerHandle]:
    handle = devstack.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield handle
    devstack.stop(handle, timeout=2.0)  # its data is thrown away: skip the filer's 15 s grace


@pytest.fixture(scope="session")
def ferretdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.ServerHandle]:
    handle = devstack.start_ferretdb(tmp_path_factory.mktemp("ferretdb"))
    yield handle
    devstack.stop(handle)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Show the end of each server's log under a failing test that used that server."""
    del call
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in SERVER_FIXTURES:
            if isinstance(handle := funcargs.get(name), devstack.ServerHandle):
                report.sections.append((f"{handle.name} log: {handle.log_path}", handle.log_tail()))
    return report


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the browser tests (Playwright's download is unreachable)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (nox -s ui does)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - browser tests only

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
