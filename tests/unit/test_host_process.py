"""imagecore inside another service's process changes nothing of the host's own (issue 30).

libvips' settings are process-wide: an embedder's own pyvips code must find
them as it left them after imagecore processed a file in the same process,
unless it asked for imagecore's hardening with `configure_vips`. The HTTP
middleware binds its request keys in structlog's context and unbinds only
those, so a host's own keys (bound by its middleware around ours) survive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from entrypoints.http.middleware import error_middleware
from hostile import valid

HOST_SCRIPT = """
import json, logging, os, sys
from pathlib import Path

import pyvips

pyvips.cache_set_max(123)
import entrypoints  # noqa: F401 - importing must not touch the environment
from adapters.vips.processor import VipsImageProcessor
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

if sys.argv[2] == "asks":
    from adapters.vips.processor import configure_vips

    configure_vips()
source = Path(sys.argv[1])
processor = VipsImageProcessor()
processor.inspect(source, 10**8, 1)
product = find_product("images/thumbnail")
params = product.validate({"width": 8})
out = source.with_suffix(".out")
processor.process(ProcessingRequest(product.key, params, source, out, 10**8, 1))
svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
try:
    svg_width = pyvips.Image.svgload_buffer(svg).width
except pyvips.Error:
    svg_width = None
print(json.dumps({
    "svg_width": svg_width,
    "cache": pyvips.cache_get_max(),
    "log_handler": bool(pyvips._log_handler_id),
    "vips_warning": os.environ.get("VIPS_WARNING"),
}))
"""


def run_host(tmp_path: Path, mode: str) -> str:
    source = tmp_path / "kite.jpg"
    source.write_bytes(valid("jpeg"))
    env = {k: v for k, v in os.environ.items() if k != "VIPS_WARNING"}
    done = subprocess.run(  # noqa: S603 - our own script, run by this interpreter
        [sys.executable, "-c", HOST_SCRIPT, str(source), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_a_host_keeps_its_libvips_settings_and_environment(tmp_path: Path) -> None:
    assert run_host(tmp_path, "host") == (
        '{"svg_width": 4, "cache": 123, "log_handler": true, "vips_warning": null}'
    )


def test_a_host_that_asks_gets_the_hardened_libvips(tmp_path: Path) -> None:
    assert run_host(tmp_path, "asks") == (
        '{"svg_width": null, "cache": 0, "log_handler": false, "vips_warning": null}'
    )


async def test_the_middleware_unbinds_its_request_keys_and_keeps_the_hosts() -> None:
    seen: dict[str, object] = {}

    async def handler(_request: web.Request) -> web.StreamResponse:
        seen.update(structlog.contextvars.get_contextvars())
        return web.Response(text="ok")

    request = make_mocked_request("GET", "/images/products", headers={"X-Request-ID": "r-1"})
    with structlog.contextvars.bound_contextvars(tenant="acme"):
        await error_middleware(request, handler)
        after = structlog.contextvars.get_contextvars()
    request_keys = {"request_id": "r-1", "method": "GET", "path": "/images/products"}
    assert seen == {"tenant": "acme", **request_keys}
    assert after == {"tenant": "acme"}
