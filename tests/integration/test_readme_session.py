"""The README's first session, run as written against a fresh `imagecore serve`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from service_support import IMAGECORE, serving

from corpus import CORPUS, require

ROOT = Path(__file__).resolve().parents[2]
SHARED = CORPUS.parent  # the README reaches the corpus as ../shared/corpus

pytestmark = pytest.mark.integration


def readme_session() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- session:start -->\n```bash\n(.*?)```\n<!-- session:end -->", text, re.DOTALL
    )
    assert match, "the README lost its first-session block"
    return match.group(1)


def repository_root(tmp_path: Path, shared: Path | None) -> Path:
    """A repository root with .venv/bin/imagecore and ``shared`` as ../shared, in ``tmp_path``."""
    work = tmp_path / "repo"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "imagecore").symlink_to(IMAGECORE)
    if shared is not None:
        (tmp_path / "shared").symlink_to(shared)
    return work


def run_session(
    work: Path, env: Mapping[str, str], *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """The README's block, pasted into a shell in ``work``."""
    return subprocess.run(  # noqa: S603
        ["bash", "-c", readme_session()],  # noqa: S607 - bash from PATH, as a reader's
        cwd=work,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_readme_session_works_on_a_fresh_service(tmp_path: Path) -> None:
    require()
    work = repository_root(tmp_path, SHARED)
    with serving(tmp_path / "data") as served:
        result = run_session(work, {**served.env, "API": served.base}, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "['PENDING', 'PENDING']" in result.stdout
    assert "DONE" in result.stdout
    for name in ("kite-2560x1600.webp", "path-2560x1600.webp"):
        data = (work / name).read_bytes()
        assert data[8:12] == b"WEBP"


def test_the_readme_session_stops_at_once_when_no_service_answers(tmp_path: Path) -> None:
    empty = tmp_path / "empty-shared"
    (empty / "corpus" / "photos").mkdir(parents=True)
    work = repository_root(tmp_path, empty)
    api = f"http://127.0.0.1:{free_port()}"  # a stopped server, or one on another port
    started = time.monotonic()
    result = run_session(work, {**os.environ, "API": api}, timeout=60)
    took = time.monotonic() - started
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode != 0
    assert lines == [
        f"nothing answers at {api}: start 'make serve' first, or set API to the address it prints"
    ]
    assert took < 20, f"the session took {took:.0f} s to give up"  # not 120 polls of a dead port
    assert not any((work / name).exists() for name in ("data", "kite-2560x1600.webp"))


def test_the_readme_session_names_a_missing_corpus_before_anything_else(tmp_path: Path) -> None:
    work = repository_root(tmp_path, None)
    result = run_session(work, {**os.environ, "API": f"http://127.0.0.1:{free_port()}"}, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode != 0
    assert len(lines) == 1
    assert lines[0].startswith("no ../shared/corpus/photos: run this from the repository root")
