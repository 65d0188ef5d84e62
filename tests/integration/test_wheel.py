"""imagecore as another project gets it: the built wheel, installed in a fresh venv outside
the repository on each supported Python, running the README's examples as that project.

The project is examples/, copied to a folder of its own: it processes bytes with two
products, mounts the service under /images behind its own sign-in and completes an
upload, DONE and a download (the console's page and files included), runs a Hypothesis
test of its own code on the kit's fakes, and runs the shipped storage contract against
a storage in a dict. Nothing of the repository is on its path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpus import KITE, require

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ("3.11", "3.12", "3.13")


def interpreter(version: str) -> str:
    """pyenv's newest ``version``.N, else ``pythonX.Y`` on PATH; the noxfile looks alike."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv", "versions")
    releases = sorted(
        (p for p in versions.glob(f"{version}.*") if re.fullmatch(rf"{version}\.\d+", p.name)),
        key=lambda p: int(p.name.rpartition(".")[2]),
    )
    for release in reversed(releases):
        if (found := release / "bin" / f"python{version}").is_file():
            return str(found)
    if found_on_path := shutil.which(f"python{version}"):
        return found_on_path
    pytest.fail(f"Python {version} is not installed (pyenv or PATH): imagecore supports it")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - uv and the venv's own interpreter
        [*map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def uv(*args: str | Path, cwd: Path) -> str:
    return run(sys.executable, "-m", "uv", *args, cwd=cwd)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    uv("build", "--wheel", "--quiet", "--out-dir", dist, ROOT, cwd=dist)
    [built] = dist.glob("imagecore-*.whl")
    return built


@pytest.mark.parametrize("version", PYTHONS)
def test_another_project_uses_the_installed_wheel(
    wheel: Path, tmp_path: Path, version: str
) -> None:
    require()
    venv = tmp_path / "venv"
    uv("venv", "--quiet", "--python", interpreter(version), venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", python, f"{wheel}[server,testing]", cwd=tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    for example in (ROOT / "examples").glob("*.py"):
        shutil.copy(example, project)
    # Only what a shell in that project would have: no PYTHONPATH, no repository.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}

    where = run(
        python,
        "-c",
        "import sys, imagecore, adapters, entrypoints\n"
        "print(sys.version_info[:2], imagecore.__version__, imagecore.__file__)",
        cwd=project,
        env=env,
    )
    assert where.startswith(f"({version.replace('.', ', ')})")
    assert str(venv) in where
    assert str(ROOT) not in where
    assert run(venv / "bin" / "imagecore", "--version", cwd=project, env=env).startswith(
        "imagecore 0."
    )

    made = run(python, "process_bytes.py", KITE, cwd=project, env=env).splitlines()
    assert made[:2] == ["thumbnail: webp 200x125", "rotated: jpeg 1600x2560 image/jpeg"]

    tests = run(python, "-m", "pytest", "-p", "no:cacheprovider", cwd=project, env=env)
    summary = tests.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ \d+ passed(, \d+ warnings?)? in [^=]+ =+", summary), tests[-3000:]
    for name in ("test_dict_storage.py", "test_with_fakes.py", "test_host_service.py"):
        assert name in tests
