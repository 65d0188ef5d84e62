"""Fixtures of every test suite: the shared image corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus import KITE, require


@pytest.fixture
def corpus() -> Path:
    return require()


@pytest.fixture
def kite() -> bytes:
    """The kite photo's bytes, the corpus's usual upload."""
    require()
    return KITE.read_bytes()
