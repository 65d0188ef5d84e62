"""One process per DATA_DIR with the embedded stack: an exclusive lock held while it runs.

With the in-process broker a process's worker is the only one
(`Settings.sole_worker`): its jobs live in its memory, and at start it takes
back every file left PROCESSING, as only a crash can have left them so. A
second process on the same DATA_DIR (``gunicorn -w 2``, an overlapping
restart) would take the first one's files from under it and process them
twice. So the process that opens the embedded stack holds an exclusive
``flock`` on ``DATA_DIR/imagecore.lock`` while its runtime is open, and a
second one refuses to start, naming the holder (the file holds its pid).
The kernel drops the lock with the process, however it ends: a file left
behind locks nothing. Processes on NATS (``imagecore api`` and ``imagecore
worker``) keep no such state in DATA_DIR and take no lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import attrs

from imagecore.errors import ValidationError

__all__ = ["LOCK_NAME", "DataDirOwner", "own_data_dir"]

LOCK_NAME = "imagecore.lock"


@attrs.define
class DataDirOwner:
    """The lock on one DATA_DIR, held until `release` (or the process's end)."""

    path: Path
    _file: IO[str]

    def release(self) -> None:
        """Let another process own the folder (closing the file drops the lock)."""
        self._file.close()


def own_data_dir(data_dir: Path) -> DataDirOwner:
    """Lock ``data_dir`` for this process, or raise `ValidationError` naming the holder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    file = path.open("a+", encoding="utf-8")  # never truncated unlocked: the holder's pid stays
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.seek(0)
        holder = file.read().strip() or "a process that has not written its pid yet"
        file.close()
        raise ValidationError(
            f"DATA_DIR {data_dir} is in use by another imagecore process ({holder}): with the "
            "embedded database and broker one process owns a DATA_DIR. Stop that process, give "
            "this one a DATA_DIR of its own, or run several with NATS_URI (see the README, "
            "Rules for a host process)"
        ) from None
    file.seek(0)
    file.truncate()
    file.write(f"pid {os.getpid()}\n")
    file.flush()
    return DataDirOwner(path, file)
