"""One real ``imagecore serve`` for the hostile-client tests (issue 27).

It runs as the integration tests start theirs (`integration.service_support`):
its own process on a free loopback port, a temporary ``DATA_DIR``, real
sockets, with `client_support.SETTINGS`. Tests keep out of each other's way
by user name, and by the loopback address they connect from
(`client_support.next_address`), since the stream caps count per user and
per address.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_support import SETTINGS

from integration.service_support import Served, serving


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("hostile-clients"), SETTINGS) as served:
        yield served


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Show the end of the service's log under a failing test."""
    del call
    report: pytest.TestReport = yield
    served = getattr(item, "funcargs", {}).get("served")
    if report.failed and isinstance(served, Served):
        report.sections.append((f"imagecore log: {served.log}", served.log.read_text()[-4000:]))
    return report
