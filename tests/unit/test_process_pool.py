"""ProcessPoolRunner: a crash or a timeout ends one file's attempt, never its neighbours'.

The crash is real: `crash_hook.run_or_crash` stands in for the pool's task
body (in the children too, which unpickle it by name) and kills its child
with SIGSEGV on a file carrying the marker.

The order of events is set by gates, not sleeps: `wait_at_gate` stands in
for the task body and holds each file in its child until the test opens the
file's gate, so no verdict depends on how long anything takes, except where
a time limit is what is tested.
"""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

import crash_hook
from adapters.vips import pool as process_pool
from adapters.vips.pool import ProcessPoolRunner
from hostile import valid
from imagecore.errors import ProcessingError, ProcessingTimeout, ProcessorCrashed
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

MARKER = "unit-test-decoder-killer"


def request(source: Path, key: str = "images/thumbnail", **params: object) -> ProcessingRequest:
    product = find_product(key)
    destination = source.with_suffix(f".{key.rsplit('/', 1)[1]}.out")
    return ProcessingRequest(key, product.validate(params), source, destination, 100_000_000, 100)


@pytest.fixture
async def runner(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ProcessPoolRunner]:
    monkeypatch.setenv(crash_hook.MARKER_ENV, MARKER)
    runner = ProcessPoolRunner(workers=2, timeout_seconds=60, task=crash_hook.run_or_crash)
    yield runner
    runner.close()


@pytest.fixture
def killer(tmp_path: Path) -> Path:
    path = tmp_path / "killer.jpg"
    path.write_bytes(valid("jpeg") + MARKER.encode())
    return path


@pytest.fixture
def photo(corpus: Path) -> Path:
    return corpus / "photos" / "kite-2560x1600.jpg"


async def test_a_crash_fails_its_own_file_and_spares_the_one_beside_it(
    runner: ProcessPoolRunner, killer: Path, photo: Path, tmp_path: Path
) -> None:
    innocent = tmp_path / "innocent.jpg"
    innocent.write_bytes(photo.read_bytes())
    # A second or two of work in one child while the other child dies.
    beside = asyncio.create_task(runner(request(innocent, "images/convert", format="webp")))
    with pytest.raises(ProcessorCrashed, match="crashed"):
        await runner(request(killer))
    result = await beside
    assert (result.format, result.width) == ("webp", 2560)
    # The slot that lost its child takes the next file with a fresh one.
    for _ in range(2):
        assert (await runner(request(innocent))).width == 256


GATE_SECONDS = 60


def wait_at_gate(request: ProcessingRequest) -> tuple[int, str]:
    """Holds the file until the test opens its gate; the child's pid and the source's name.

    It marks its start beside the source (``<name>.began``), then waits for
    ``<name>.go`` there; after `GATE_SECONDS` it gives up, so a test that
    never opens a gate fails instead of hanging.
    """
    source = request.source
    source.with_suffix(".began").touch()
    gate = source.with_suffix(".go")
    deadline = time.monotonic() + GATE_SECONDS
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody opened {gate} in {GATE_SECONDS} s")
        time.sleep(0.005)
    return os.getpid(), source.stem


@attrs.frozen
class Gates:
    """Requests for `wait_at_gate` in one folder, and their gates."""

    folder: Path

    def request(self, name: str, *, opened: bool = False) -> ProcessingRequest:
        if opened:
            self.open(name)
        return request(self.folder / f"{name}.jpg")

    def open(self, name: str) -> None:
        (self.folder / f"{name}.go").touch()

    def began(self, name: str) -> bool:
        return (self.folder / f"{name}.began").exists()


@pytest.fixture
def gates(tmp_path: Path) -> Gates:
    return Gates(tmp_path)


@pytest.fixture
async def pool() -> AsyncIterator[ProcessPoolRunner]:
    runner = ProcessPoolRunner(workers=1, timeout_seconds=20, task=wait_at_gate)
    yield runner
    runner.close()


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Returns once ``condition()`` holds; fails the test if it still does not after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not so after {seconds:g} s")
        await asyncio.sleep(0.01)


async def test_a_timeout_replaces_only_the_child_that_ran_too_long(gates: Gates) -> None:
    runner = ProcessPoolRunner(workers=2, timeout_seconds=60, task=wait_at_gate)
    try:
        await asyncio.gather(*(runner(gates.request(name, opened=True)) for name in ("one", "two")))
        before = runner.child_pids()
        assert None not in before  # both children up
        runner._timeout = 0.3
        with pytest.raises(ProcessingTimeout, match=r"0\.3 s"):
            await runner(gates.request("stuck"))  # its gate never opens
        after = runner.child_pids()
        assert sum(a == b for a, b in zip(before, after, strict=True)) == 1, (before, after)
        runner._timeout = 60
        assert (await runner(gates.request("quick", opened=True)))[1] == "quick"
    finally:
        runner.close()


class Unreadable(Exception):
    """Pickles (its args hold one value) but cannot be rebuilt from them."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(first, second)
        self.args = (first,)


def raise_unreadable(_request: ProcessingRequest) -> None:
    raise Unreadable("first", "second")


async def test_an_answer_that_cannot_be_read_fails_its_file_and_keeps_the_child(
    tmp_path: Path,
) -> None:
    runner = ProcessPoolRunner(workers=1, timeout_seconds=20, task=raise_unreadable)
    source = tmp_path / "small.jpg"
    source.write_bytes(valid("jpeg"))
    try:
        with pytest.raises(ProcessingError, match="could not be read"):
            await runner(request(source))
        child = runner.child_pids()
        with pytest.raises(ProcessingError, match="could not be read"):
            await runner(request(source))
        assert runner.child_pids() == child  # the pipe was read whole: the child goes on
    finally:
        runner.close()


async def test_the_next_file_is_in_the_childs_pipe_while_it_runs_the_last(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    first = asyncio.create_task(pool(gates.request("first")))
    second = asyncio.create_task(pool(gates.request("second")))
    third = asyncio.create_task(pool(gates.request("third")))
    await asyncio.sleep(0)  # each call queues its file and feeds the child before it waits
    assert [e.request.source.stem for e in pool._ahead.values()] == ["second"]
    assert [e.request.source.stem for e in pool._queue] == ["third"]
    gates.open("first")
    pid, _ = await first
    # The child is on the file sent ahead (held at its gate), and the one after it is
    # written ahead.
    assert [e.request.source.stem for e in pool._running.values()] == ["second"]
    assert [e.request.source.stem for e in pool._ahead.values()] == ["third"]
    assert list(pool._queue) == []
    gates.open("second")
    assert await second == (pid, "second")
    gates.open("third")
    assert await third == (pid, "third")


async def test_a_child_is_recycled_after_its_files_and_nothing_is_sent_ahead_past_them(
    gates: Gates,
) -> None:
    runner = ProcessPoolRunner(
        workers=1, timeout_seconds=20, max_tasks_per_child=2, task=wait_at_gate
    )
    try:
        names = ["a", "b", "c", "d", "e"]
        answers = await asyncio.wait_for(
            asyncio.gather(*(runner(gates.request(name, opened=True)) for name in names)), 60
        )
        assert [name for _, name in answers] == names
        pids = [pid for pid, _ in answers]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids
    finally:
        runner.close()


async def test_a_request_that_cannot_be_sent_fails_alone_idle_or_ahead(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    unpicklable = attrs.evolve(gates.request("unpicklable"), params={"hook": lambda: None})
    with pytest.raises(ProcessingError, match="could not be sent"):
        await pool(unpicklable)  # to an idle child
    running = asyncio.create_task(pool(gates.request("running")))
    await asyncio.sleep(0)  # the child has the running file before the next call comes
    assert [e.request.source.stem for e in pool._running.values()] == ["running"]
    with pytest.raises(ProcessingError, match="could not be sent"):
        await asyncio.wait_for(pool(unpicklable), 15)  # ahead of the running file
    gates.open("running")
    pid, _ = await running
    assert await pool(gates.request("next", opened=True)) == (pid, "next")  # the same child


async def test_a_file_sent_ahead_gets_its_full_time_limit_from_the_answer_before_it(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    await pool(gates.request("start", opened=True))  # the child is up: its start does not count
    # Each file is held 3 s, within the limit of 5 s; both together, counted from when
    # the second was sent ahead, run past it. A busy machine only makes the files longer:
    # a limit counted from the sending fails however fast the machine is, and the right
    # one leaves each file 2 s for wake-ups and the answer.
    pool._timeout = 5
    first = asyncio.create_task(pool(gates.request("first")))
    second = asyncio.create_task(pool(gates.request("second")))  # sent ahead at once
    await asyncio.sleep(3)
    gates.open("first")
    pid, _ = await asyncio.wait_for(first, 15)
    await asyncio.sleep(3)
    gates.open("second")
    assert await asyncio.wait_for(second, 15) == (pid, "second")


async def test_a_file_cancelled_while_it_waits_leaves_the_child_alone(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    running = asyncio.create_task(pool(gates.request("running")))
    ahead = asyncio.create_task(pool(gates.request("ahead", opened=True)))
    waiting = asyncio.create_task(pool(gates.request("waiting", opened=True)))
    after = asyncio.create_task(pool(gates.request("after", opened=True)))
    await asyncio.sleep(0)
    assert [e.request.source.stem for e in pool._queue] == ["waiting", "after"]
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gates.open("running")
    pid, _ = await running
    assert await ahead == (pid, "ahead")
    assert await after == (pid, "after")  # the same child,
    assert not gates.began("waiting")  # and the cancelled file never ran


async def test_a_file_cancelled_while_sent_ahead_ends_the_child_when_it_comes_to_it(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    running = asyncio.create_task(pool(gates.request("running")))
    ahead = asyncio.create_task(pool(gates.request("ahead", opened=True)))
    after = asyncio.create_task(pool(gates.request("after", opened=True)))
    await asyncio.sleep(0)
    assert [e.request.source.stem for e in pool._ahead.values()] == ["ahead"]
    ahead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ahead
    gates.open("running")
    pid, _ = await running
    later, name = await asyncio.wait_for(after, 15)
    assert (name, later != pid) == ("after", True)  # a new child: nobody waits for the old one


async def test_a_file_sent_ahead_of_a_crash_runs_on_the_next_child(
    monkeypatch: pytest.MonkeyPatch, killer: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv(crash_hook.MARKER_ENV, MARKER)
    runner = ProcessPoolRunner(workers=1, timeout_seconds=60, task=crash_hook.run_or_crash)
    source = tmp_path / "small.jpg"
    source.write_bytes(valid("jpeg"))
    try:
        crashing = asyncio.create_task(runner(request(killer)))
        behind = asyncio.create_task(runner(request(source)))
        await asyncio.sleep(0)
        assert [e.request.source for e in runner._ahead.values()] == [source]
        with pytest.raises(ProcessorCrashed):
            await crashing
        assert (await asyncio.wait_for(behind, 15)).width == 48
    finally:
        runner.close()


async def test_a_file_sent_ahead_of_a_timeout_runs_on_the_next_child(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    pool._timeout = 0.5
    stuck = asyncio.create_task(pool(gates.request("stuck")))  # its gate never opens
    behind = asyncio.create_task(pool(gates.request("behind", opened=True)))
    await asyncio.sleep(0)  # the stuck file has started, with its limit; the other is ahead
    assert [e.request.source.stem for e in pool._ahead.values()] == ["behind"]
    # The behind file's limit, taken when it starts, also covers the start of its new
    # child: about a second here, up to five with both cores busy.
    pool._timeout = 60
    [first] = pool.child_pids()
    with pytest.raises(ProcessingTimeout):
        await asyncio.wait_for(stuck, 30)
    pid, name = await asyncio.wait_for(behind, 30)
    assert (name, pid != first) == ("behind", True)


async def test_a_file_cancelled_while_it_runs_ends_its_child_and_the_next_gets_a_new_one(
    pool: ProcessPoolRunner, gates: Gates
) -> None:
    running = asyncio.create_task(pool(gates.request("running")))  # its gate never opens
    waiting = asyncio.create_task(pool(gates.request("waiting", opened=True)))
    await until(lambda: gates.began("running"))
    [killed] = pool.child_pids()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    pid, name = await asyncio.wait_for(waiting, 15)
    assert name == "waiting"
    assert pid != killed


async def test_a_child_that_cannot_start_fails_its_file_and_the_next_file_gets_one(
    pool: ProcessPoolRunner, gates: Gates, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = process_pool._Child
    failures = [OSError(11, "Resource temporarily unavailable")]

    def child_or_failure(*args: object) -> object:
        if failures:
            raise failures.pop()
        return real(*args)

    monkeypatch.setattr(process_pool, "_Child", child_or_failure)
    first = asyncio.create_task(pool(gates.request("first", opened=True)))
    second = asyncio.create_task(pool(gates.request("second", opened=True)))
    with pytest.raises(ProcessorCrashed):
        await asyncio.wait_for(first, 15)
    assert (await asyncio.wait_for(second, 15))[1] == "second"


ORPHAN_SCRIPT = """
import asyncio, os, signal, sys
from pathlib import Path
from adapters.vips.pool import ProcessPoolRunner
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

async def main():
    runner = ProcessPoolRunner(workers=1)
    source = Path(sys.argv[1])
    params = find_product("images/thumbnail").validate({})
    out = source.with_suffix(".out")
    await runner(ProcessingRequest("images/thumbnail", params, source, out, 10**8, 1))
    [child] = runner.child_pids()
    print(child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":  # the spawned child imports this file too
    asyncio.run(main())
"""


def test_children_die_with_a_server_killed_outright(tmp_path: Path) -> None:
    source = tmp_path / "small.jpg"
    source.write_bytes(valid("jpeg"))
    script = tmp_path / "server.py"
    script.write_text(ORPHAN_SCRIPT)
    output = tmp_path / "server.out"
    with output.open("w") as sink:  # a file, not a pipe: an orphan would hold a pipe open
        done = subprocess.run(  # noqa: S603 - our interpreter, our script
            [sys.executable, str(script), str(source)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    assert done.returncode == -signal.SIGKILL, output.read_text()
    child = int(output.read_text().split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = Path(f"/proc/{child}").exists()
    if orphaned:
        os.kill(child, signal.SIGKILL)
    assert not orphaned, "the pool child outlived its server"


def libvips_threads(_request: ProcessingRequest) -> int:
    import pyvips  # noqa: PLC0415 - in the child

    return int(pyvips.concurrency_get())


@pytest.mark.parametrize("workers", [1, 2, 64])
async def test_children_share_the_cores_out_among_their_libvips_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int
) -> None:
    monkeypatch.delenv("VIPS_CONCURRENCY", raising=False)
    runner = ProcessPoolRunner(workers=workers, timeout_seconds=60, task=libvips_threads)
    try:
        threads = await runner(request(tmp_path / "unused.jpg"))
    finally:
        runner.close()
    assert threads == max(1, (os.cpu_count() or 1) // workers)


def _resident_pages(path: Path) -> int:
    """How many of the file's pages are in the kernel's page cache (mincore)."""
    mincore = ctypes.CDLL(None, use_errno=True).mincore
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with path.open("rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as view:
        start = ctypes.c_char.from_buffer(view)
        try:
            if mincore(ctypes.addressof(start), size, vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del start  # the mapping cannot close while a ctypes object points into it
    return sum(byte & 1 for byte in vector)


def _synced_copy(source: Path, path: Path) -> Path:
    """``source`` copied to ``path`` and synced: clean pages, as the storage leaves a put's."""
    with path.open("wb") as out:
        out.write(source.read_bytes())
        out.flush()
        os.fsync(out.fileno())
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise as on Linux")
async def test_a_child_done_with_its_source_drops_it_from_the_page_cache(
    photo: Path, tmp_path: Path
) -> None:
    probe = _synced_copy(photo, tmp_path / "probe.jpg")
    with probe.open("rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if _resident_pages(probe):
        pytest.skip("this filesystem keeps files in memory whatever it is told (tmpfs)")
    source = _synced_copy(photo, tmp_path / "photo.jpg")
    assert _resident_pages(source) > 0  # just written: its pages are in the cache
    runner = ProcessPoolRunner(workers=1, timeout_seconds=60)
    try:
        result = await runner(request(source))
    finally:
        runner.close()
    assert result.width == 256
    assert _resident_pages(source) == 0


DAEMONIC_SCRIPT = """
import asyncio, multiprocessing, sys
from pathlib import Path
from adapters.vips.pool import ProcessPoolRunner
from imagecore.errors import ImageCoreError
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

def one_file(runner, answers):
    source = Path(sys.argv[1])
    params = find_product("images/thumbnail").validate({})
    out = source.with_suffix(".out")
    request = ProcessingRequest("images/thumbnail", params, source, out, 10**8, 1)
    try:
        runner = runner or ProcessPoolRunner(workers=1)  # made in the daemonic process
        asyncio.run(runner(request))
    except ImageCoreError as exc:
        answers.put(f"{type(exc).__name__}: {exc.message}")
    except Exception as exc:
        answers.put(f"unclear {type(exc).__name__}: {exc}")
    else:
        answers.put("processed")

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")  # a prefork host (Celery) forks its workers
    for runner in (None, ProcessPoolRunner(workers=1)):
        answers = context.Queue()
        worker = context.Process(target=one_file, args=(runner, answers), daemon=True)
        worker.start()
        print(answers.get(timeout=60))
        worker.join()
"""


def test_a_daemonic_host_process_gets_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "small.jpg"
    source.write_bytes(valid("jpeg"))
    script = tmp_path / "celery_like.py"
    script.write_text(DAEMONIC_SCRIPT)
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(script), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    made_there, made_before = done.stdout.splitlines()
    for answer in (made_there, made_before):
        assert answer.startswith("ProcessingError: "), answer
        assert "daemonic" in answer
        assert "README" in answer


UNGUARDED_SCRIPT = """
import asyncio, sys
from pathlib import Path
from adapters.vips.pool import ProcessPoolRunner
from imagecore.errors import ImageCoreError
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

# No `if __name__ == "__main__":`: each spawned child runs this file again.
runner = ProcessPoolRunner(workers=1)
source = Path(sys.argv[1])
params = find_product("images/thumbnail").validate({})
out = source.with_suffix(".out")
request = ProcessingRequest("images/thumbnail", params, source, out, 10**8, 1)
try:
    asyncio.run(runner(request))
except ImageCoreError as exc:
    print(f"{type(exc).__name__}: {exc.message}")
finally:
    runner.close()
"""


def test_a_host_script_without_a_main_guard_gets_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "small.jpg"
    source.write_bytes(valid("jpeg"))
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(script), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.stdout.startswith("ProcessorCrashed: "), done.stdout + done.stderr
    assert 'if __name__ == "__main__":' in done.stdout
