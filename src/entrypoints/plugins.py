"""Adapters from other packages, plugged in by name through entry points.

A package declares its adapter in its own ``pyproject.toml``::

    [project.entry-points."imagecore.brokers"]
    redis = "imagecore_redis:open_broker"

and ``BROKER_BACKEND=redis`` selects it, with no change to imagecore. The
object is an async generator function of `Settings` that yields the open
adapter and closes it after it resumes (as the container's own resources
do); it reads any settings of its own from the environment. The groups are
``imagecore.repositories``, ``imagecore.storages`` and ``imagecore.brokers``;
the ports' contract suites (`imagecore.testing.contracts`) check an adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

from imagecore.errors import ValidationError

if TYPE_CHECKING:
    from entrypoints.config import Settings

__all__ = ["GROUPS", "Opener", "load_adapter", "plugged_in"]

#: The entry point group of each port.
GROUPS = {
    "repository": "imagecore.repositories",
    "storage": "imagecore.storages",
    "broker": "imagecore.brokers",
}

#: What an entry point names: opens the adapter, yields it, closes it after.
Opener = Callable[["Settings"], AsyncIterator[Any]]


def plugged_in(port: str) -> tuple[str, ...]:
    """The names installed packages give adapters of ``port``, sorted."""
    return tuple(sorted({point.name for point in metadata.entry_points(group=GROUPS[port])}))


def load_adapter(port: str, name: str) -> Opener:
    """The opener an installed package names ``name`` for ``port``.

    `ValidationError` when no package names it, or when its module does not import.
    """
    points = metadata.entry_points(group=GROUPS[port], name=name)
    if not points:
        raise ValidationError(f"no installed package provides a {port} adapter named {name!r}")
    point = next(iter(points))
    try:
        opener = point.load()
    except (ImportError, AttributeError) as exc:
        raise ValidationError(
            f"the {port} adapter {name!r} ({point.value}) does not load: {exc}"
        ) from exc
    if not callable(opener):
        raise ValidationError(f"the {port} adapter {name!r} ({point.value}) is not callable")
    return cast("Opener", opener)  # callable; the rest of its type is the contract
