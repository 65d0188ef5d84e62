"""CPU time and memory of a process tree, sampled from a thread while a run goes on.

On a shared machine the wall clock also counts other people's work; the CPU
seconds our processes spent do not, so every run reports both. A sample every
``interval`` seconds reads each process of the tree (the root and every
descendant alive at that moment): its CPU time, its resident set and, from
``/proc/PID/status``, its high-water mark ``VmHWM``, which catches peaks
between samples. A process that ends between two samples loses at most one
interval of CPU time.

Sampling is not free: listing a tree reads ``/proc/*/stat`` of every process
on the machine. When the watched root is this very process (the worker
stage runs the service's worker in the benchmark's process), the CPU the
sampling itself spent is taken out of the root's, but the sampling thread
still slows the root down beside it (it takes the interpreter's lock every
``interval``). So a watch of this process's own tree that needs only CPU
time has ``interval=None``: no thread, a look at the start and one at the
end, and the children that ended in between are counted exactly from
``getrusage(RUSAGE_CHILDREN)``, which holds the CPU time of every child
this process reaped (the service's pool recycles its children).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import attrs
import psutil

__all__ = ["Sample", "Watch", "peak_rss", "resident_set"]

MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """``VmHWM`` of ``pid`` in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _reaped_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def resident_set(pid: int) -> int:
    """The resident set of ``pid`` now, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


@attrs.frozen
class Sample:
    """One look at the tree."""

    at: float
    cpu: dict[int, float]
    rss: dict[int, int]
    hwm: dict[int, int]


@attrs.define
class Watch:
    """Samples ``root`` and its descendants until stopped; ``include`` filters the pids."""

    root: int
    #: Seconds between samples; None: only the first and the last (this process's tree).
    interval: float | None = 0.1
    include: Callable[[int], bool] = lambda _pid: True
    descendants: bool = True
    samples: list[Sample] = attrs.field(factory=list)
    #: CPU seconds this object spent sampling, in this process.
    sampling_cpu: float = 0.0
    #: CPU seconds of the children reaped while watched (``interval=None`` only).
    reaped_cpu: float = 0.0
    _reaped_before: float = 0.0
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def __attrs_post_init__(self) -> None:
        if self.interval is None and self.root != os.getpid():
            raise ValueError("only this process's own tree can be watched without a thread")

    def __enter__(self) -> Self:
        self._reaped_before = _reaped_children_cpu()
        self.samples.append(self._sample())
        if self.interval is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(self._sample())
        if self.interval is None:
            first, last = self.samples[0].cpu, self.samples[-1].cpu
            # A child alive at the start and reaped since is in the rusage whole:
            # its CPU time before the start is not this watch's.
            before = sum(cpu for pid, cpu in first.items() if pid not in last)
            self.reaped_cpu = max(0.0, _reaped_children_cpu() - self._reaped_before - before)

    def _loop(self) -> None:
        assert self.interval is not None  # noqa: S101 - started only with one
        while not self._stop.wait(self.interval):
            self.samples.append(self._sample())

    def _sample(self) -> Sample:
        started = time.thread_time()
        try:
            return self._read()
        finally:
            self.sampling_cpu += time.thread_time() - started

    def _read(self) -> Sample:
        cpu: dict[int, float] = {}
        rss: dict[int, int] = {}
        hwm: dict[int, int] = {}
        try:
            root = psutil.Process(self.root)
            processes = [root, *(root.children(recursive=True) if self.descendants else [])]
        except psutil.Error:
            processes = []
        for process in processes:
            if not self.include(process.pid):
                continue
            try:
                times = process.cpu_times()
                cpu[process.pid] = times.user + times.system
                rss[process.pid] = process.memory_info().rss
            except psutil.Error:
                continue
            hwm[process.pid] = peak_rss(process.pid)
        return Sample(time.monotonic(), cpu, rss, hwm)

    def cpu_by_pid(self) -> dict[int, float]:
        """CPU seconds each process spent between the first and the last sample."""
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for sample in self.samples:
            for pid, value in sample.cpu.items():
                first.setdefault(pid, value if sample is self.samples[0] else 0.0)
                last[pid] = value
        spent = {pid: last[pid] - first[pid] for pid in last}
        if self.root == os.getpid() and self.root in spent:
            spent[self.root] = max(0.0, spent[self.root] - self.sampling_cpu)
        return spent

    def cpu_seconds(self) -> float:
        """CPU seconds the tree spent between the first and the last sample."""
        return sum(self.cpu_by_pid().values()) + self.reaped_cpu

    def root_cpu_seconds(self) -> float:
        """CPU seconds of the root process alone (the service's own Python, not its pool)."""
        return self.cpu_by_pid().get(self.root, 0.0)

    def peak(self, pids: Callable[[int], bool] = lambda _pid: True) -> int:
        """The highest ``VmHWM`` seen among the chosen pids, in bytes."""
        return max((v for s in self.samples for pid, v in s.hwm.items() if pids(pid)), default=0)
