"""One process per DATA_DIR with the embedded stack (issue 30); two real serves: integration."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dependency_injector import providers

from entrypoints.config import Settings
from entrypoints.container import Container, Runtime
from entrypoints.owner import LOCK_NAME, own_data_dir
from entrypoints.service import run_cleanup
from imagecore.errors import DependencyUnavailable, ValidationError


def test_a_second_owner_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    owner = own_data_dir(data_dir)
    try:
        holder = rf"in use by another imagecore process \(pid {os.getpid()}\)"
        with pytest.raises(ValidationError, match=holder):
            own_data_dir(data_dir)
    finally:
        owner.release()
    own_data_dir(data_dir).release()  # released: the next process owns it


async def test_an_embedded_runtime_owns_its_data_dir_until_it_closes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    runtime = await Runtime.open(settings)
    try:
        with pytest.raises(ValidationError, match="DATA_DIR"):
            await Runtime.open(settings)
    finally:
        await runtime.close()
    await (await Runtime.open(settings)).close()


@pytest.mark.parametrize(
    "backends",
    [
        {"broker_backend": "memory", "repository_backend": "memory", "storage_backend": "memory"},
        {"broker_backend": "nats", "repository_backend": "sqlite"},  # api + worker side by side
    ],
)
async def test_stacks_with_no_sole_worker_state_in_data_dir_take_no_lock(
    tmp_path: Path, backends: dict[str, str]
) -> None:
    from entrypoints.container import _owner  # noqa: PLC0415 - the resource itself, no NATS here

    settings = Settings(data_dir=tmp_path / "data", **backends)
    async for owner in _owner(settings):
        assert owner is None
    assert not (tmp_path / "data" / LOCK_NAME).exists()


async def test_a_sole_worker_on_shared_backends_still_owns_its_data_dir(tmp_path: Path) -> None:
    # Without NATS the worker takes over every file left PROCESSING at its start: two
    # such processes on one MongoDB would take over each other's files.
    from entrypoints.container import _owner  # noqa: PLC0415 - the resource itself, no servers

    settings = Settings(
        data_dir=tmp_path / "data", repository_backend="mongo", storage_backend="s3"
    )
    async for owner in _owner(settings):
        assert owner is not None
        with pytest.raises(ValidationError, match="DATA_DIR"):
            own_data_dir(settings.data_dir)


async def test_a_start_that_fails_gives_the_lock_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    container = Container(settings=settings)

    async def unreachable() -> AsyncIterator[object]:
        raise DependencyUnavailable("the object storage did not answer")
        yield  # pragma: no cover - a generator that fails before it yields

    container.storage.override(providers.Resource(unreachable))
    with pytest.raises(DependencyUnavailable):
        await Runtime.open(settings, container)
    await (await Runtime.open(settings)).close()  # the lock was given back


async def test_a_cleanup_pass_runs_beside_the_owner(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    runtime = await Runtime.open(settings)
    try:
        assert await run_cleanup(settings) == (0, 0)
    finally:
        await runtime.close()
