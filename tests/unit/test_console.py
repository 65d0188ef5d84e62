"""The web console's files and headers, and the development sign-in."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import jwt
import pytest
from http_support import SECRET, Api, running_api

from entrypoints.http.console import CONTENT_SECURITY_POLICY, DEV_TOKEN_SECONDS, STATIC
from entrypoints.http.console import _is_loopback as is_loopback

TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as api:
        yield api


@pytest.fixture
async def dev_api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path, dev_login=True) as api:
        yield api


class Page(HTMLParser):
    """What index.html loads, and anything inline that the policy would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.loads += [v for k, v in attrs if k in {"src", "href"} and v and not v.startswith("#")]
        self.inline += [f"{tag} {k}" for k, _ in attrs if k == "style" or k.startswith("on")]
        if tag == "script" and not names.get("src"):
            self.inline.append("script without src")


def test_the_page_loads_only_files_of_the_console_and_nothing_inline() -> None:
    page = Page()
    page.feed((STATIC / "index.html").read_text())
    assert page.inline == []
    assert page.loads
    for path in page.loads:
        # Relative, so the page works wherever a host mounts the service (/images/).
        assert path.startswith("console/"), path
        assert (STATIC / path.removeprefix("console/")).is_file(), path


def test_no_script_reaches_the_service_by_an_absolute_path() -> None:
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert not re.search(r"""(?:fetch|open)\((?:"[A-Z]+", )?["`]/""", text), script.name
        assert '"/console/' not in text, script.name


def test_every_module_import_resolves_and_no_script_builds_code_from_text() -> None:
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        for target in re.findall(r'from "\./([^"]+)"', text):
            assert (STATIC / target).is_file(), f"{script.name} imports missing {target}"
        for banned in ("innerHTML", "outerHTML", "eval(", "new Function", "document.write"):
            assert banned not in text, f"{script.name} uses {banned}"


async def test_the_console_is_served_with_a_strict_policy(api: Api) -> None:
    async with api.session.get(api.base + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = response.headers["Content-Security-Policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "<title>imagecore</title>" in await response.text()
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.iterdir() if p.suffix in TYPES))
async def test_each_console_file_has_its_content_type(api: Api, name: str) -> None:
    async with api.session.get(f"{api.base}/console/{name}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith(TYPES[Path(name).suffix])
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert await response.read() == (STATIC / name).read_bytes()
        etag = response.headers["ETag"]
    async with api.session.get(
        f"{api.base}/console/{name}", headers={"If-None-Match": etag}
    ) as response:
        assert response.status == 304


@pytest.mark.parametrize(
    "name", ["missing.js", "index.html", "..%2Fconsole.py", "app.JS", ".hidden.js"]
)
async def test_anything_else_under_console_is_a_404(api: Api, name: str) -> None:
    status, body = await api.call("GET", f"/console/{name}", user=None)
    assert status == 404
    assert body["errors"][0]["code"] == "not_found"


async def test_development_sign_in_is_off_by_default(api: Api) -> None:
    status, body = await api.call("GET", "/auth/dev-token", user=None)
    assert (status, body["data"]["available"]) == (200, False)
    assert "DEV_LOGIN=true" in body["message"]
    status, body = await api.call("POST", "/auth/dev-token", user=None, json={"user_id": "eve"})
    assert status == 404
    assert "DEV_LOGIN=true" in body["message"]


async def test_development_sign_in_mints_a_short_lived_token_on_loopback(dev_api: Api) -> None:
    status, body = await dev_api.call("GET", "/auth/dev-token", user=None)
    assert (status, body["data"]["available"]) == (200, True)
    status, body = await dev_api.call(
        "POST", "/auth/dev-token", user=None, json={"user_id": " carol "}
    )
    assert status == 201, body
    token = body["data"]["token"]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol"
    assert "admin" not in claims
    assert claims["exp"] - time.time() <= DEV_TOKEN_SECONDS
    assert body["data"]["expires_in"] == DEV_TOKEN_SECONDS
    status, listed = await dev_api.call(
        "GET", "/instructions", user=None, headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200, listed


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
        {"Host": "imagecore.example.com"},  # a DNS-rebinding page reaching 127.0.0.1
    ],
)
async def test_development_sign_in_refuses_proxied_or_rebound_requests(
    dev_api: Api, headers: dict[str, str]
) -> None:
    status, body = await dev_api.call(
        "POST", "/auth/dev-token", user=None, json={"user_id": "eve"}, headers=headers
    )
    assert status == 403
    assert "token" not in str(body["data"])
    status, body = await dev_api.call("GET", "/auth/dev-token", user=None, headers=headers)
    assert body["data"]["available"] is False


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"json": {}}, "user id"),
        ({"json": {"user_id": ""}}, "user id"),
        ({"json": {"user_id": "x" * 129}}, "at most 128"),
        ({"json": ["alice"]}, "user id"),
        ({"data": "user_id=alice"}, "send JSON"),
    ],
)
async def test_development_sign_in_explains_a_bad_request(
    dev_api: Api, kwargs: dict, needle: str
) -> None:
    status, body = await dev_api.call("POST", "/auth/dev-token", user=None, **kwargs)
    assert status == 400
    assert needle in body["message"]


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.1", False),
        ("", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(address: str, local: bool) -> None:
    assert is_loopback(address) is local
