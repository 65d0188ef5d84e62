"""The benchmarks of issue 8: ``python -m bench`` (see `bench.cli`)."""

import entrypoints  # noqa: F401 - first: it sets VIPS_WARNING for this process and its children
