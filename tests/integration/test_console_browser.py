"""The web console in a real browser: Debian's Chromium driven by Playwright, against
`imagecore serve` as a process. Writes screenshots of every screen, on a laptop and on a
phone, to tests/screenshots/ (ignored by git), and checks each with axe-core: no serious
or critical violation.

Chromium comes from Debian (scripts/ensure-chromium.sh; the nox `ui` session runs
it first): Playwright's own browser download cannot be reached from here.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import pyvips
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from service_support import Served, serving, token

from corpus import PHOTOS as CORPUS_PHOTOS
from corpus import require

pytestmark = [pytest.mark.integration, pytest.mark.browser]

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
PHOTOS = CORPUS_PHOTOS[:3]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000
TIMES = " \N{MULTIPLICATION SIGN} "  # how the console writes dimensions
AXE = Axe()
GRAVE = {"serious", "critical"}


@attrs.define
class Watched:
    """A page, and every error its console or its scripts reported."""

    page: Page
    errors: list[str] = attrs.field(factory=list)

    def shot(self, name: str, *, full_page: bool = True) -> None:
        """Photograph the page, then check it with axe-core: each screen is shot once."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)
        self.check_accessibility(name)

    def check_accessibility(self, where: str) -> None:
        # Animations and transitions settle first: axe measures colours as they are drawn.
        self.page.wait_for_timeout(300)
        violations = AXE.run(self.page).response["violations"]
        grave = [
            (v["id"], v["impact"], [node["target"] for node in v["nodes"]][:3])
            for v in violations
            if v["impact"] in GRAVE
        ]
        assert grave == [], f"axe-core on {where}: {grave}"

    def assert_clean(self) -> None:
        assert self.errors == [], "the browser reported errors"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require()
    with serving(tmp_path_factory.mktemp("console"), {"DEV_LOGIN": "true"}) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (nox -s ui does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def watched(browser: Browser, viewport: dict[str, int]) -> Iterator[Watched]:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    seen = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        # Chromium logs every 4xx answer; the console's probe of a host's own sign-in
        # (a token-less GET /instructions?size=1) is answered 401 when there is none.
        probe = "401" in message.text and "/instructions?size=1" in str(message.location)
        if message.type == "error" and not probe:
            seen.errors.append(f"console: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
    try:
        yield seen
    finally:
        context.close()


@pytest.fixture
def laptop(browser: Browser) -> Iterator[Watched]:
    yield from watched(browser, LAPTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Watched]:
    yield from watched(browser, PHONE)


def slow_uploads(page: Page, bytes_per_second: int) -> None:
    """Throttle uploads so the progress screen can be seen (and photographed) mid-way."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def drop_files(page: Page, target: str, paths: list[Path]) -> None:
    """Drag files from the desktop onto ``target``: a drop event carrying a DataTransfer."""
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const {name, data} of files) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
            }
            return transfer;
        }""",
        files,
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(target, event, {"dataTransfer": transfer})


def start_a_resize_job(laptop: Watched) -> None:
    """Sign in for development, pick resize with a width, add three photos, start."""
    page = laptop.page
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#dev-login")).to_be_visible()
    laptop.shot("01-sign-in")
    page.fill("#dev-user", "console-alice")
    page.click("#dev-login button[type=submit]")
    expect(page.locator("#user")).to_have_text("console-alice")

    page.click("label[data-key='images/resize']")
    expect(page.locator("#param-fit")).to_have_value("inside")
    page.fill("#param-width", "640")
    page.set_input_files("#file-input", [str(p) for p in PHOTOS])
    expect(page.locator("#picked li")).to_have_count(3)
    expect(page.locator("#start")).to_have_text("Process 3 images")
    laptop.shot("02-tool-form")

    page.evaluate("() => { window.consoleNotReloaded = true; }")
    slow_uploads(page, 400_000)
    page.click("#start")
    expect(page.locator("#files li.file")).to_have_count(3)
    expect(page.locator("#files li.file[data-status=uploading]").first).to_be_visible()
    page.wait_for_timeout(600)
    laptop.shot("03-progress")
    slow_uploads(page, -1)


def check_compare(laptop: Watched) -> None:
    """The comparison: result over original cut by a split slider; fitted, then 1:1 and panned."""
    page = laptop.page
    first = page.locator("#files li.file").first
    first.get_by_role("button", name=f"Compare {PHOTOS[0].name}").click()
    dialog = page.locator("#compare")
    expect(dialog).to_be_visible()
    expect(dialog.locator("img")).to_have_count(2)
    for img in dialog.locator("img").all():
        expect(img).to_have_js_property("complete", value=True)
    expect(dialog.locator(".facts .before")).to_contain_text(f"2560{TIMES}1600")
    expect(dialog.locator(".facts .after")).to_contain_text(f"640{TIMES}400")
    after = dialog.locator("img.after")
    expect(after).to_have_css("clip-path", "inset(0px 0px 0px 50%)")
    dialog.locator("#compare-split").fill("20")
    expect(after).to_have_css("clip-path", "inset(0px 0px 0px 20%)")
    laptop.shot("05-compare", full_page=False)

    fitted = after.bounding_box()
    assert fitted is not None
    assert round(fitted["width"]) != 640, "fitted, the result is scaled to the dialog"
    dialog.locator("#compare-zoom").click()
    expect(dialog.locator("#compare-zoom")).to_have_attribute("aria-pressed", "true")
    # At 1:1 one pixel of the result is one pixel of the screen, and the original lies under it.
    expect(after).to_have_js_property("clientWidth", 640)
    expect(dialog.locator("img.before")).to_have_js_property("clientWidth", 640)
    laptop.shot("05b-compare-1to1", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def drag_pans(page: Page) -> None:
    """At 1:1, dragging the comparison moves both images (they share one scroll box)."""
    stage = page.locator("#compare-stage")
    box = stage.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 10, box["y"] + 20, steps=5)
    page.mouse.up()
    left = stage.evaluate("s => s.scrollLeft")
    assert left > 0, "dragging did not pan the comparison"


def test_a_first_session_in_the_console(served: Served, laptop: Watched, tmp_path: Path) -> None:
    page = laptop.page
    page.goto(served.base + "/")
    start_a_resize_job(laptop)

    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#live")).to_have_text("All files finished")
    assert page.evaluate("() => window.consoleNotReloaded === true"), "the page was reloaded"
    expect(page.locator("#summary")).to_have_text("3 files · 3 done")
    expect(page.locator("#total")).to_contain_text("\N{RIGHTWARDS ARROW}")
    expect(page.locator("#total")).to_contain_text("%")
    expect(page.locator("#retention")).to_contain_text("kept 24 hours")
    expect(page.locator("#files .thumb img")).to_have_count(3)
    laptop.shot("04-results")

    first = page.locator("#files li.file").first
    expect(first.locator(".result")).to_contain_text(f"640{TIMES}400")
    with page.expect_download() as download_info:
        first.get_by_role("button", name=f"Download the result of {PHOTOS[0].name}").click()
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    assert saved.name == PHOTOS[0].name
    image = pyvips.Image.new_from_file(str(saved))
    assert (image.width, image.height) == (640, 400)

    check_compare(laptop)

    with page.expect_download() as zip_info:
        page.click("#download-all")
    archive = zipfile.ZipFile(io.BytesIO(Path(zip_info.value.path()).read_bytes()))
    assert sorted(archive.namelist()) == sorted(p.name for p in PHOTOS)

    page.click("a[data-nav=history]")
    expect(page.locator("#jobs li")).to_have_count(1)
    expect(page.locator("#jobs li").first).to_contain_text("3 files · 3 done")
    expect(page.locator("#jobs li").first).to_contain_text("width 640")
    laptop.shot("06-history")
    laptop.assert_clean()


def test_a_pasted_token_on_a_phone(served: Served, phone: Watched) -> None:
    page = phone.page
    page.goto(served.base + "/")
    phone.shot("phone-01-sign-in")
    page.fill("#token", token(served, "phone-bob"))
    page.click("#token-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("New job")
    phone.shot("phone-02-new-job")

    page.click("label[data-key='images/thumbnail']")
    page.select_option("#param-format", "webp")
    page.fill("#param-width", "800")  # wider than the phone: the comparison pans at 1:1
    page.fill("#param-height", "800")
    drop_files(page, "#dropzone", [PHOTOS[1]])
    expect(page.locator("#picked li")).to_have_count(1)
    page.click("#start")
    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#files .result")).to_contain_text("WebP")
    phone.shot("phone-03-job")

    page.locator("#files li.file").get_by_role("button", name="Compare").click()
    expect(page.locator("#compare img")).to_have_count(2)
    expect(page.locator("#compare img.after")).to_have_js_property("complete", value=True)
    page.click("#compare-zoom")
    drag_pans(page)
    phone.shot("phone-04-compare", full_page=False)
    page.keyboard.press("Escape")

    page.click("a[data-nav=history]")
    expect(page.locator("#jobs li")).to_have_count(1)
    phone.shot("phone-05-history")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px phone"

    page.locator("#jobs li a").first.click()
    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(1)
    page.click("#sign-out")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    phone.assert_clean()
