"""The libvips image processor: its products, limits and metadata policy, and its pool.

A pool of child processes runs it (`pool`), so a crash in native code ends one file.

The library's processing calls (`adapters.vips.library`) are exported here:
``process_bytes``, ``process_file``, ``Result`` and ``ImagePool``. They are
imported on first use, so that importing a module of this package (the pool,
in a server's parent process) does not load libvips.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.vips.library import ImagePool, Result, process_bytes, process_file

__all__ = ["ImagePool", "Result", "process_bytes", "process_file"]


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module("adapters.vips.library"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
