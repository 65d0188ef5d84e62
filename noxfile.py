"""Lint, types, unit, integration, hostile clients, UI and deployment checks: `nox` runs them all
(`make test`)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
# The newer Pythons of requires-python and the classifiers: the unit tests run on each as well
# (unit-3.12, unit-3.13); the other sessions on PYTHON only, which the Docker image runs.
NEWER_PYTHONS = ("3.12", "3.13")

nox.options.sessions = [
    *("lint", "types", "unit", *(f"unit-{version}" for version in NEWER_PYTHONS)),
    *("integration", "hostile_clients", "ui", "deploy"),
]


LINTED = ("src", "tests", "bench", "devtools", "examples", "noxfile.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff (every rule, reasons beside each ignore) and the import contracts of the layers."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("lint-imports")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy --strict on the source."""
    session.install("-e", ".[types,test]")
    session.run("mypy")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Domain, adapters and HTTP against in-memory ports and libvips; no servers."""
    _unit_tests(session)


def _unit_tests(session: nox.Session) -> None:
    """The unit tests on a newer Python: pyenv's newest release of it, if pyenv has one."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit", "-p", "no:cacheprovider", *session.posargs)


def _interpreter(version: str) -> str:
    """The python3.12 of pyenv's newest 3.12.N for "3.12", or "3.12" where pyenv has none.

    pyenv's shims answer only for the Python pyenv has made active, so nox would not find
    the others, and would then download one (`uv python install`), which CI cannot: it
    reaches package registries only.
    """
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv", "versions")
    releases = [
        path
        for path in versions.glob(f"{version}.*")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.name)
        and (path / "bin" / f"python{version}").is_file()
    ]
    if not releases:
        return version
    newest = max(releases, key=lambda path: int(path.name.rpartition(".")[2]))
    return str(newest / "bin" / f"python{version}")


for _version in NEWER_PYTHONS:
    nox.session(python=_interpreter(_version), name=f"unit-{_version}")(_unit_tests)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Real servers started by the fixtures: FerretDB, SeaweedFS, NATS; processes over HTTP."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/integration",
        "-m",
        "integration and not browser",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def hostile_clients(session: nox.Session) -> None:
    """A real `imagecore serve` against clients that try to freeze or starve it (issue 27)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/hostile_clients",
        "-m",
        "hostile_clients",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def ui(session: nox.Session) -> None:
    """The web console in Debian's Chromium (installed first if missing), with Playwright."""
    session.run("bash", "scripts/ensure-chromium.sh", external=True)
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/integration",
        "-m",
        "browser",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


# Every setting docker-compose.yml interpolates, given (the other check gives none).
COMPOSE_SETTINGS = {
    "IMAGECORE_PORT": "8080",
    "JWT_SECRET": "a-long-random-secret",
    "JWT_PUBLIC_KEY": "",
    "LOG_LEVEL": "debug",
    "S3_ACCESS_KEY": "operator",
    "S3_SECRET_KEY": "another-long-secret",
}
# The platforms the image is built for: python:3.11-slim has no compiler, so every
# dependency but pyvips (an sdist that builds as pure Python without one) needs a wheel.
IMAGE_PLATFORMS = ("x86_64-manylinux_2_36", "aarch64-manylinux_2_36")


@nox.session(python=PYTHON)
def deploy(session: nox.Session) -> None:
    """Dockerfile and docker-compose.yml, checked statically: no Docker engine runs here."""
    extras = nox.project.load_toml("pyproject.toml")["project"]["optional-dependencies"]
    session.install(*extras["deploy"])
    # compose-go (the loader Docker Compose uses): YAML, the Compose Specification's
    # schema, interpolation, consistency; as an operator who sets nothing gets it, and
    # with every setting given.
    check = ("bash", "scripts/compose-check.sh")
    session.run(*check, "docker-compose.yml", external=True)
    given = [arg for name, value in COMPOSE_SETTINGS.items() for arg in ("-env", f"{name}={value}")]
    session.run(*check, *given, "docker-compose.yml", external=True)
    session.run("hadolint", "Dockerfile")
    for platform in IMAGE_PLATFORMS:
        session.log(f"wheels for every runtime dependency but pyvips on {platform}")
        session.run(
            *("uv", "pip", "compile", "pyproject.toml", "--quiet", "--no-header"),
            # What the image installs: the server and every production backend.
            *("--extra", "server", "--extra", "mongo", "--extra", "s3", "--extra", "nats"),
            *("--python-version", PYTHON, "--python-platform", platform),
            *("--only-binary", ":all:", "--no-binary", "pyvips", "--output-file", os.devnull),
        )


# Mutation testing (issue 33), run by hand: mutmut copies the tree to .mutmut/mutants/ and runs
# the tests there, so .mutmut/ holds links to what it copies and one to the corpus beside the
# repository, which the copied tests then find as they do from the repository (../shared).
MUTATION_DIR = Path(".mutmut")
# mutmut's record of each mutant's test run (its exit code), named as `mutmut results` does
# but for 255, which it calls a timeout: the fork server's child raised before its tests ran.
MUTANT_STATUS = {None: "not checked", 0: "survived", 1: "killed", 3: "killed", 5: "no tests"}
MUTANT_STATUS |= {33: "no tests", 34: "skipped", 37: "caught by type check", 255: "error"}
MUTANT_STATUS |= dict.fromkeys((24, -24, 36, 152), "timeout")
# What mutmut's fork server imports once for all mutants ([tool.mutmut] preload_modules_file),
# with every module of src/: pytest, its plugins and the service's libraries, none of which
# does any work on import.
MUTATION_PRELOAD = (
    *("pytest", "_hypothesis_pytestplugin", "hypothesis", "pytest_asyncio", "anyio"),
    *("schemathesis", "aiohttp.web", "pyvips", "jwt", "structlog", "attrs", "pymongo", "minio"),
    *("nats", "dependency_injector.providers", "prometheus_client", "blurhash", "uvloop"),
    *("yaml", "psutil", "PIL.Image", "requests"),
)


@nox.session(python=PYTHON, default=False)
def mutation(session: nox.Session) -> None:
    """Mutants of the modules in [tool.mutmut] (or of those given) against tests/unit.

    Not part of `nox`: `nox -s mutation`, or `nox -s mutation -- src/imagecore/model.py`.
    A module is tested whole the first time and whenever it changes; otherwise only the
    mutants no test has killed yet are tested again (`rm -rf .mutmut` starts afresh). The
    diffs of those still alive go to .mutmut/survivors.txt (`mutmut show NAME` and
    `mutmut browse` work in .mutmut/).
    """
    session.install("-e", ".[test,mutation]")
    config = nox.project.load_toml("pyproject.toml")["tool"]["mutmut"]
    modules = session.posargs or config["only_mutate"]
    if unknown := sorted(set(modules) - set(config["only_mutate"])):
        session.error(f"not in [tool.mutmut] only_mutate: {unknown}")
    root = Path.cwd()
    MUTATION_DIR.mkdir(exist_ok=True)
    for name in ["pyproject.toml", "tests", *config["source_paths"], *config["also_copy"]]:
        _link(MUTATION_DIR / name, root / name)
    _link(MUTATION_DIR / "shared", root.parent / "shared")
    sources = sorted(path.relative_to("src").with_suffix("") for path in Path("src").rglob("*.py"))
    preload = [
        *MUTATION_PRELOAD,
        *(".".join(name.parts).removesuffix(".__init__") for name in sources),
    ]
    (MUTATION_DIR / config["preload_modules_file"]).write_text("\n".join(preload) + "\n")
    with session.chdir(MUTATION_DIR):
        if targets := [name for module in modules for name in _to_test(module)]:
            session.log(f"mutmut run --max-children 1 {' '.join(targets[:3])} ({len(targets)})")
            # One worker: the machine is shared, and timing tests fail when it is busy.
            session.run("mutmut", "run", "--max-children", "1", *targets, log=False)
        statuses = {module: _mutant_statuses(module) for module in modules}
        survivors = [
            name
            for of_module in statuses.values()
            for name, status in of_module.items()
            if status in {"survived", "no tests"}
        ]
        diffs = [
            session.run("mutmut", "show", name, silent=True, log=False) or "" for name in survivors
        ]
    (MUTATION_DIR / "survivors.txt").write_text("\n".join(diffs))
    for module, of_module in statuses.items():
        counts = Counter(of_module.values())
        summary = ", ".join(f"{count} {status}" for status, count in counts.most_common())
        session.log(f"{module}: {len(of_module)} mutants: {summary}")
    session.log(f"{len(survivors)} survivors, their diffs in {MUTATION_DIR / 'survivors.txt'}")


def _link(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(target)


def _to_test(module: str) -> list[str]:
    """The mutants of a module to test: all if it is new or changed, else those still alive."""
    mutated = Path("mutants", module)
    if not mutated.exists() or mutated.stat().st_mtime <= Path(module).stat().st_mtime:
        # Mutants are named after their module: src/imagecore/model.py -> imagecore.model.*
        return [".".join(Path(module).with_suffix("").parts[1:]) + ".*"]
    statuses = _mutant_statuses(module)
    return [name for name, status in statuses.items() if status not in {"killed", "timeout"}]


def _mutant_statuses(module: str) -> dict[str, str]:
    """Each mutant of a module and the status of its last test run, from mutmut's records."""
    record = json.loads(Path("mutants", f"{module}.meta").read_text())
    return {
        name: MUTANT_STATUS.get(code, f"exit code {code}")
        for name, code in record["exit_code_by_key"].items()
    }
