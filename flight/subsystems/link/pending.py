"""TCs in flight, durable: an accepted TC is never silently lost to a restart.

DESIGN.md: an accepted command "completes, fails with a reason, or is still listed as pending
after a crash and restart". Before a TC[8,1] (or TC[20,3]) goes on board as an internal
command, and so before its TM[1,1] can leave, :class:`PendingStore` records it in
``<data dir>/pending_tcs.sqlite`` (:data:`PENDING_FILE`, WAL, ``synchronous=FULL``:
:func:`flight.core.storage.open_durable`); its final report (TM[1,7] or a failure) is kept with it before it leaves, and then removes it
(a report that goes into the verification packet store, once that store has committed it).
A TC that cannot be recorded is refused (TM[1,2] EXECUTION_ERROR) and never executed.

Table ``pending(command_id TEXT PRIMARY KEY, tc BLOB, qualified TEXT, args TEXT, exec_pid INTEGER,
final BLOB)``: the internal command id, the TC as uplinked, the internal command and its
arguments (JSON), the process id of the executive that was dispatching it, and its final report
once decided (NULL before).

After a restart of the link, the rows left are the TCs whose final report may not have left
(:meth:`flight.subsystems.link.verification.Verification.recover`):

* one whose final report was decided is sent that same report again (same bytes: the ground
  archive keeps it once, a ground sees one verdict);

* a command declared ``idempotent`` (:class:`flight.core.component.Command`) is executed again,
  and its final report is the new execution's;
* otherwise, if the executive that dispatched it is still the same process (only the link
  restarted), its final answer may still come under its id: it is awaited up to
  :data:`RECOVERED_TIMEOUT_S`, then it fails with INTERRUPTED;
* if the executive restarted too (the whole flight computer rebooted), nobody holds the
  command any more: it fails with INTERRUPTED at once.

These final reports go to the ``verification`` packet store (store and forward): the
connection that sent the TC died with the link, so they reach the ground on the next contact.
A crash between a final report and its removal here sends that report once more after the
restart: the same packet, never a second verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.core.storage import open_durable

PENDING_FILE = "pending_tcs.sqlite"
RECOVERED_TIMEOUT_S = 35.0
"""Wall seconds a TC recovered after a restart of the link alone waits for its final answer:
the dispatcher's own timeout (30 s, :data:`flight.executive.dispatcher.COMMAND_TIMEOUT_S`) and a
margin. An answer sent while the link was down is lost, so the TC then fails with INTERRUPTED."""


@dataclass(frozen=True)
class StoredTc:
    """One row of the store (see the module)."""

    command_id: str
    tc: bytes
    qualified: str
    args: dict[str, Any]
    exec_pid: int
    final: bytes | None = None


class PendingStore:
    """The pending-TC file at ``path`` (created if missing).

    Raises:
        sqlite3.Error: the file cannot be opened, created or read. OSError: nor its directory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_durable(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS pending (command_id TEXT PRIMARY KEY, tc BLOB NOT NULL, "
                         "qualified TEXT NOT NULL, args TEXT NOT NULL, exec_pid INTEGER NOT NULL, final BLOB)")

    def add(self, row: StoredTc) -> None:
        """Record one TC, durably, before it goes on board.

        Raises:
            sqlite3.Error: not recorded (a full disk, a damaged file): the TC must be refused.
        """
        self._db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?)",
                         (row.command_id, row.tc, row.qualified, json.dumps(row.args), row.exec_pid, row.final))

    def renamed(self, old_id: str, new_id: str, exec_pid: int) -> None:
        """The TC recorded as ``old_id`` is executed again as ``new_id`` under the executive ``exec_pid``.

        Raises:
            sqlite3.Error: not recorded.
        """
        self._db.execute("UPDATE pending SET command_id = ?, exec_pid = ? WHERE command_id = ?",
                         (new_id, exec_pid, old_id))

    def finished(self, command_id: str, report: bytes) -> None:
        """Keep the final report of the TC before it leaves (see the module).

        Raises:
            sqlite3.Error: not kept (a restart before the removal would decide it again).
        """
        self._db.execute("UPDATE pending SET final = ? WHERE command_id = ?", (report, command_id))

    def remove(self, command_id: str) -> None:
        """Its final report has left.

        Raises:
            sqlite3.Error: not removed (the TC would be reported once more after a restart).
        """
        self._db.execute("DELETE FROM pending WHERE command_id = ?", (command_id,))

    def load(self) -> list[StoredTc]:
        """Every TC recorded and not final, oldest first."""
        return [StoredTc(cid, bytes(tc), qualified, json.loads(args), pid, None if final is None else bytes(final))
                for cid, tc, qualified, args, pid, final in
                self._db.execute("SELECT command_id, tc, qualified, args, exec_pid, final FROM pending ORDER BY rowid")]

    def close(self) -> None:
        self._db.close()
