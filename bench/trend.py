"""The drift line of a pool child's resident set: pure arithmetic, no I/O.

Between files a child's resident set sits on one of a few levels 8 to 16 MiB
apart (the malloc heaps keep or give back whole steps), and it can stay on a
higher level for hundreds of files. A leak raises every level; a stay on a
higher level is not a leak. `drift_line` fits a line through the lowest
reading of each window by Theil-Sen (the median of the slopes between every
two windows), which a few windows on a higher level do not move.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Final

__all__ = ["DRIFT_WINDOWS", "drift_line"]

#: Windows of the readings, after the first tenth, for the line.
DRIFT_WINDOWS: Final = 18


def drift_line(
    series: Sequence[tuple[int, int]], windows: int = DRIFT_WINDOWS
) -> tuple[float, float]:
    """The line's value at the first and at the last window.

    ``series``: (files done, resident bytes) read after each file, in order. The
    readings after the first tenth (warm-up) are cut into ``windows`` equal windows.
    """
    total = series[-1][0] if series else 0
    kept = [(done, value) for done, value in series if done > total * 0.1]
    edges = [len(kept) * k // windows for k in range(windows + 1)]
    points = [
        (statistics.fmean(done for done, _ in chunk), min(value for _, value in chunk))
        for chunk in (kept[a:b] for a, b in itertools.pairwise(edges))
        if chunk
    ]
    if len(points) < 2:  # a line needs two points
        return (float(points[0][1]),) * 2 if points else (0.0, 0.0)
    slope = statistics.median(
        (v2 - v1) / (d2 - d1) for (d1, v1), (d2, v2) in itertools.combinations(points, 2)
    )
    intercept = statistics.median(value - slope * done for done, value in points)
    return intercept + slope * points[0][0], intercept + slope * points[-1][0]
