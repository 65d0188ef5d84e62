"""Lint, types, unit and integration tests: `nox` runs them all (the README's test command)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "types", "unit", "integration", "ui"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff (every rule, reasons beside each ignore) and the import contracts of the layers."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy --strict on the source."""
    session.install("-e", ".[types,test]")
    session.run("mypy")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Domain, adapters and HTTP against in-memory ports and libvips; no servers."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit", "-p", "no:cacheprovider", *session.posargs)


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
