"""Where the shared image corpus is: the folder ``shared/corpus`` beside the repository.

The one place that knows it: the benchmark reads it here, and so do the tests
(``tests/corpus.py``). Found from this file, so any working directory will do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["CORPUS"]

CORPUS: Final = Path(__file__).resolve().parents[2] / "shared" / "corpus"
