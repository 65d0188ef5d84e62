"""The benchmark's CPU accounting without a sampling thread (`bench.probes.Watch`,
``interval=None``): children that end while watched are counted, and only for
the time they spent while watched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.probes import Watch

# Burns CPU time of its own until it has spent ``argv[1]`` seconds, says so, then
# waits for its stdin to close (or ends at once with no second argument).
_BURN = """
import sys, time
while time.process_time() < float(sys.argv[1]):
    pass
print("burned", flush=True)
if len(sys.argv) > 2:
    sys.stdin.read()
"""


def test_a_child_born_and_reaped_between_the_two_looks_is_counted() -> None:
    with Watch(os.getpid(), interval=None) as watch:
        subprocess.run(  # noqa: S603 - this interpreter, our own script
            [sys.executable, "-c", _BURN, "0.4"], check=True, capture_output=True
        )
    assert len(watch.samples) == 2  # no sampling thread: neither look saw the child
    assert watch.reaped_cpu >= 0.35
    assert watch.cpu_seconds() >= 0.35


def test_a_child_reaped_while_watched_counts_only_its_time_since_the_start() -> None:
    with subprocess.Popen(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", _BURN, "0.5", "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline() == "burned\n"  # its CPU time is spent before the watch
        with Watch(os.getpid(), interval=None) as watch:
            child.stdin.close()
            child.wait()
    assert child.pid in watch.samples[0].cpu
    assert watch.samples[0].cpu[child.pid] >= 0.45
    assert watch.cpu_seconds() < 0.25


def test_only_this_process_can_be_watched_without_a_thread() -> None:
    with pytest.raises(ValueError, match="own tree"):
        Watch(os.getppid(), interval=None)
