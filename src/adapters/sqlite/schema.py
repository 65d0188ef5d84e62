"""The schema of the SQLite repository, its migrations, and opening a connection.

Kept apart from `adapters.sqlite.repository` so that the tables read in one place. Times
are integer microseconds since the epoch (UTC), so that SQL compares and
sorts them exactly as Python compares ``datetime`` values.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from imagecore.errors import DependencyUnavailable

__all__ = ["SCHEMA_VERSION", "connect", "transaction"]

#: ``PRAGMA user_version`` of a database holding the schema below.
SCHEMA_VERSION = 2

# One tuple of statements per schema version; a database at version N runs the
# tuples after N in one transaction.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE products (
            key TEXT PRIMARY KEY,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            document TEXT NOT NULL
        )""",
        # ``status`` is the aggregate status of the instruction's details,
        # rewritten in the transaction of every detail write so that listing
        # by status is an index range rather than a scan of the details.
        """CREATE TABLE instructions (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            status TEXT NOT NULL,
            document TEXT NOT NULL
        )""",
        "CREATE INDEX instructions_by_user ON instructions (user_id, created_at, id)",
        """CREATE INDEX instructions_by_user_status
            ON instructions (user_id, status, created_at, id)""",
        # ``seq`` (the rowid) keeps upload order; the detail's own id is unique.
        """CREATE TABLE details (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            instruction_id TEXT NOT NULL REFERENCES instructions (id),
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            is_cleaned INTEGER NOT NULL,
            version INTEGER NOT NULL,
            document TEXT NOT NULL
        )""",
        "CREATE INDEX details_by_instruction ON details (instruction_id, seq)",
        "CREATE INDEX details_by_update ON details (updated_at, id)",
        "CREATE INDEX details_by_status ON details (status, updated_at, id)",
        "CREATE INDEX details_by_cleaning ON details (is_cleaned, updated_at, id)",
        "CREATE INDEX details_by_creation ON details (created_at)",
    ),
    # Version 2: the periodic passes read only the records they act on, never
    # the finished files of history, and an instruction's status is kept from
    # counts of its files' statuses rather than recomputed from the files.
    (
        # The outbox record as a column, so that a partial index holds just the
        # files whose job or final notification is still to be published.
        "ALTER TABLE details ADD COLUMN outbox INTEGER NOT NULL DEFAULT 0",
        # Only the rows that hold a record are rewritten (the column's default is 0).
        "UPDATE details SET outbox = 1 WHERE json_extract(document, '$.outbox')",
        "CREATE INDEX details_in_outbox ON details (updated_at, id) WHERE outbox = 1",
        # Files whose stored bytes are still kept: in flight, finished within
        # retention, or due for cleanup (cleanup and GET /files walk it).
        "CREATE INDEX details_not_cleaned ON details (updated_at, id) WHERE is_cleaned = 0",
        "DROP INDEX details_by_cleaning",
        # No query filters by these alone any more.
        "DROP INDEX details_by_creation",
        "DROP INDEX details_by_update",
        # How many of the instruction's files are in each status.
        "ALTER TABLE instructions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE instructions ADD COLUMN processing INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE instructions ADD COLUMN done INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE instructions ADD COLUMN failed INTEGER NOT NULL DEFAULT 0",
        # How many instructions each user has in each status: a list's total
        # without counting the user's instructions one by one.
        """CREATE TABLE user_counts (
            user_id TEXT NOT NULL,
            status TEXT NOT NULL,
            instructions INTEGER NOT NULL,
            PRIMARY KEY (user_id, status)
        ) WITHOUT ROWID""",
        """INSERT INTO user_counts (user_id, status, instructions)
            SELECT user_id, status, count(*) FROM instructions GROUP BY user_id, status""",
        # One pass over the files, grouped by instruction (a subquery per
        # instruction would walk a status's every file each time).
        """UPDATE instructions SET
            pending = counted.pending, processing = counted.processing,
            done = counted.done, failed = counted.failed
           FROM (SELECT instruction_id,
                        sum(status = 'PENDING') AS pending,
                        sum(status = 'PROCESSING') AS processing,
                        sum(status = 'DONE') AS done,
                        sum(status = 'FAILED') AS failed
                 FROM details GROUP BY instruction_id) AS counted
           WHERE counted.instruction_id = instructions.id""",
    ),
)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open the database in WAL mode and bring its schema up to date (blocking).

    Raises ``sqlite3.Error`` or ``OSError`` as they come, for the caller to
    translate, and `DependencyUnavailable` for a schema newer than ours.
    """
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: every transaction below is explicit, so none is left open.
    # The repository uses the connection from the loop and from its thread, one at a time.
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL loses at most the last commits on power loss, never consistency.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    # IMMEDIATE, and the version read inside: two processes opening a new file
    # at once create the schema once.
    with transaction(connection):
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise DependencyUnavailable(
                f"the database has schema version {version}; this imagecore knows "
                f"{SCHEMA_VERSION} at most"
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION:d}")


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """One explicit transaction; IMMEDIATE takes the write lock at once (no upgrade deadlock)."""
    connection.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        # SQLite may have rolled back already (a full disk, an I/O error).
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
