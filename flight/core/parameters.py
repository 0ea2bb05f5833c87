"""Persisted onboard parameters (PUS service 20): one SQLite file per run, shared by every
subsystem that owns parameters.

``<data dir>/parameters.sqlite`` (WAL, ``synchronous=FULL``) holds one row per parameter
(qualified name, value as JSON, onboard time of the change). Each owner writes only its own
rows: on its first tick it applies every stored value to the attribute the parameter
governs and stores the values it started with for the rest, so the file always holds the
live value of every parameter of a running owner; after any command it stores the
parameters that command changed (:class:`flight.core.subsystem.Subsystem`). The link manager
reads the file to answer TM[20,2] without a round trip through the owner. A write is
committed (on disk) before the command that made it completes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flight.core.storage import open_durable

PARAMETERS_FILE = "parameters.sqlite"


class ParameterStore:
    """The parameter file at ``path`` (created if missing).

    Raises:
        sqlite3.Error: the file cannot be opened or created.
        OSError: its directory cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_durable(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS parameter (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
                         "time_s REAL NOT NULL)")

    def load(self, names: list[str] | None = None) -> dict[str, Any]:
        """Stored values by qualified name (all, or those of ``names`` that are stored)."""
        rows = self._db.execute("SELECT name, value FROM parameter").fetchall()
        wanted = None if names is None else set(names)
        return {n: json.loads(v) for n, v in rows if wanted is None or n in wanted}

    def save(self, values: dict[str, Any], time_s: float) -> None:
        """Store ``values`` (qualified name → JSON-able value) in one durable transaction.

        Raises:
            sqlite3.Error: not stored (nothing of ``values`` is).
        """
        if not values:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO parameter (name, value, time_s) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value, time_s = excluded.time_s",
                [(n, json.dumps(v), time_s) for n, v in values.items()])

    def close(self) -> None:
        self._db.close()
