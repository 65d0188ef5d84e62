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
import weakref
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import pyvips
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    Browser,
    CDPSession,
    ConsoleMessage,
    FileChooser,
    Page,
    expect,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from service_support import Served, serving, token

from corpus import PHOTOS as CORPUS_PHOTOS
from corpus import require

pytestmark = [pytest.mark.integration, pytest.mark.browser]

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

    def assert_clean(self, *statuses: int) -> None:
        """No error but the HTTP ``statuses`` the test provoked (Chromium logs each)."""
        provoked = tuple(f"the server responded with a status of {s} " for s in statuses)
        errors = [e for e in self.errors if not any(p in e for p in provoked)]
        assert errors == [], "the browser reported errors"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require()
    with serving(tmp_path_factory.mktemp("console"), {"DEV_LOGIN": "true"}) as served:
        yield served


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


THROTTLES: weakref.WeakKeyDictionary[Page, CDPSession] = weakref.WeakKeyDictionary()


def slow_uploads(page: Page, bytes_per_second: int) -> None:
    """Throttle uploads so the progress screen can be seen (and photographed) mid-way.

    -1 lifts the throttle. One DevTools session per page: a second one's conditions
    would not replace the first's.
    """
    cdp = THROTTLES.get(page)
    if cdp is None:
        cdp = THROTTLES[page] = page.context.new_cdp_session(page)
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
    # The split's percentage is of the picture itself, not of an empty margin beside it.
    shown = after.evaluate(
        "img => [img.getBoundingClientRect().width, img.naturalWidth / img.naturalHeight,"
        " img.getBoundingClientRect().height]"
    )
    assert abs(shown[0] / shown[2] - shown[1]) < 0.02, shown
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


def sign_in(page: Page, base: str, user: str) -> None:
    page.goto(base + "/")
    page.fill("#dev-user", user)
    page.click("#dev-login button[type=submit]")
    expect(page.locator("h1")).to_have_text("New job")


def test_a_reload_during_uploads_says_what_was_lost_and_the_job_takes_them_again(
    served: Served, laptop: Watched
) -> None:
    page = laptop.page
    sign_in(page, served.base, "reload-carol")
    page.click("label[data-key='images/resize']")
    page.fill("#param-width", "320")
    page.set_input_files("#file-input", [str(p) for p in PHOTOS])
    slow_uploads(page, 20_000)  # each photo takes half a minute: the reload comes first
    page.click("#start")
    expect(page.locator("#files li.file[data-status=uploading]")).to_have_count(2)
    asked = page.evaluate(
        "() => !window.dispatchEvent(new Event('beforeunload', {cancelable: true}))"
    )
    assert asked, "leaving during uploads does not ask first"

    page.reload()
    lost = page.locator("#files li.file[data-status=lost]")
    expect(lost).to_have_count(3)
    expect(lost.first).to_contain_text("closed or reloaded before this file was sent")
    expect(page.locator("#summary")).to_have_text("3 files · 3 not uploaded")
    laptop.shot("07-reloaded-job")

    slow_uploads(page, -1)
    page.set_input_files("#add-files", [str(p) for p in PHOTOS])
    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#files li.file")).to_have_count(3)
    expect(page.locator("#summary")).to_have_text("3 files · 3 done")
    page.set_input_files("#add-files", [str(PHOTOS[0])])  # the same file again: not twice
    expect(page.locator("#toasts")).to_contain_text(f"Already in this job: {PHOTOS[0].name}")
    expect(page.locator("#files li.file")).to_have_count(3)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-job")
    removed = page.locator("#files li.file[data-status=cleaned]")
    expect(removed).to_have_count(3)
    expect(removed.first).to_contain_text("deleted from the server")
    for name in ("Compare", "Download"):  # the role lists only what is shown
        expect(page.locator("#files").get_by_role("button", name=name)).to_have_count(0)
    expect(page.locator("#download-all")).to_be_disabled()
    laptop.shot("08-deleted-job")

    page.reload()  # what the service says, not what the page remembers
    expect(page.locator("#files li.file[data-status=cleaned]")).to_have_count(3)
    laptop.assert_clean()


def test_a_job_where_every_file_fails_says_so_and_why(
    served: Served, phone: Watched, tmp_path: Path
) -> None:
    page = phone.page
    text = tmp_path / "notes.jpg"
    text.write_text("these are notes, not a photo")
    cut = tmp_path / "cut-short.jpg"
    cut.write_bytes(PHOTOS[0].read_bytes()[:20_000])
    sign_in(page, served.base, "failing-dave")
    phone.shot("phone-06-new-job-settings")
    page.click("label[data-key='images/compress']")
    page.set_input_files("#file-input", [str(text), str(cut)])
    page.click("#start")
    expect(page.locator("#live")).to_have_text("All 2 files failed", timeout=WAIT_MS)
    refused = page.locator("#files li.file", has_text="notes.jpg")
    expect(refused).to_have_attribute("data-status", "failed")
    expect(refused).to_contain_text("not an image in a format imagecore reads")
    expect(refused.locator(".meta")).not_to_contain_text("JPEG")  # never guessed from the name
    broken = page.locator("#files li.file", has_text="cut-short.jpg")
    expect(broken).to_have_attribute("data-status", "FAILED")
    expect(broken.locator(".result")).to_contain_text("damaged or cut short")
    expect(page.locator(".overall")).to_have_class("overall failed")
    # No broken-image icon: a thumbnail that cannot be decoded gives way to a label.
    expect(refused.locator(".thumb img")).to_have_count(0)
    phone.shot("phone-07-failed-job")

    page.reload()
    expect(page.locator("#files li.file")).to_have_count(2)
    again = page.locator("#files li.file", has_text="notes.jpg")
    expect(again).to_have_attribute("data-status", "lost")
    expect(again).to_contain_text("not an image in a format imagecore reads")
    expect(page.locator("#live")).to_have_text("All 2 files failed")
    phone.assert_clean(415)


def test_a_bad_setting_is_marked_at_its_field(served: Served, phone: Watched) -> None:
    page = phone.page
    sign_in(page, served.base, "watermark-erin")
    page.click("label[data-key='images/watermark']")
    page.set_input_files("#file-input", [str(PHOTOS[0])])
    page.click("#start")
    field = page.locator("#param-text")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(page.locator("#param-text-error")).to_contain_text("at least one of")
    expect(page.locator("#param-text-error")).to_be_in_viewport()
    phone.shot("phone-08-bad-setting", full_page=False)
    phone.assert_clean(400)


@pytest.fixture(scope="module")
def forgetful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A service that keeps results one second and cleans up every second."""
    require()
    env = {"DEV_LOGIN": "true", "RETENTION_SECONDS": "1", "CLEANUP_INTERVAL_SECONDS": "1"}
    with serving(tmp_path_factory.mktemp("forgetful"), env) as served:
        yield served


def cleaned(served: Served, user: str) -> None:
    """Wait until the cleanup of ``served`` has removed every file of ``user``'s jobs."""
    headers = {"Authorization": f"Bearer {token(served, user)}"}

    def read(path: str) -> dict:
        request = urllib.request.Request(served.base + path, headers=headers)  # noqa: S310 - loopback
        with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback
            return json.load(response)["data"]

    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        [job] = read("/instructions")["instructions"]
        if all(f["is_cleaned"] for f in read(f"/instructions/{job['id']}/details")["files"]):
            return
        time.sleep(0.5)
    pytest.fail("cleanup did not remove the files")


def test_a_job_cleaned_by_retention_shows_its_files_gone(
    forgetful: Served, laptop: Watched
) -> None:
    page = laptop.page
    sign_in(page, forgetful.base, "retention-frank")
    page.click("label[data-key='images/thumbnail']")
    page.set_input_files("#file-input", [str(PHOTOS[1])])
    page.click("#start")
    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#retention")).to_contain_text("kept 1 second after they finish")
    cleaned(forgetful, "retention-frank")
    page.reload()
    row = page.locator("#files li.file")
    expect(row).to_have_attribute("data-status", "cleaned")
    expect(row.locator(".chip")).to_have_text("Removed")
    expect(row).to_contain_text("deleted from the server")
    expect(page.locator("#retention")).to_contain_text("kept 1 second after they finish")
    expect(row.get_by_role("button", name="Compare")).to_be_hidden()
    expect(row.get_by_role("button", name="Download")).to_be_hidden()
    expect(page.locator("#download-all")).to_be_disabled()
    laptop.shot("09-cleaned-job")
    laptop.assert_clean()


def tab_to(page: Page, check: str, presses: int = 80) -> None:
    """Press Tab until ``check`` (a JS predicate of the focused element) holds."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"(el => {check})(document.activeElement)"):
            return
    pytest.fail(f"Tab never reached an element where {check}")


def open_the_file_chooser_by_keyboard(page: Page) -> FileChooser:
    """The chooser the focused file input opens on Space (or Enter, its other key).

    Twice in CI, on a loaded machine, headless Chromium opened no chooser for the
    Space it was sent (not reproduced when tried alone, idle or loaded): the keys
    are tried again before the test fails. A picker no key opens still fails it.
    """
    for key in ("Space", "Enter", "Space"):
        expect(page.locator("#file-input")).to_be_focused()
        try:
            with page.expect_file_chooser(timeout=15_000) as chooser:
                page.keyboard.press(key)
        except PlaywrightTimeoutError:
            continue
        return chooser.value
    pytest.fail("no key opened the file chooser of the focused picker")


def outline(page: Page) -> str:
    return page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")


def test_the_whole_flow_with_the_keyboard_alone(served: Served, laptop: Watched) -> None:
    page = laptop.page
    page.goto(served.base + "/")
    tab_to(page, "el.id === 'dev-user'")
    page.keyboard.type("keyboard-grace")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("New job")
    # A new page takes the focus once drawn: tabbing before that, on a busy machine,
    # would lose its place when it does.
    expect(page.locator("#main")).to_be_focused()

    tab_to(page, "el.id === 'file-input'")
    pick = page.locator("#dropzone .pick")
    expect(pick).to_have_css("outline-style", "solid")  # the hidden input's focus shows here
    open_the_file_chooser_by_keyboard(page).set_files([str(PHOTOS[2])])
    expect(page.locator("#picked li")).to_have_count(1)

    tab_to(page, "el.name === 'tool'")
    while page.evaluate("() => document.activeElement.value") != "images/resize":
        page.keyboard.press("ArrowRight")
    tab_to(page, "el.id === 'param-width'")
    page.keyboard.type("320")
    tab_to(page, "el.id === 'start'")
    assert outline(page) == "solid", "the focused Start button shows no focus"
    page.keyboard.press("Enter")
    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(1, timeout=WAIT_MS)

    tab_to(page, "(el.getAttribute('aria-label') || '').startsWith('Compare ')")
    page.keyboard.press("Enter")
    expect(page.locator("#compare")).to_be_visible()
    tab_to(page, "el.id === 'compare-split'")
    page.keyboard.press("Home")
    expect(page.locator("#compare-split")).to_have_value("0")
    tab_to(page, "el.id === 'compare-zoom'")
    page.keyboard.press("Enter")
    expect(page.locator("#compare-zoom")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Escape")
    expect(page.locator("#compare")).to_be_hidden()
    focused = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert focused == f"Compare {PHOTOS[2].name} with its result", "focus is lost on close"

    tab_to(page, "el.dataset.nav === 'history'", presses=80)
    page.keyboard.press("Enter")
    expect(page.locator("#jobs li")).to_have_count(1)
    expect(page.locator("#main")).to_be_focused()
    tab_to(page, "el.classList.contains('job-link')")
    page.keyboard.press("Enter")
    expect(page.locator("#files li.file[data-status=DONE]")).to_have_count(1)
    laptop.assert_clean()


def test_compress_says_what_it_chose_and_metadata_reads_as_a_list(
    served: Served, laptop: Watched
) -> None:
    page = laptop.page
    sign_in(page, served.base, "results-heidi")
    page.click("label[data-key='images/compress']")
    expect(page.locator("label[for=param-target_ssim]")).to_have_text("Target similarity")
    page.set_input_files("#file-input", [str(PHOTOS[0])])
    page.click("#start")
    row = page.locator("#files li.file")
    expect(row).to_have_attribute("data-status", "DONE", timeout=WAIT_MS)
    expect(row.locator(".detail-text")).to_contain_text("quality")
    expect(row.locator(".detail-text")).to_contain_text("similarity 0.9")
    laptop.shot("10-compressed")

    page.click("a[data-nav=new]")
    page.click("label[data-key='images/resize']")
    page.fill("#param-width", "4000")
    page.set_input_files("#file-input", [str(PHOTOS[0])])
    page.click("#start")
    row = page.locator("#files li.file")
    expect(row).to_have_attribute("data-status", "DONE", timeout=WAIT_MS)
    expect(row.locator(".detail-text")).to_have_text(f"not enlarged: the image is 2560{TIMES}1600")

    page.click("a[data-nav=new]")
    page.click("label[data-key='images/metadata']")
    page.set_input_files("#file-input", [str(PHOTOS[0])])
    page.click("#start")
    row = page.locator("#files li.file")
    expect(row).to_have_attribute("data-status", "DONE", timeout=WAIT_MS)
    expect(row.locator(".result")).not_to_have_class("result ok")  # no size change in green
    expect(row.get_by_role("button", name="Compare")).to_have_count(0)
    row.get_by_role("button", name=f"View the metadata of {PHOTOS[0].name}").click()
    expect(page.locator("#metadata dt").first).to_be_visible()
    expect(page.locator("#metadata")).to_contain_text("2560")
    laptop.shot("11-metadata", full_page=False)
    page.keyboard.press("Escape")
    laptop.assert_clean()
