"""One process per DATA_DIR with the embedded stack (issue 30); two real serves: integration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoints.config import Settings
from entrypoints.container import Runtime
from entrypoints.owner import LOCK_NAME, own_data_dir
from imagecore.errors import ValidationError


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
