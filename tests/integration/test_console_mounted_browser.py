"""The console of a service mounted by a host: examples/host_service.py, under /images,
behind the host's own sign-in (a cookie), driven in Debian's Chromium.

The console must reach the API under the prefix and need no token of ours.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from service_support import free_port

from corpus import PHOTOS, require

pytestmark = [pytest.mark.integration, pytest.mark.browser]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "host_service.py"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example host as a process, in a folder of its own; its base URL."""
    require()
    folder = tmp_path_factory.mktemp("host")
    port = free_port()
    log = folder / "host.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - this interpreter on the repository's example
            [sys.executable, str(EXAMPLE)],
            cwd=folder,
            env={"PATH": "/usr/bin:/bin", "PORT": str(port)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the host never answered: {log.read_text()}"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(base + "/images/health", timeout=2).close()  # noqa: S310 - loopback
                break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def test_the_console_under_a_prefix_signed_in_by_the_host(host: str, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(host + "/login?user=alice")  # the host's sign-in, then its redirect
        assert page.url == host + "/images/"
        # Signed in by the host's cookie: no sign-in form, no token, no sign-out of ours.
        page.click("label[data-key='images/resize']")
        expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
        expect(page.locator("#sign-out")).to_be_hidden()
        page.fill("#param-width", "320")
        page.set_input_files("#file-input", [str(PHOTOS[0])])
        page.click("#start")
        expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(1)
        with page.expect_download() as download:
            page.locator("#files li.file").first.get_by_role("button", name="Download").click()
        saved = download.value.path()
        assert saved.read_bytes()[:3] == b"\xff\xd8\xff"
        assert errors == []
    finally:
        context.close()
