"""The lowest quality that passes: the searches of the compress product.

Both assume quality helps (a higher quality never scores lower) and ask as
few encodes as they can, each encode being the cost. `lowest_passing` only
learns pass or fail (PNG's palette quantisation, whose scores jump);
`lowest_reaching` learns the score and aims where the scores seen cross the
target (JPEG, WebP, AVIF, whose scores move smoothly with quality).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

__all__ = ["lowest_passing", "lowest_reaching"]

_STEP: Final = 4
#: SSIM gained per quality step near the usual targets, for a first jump from one score.
_SLOPE: Final = 0.003
_MAX_JUMP: Final = 12


def lowest_passing(
    low: int, high: int, passes: Callable[[int], bool], *, start: int | None = None
) -> int | None:
    """The lowest quality in [low, high] that passes, assuming quality helps; None if none does.

    From ``start`` (the middle if None) it steps by `_STEP` towards the answer
    until it is bracketed, then bisects: a good first guess costs a few
    encodes instead of a bisection of the whole range.
    """
    current = min(high, max(low, (low + high) // 2 if start is None else start))
    if passes(current):
        passing, failing = current, low - 1
        while passing > low:
            candidate = max(low, passing - _STEP)
            if not passes(candidate):
                failing = candidate
                break
            passing = candidate
    else:
        failing, passing = current, high + 1
        while failing < high:
            candidate = min(high, failing + _STEP)
            if passes(candidate):
                passing = candidate
                break
            failing = candidate
        if passing > high:
            return None
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if passes(middle):
            passing = middle
        else:
            failing = middle
    return passing


def lowest_reaching(
    low: int, high: int, score: Callable[[int], float], target: float, *, start: int
) -> int | None:
    """The lowest quality in [low, high] whose score reaches ``target``, assuming quality helps.

    Each next quality is where a straight line through the scores seen
    crosses the target: between the two ends of the bracket once there is
    one, else along the slope of the last two scores (`_SLOPE` at first);
    after a guess that narrowed the bracket by only one, a bisection. Scores
    move smoothly with quality, so the answer takes fewer encodes than
    stepping and bisecting (docs/decisions/0018).
    """
    seen: dict[int, float] = {}
    failing, passing = low - 1, high + 1
    quality = min(high, max(low, start))
    while True:
        width = passing - failing
        seen[quality] = score(quality)
        if seen[quality] >= target:
            passing = quality
        else:
            failing = quality
        if passing - failing <= 1:
            return passing if passing <= high else None
        if failing in seen and passing in seen and width - (passing - failing) <= 1:
            quality = (failing + passing) // 2
        else:
            quality = _next_guess(seen, failing, passing, target, latest=quality)


def _next_guess(
    seen: dict[int, float], failing: int, passing: int, target: float, *, latest: int
) -> int:
    """Where a straight line through the scores crosses ``target``, inside (failing, passing)."""
    inside = range(failing + 1, passing)
    if failing in seen and passing in seen:
        low_score, high_score = seen[failing], seen[passing]
        guess = failing + math.ceil(
            (target - low_score) * (passing - failing) / (high_score - low_score)
        )
    else:
        ordered = sorted(seen)
        slope = _SLOPE
        if len(ordered) >= 2:  # noqa: PLR2004 - the two scores nearest the answer
            near, far = (
                (ordered[0], ordered[1]) if latest == passing else (ordered[-1], ordered[-2])
            )
            measured = (seen[near] - seen[far]) / (near - far)
            slope = measured if measured > 0 else _SLOPE
        jump = max(1, min(_MAX_JUMP, math.ceil(abs(seen[latest] - target) / slope)))
        guess = latest - jump if latest == passing else latest + jump
    return min(inside[-1], max(inside[0], guess))
