"""The test kit for code that uses imagecore, and for new adapters (the ``testing`` extra).

- `imagecore.testing.fakes`: `FakeImageProcessor`, a processor without
  libvips (no extra needed to import it);
- `imagecore.testing.contracts`: the contract suite of each port, to run
  against any adapter (pytest, pytest-asyncio);
- `imagecore.testing.strategies`: Hypothesis strategies for products'
  parameters and the domain's records (hypothesis);
- `imagecore.testing.plugin`: the pytest plugin, loaded by pytest through
  the ``pytest11`` entry point: fixtures for the in-memory ports and the fake
  processor.

imagecore's own tests use this kit, so what ships is what is tested.
"""

from __future__ import annotations

from imagecore.testing.fakes import FakeImageProcessor

__all__ = ["FakeImageProcessor"]
