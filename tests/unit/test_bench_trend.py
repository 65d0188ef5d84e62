"""The benchmark's drift line (`bench.trend`): it finds a leak, and a pool child's
stays on a higher allocator level are not one."""

from __future__ import annotations

import random

import pytest

from bench.trend import drift_line

MIB = 1024 * 1024
BASE = 45 * MIB
FILES = 3000


def levels(seed: int) -> list[int]:
    """Readings that hop between two levels 16 MiB apart, staying on each for a while."""
    rng = random.Random(seed)
    high = False
    readings = []
    for _ in range(FILES):
        if rng.random() < 0.02:
            high = not high
        readings.append(BASE + (16 * MIB if high else 0))
    return readings


def drift(readings: list[int]) -> float:
    start, end = drift_line(list(enumerate(readings, start=1)))
    return end / start - 1


@pytest.mark.parametrize("seed", range(5))
def test_hops_between_levels_are_not_drift(seed: int) -> None:
    assert abs(drift(levels(seed))) < 0.02


@pytest.mark.parametrize("seed", range(5))
def test_a_leak_is_found_through_the_hops(seed: int) -> None:
    leak = 2000  # bytes per file
    readings = [value + leak * done for done, value in enumerate(levels(seed))]
    # The first and the last of 18 windows after the first tenth are centred
    # 2700 / 18 * 17 = 2550 files apart; the lowest reading of the first is about
    # BASE plus the leak up to its start.
    expected = leak * 2550 / (BASE + leak * 300)
    assert drift(readings) == pytest.approx(expected, abs=0.015)
    assert drift(readings) > 0.10  # the goal would be missed


def test_a_long_stay_on_a_higher_level_at_the_end_is_not_drift() -> None:
    # As one run did in the middle: 750 files on a level 24 MiB up, here at the end,
    # where comparing the last tenth with the second would call it +53 %.
    readings = [BASE] * (FILES - 750) + [BASE + 24 * MIB] * 750
    assert abs(drift(readings)) < 0.01


def test_too_few_readings_for_a_line() -> None:
    assert drift_line([]) == (0.0, 0.0)
    assert drift_line([(1, 5 * MIB)]) == (5 * MIB, 5 * MIB)
