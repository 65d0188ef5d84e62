"""The README's first session, run as written against a fresh `imagecore serve`."""

from __future__ import annotations

import re
import subprocess
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


def test_the_readme_session_works_on_a_fresh_service(tmp_path: Path) -> None:
    require()
    # The session runs from a repository root: give it one with .venv/bin/imagecore
    # and ../shared, without writing into the real checkout.
    work = tmp_path / "repo"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "imagecore").symlink_to(IMAGECORE)
    (tmp_path / "shared").symlink_to(SHARED)
    with serving(tmp_path / "data") as served:
        result = subprocess.run(  # noqa: S603
            ["bash", "-euo", "pipefail", "-c", readme_session()],  # noqa: S607 - bash from PATH
            cwd=work,
            env={**served.env, "API": served.base},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "['PENDING', 'PENDING']" in result.stdout
    assert "DONE" in result.stdout
    for name in ("kite-2560x1600.webp", "path-2560x1600.webp"):
        data = (work / name).read_bytes()
        assert data[8:12] == b"WEBP"
