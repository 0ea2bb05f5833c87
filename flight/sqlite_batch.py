"""Batched writes to SQLite: what a single writer adds between two :meth:`BatchedWrites.commit`
calls is one transaction, committed when it matters (the end of a tick, before an
acknowledgement), for the onboard packet stores (:mod:`flight.packet_store`) and the ground
archive (:mod:`flight.ground.archive`)."""

from __future__ import annotations

import sqlite3


class BatchedWrites:
    """Base of such a writer. A subclass opens ``self.db`` with ``isolation_level=None``, calls
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
