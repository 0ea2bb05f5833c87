"""Durable SQLite files in the run data directory: what acknowledges something (a parameter
set, a schedule change) is on disk before the acknowledgement leaves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
