"""Two ``imagecore serve`` on one DATA_DIR: the second refuses to start, naming the first (#30)."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from service_support import IMAGECORE, free_port, serving

pytestmark = pytest.mark.integration


def test_a_second_serve_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    with serving(tmp_path / "data") as first:
        env = {**first.env, "PORT": str(free_port())}
        second = subprocess.run(  # noqa: S603 - our own console script
            [IMAGECORE, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 2, second.stderr
        assert f"is in use by another imagecore process (pid {first.process.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        with urllib.request.urlopen(first.base + "/health", timeout=5) as health:  # noqa: S310 - loopback
            assert health.status == 200  # the owner goes on
