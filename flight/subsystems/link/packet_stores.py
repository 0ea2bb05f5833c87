"""Onboard packet stores (ECSS-E-ST-70-41C service 15 style): every TM the link manager would
downlink from a store is kept here, as the PUS packet it sends, until the ground has
acknowledged it, whether or not there is contact.

File
    ``<data dir>/packet_stores.sqlite`` (:data:`STORE_FILE`), SQLite in WAL mode with
    ``synchronous=NORMAL`` and 16 KiB pages (:func:`flight.core.storage.open_batched`): a
    committed packet survives a crash of the link process (not an OS crash or power loss).
    Packets added between two :meth:`PacketStores.commit` calls (one tick of the link) are
    one transaction, so a process killed mid-tick loses at most that tick's packets; nothing
    else is written on a quiet tick. Committing once per tick is enough because storing a
    packet acknowledges nothing (the ground's TC[15,130] is the acknowledgement, and losing a
    packet's delivery state only re-sends it, which the ground archive dedupes); it is also
    at least once per tick, so a crash loses one tick at most.

    Packets are held in memory until the transaction's first read or its commit, then
    written in multi-row statements (:func:`flight.core.storage.insert_rows`), already in
    the state they reached meanwhile (a packet sent in the tick it was stored goes in *in
    flight*, with no second write).
    Delivery state lives in ``packets``, a narrow table, and the bytes in ``packet_bytes``,
    so a state change rewrites a few dozen bytes rather than the whole packet.

Stores (:data:`flight.spacelink.pus15_storage.STORES`: their ids are part of the PUS 15 wire format)
    ==============  ==  ========  ====================================================
    name            id  priority  content
    ==============  ==  ========  ====================================================
    events           2  1         TM[5,1..4] event reports
    verification     4  2         TM[1,x] reports nobody was connected to hear
    hk               1  3         TM[3,25] housekeeping reports
    results          3  4         TM[140,1] job result reports (data product ``jobs.result``)
    ==============  ==  ========  ====================================================

    A backlog goes down in priority order (lowest number first), oldest first within a
    store. Each packet has a per-store sequence id (``seq``, from 1, never reused) and the
    onboard time (simulation seconds) and UTC it was stored with.

Retention
    Each store holds at most its ``capacity`` packets (:data:`DEFAULT_CAPACITY`; the
    largest TM is ~16 KiB, so the hk store is bounded by ~3.3 GB and by ~140 MB at the
    reports flown now, 75 B to 2 KB, ~0.7 KB on average). Adding to a full store deletes
    its oldest packets and counts them: ``dropped`` for packets the ground had not
    acknowledged (lost), ``expired`` for acknowledged ones (already in the ground archive).
    The counters are persistent. At the default housekeeping rate (6 components every
    10 s) the hk store spans ~3.9 days.

Delivery (see :class:`PacketStores` methods)
    A packet is *pending* until sent, *in flight* once written to one or more archiving
    ground connections (the link's; they asked for the backlog), and *acknowledged* when a
    ground that received it says so (TC[15,130]
    carries the number of TM packets the connection has received; TCP keeps order, so that
    count names exactly the packets that arrived). A connection that closes returns its
    unacknowledged packets to pending, so they are sent again; a link restart does the same
    for everything in flight. The ground archive dedupes on the packet bytes, so a packet
    that arrived but whose acknowledgement was lost is kept once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable

from flight.spacelink.pus15_storage import STORE_BY_ID, STORE_BY_NAME, STORES, StoreStatusEntry
from flight.core.storage import BatchedWrites, insert_rows, open_batched

STORE_FILE = "packet_stores.sqlite"


DOWNLINK_ORDER = tuple(sorted(STORES, key=lambda s: s.priority))
DEFAULT_CAPACITY = {"hk": 200_000, "events": 50_000, "results": 10_000, "verification": 10_000}
"""Most packets each store keeps (an estimate sized for ~4 days without contact)."""

PENDING, IN_FLIGHT, ACKED = 0, 1, 2

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS stores (
    store_id INTEGER PRIMARY KEY, name TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
    next_seq INTEGER NOT NULL DEFAULT 1, dropped INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0,
    not_stored INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS packets (
    store_id INTEGER NOT NULL, seq INTEGER NOT NULL, time_s REAL NOT NULL, utc_unix_s REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (store_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packet_bytes (key INTEGER PRIMARY KEY, packet BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS packets_pending ON packets(store_id, seq) WHERE state = {PENDING};
CREATE INDEX IF NOT EXISTS packets_utc ON packets(store_id, utc_unix_s);
CREATE TABLE IF NOT EXISTS results_stored (job_id INTEGER PRIMARY KEY);
"""
KEY_SHIFT = 40
"""``packet_bytes.key`` is ``store_id << KEY_SHIFT | seq``: one integer key, so the bytes
append to an integer b-tree, whose page splits dirty one new page (an index b-tree, as a
``(store_id, seq)`` key would be, rebalances three). ``seq`` stays below 2**40."""
_MIGRATE_ONE_TABLE = f"""
DROP INDEX IF EXISTS packets_state;
DROP INDEX IF EXISTS packets_utc;
ALTER TABLE packets RENAME TO packets_with_bytes;
{_SCHEMA}
INSERT INTO packets SELECT store_id, seq, time_s, utc_unix_s, state FROM packets_with_bytes;
INSERT INTO packet_bytes SELECT (store_id << {KEY_SHIFT}) | seq, packet FROM packets_with_bytes;
DROP TABLE packets_with_bytes;
"""
"""A store file written before delivery state and bytes were split into two tables."""
_INSERT = "INSERT INTO packets (store_id, seq, time_s, utc_unix_s, state) VALUES"
_INSERT_BYTES = "INSERT INTO packet_bytes (key, packet) VALUES"
_BYTES_OF = f"packet_bytes.key = (packets.store_id << {KEY_SHIFT}) | packets.seq"


@dataclass(frozen=True)
class StoredPacket:
    store_id: int
    seq: int
    packet: bytes


class PacketStores(BatchedWrites):
    """The open packet stores in ``path`` (created if missing). One writer: the link manager.

    ``capacity`` overrides :data:`DEFAULT_CAPACITY` per store name (each ≥ 1).

    Raises:
        ValueError: a capacity for an unknown store or below 1.
        sqlite3.Error: the file cannot be opened or is not a packet-store database.
    """

    def __init__(self, path: Path, capacity: dict[str, int] | None = None) -> None:
        caps = {**DEFAULT_CAPACITY, **(capacity or {})}
        bad = {k: v for k, v in caps.items() if k not in STORE_BY_NAME or not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"store capacities must be integers >= 1 for stores {sorted(STORE_BY_NAME)}: {bad}")
        self.capacity = {STORE_BY_NAME[k].store_id: v for k, v in caps.items()}
        self.path = path
        # one user at a time, though not always the thread that opened it (a test serves the link from another)
        self.db = open_batched(path, check_same_thread=False)
        if "packet" in {row[1] for row in self.db.execute("PRAGMA table_info(packets)")}:
            self.db.executescript(f"BEGIN; {_MIGRATE_ONE_TABLE} COMMIT;")
        self.db.executescript(_SCHEMA)
        self.db.executemany("INSERT OR IGNORE INTO stores (store_id, name) VALUES (?, ?)",
                            [(s.store_id, s.name) for s in STORES])
        # in flight when the last process stopped: not known to have arrived, so send again
        self.db.execute("UPDATE packets SET state = ? WHERE state = ?", (PENDING, IN_FLIGHT))
        self.enabled: dict[int, bool] = {}
        self.next_seq: dict[int, int] = {}
        self.counts: dict[int, int] = {}
        for store_id, enabled, next_seq in self.db.execute("SELECT store_id, enabled, next_seq FROM stores"):
            self.enabled[store_id] = bool(enabled)
            self.next_seq[store_id] = next_seq
            self.counts[store_id] = self.db.execute("SELECT COUNT(*) FROM packets WHERE store_id = ?",
                                                    (store_id,)).fetchone()[0]
        self.pending_counts = {store_id: self.db.execute(
            "SELECT COUNT(*) FROM packets WHERE store_id = ? AND state = ?", (store_id, PENDING)).fetchone()[0]
            for store_id in self.counts}
        """Packets waiting to be sent, per store (kept in step, so a quiet store costs no query)."""
        self.dropped = self.db.execute("SELECT SUM(dropped) FROM stores").fetchone()[0]
        """Unacknowledged packets retention has dropped, all stores, ever."""
        self._new: dict[tuple[int, int], list] = {}
        """Packets stored and not yet written, by ``(store_id, seq)``: ``[store_id, seq,
        time_s, utc_unix_s, state, packet]``, the state kept current until written."""
        self._marks: list[tuple[int, int, int, int]] = []
        """State changes (state, store_id, seq, from state) of written packets not yet
        written themselves: batched, and written before anything reads the table."""
        self._seq_dirty: set[int] = set()
        self._refs: dict[tuple[int, int], int] = {}
        """Connections holding each in-flight packet unacknowledged."""
        self._sent: dict[Hashable, deque[tuple[int, int, int]]] = {}

    def _rolled_back(self) -> None:
        # the packets and marks of the lost transaction are gone; sequence ids stay unique (the
        # counters in memory go on and are written with the next commit)
        self._new.clear()
        self._marks.clear()
        self._seq_dirty.update(self.next_seq)
        for store_id in self.counts:
            self.counts[store_id], self.pending_counts[store_id] = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(state = ?), 0) FROM packets WHERE store_id = ?",
                (PENDING, store_id)).fetchone()

    def _before_commit(self) -> None:
        self.db.executemany("UPDATE stores SET next_seq = ? WHERE store_id = ?",
                            [(self.next_seq[i], i) for i in self._seq_dirty])
        self._seq_dirty.clear()

    def _flush(self) -> None:
        if self._new:
            self._begin()
            # taken before writing: rows a failed write left half inserted must not be inserted twice
            rows = list(self._new.values())
            self._new.clear()
            insert_rows(self.db, _INSERT, 5, [row[:5] for row in rows])
            insert_rows(self.db, _INSERT_BYTES, 2, [((row[0] << KEY_SHIFT) | row[1], row[5]) for row in rows])
        if self._marks:
            self._begin()
            # a packet's marks keep their order; adjacent ones on consecutive seqs (an
            # acknowledgement's run, a tick's packets sent) become one range update
            runs: list[list[int]] = []
            for state, store_id, seq, from_state in self._marks:
                if runs and runs[-1] == [state, store_id, runs[-1][2], seq - 1, from_state]:
                    runs[-1][3] = seq
                else:
                    runs.append([state, store_id, seq, seq, from_state])
            self.db.executemany("UPDATE packets SET state = ? WHERE store_id = ? AND seq BETWEEN ? AND ? AND state = ?",
                                runs)
            self._marks.clear()

    def _mark(self, state: int, store_id: int, seq: int, from_state: int) -> None:
        row = self._new.get((store_id, seq))
        if row is None:
            self._marks.append((state, store_id, seq, from_state))
        elif row[4] == from_state:
            row[4] = state

    # -- storing -------------------------------------------------------------------------
    def add(self, store: str, packet: bytes, time_s: float, utc_unix_s: float) -> int | None:
        """Store ``packet`` (onboard time ``time_s``, UTC ``utc_unix_s``) in ``store``; return
        its sequence id, or ``None`` when storage is disabled for that store (counted in
        ``not_stored``). Applies retention.

        Raises:
            KeyError: an unknown store name.
        """
        return self.add_many(store, [(packet, time_s, utc_unix_s)])[0]

    def add_many(self, store: str, items: list[tuple[bytes, float, float]]) -> list[int | None]:
        """:meth:`add` for several ``(packet, time_s, utc_unix_s)``: all stored, or (storage
        disabled) all ``None``."""
        store_id = STORE_BY_NAME[store].store_id
        if not self.enabled[store_id]:
            self._begin()
            self.db.execute("UPDATE stores SET not_stored = not_stored + ? WHERE store_id = ?",
                            (len(items), store_id))
            return [None] * len(items)
        first = self.next_seq[store_id]
        self.next_seq[store_id] = first + len(items)
        for seq, (packet, t, utc) in enumerate(items, first):
            self._new[(store_id, seq)] = [store_id, seq, t, utc, PENDING, packet]
        self._seq_dirty.add(store_id)
        self.counts[store_id] += len(items)
        self.pending_counts[store_id] += len(items)
        excess = self.counts[store_id] - self.capacity[store_id]
        if excess > 0:
            self._drop_oldest(store_id, excess)
        return list(range(first, first + len(items)))

    def _drop_oldest(self, store_id: int, n: int) -> None:
        self._flush()
        rows = self.db.execute("SELECT seq, state FROM packets WHERE store_id = ? ORDER BY seq LIMIT ?",
                               (store_id, n)).fetchall()
        acked = sum(1 for _, state in rows if state == ACKED)
        self.pending_counts[store_id] -= sum(1 for _, state in rows if state == PENDING)
        self.db.execute("DELETE FROM packet_bytes WHERE key BETWEEN ? AND ?",
                        (store_id << KEY_SHIFT, (store_id << KEY_SHIFT) | rows[-1][0]))
        self.db.execute("DELETE FROM packets WHERE store_id = ? AND seq <= ?", (store_id, rows[-1][0]))
        self.db.execute("UPDATE stores SET dropped = dropped + ?, expired = expired + ? WHERE store_id = ?",
                        (len(rows) - acked, acked, store_id))
        self.counts[store_id] -= len(rows)
        self.dropped += len(rows) - acked
        for seq, _ in rows:
            self._refs.pop((store_id, seq), None)

    def set_enabled(self, store_ids: Iterable[int], enabled: bool) -> None:
        """Enable or disable storage (TC[15,1]/[15,2]); durable at once.

        Raises:
            KeyError: an unknown store id (nothing changed).
        """
        ids = [STORE_BY_ID[i].store_id for i in store_ids]
        self._begin()
        for store_id in ids:
            self.enabled[store_id] = enabled
            self.db.execute("UPDATE stores SET enabled = ? WHERE store_id = ?", (int(enabled), store_id))
        self.commit()

    def delete_up_to(self, store_ids: Iterable[int], utc_unix_s: float) -> int:
        """Delete every packet stored at or before ``utc_unix_s`` (TC[15,11]); return how many.

        Raises:
            KeyError: an unknown store id (nothing changed).
        """
        ids = [STORE_BY_ID[i].store_id for i in store_ids]
        self._flush()
        total = 0
        for store_id in ids:
            rows = self.db.execute("SELECT seq, state FROM packets WHERE store_id = ? AND utc_unix_s <= ?",
                                   (store_id, utc_unix_s)).fetchall()
            seqs = [seq for seq, _ in rows]
            self.pending_counts[store_id] -= sum(1 for _, state in rows if state == PENDING)
            self.db.executemany("DELETE FROM packet_bytes WHERE key = ?",
                                [((store_id << KEY_SHIFT) | seq,) for seq in seqs])
            self.db.execute("DELETE FROM packets WHERE store_id = ? AND utc_unix_s <= ?", (store_id, utc_unix_s))
            self.db.execute("UPDATE stores SET deleted = deleted + ? WHERE store_id = ?", (len(seqs), store_id))
            self.counts[store_id] -= len(seqs)
            for seq in seqs:
                self._refs.pop((store_id, seq), None)
            total += len(seqs)
        self.commit()
        return total

    def retrieve(self, store_id: int, from_utc_unix_s: float, to_utc_unix_s: float) -> int:
        """Queue every packet stored in ``[from, to]`` for downlink again, acknowledged or not
        (TC[15,9]); return how many. The ground archive keeps each packet once.

        Raises:
            KeyError: an unknown store id.
        """
        store_id = STORE_BY_ID[store_id].store_id
        self._flush()
        rows = self.db.execute(
            "SELECT seq FROM packets WHERE store_id = ? AND utc_unix_s BETWEEN ? AND ? AND state = ?",
            (store_id, from_utc_unix_s, to_utc_unix_s, ACKED)).fetchall()
        queued = self.db.execute(
            "SELECT COUNT(*) FROM packets WHERE store_id = ? AND utc_unix_s BETWEEN ? AND ? AND state = ?",
            (store_id, from_utc_unix_s, to_utc_unix_s, PENDING)).fetchone()[0]
        self.db.execute("UPDATE packets SET state = ? WHERE store_id = ? AND utc_unix_s BETWEEN ? AND ? "
                        "AND state = ?", (PENDING, store_id, from_utc_unix_s, to_utc_unix_s, ACKED))
        self.pending_counts[store_id] += len(rows)
        self.commit()
        return len(rows) + queued

    # -- job results ---------------------------------------------------------------------
    def results_stored(self) -> set[int]:
        """Job ids whose result report is already stored (stored once, ever)."""
        return {job_id for (job_id,) in self.db.execute("SELECT job_id FROM results_stored")}

    def add_result(self, job_id: int, packet: bytes, time_s: float, utc_unix_s: float) -> int | None:
        """Store a job result report and remember ``job_id`` as stored, in one transaction."""
        seq = self.add("results", packet, time_s, utc_unix_s)
        self._begin()  # the packet is written with this tick's transaction: so is its job id
        self.db.execute("INSERT OR IGNORE INTO results_stored (job_id) VALUES (?)", (job_id,))
        return seq

    # -- downlink ------------------------------------------------------------------------
    def pending(self, store_id: int, limit: int) -> list[StoredPacket]:
        """Up to ``limit`` pending packets of a store, oldest first."""
        if not self.pending_counts[store_id]:
            return []
        self._flush()
        rows = self.db.execute(  # the literal state lets SQLite use the partial index packets_pending
            f"SELECT seq, packet FROM packets JOIN packet_bytes ON {_BYTES_OF} "
            f"WHERE store_id = ? AND state = {PENDING} ORDER BY seq LIMIT ?", (store_id, limit)).fetchall()
        return [StoredPacket(store_id, seq, bytes(packet)) for seq, packet in rows]

    def sent(self, connection: Hashable, tm_index: int, store_id: int, seq: int) -> None:
        """Record that the packet went out on ``connection`` as its ``tm_index``-th TM
        packet (1-based, counting every TM that connection was sent)."""
        self.sent_many(connection, tm_index, store_id, [seq])

    def sent_many(self, connection: Hashable, first_tm_index: int, store_id: int, seqs: Iterable[int]) -> None:
        """:meth:`sent` for packets of one store that went out one after the other on
        ``connection``, as its TM packets from ``first_tm_index`` on."""
        queue = self._sent.setdefault(connection, deque())
        for tm_index, seq in enumerate(seqs, first_tm_index):
            key = (store_id, seq)
            refs = self._refs.get(key, 0)
            if not refs:
                self._mark(IN_FLIGHT, store_id, seq, PENDING)
                self.pending_counts[store_id] -= 1
            self._refs[key] = refs + 1
            queue.append((tm_index, store_id, seq))

    def acknowledged(self, connection: Hashable, received: int) -> int:
        """The ground on ``connection`` says it has received its first ``received`` TM
        packets: mark the stored ones among them acknowledged; return how many."""
        queue = self._sent.get(connection)
        if not queue:
            return 0
        done = 0
        while queue and queue[0][0] <= received:
            _, store_id, seq = queue.popleft()
            self._release(store_id, seq)
            self._mark(ACKED, store_id, seq, IN_FLIGHT)
            done += 1
        return done

    def closed(self, connection: Hashable) -> int:
        """``connection`` is gone: its unacknowledged packets no other connection holds go
        back to pending; return how many."""
        queue = self._sent.pop(connection, None)
        if not queue:
            return 0
        in_flight = self._in_flight(queue)
        back = 0
        for _, store_id, seq in queue:
            if self._release(store_id, seq) == 0 and (store_id, seq) in in_flight:
                self._mark(PENDING, store_id, seq, IN_FLIGHT)
                self.pending_counts[store_id] += 1
                back += 1
        return back

    def _in_flight(self, sent: Iterable[tuple[int, int, int]]) -> set[tuple[int, int]]:
        """Which of the ``(tm_index, store_id, seq)`` packets are still stored and in flight
        (neither dropped, deleted nor acknowledged on another connection): one range read per
        store, so the end of a pass costs one query, not one per packet."""
        self._flush()
        spans: dict[int, list[int]] = {}
        for _, store_id, seq in sent:
            span = spans.setdefault(store_id, [seq, seq])
            span[0], span[1] = min(span[0], seq), max(span[1], seq)
        return {(store_id, seq) for store_id, (first, last) in spans.items()
                for (seq,) in self.db.execute(
                    f"SELECT seq FROM packets WHERE store_id = ? AND seq BETWEEN ? AND ? AND state = {IN_FLIGHT}",
                    (store_id, first, last))}

    def _release(self, store_id: int, seq: int) -> int:
        key = (store_id, seq)
        left = self._refs.get(key, 0) - 1
        if left > 0:
            self._refs[key] = left
        else:
            self._refs.pop(key, None)
        return max(left, 0)

    # -- status --------------------------------------------------------------------------
    def status(self) -> list[StoreStatusEntry]:
        """Every store's status (TM[15,13]), by store id."""
        self._flush()
        out = []
        for store_id, enabled, dropped, expired, deleted, not_stored in self.db.execute(
                "SELECT store_id, enabled, dropped, expired, deleted, not_stored FROM stores ORDER BY store_id"
        ).fetchall():
            count, pending, oldest, newest = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(state != ?), 0), MIN(utc_unix_s), MAX(utc_unix_s) FROM packets "
                "WHERE store_id = ?", (ACKED, store_id)).fetchone()
            out.append(StoreStatusEntry(store_id, bool(enabled), count, pending, oldest, newest, dropped, expired,
                                   deleted, not_stored))
        return out
