"""The event loop the service's processes run on: uvloop's where it is installed.

uvloop (libuv under asyncio's interface) is a dependency of the package on
every platform it supports, so ``imagecore serve``, ``api``, ``worker`` and
``cleanup`` run on it; elsewhere (Windows) they run on asyncio's own loop, which behaves
the same, only slower. Why: it lowers the worker's own CPU per file
(docs/decisions/0003-event-loop-uvloop.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["new_event_loop", "run"]

_T = TypeVar("_T")

_factory: Callable[[], asyncio.AbstractEventLoop]
try:
    import uvloop
except ImportError:  # pragma: no cover - only where uvloop is not built (Windows)
    _factory = asyncio.new_event_loop
else:
    _factory = uvloop.new_event_loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the kind the service runs on."""
    return _factory()


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` on the service's kind of loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
