"""The one place that opens SQLite files in the run data directory, in two ways:

* durable (:func:`open_durable`): what acknowledges something (a parameter set, a schedule
  change) is on disk before the acknowledgement leaves;
* batched (:func:`open_batched`, :class:`BatchedWrites`): what a single writer adds between two
  :meth:`BatchedWrites.commit` calls is one transaction, committed when it matters (the end of a
  tick, before an acknowledgement), for the onboard packet stores
  (:mod:`flight.subsystems.link.packet_stores`) and the ground archive (:mod:`flight.ground.archive`).

Small state files that are rewritten whole (the simulator's state, the mission's onboard-clock
record) are replaced atomically with :func:`write_atomic`.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Sequence


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (temp file, fsync, rename, fsync
    of the directory).

    Raises:
        OSError: not written (``path`` is unchanged).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # already renamed or never created
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another process's write to the same file."""


def open_durable(path: Path) -> sqlite3.Connection:
    """The SQLite file at ``path`` (created with its directory if missing) in autocommit mode
    (``with conn:`` or single statements commit), WAL journal so readers in other processes
    never block the writer, ``synchronous=FULL`` so a commit survives power loss. Usable from
    one thread at a time, not necessarily the one that opened it.

    Raises:
        sqlite3.Error: the file cannot be opened or created. OSError: nor its directory.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db

PAGE_SIZE = 16384
"""Page size (bytes) of a file :func:`open_batched` creates. Both writers append rows that
carry whole packets (~0.1 to 3 KB); a commit writes one WAL frame per page it dirtied, and
pages four times SQLite's default of 4096 make fewer frames, writes and b-tree splits per
packet: the link's store spends a sixth less time in SQLite (~1 us a packet with the reports
of ``tools/bench_link.py``)."""

ROWS_PER_STATEMENT = 64
"""Rows :func:`insert_rows` writes with one multi-row ``INSERT``: each statement is one step,
where ``executemany`` steps (and releases and retakes the GIL) once per row. Writing and
committing a batch of the link's stored housekeeping went from 3.5 to 2.5 us a packet (best
of 30 batches of 2,000). 64 rows of 8 columns stay far below SQLite's 32,766 bound variables."""


def insert_rows(db: sqlite3.Connection, insert: str, columns: int, rows: Sequence[Sequence[Any]]) -> None:
    """Write ``rows`` (each ``columns`` values) with ``insert``, an ``INSERT ... VALUES`` with
    no placeholders after ``VALUES``: :data:`ROWS_PER_STATEMENT` rows per statement, the
    remainder with ``executemany``. Two statement texts per ``insert``, so SQLite's statement
    cache keeps both.

    Raises:
        sqlite3.Error: as the statement does (rows written before it stay in the transaction).
    """
    row = f"({', '.join(['?'] * columns)})"
    whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
    if whole:
        multi = f"{insert} {', '.join([row] * ROWS_PER_STATEMENT)}"
        for start in range(0, whole, ROWS_PER_STATEMENT):
            db.execute(multi, [value for r in rows[start:start + ROWS_PER_STATEMENT] for value in r])
    if whole < len(rows):
        db.executemany(f"{insert} {row}", rows[whole:])


def open_batched(path: Path, **connect_args: Any) -> sqlite3.Connection:
    """The SQLite file at ``path`` for a :class:`BatchedWrites` writer: explicit transactions
    (``isolation_level=None``), WAL journal with ``synchronous=NORMAL`` (a commit survives a
    crash of the process, not of the OS), :data:`PAGE_SIZE` if the file is new (an existing
    file keeps its own). ``connect_args`` go to :func:`sqlite3.connect`.

    Raises:
        sqlite3.Error: the file cannot be opened or created.
    """
    db = sqlite3.connect(path, isolation_level=None, **connect_args)
    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before WAL mode, which fixes the page size of a new file
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class BatchedWrites:
    """Base of such a writer. A subclass opens ``self.db`` with :func:`open_batched`, calls
    :meth:`_begin` before it writes, and may batch rows in memory (:meth:`_flush` writes them)
    and add the transaction's last writes (:meth:`_before_commit`)."""

    db: sqlite3.Connection
    _in_tx: bool = False

    def close(self) -> None:
        self.commit()
        self.db.close()

    def _begin(self) -> None:
        if not self._in_tx:
            self.db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        """Make everything written or batched since the last commit durable."""
        self._flush()
        if self._in_tx:
            self._before_commit()
            self.db.execute("COMMIT")
            self._in_tx = False

    def _flush(self) -> None:
        """Write the rows batched in memory (none here)."""

    def _before_commit(self) -> None:
        """The transaction's last writes (none here)."""
