"""The goals table: a ratio next to its threshold is printed so that it reads as judged."""

from __future__ import annotations

import pytest

from bench.goals import goals, judged


@pytest.mark.parametrize(
    ("value", "threshold", "text"),
    [
        (1.7978, 1.8, "1.798x"),  # two decimals would print 1.80x beside a miss
        (1.8032, 1.8, "1.803x"),
        (1.8, 1.8, "1.80x"),
        (1.85, 1.8, "1.85x"),
        (0.7451, 0.75, "0.745x"),
        (0.74996, 0.75, "0.74996x"),
        (0.72, 0.75, "0.72x"),
    ],
)
def test_a_ratio_gets_a_third_decimal_only_where_two_would_read_as_its_threshold(
    value: float, threshold: float, text: str
) -> None:
    assert judged(value, threshold) == text


def test_a_scaling_just_under_its_goal_reads_as_under_it() -> None:
    w1 = {
        "ratio1_cpu": 0.91,
        "ratio2_cpu": 0.90,
        "ratio1_wall": 0.97,
        "ratio2_wall": 0.88,
        "scaling_worker": 1.7978,
        "scaling_floor": 1.994,
    }
    scaling = goals({"throughput": {"summary": {"W1": w1}}})[1]
    assert scaling.verdict == "MISSED"
    assert scaling.measured.startswith("1.798x ")


def _speed_row(compress_cpu: float, full_ssim: float = 0.981, output_bytes: int = 100) -> dict:
    return {
        "compress_cpu": compress_cpu,
        "encode_cpu": 1.0,
        "full_ssim": full_ssim,
        "target": 0.98,
        "output_bytes": output_bytes,
        "input_bytes": 200,
    }


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        ([_speed_row(2.0), _speed_row(4.0)], "met"),  # geometric mean 2.83x
        ([_speed_row(4.0), _speed_row(4.0)], "MISSED"),
        ([_speed_row(2.0), _speed_row(2.0, full_ssim=0.979)], "MISSED"),  # a target missed
        ([_speed_row(2.0), _speed_row(2.0, output_bytes=201)], "MISSED"),  # larger than its input
    ],
)
def test_compress_speed_is_judged_on_cpu_target_and_size_together(rows, verdict) -> None:
    judged_goals = goals({"compression": {"speed": rows}})
    [goal] = [g for g in judged_goals if g.name.startswith("compress CPU")]
    assert goal.verdict == verdict


def test_compress_speed_reads_not_run_without_its_rows() -> None:
    [goal] = [g for g in goals({}) if g.name.startswith("compress CPU")]
    assert goal.measured == "-"
