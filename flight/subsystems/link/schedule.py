"""The onboard time-based schedule (PUS service 11): time-tagged telecommands kept on board
until their release time, durable across restarts.

``<data dir>/schedule.sqlite`` (WAL, ``synchronous=FULL``): table ``activity`` (request id
of the embedded TC, release time as onboard UTC Unix seconds, the embedded TC packet exactly
as uplinked, still signed) and table ``state`` (whether the schedule's execution function
is enabled). Every change is committed before it is acknowledged. A released activity the
link serves itself is deleted (committed) before it is executed: a crash between the two
loses that one activity rather than executing it twice (at most once). One sent on board
(TC[8,1], TC[20,3]) is deleted only once the pending-TC store has recorded it
(:mod:`flight.subsystems.link.pending`), which then answers for it: a crash before the record
releases it again after the restart, one after it finds it recorded
(:meth:`ScheduleStore.drop_recorded`), so it runs exactly once.

The store keeps a sorted copy of the release times in memory, so asking whether anything
is due costs one comparison per tick and no SQL.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flight.core.storage import open_durable

SCHEDULE_FILE = "schedule.sqlite"
MAX_ACTIVITIES = 256
"""Time-tagged TCs held at once; an insertion beyond it is refused whole (BUSY)."""


@dataclass(frozen=True, order=True)
class Activity:
    """One time-tagged TC: released at ``release_utc_s`` (onboard UTC, Unix seconds); its
    PUS ``request_id`` (u32) names it; ``tc`` is the packet as uplinked."""

    release_utc_s: float
    request_id: int
    tc: bytes


class ScheduleFull(Exception):
    """An insertion that would hold more than :data:`MAX_ACTIVITIES` activities."""


class ScheduleStore:
    """The schedule file at ``path`` (created if missing; a new schedule is enabled).

    Raises:
        sqlite3.Error: the file cannot be opened, created or read. OSError: nor its directory.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_durable(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS activity (request_id INTEGER PRIMARY KEY, "
                         "release_utc_s REAL NOT NULL, tc BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        row = self._db.execute("SELECT value FROM state WHERE key = 'enabled'").fetchone()
        self.enabled = True if row is None else bool(row[0])
        self._activities = sorted(Activity(t, rid, bytes(tc)) for rid, t, tc in
                                  self._db.execute("SELECT request_id, release_utc_s, tc FROM activity"))

    def __len__(self) -> int:
        return len(self._activities)

    def activities(self) -> list[Activity]:
        """Every activity, earliest release first."""
        return list(self._activities)

    def request_ids(self) -> set[int]:
        return {a.request_id for a in self._activities}

    def set_enabled(self, enabled: bool) -> None:
        """Enable (TC[11,1]) or disable (TC[11,2]) releasing activities; durable.

        Raises:
            sqlite3.Error: not stored (the state is unchanged).
        """
        self._db.execute("INSERT INTO state (key, value) VALUES ('enabled', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (int(enabled),))
        self.enabled = enabled

    def insert(self, activities: list[Activity]) -> None:
        """Add ``activities`` in one durable transaction: all or none.

        Raises:
            ScheduleFull: more than :data:`MAX_ACTIVITIES` would be held.
            KeyError: a request id already scheduled or repeated in ``activities``.
            sqlite3.Error: not stored (nothing is).
        """
        if len(self._activities) + len(activities) > MAX_ACTIVITIES:
            raise ScheduleFull(f"{len(self._activities)} of {MAX_ACTIVITIES} activities held, "
                               f"{len(activities)} more do not fit")
        ids = [a.request_id for a in activities]
        clash = (self.request_ids() & set(ids)) or {i for i in ids if ids.count(i) > 1}
        if clash:
            raise KeyError(f"request id(s) {', '.join(f'0x{i:08x}' for i in sorted(clash))} already scheduled")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO activity (request_id, release_utc_s, tc) VALUES (?, ?, ?)",
                                 [(a.request_id, a.release_utc_s, a.tc) for a in activities])
        for a in activities:
            bisect.insort(self._activities, a)

    def delete(self, request_ids: list[int]) -> None:
        """Delete the activities of ``request_ids`` (TC[11,5]) in one durable transaction:
        all or none.

        Raises:
            KeyError: a request id that is not scheduled.
            sqlite3.Error: not stored (nothing is deleted).
        """
        missing = set(request_ids) - self.request_ids()
        if missing:
            raise KeyError(f"no activity with request id(s) {', '.join(f'0x{i:08x}' for i in sorted(missing))}")
        self._remove(set(request_ids))

    def reset(self) -> int:
        """Delete every activity (TC[11,3]); return how many there were.

        Raises:
            sqlite3.Error: not stored (nothing is deleted).
        """
        count = len(self._activities)
        self._remove(self.request_ids())
        return count

    def next_release_utc_s(self) -> float | None:
        return self._activities[0].release_utc_s if self._activities else None

    def pop_due(self, now_utc_s: float, keep_stored: Callable[[Activity], bool] = lambda _: False) -> list[Activity]:
        """Remove and return (durably) the activities released at or before ``now_utc_s``,
        earliest first; nothing while the schedule is disabled. Those ``keep_stored`` names are
        removed from memory only: their rows stay until :meth:`released`.

        Raises:
            sqlite3.Error: not stored (nothing is removed or returned).
        """
        if not self.enabled or not self._activities or self._activities[0].release_utc_s > now_utc_s:
            return []
        due = self._activities[:bisect.bisect_right([a.release_utc_s for a in self._activities], now_utc_s)]
        self._remove({a.request_id for a in due if not keep_stored(a)})
        taken = {a.request_id for a in due}
        self._activities = [a for a in self._activities if a.request_id not in taken]
        return due

    def released(self, request_ids: list[int]) -> None:
        """Delete the rows of activities :meth:`pop_due` kept stored, now that they are
        recorded elsewhere.

        Raises:
            sqlite3.Error: not deleted (a restart finds them recorded: :meth:`drop_recorded`).
        """
        self._remove(set(request_ids))

    def drop_recorded(self, recorded: set[bytes]) -> int:
        """Delete the activities whose TC packet is in ``recorded`` (the pending-TC store's:
        released and recorded before a crash, not yet deleted here); return how many.

        Raises:
            sqlite3.Error: not deleted.
        """
        ids = {a.request_id for a in self._activities if a.tc in recorded}
        self._remove(ids)
        return len(ids)

    def _remove(self, request_ids: set[int]) -> None:
        if not request_ids:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM activity WHERE request_id = ?", [(i,) for i in request_ids])
        self._activities = [a for a in self._activities if a.request_id not in request_ids]

    def close(self) -> None:
        self._db.close()
