"""compress's quality search finds the lowest passing quality, in few encodes.

`lowest_reaching` is judged against a brute-force scan on any score that
grows with quality (Hypothesis draws the curves, jumps and flat stretches
included), and counted on smooth curves like those of real photos.
"""

from __future__ import annotations

import pyvips
from hypothesis import given
from hypothesis import strategies as st

from adapters.vips.compress import _RANGES, _SampleSearch
from adapters.vips.search import lowest_reaching

LOW, HIGH = _RANGES["jpeg"]


@st.composite
def growing_scores(draw: st.DrawFn) -> dict[int, float]:
    steps = draw(
        st.lists(
            st.floats(0, 0.02, allow_nan=False), min_size=HIGH - LOW + 1, max_size=HIGH - LOW + 1
        )
    )
    score, scores = draw(st.floats(0.85, 0.99)), {}
    for quality, step in zip(range(LOW, HIGH + 1), steps, strict=True):
        score += step
        scores[quality] = score
    return scores


class Counted:
    def __init__(self, scores: dict[int, float]) -> None:
        self.scores, self.asked = scores, []

    def __call__(self, quality: int) -> float:
        assert LOW <= quality <= HIGH
        assert quality not in self.asked  # never encodes the same quality twice
        self.asked.append(quality)
        return self.scores[quality]


@given(growing_scores(), st.floats(0.9, 0.999), st.integers(LOW - 5, HIGH + 5))
def test_the_answer_is_the_lowest_quality_that_reaches_the_target(scores, target, start):
    score = Counted(scores)
    found = lowest_reaching(LOW, HIGH, score, target, start=start)
    passing = [quality for quality, value in scores.items() if value >= target]
    assert found == (min(passing) if passing else None)


@given(
    st.floats(0.001, 0.006),
    st.integers(LOW + 8, HIGH - 8),
    st.integers(-8, 8),
)
def test_a_smooth_curve_takes_a_handful_of_encodes(slope, answer, miss):
    # Like a photo near its answer: about 0.003 SSIM per quality step, and a
    # first guess (the source's own quality) up to eight steps off.
    target = 0.98
    scores = {
        quality: target + slope * (quality - answer + 0.5) for quality in range(LOW, HIGH + 1)
    }
    score = Counted(scores)
    assert lowest_reaching(LOW, HIGH, score, target, start=answer + miss) == answer
    assert len(score.asked) <= 5


def test_no_quality_reaching_the_target_is_none_after_the_top_of_the_range():
    score = Counted(dict.fromkeys(range(LOW, HIGH + 1), 0.9))
    assert lowest_reaching(LOW, HIGH, score, 0.98, start=60) is None
    assert HIGH in score.asked


class ScriptedSearch(_SampleSearch):
    """The sample search with encodes replaced by a table of (bytes, score) per quality."""

    def __init__(self, table: dict[int, tuple[int, float]], target: float = 0.98) -> None:
        super().__init__(pyvips.Image.black(16, 16, bands=3), "jpeg", target)
        self.table, self.asked = table, []

    def probe(self, variant, quality):  # noqa: ARG002 - one variant in the table
        self.asked.append(quality)
        return self.table[quality]


def table_of(scores: dict[int, float]) -> dict[int, tuple[int, float]]:
    return {quality: (1000 * quality, score) for quality, score in scores.items()}


LINEAR = {q: 0.98 + 0.003 * (q - 80) for q in range(LOW, HIGH + 1)}


def test_after_a_miss_the_search_covers_the_excess_and_never_looks_below():
    # The whole image failed at 80 where the sample scored 0.98: with the
    # sample flattering it by 0.007, 83 (0.989) is the first to cover that.
    search = ScriptedSearch(table_of(LINEAR))
    assert search.lowest({}, 81, excess=0.007) == 83
    assert min(search.asked) >= 81
    # 81 passes with a small excess; what is below it already failed in full.
    search = ScriptedSearch(table_of(LINEAR))
    assert search.lowest({}, 81, excess=0.001) == 81
    assert min(search.asked) == 81
    assert ScriptedSearch(table_of(LINEAR)).lowest({}, 81) == 80  # without excess


def test_a_variant_that_needs_more_bytes_than_the_bound_to_pass_is_beaten():
    search = ScriptedSearch(table_of(LINEAR))
    # Passing needs 80: 80,000 bytes; a failing 79 already costs 79,000.
    assert search.lowest({}, 85, bound=79_000) is None
    assert ScriptedSearch(table_of(LINEAR)).lowest({}, 85, bound=81_000) == 80
