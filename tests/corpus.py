"""The shared image corpus for every test suite, and how a test skips without it.

The path is the benchmark's (`bench.corpus`), so tests and benchmark cannot
disagree. Names made at import (`PHOTOS`, `KITE`) are only paths: a test that
reads them takes the `corpus` fixture (``tests/conftest.py``), calls `require`
or carries `needs_corpus`, each of which skips naming the missing folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from bench.corpus import CORPUS

__all__ = ["CORPUS", "KITE", "MISSING", "PHOTOS", "needs_corpus", "require"]

MISSING: Final = f"the shared image corpus is not beside the repository ({CORPUS})"
#: The corpus's photos in name order; empty without the corpus.
PHOTOS: Final = sorted((CORPUS / "photos").glob("*.jpg"))
KITE: Final = CORPUS / "photos" / "kite-2560x1600.jpg"

needs_corpus: Final = pytest.mark.skipif(not CORPUS.is_dir(), reason=MISSING)


def require() -> Path:
    """The corpus folder; skips the calling test, naming the folder, when it is missing."""
    if not CORPUS.is_dir():
        pytest.skip(MISSING)
    return CORPUS
