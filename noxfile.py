"""Lint, types, unit, integration, UI and deployment checks: `nox` runs them all (`make test`)."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "types", "unit", "integration", "ui", "deploy"]

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
            *("--python-version", PYTHON, "--python-platform", platform),
            *("--only-binary", ":all:", "--no-binary", "pyvips", "--output-file", os.devnull),
        )
