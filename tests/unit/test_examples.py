"""Each example of the README's "Use as a library" runs, from a folder of its own, as written.

Scripts run with this interpreter in a scratch folder; the examples that are
test modules run under pytest in a scratch folder with no configuration, as in
a new project (pytest-asyncio's strict mode), where the kit's plugin comes
from the installed package's entry point.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpus import KITE, PHOTOS, needs_corpus
from imagecore.testing.contracts import ImageStorageContract

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(  # noqa: S603 - this interpreter on the repository's own examples
        [sys.executable, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_example_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for example in sorted(EXAMPLES.glob("*.py")):
        assert f"examples/{example.name}" in readme, example.name


@needs_corpus
def test_process_bytes_with_two_products(tmp_path: Path) -> None:
    out = run(EXAMPLES / "process_bytes.py", KITE, cwd=tmp_path)
    assert out.splitlines() == [
        "thumbnail: webp 200x125",
        "rotated: jpeg 1600x2560 image/jpeg",
        "refused: invalid_parameter: parameter 'width': must be between 1 and 16384, got 0",
    ]
    assert (tmp_path / "rotated.jpg").read_bytes().startswith(b"\xff\xd8\xff")


@needs_corpus
def test_process_in_a_pool_of_children(tmp_path: Path) -> None:
    photos = PHOTOS[:3]
    out = run(EXAMPLES / "process_pool.py", *photos, cwd=tmp_path)
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [p.name for p in photos]
    assert all(re.fullmatch(r"\S+: jpeg 320x\d+", line) for line in lines), lines


STORAGE_CONTRACT = len([name for name in dir(ImageStorageContract) if name.startswith("test_")])


@pytest.mark.parametrize(
    ("example", "passed"),
    [
        ("test_dict_storage.py", STORAGE_CONTRACT),
        ("test_with_fakes.py", 2),
        ("test_host_service.py", 2),
    ],
)
def test_the_test_examples_pass_in_a_new_project(tmp_path: Path, example: str, passed: int) -> None:
    for module in EXAMPLES.glob("*.py"):  # a test module imports the example it tests
        shutil.copy(module, tmp_path)
    out = run("-m", "pytest", "-q", "-p", "no:cacheprovider", example, cwd=tmp_path)
    assert f"{passed} passed" in out
