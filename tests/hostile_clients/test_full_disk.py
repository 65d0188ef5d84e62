"""Issue 27, finding 4: a full disk is an outage that passes, not the files' fault.

Before the fix, with DATA_DIR on a full 20 MiB tmpfs, files ended FAILED on
their first attempt ("cannot write the output file: No space left on
device"), `/health` answered 200 while instruction creation answered 503
"sqlite: database or disk is full", quoting the OS to the client. Here the
service runs on a tmpfs of its own; a filler file takes the space away and
gives it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvips
from client_support import SETTINGS, bearer, call

from integration.service_support import Served, serving

pytestmark = pytest.mark.hostile_clients

MiB = 1024 * 1024
#: /health's threshold here: the filler leaves less than this free.
MIN_FREE = 4 * MiB
#: What the filler leaves free: room for the uploads and the database, not for an output.
LEFT_FREE = 1 * MiB
FILES = 3
#: Generous: retries back off up to 30 s, and the machine may be busy.
FINISH_WITHIN = 180.0
BOUNDARY = "full-disk-boundary"
#: Words of the OS or of a driver that must never reach a client.
OS_WORDS = ("No space left", "Errno", "sqlite", "disk I/O", "OSError")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs of its own, as in the finding; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI machines of this project run as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)  # noqa: S603, S607


@pytest.fixture
def served_on_small_disk(small_disk: Path, tmp_path: Path) -> Iterator[Served]:
    env = {**SETTINGS, "MIN_FREE_DISK_BYTES": str(MIN_FREE), "WORKER_CONCURRENCY": "1"}
    # The log stays off the small disk: the test reads it, and a full disk would cut it.
    with serving(small_disk / "data", env, log_dir=tmp_path) as served:
        yield served


def _noisy_jpeg() -> bytes:
    """A JPEG of ~160 KB whose PNG is ~2.4 MB: the output cannot fit where the input did."""
    noise = pyvips.Image.gaussnoise(1000, 1000, sigma=40, mean=128)
    image = noise.bandjoin([noise.rot180(), noise.fliphor()]).cast("uchar")
    return bytes(image.jpegsave_buffer(Q=30))


def _fill(disk: Path, leave: int) -> Path:
    """Take the disk's space away, all but ``leave`` bytes."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("ab") as out:
        os.posix_fallocate(out.fileno(), out.tell(), max(free - leave, 1))
    return filler


def _upload(base: str, user: str, instruction_id: str, content: bytes) -> tuple[int, Any]:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="noise.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    headers = {**bearer(user), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    status, _, data = call(base, "POST", f"/instructions/{instruction_id}/details", headers, body)
    return status, data


def _files(base: str, user: str, instruction_id: str) -> list[dict[str, Any]]:
    status, _, data = call(base, "GET", f"/instructions/{instruction_id}/details", bearer(user))
    assert status == 200, data
    return list(data["data"]["files"])


def _health(base: str) -> tuple[int, dict[str, Any]]:
    status, _, data = call(base, "GET", "/health")
    return status, data["data"]["dependencies"]["disk"]


def test_a_full_disk_keeps_files_pending_until_space_returns(
    served_on_small_disk: Served, small_disk: Path
) -> None:
    base, user = served_on_small_disk.base, "full-disk"
    status, disk = _health(base)
    assert (status, disk["status"]) == (200, "ok"), disk

    filler = _fill(small_disk, LEFT_FREE)
    status, disk = _health(base)
    assert (status, disk["status"]) == (503, "down"), disk
    assert disk["free_bytes"] < disk["min_free_bytes"] == MIN_FREE

    product = {"product_key": "images/convert", "params": {"format": "png"}}
    created = call(
        base,
        "POST",
        "/instructions",
        {**bearer(user), "Content-Type": "application/json"},
        json.dumps(product).encode(),
    )
    assert created[0] == 200, created[2]
    instruction_id = str(created[2]["data"]["instruction"]["id"])
    original = _noisy_jpeg()
    for _ in range(FILES):
        status, data = _upload(base, user, instruction_id, original)
        assert status == 200, data

    # Every file meets the full disk, and none is failed for it or spends an attempt.
    deadline = time.monotonic() + FINISH_WITHIN
    met_the_full_disk: set[str] = set()
    files = _files(base, user, instruction_id)
    while len(met_the_full_disk) < FILES:
        assert time.monotonic() < deadline, files
        files = _files(base, user, instruction_id)
        assert all(f["status"] in ("PENDING", "PROCESSING") for f in files), files
        for f in files:
            if f["status"] == "PENDING" and (f["error"] or {}).get("code") == "storage_full":
                assert f["attempts"] == 0, f
                assert not any(word in f["error"]["message"] for word in OS_WORDS), f
                met_the_full_disk.add(f["id"])
        time.sleep(0.2)

    # With no byte left, an upload is refused as an outage, in the service's own words.
    _fill(small_disk, 0)
    status, data = _upload(base, user, instruction_id, original)
    assert status == 503, data
    assert data["errors"][0]["code"] == "storage_full", data
    assert not any(word in data["message"] for word in OS_WORDS), data

    # Space comes back: every file finishes, nothing lost.
    filler.unlink()
    status, disk = _health(base)
    assert (status, disk["status"]) == (200, "ok"), disk
    while not all(f["status"] == "DONE" for f in files):
        assert time.monotonic() < deadline + FINISH_WITHIN, files
        assert not any(f["status"] == "FAILED" for f in files), files
        time.sleep(0.5)
        files = _files(base, user, instruction_id)
    assert len(files) == FILES, files
    for f in files:
        path = f"/instructions/{instruction_id}/details/{f['output_id']}/file"
        status, headers, _ = call(base, "GET", path, bearer(user))
        assert (status, headers["Content-Type"]) == (200, "image/png"), headers
