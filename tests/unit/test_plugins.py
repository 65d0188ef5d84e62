"""Adapters of other packages, selected by the name of their entry point, and missing extras."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from entrypoints.config import Settings
from entrypoints.container import Runtime
from imagecore.errors import ValidationError

PLUGIN = """
import contextlib
from adapters.memory import MemoryImageStorage

class ShelfStorage(MemoryImageStorage):
    closed = False

SHELVES = []

async def open_shelf(settings):
    shelf = ShelfStorage()
    SHELVES.append((shelf, settings))
    try:
        yield shelf
    finally:
        shelf.closed = True
"""


def install(site: Path, entry_points: str, module: str = PLUGIN) -> None:
    """A distribution as pip would leave it: a module and its dist-info."""
    (site / "shelf_plugin.py").write_text(textwrap.dedent(module))
    info = site / "shelf_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shelf-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "shelf_plugin", raising=False)
    return folder


async def test_an_installed_package_s_storage_is_chosen_by_name(site: Path, tmp_path: Path) -> None:
    install(site, "[imagecore.storages]\nshelf = shelf_plugin:open_shelf\n")
    settings = attrs.evolve(
        Settings(), data_dir=tmp_path / "data", storage_backend="shelf", repository_backend="memory"
    )
    runtime = await Runtime.open(settings)
    try:
        import shelf_plugin  # noqa: PLC0415 - installed by the test

        [(shelf, given)] = shelf_plugin.SHELVES
        assert runtime.storage is shelf
        assert given is settings
        assert runtime.adapters["storage"] == "shelf"
        await runtime.storage.ping()
    finally:
        await runtime.close()
    assert shelf.closed


def test_an_unknown_backend_lists_the_installed_ones(site: Path) -> None:
    install(site, "[imagecore.brokers]\nredis = shelf_plugin:open_shelf\n")
    with pytest.raises(ValidationError) as refused:
        Settings(broker_backend="kafka")
    assert refused.value.message == "BROKER_BACKEND must be one of memory, nats, redis, got 'kafka'"
    assert Settings(broker_backend="redis").broker_kind == "redis"
    assert not Settings(broker_backend="redis").sole_worker


async def test_an_adapter_that_does_not_load_is_named(site: Path, tmp_path: Path) -> None:
    install(site, "[imagecore.repositories]\nbroken = shelf_plugin:nowhere\n")
    settings = attrs.evolve(Settings(), data_dir=tmp_path, repository_backend="broken")
    with pytest.raises(
        ValidationError,
        match=r"the repository adapter 'broken' \(shelf_plugin:nowhere\) does not load",
    ):
        await Runtime.open(settings)


@pytest.mark.parametrize(
    ("settings", "library", "extra"),
    [
        ({"mongo_uri": "mongodb://127.0.0.1:1"}, "pymongo", "mongo"),
        ({"s3_endpoint": "127.0.0.1:1", "repository_backend": "memory"}, "minio", "s3"),
        ({"nats_uri": "nats://127.0.0.1:1", "repository_backend": "memory"}, "nats", "nats"),
    ],
)
async def test_a_backend_without_its_extra_says_which_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict, library: str, extra: str
) -> None:
    # As without the extra: its library does not import, nor the adapter that needs it.
    monkeypatch.setitem(sys.modules, library, None)
    for name in [
        m
        for m in sys.modules
        if m.startswith(("adapters.mongo", "adapters.minio", "adapters.nats"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    chosen = attrs.evolve(Settings(), data_dir=tmp_path, **settings)
    with pytest.raises(ValidationError) as refused:
        await Runtime.open(chosen)
    assert refused.value.message == (
        f"the {extra} backend needs its libraries ({library} is missing): "
        f"pip install 'imagecore[{extra}]'"
    )


async def test_a_module_of_ours_missing_is_not_blamed_on_an_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "adapters.mongo", None)  # a broken installation
    chosen = attrs.evolve(Settings(), data_dir=tmp_path, mongo_uri="mongodb://127.0.0.1:1")
    with pytest.raises(ModuleNotFoundError):
        await Runtime.open(chosen)
