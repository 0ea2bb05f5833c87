"""The one place that opens SQLite files in the run data directory, in two ways:

* durable (:func:`open_durable`): what acknowledges something (a parameter set, a schedule
  change) is on disk before the acknowledgement leaves;
* batched (:func:`open_batched`, :class:`BatchedWrites`): what a single writer adds between two
  :meth:`BatchedWrites.commit` calls is one transaction, committed when it matters (the end of a
  tick, before an acknowledgement), for the onboard packet stores
  (:mod:`flight.subsystems.link.packet_stores`) and the ground archive (:mod:`flight.ground.archive`).

Every SQLite file is opened with :func:`connect_checked`: a file found damaged at start (not a
database, or failing ``PRAGMA quick_check``, SQLite's own test for corruption) is moved aside,
renamed ``<name>.corrupt-<UTC time>`` with its ``-wal`` and ``-shm``, a fresh one is created in
its place and the move is noted in :data:`moved_aside` for the process to announce (event
``store_moved_aside``, :mod:`flight.core.subsystem`): never a traceback, never a silent reset.

Security state whose loss must not fall back to a default (the onboard key store: a revoked key
would be active again; the anti-replay state: old telecommands would be accepted again) is kept
twice, in a file and its mirror (:class:`MirroredStore`): a damaged copy is rebuilt from the
other.

Small state files that are rewritten whole (the simulator's state, the mission's onboard-clock
record) are replaced atomically with :func:`write_atomic`, from a loop that must not wait for
the disk through :class:`WriteBehind`.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
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


class WriteBehind:
    """:func:`write_atomic` on a thread of its own, one file at a time in the order asked, so
    that the caller's loop never waits for the disk.

    Why: the simulator's state and the onboard-clock floor are saved once a simulated minute
    from the lockstep loop, and their two fsyncs took 2–3 ms there (0.5 ms on a quiet disk)
    while the other processes committed their stores: three lockstep ticks.

    The caller keeps what it wrote consistent by handing over the text, already made;
    :meth:`done` tells it, in its own thread, which writes reached the disk, so that nothing
    is taken as durable before it is. After a crash a queued write may be lost: the file holds
    the previous text, whole (:func:`write_atomic`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._todo: queue.Queue[tuple[Path, str, Any] | None] = queue.Queue()
        self._done: list[tuple[Any, OSError | None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def write(self, path: Path, text: str, tag: Any = None) -> None:
        """Queue ``text`` for ``path``; :meth:`done` reports it under ``tag`` once written or failed."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"write-behind {self.name}", daemon=True)
            self._thread.start()
        self._todo.put((path, text, tag))

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            path, text, tag = item
            try:
                write_atomic(path, text)
                error = None
            except OSError as exc:
                error = exc
            with self._lock:
                self._done.append((tag, error))

    def done(self) -> list[tuple[Any, OSError | None]]:
        """``(tag, error)`` of every write finished since the last call, in order (``error``
        ``None``: on disk)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def drain(self) -> list[tuple[Any, OSError | None]]:
        """Wait until every queued write has finished, stop the thread, and return :meth:`done`
        (at the end of a run: then nothing is left in flight). Writing again starts it anew."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None
        return self.done()


BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another process's write to the same file."""
QUICK_CHECK_MAX_BYTES = 64 * 2**20
"""Files up to this size get ``PRAGMA quick_check`` at open (~35 ms per MiB measured on the
2-core development machine under load: about 2 s at the limit); a larger one (a packet store after days without contact) only has its header and schema read, so
that a process starts well within the executive's heartbeat timeout. Damage deeper in a large
file surfaces as an ``sqlite3.DatabaseError`` of the write that meets it, which every store
reports by event."""


@dataclass(frozen=True)
class MovedAside:
    """A damaged SQLite file moved aside at open: ``path`` (a fresh file is there now),
    ``moved_to`` (the damaged one), ``why`` (SQLite's words) and ``restored_from``: the
    mirror whose copy the fresh file now holds (:class:`MirroredStore`), ``None`` when what
    the damaged file held is lost."""

    path: Path
    moved_to: Path
    why: str
    restored_from: Path | None = None

    def outcome(self) -> str:
        """What took the damaged file's place, in an operator's words."""
        if self.restored_from is not None:
            return f"restored from its mirror {self.restored_from.name}: nothing was lost"
        return "a fresh one was created; what it held is lost to this run"


moved_aside: list[MovedAside] = []
"""Files this process moved aside and has not announced yet (:func:`take_moved_aside`)."""


def take_moved_aside() -> list[MovedAside]:
    """The files moved aside since the last call (and forget them)."""
    taken = moved_aside[:]
    moved_aside.clear()
    return taken


def _damage(db: sqlite3.Connection, size_bytes: int) -> str:
    """Why ``db`` is damaged (empty when it reads as sound)."""
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if size_bytes <= QUICK_CHECK_MAX_BYTES:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                return "; ".join(problems)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return ""


def connect_checked(path: Path, **connect_args: Any) -> sqlite3.Connection:
    """``sqlite3.connect(path, **connect_args)`` to a sound database: a damaged file at ``path``
    is moved aside (see the module) and a fresh one opened instead. The move is printed to
    stderr (the process's log) and noted in :data:`moved_aside`.

    Raises:
        sqlite3.Error: the file cannot be opened or created. OSError: a damaged file cannot be
            moved aside.
    """
    path = Path(path)
    db = sqlite3.connect(str(path), **connect_args)
    size = path.stat().st_size if path.exists() else 0
    why = _damage(db, size) if size else ""
    if not why:
        return db
    db.close()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    moved_to = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(moved_to.with_name(moved_to.name + suffix))
    path.rename(moved_to)
    moved_aside.append(MovedAside(path, moved_to, why))
    print(f"storage: {path} is damaged ({why}): moved aside to {moved_to.name}; a fresh one is created",
          file=sys.stderr, flush=True)
    return sqlite3.connect(str(path), **connect_args)


RESERVE_PAGES = 256
"""Free pages (1 MiB at SQLite's 4 KiB) a durable store keeps allocated, in its file and in its
write-ahead log, so that what it acknowledges can still be written when the disk is full:
:func:`open_durable` tops them up at open."""
WAL_AUTOCHECKPOINT_PAGES = RESERVE_PAGES // 4
"""A durable store's WAL is checkpointed (and then rewritten from its start, within the space it
already has) every this many pages, well inside what :data:`RESERVE_PAGES` gave it."""


def open_durable(path: Path) -> sqlite3.Connection:
    """The SQLite file at ``path`` (created with its directory if missing) in autocommit mode
    (``with conn:`` or single statements commit), WAL journal so readers in other processes
    never block the writer, ``synchronous=FULL`` so a commit survives power loss. Usable from
    one thread at a time, not necessarily the one that opened it.

    A full disk: the file keeps :data:`RESERVE_PAGES` free pages and its WAL as much room
    (written once at open when short of it), so the small writes of a durable store (a TC in
    flight, a schedule change, a parameter) land in space the file already has while the disk has
    none to give: commanding goes on while the telemetry stores, which grow, report their
    failures (after the cFS critical data store, preallocated at start).

    Raises:
        sqlite3.Error: the file cannot be opened or created. OSError: nor its directory.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = connect_checked(path, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    _reserve(db)
    return db


def _reserve(db: sqlite3.Connection) -> None:
    """Top the free pages of ``db`` up to :data:`RESERVE_PAGES`: a blob written and deleted in one
    transaction leaves its pages on the free list and its frames' room in the WAL."""
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if free >= RESERVE_PAGES:
        return
    page = db.execute("PRAGMA page_size").fetchone()[0]
    try:
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS storage_reserve (b BLOB)")
            db.execute("INSERT INTO storage_reserve VALUES (zeroblob(?))", ((RESERVE_PAGES - free) * page,))
            db.execute("DELETE FROM storage_reserve")
    except sqlite3.Error:
        pass  # a disk already full: the store opens without its reserve, and its writes fail as they come


MIRROR_SUFFIX = ".mirror"
"""What a mirror's name adds before the file's suffix: ``link_keys.sqlite`` is mirrored in
``link_keys.mirror.sqlite``."""


def mirror_path(path: Path) -> Path:
    """Where :class:`MirroredStore` keeps the mirror of ``path``."""
    return path.with_name(f"{path.stem}{MIRROR_SUFFIX}{path.suffix}")


class MirroredStore:
    """A small durable store kept whole in two files: ``path`` and its mirror
    (:func:`mirror_path`), each opened with :func:`open_durable`.

    Why: a damaged file is moved aside and replaced by a fresh one (:func:`connect_checked`),
    which for most stores loses data but no safety. For security state it would reopen what
    operators closed: a fresh key store is provisioned again from the key files, revoked keys
    included, and a fresh anti-replay state takes old telecommands again. Two copies cover
    damage to one file (a torn write, an upset in storage); on one disk, not the disk's loss.

    Every change (:meth:`write`) is one transaction on ``path``, then the same on the mirror;
    each copy counts its changes in its ``mirror_generation`` table. At open, a blank copy
    (missing or empty, or damaged and moved aside: its :class:`MovedAside` then names the copy
    it was restored from) is rebuilt from the other with SQLite's online backup; of two sound
    copies, the one a crash left a change behind is rebuilt from the other.

    Args:
        path: the file; its mirror is :func:`mirror_path` of it.
        schema: statements (``CREATE TABLE IF NOT EXISTS ...``) run on both copies at open.

    Attributes:
        db: the connection to ``path``, for reading.
        lost: a copy was damaged at open and neither survived: the store is new and what it
            held is gone.
        mirror_failures: changes the file took and the mirror could not (each leaves the
            mirror behind until the next open rebuilds it).

    Raises:
        sqlite3.Error, OSError: as :func:`open_durable`, for either file.
    """

    def __init__(self, path: Path, schema: Sequence[str] = ()) -> None:
        self.path, self.mirror_path = Path(path), mirror_path(Path(path))
        existed = tuple(p.exists() and p.stat().st_size > 0 for p in (self.path, self.mirror_path))
        before = len(moved_aside)
        self.db = open_durable(self.path)
        self.mirror = open_durable(self.mirror_path)
        damaged = {m.path: i for i, m in enumerate(moved_aside[before:], before)}
        copies = ((self.db, self.path), (self.mirror, self.mirror_path))
        blank = [not was or p in damaged for was, (_, p) in zip(existed, copies)]
        self.lost = bool(damaged) and all(blank)
        self.mirror_failures = 0
        generations = [self._generation(db) for db, _ in copies]
        if blank[0] != blank[1]:
            self._rebuild(*copies if blank[1] else copies[::-1], damaged)  # from the one that survived
        elif not blank[0] and generations[0] != generations[1]:
            # a change a crash left behind in one copy
            self._rebuild(*copies if generations[0] > generations[1] else copies[::-1], damaged)
        for statement in schema:
            for db, _ in copies:
                db.execute(statement)

    @staticmethod
    def _rebuild(source: tuple[sqlite3.Connection, Path], target: tuple[sqlite3.Connection, Path],
                 damaged: dict[Path, int]) -> None:
        source[0].backup(target[0])
        i = damaged.get(target[1])
        if i is not None:
            moved_aside[i] = MovedAside(target[1], moved_aside[i].moved_to, moved_aside[i].why, source[1])

    @staticmethod
    def _generation(db: sqlite3.Connection) -> int:
        db.execute("CREATE TABLE IF NOT EXISTS mirror_generation (n INTEGER NOT NULL)")
        row = db.execute("SELECT n FROM mirror_generation").fetchone()
        return row[0] if row else 0

    def write(self, sql: str, params: Sequence[Any] | Sequence[Sequence[Any]] = (), *, many: bool = False) -> None:
        """Run one change (``executemany`` with ``many``) as one durable transaction on each
        copy in turn, the file first.

        Raises:
            sqlite3.Error: the file could not take it (nothing changed). A mirror that cannot
                take it once the file has is left a change behind, and rebuilt at the next open.
        """
        for db in (self.db, self.mirror):
            try:
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    (db.executemany if many else db.execute)(sql, params)
                    if db.execute("UPDATE mirror_generation SET n = n + 1").rowcount == 0:
                        db.execute("INSERT INTO mirror_generation VALUES (1)")
            except sqlite3.Error:
                if db is self.db:
                    raise
                self.mirror_failures += 1

    def close(self) -> None:
        self.db.close()
        self.mirror.close()


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
    db = connect_checked(path, isolation_level=None, **connect_args)
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
        """Make everything written or batched since the last commit durable.

        Raises:
            sqlite3.Error: not written (a full disk, an I/O error): the transaction is rolled back
                whole, the subclass forgets it (:meth:`_rolled_back`), and the next write begins
                afresh.
        """
        try:
            self._flush()
            if self._in_tx:
                self._before_commit()
                self.db.execute("COMMIT")
                self._in_tx = False
        except sqlite3.Error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self._in_tx = False
            self._rolled_back()
            raise

    def _rolled_back(self) -> None:
        """A commit failed and its transaction was rolled back: bring what the subclass keeps in
        memory back in step with the file (nothing here)."""

    def _flush(self) -> None:
        """Write the rows batched in memory (none here)."""

    def _before_commit(self) -> None:
        """The transaction's last writes (none here)."""
