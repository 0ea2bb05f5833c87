"""The link's downlink: real-time TM, store and forward from the packet stores
(:mod:`flight.subsystems.link.packet_stores`), and the backlog within the pass's data rate.

One downlink
    Every TM goes to every open connection, in the order it was built: each connection is a
    copy of the one downlink, as every ground station in view receives the same RF stream.
    So each APID's packet sequence count (CCSDS 133.0-B-2 4.1.3.4.2) runs without gaps on
    every connection, and a gap is a packet that connection did not get (sent while it was
    not open or not in contact, dropped for its full send buffer, or held on board for
    playback) rather than one addressed to someone else. Whom a report is for is its PUS-C
    destination id (the TC's source id; 0 for housekeeping, events and job results), and
    which TC it answers its request id; a ground ignores the reports that are not its own.
Real time
    A TM that is not kept in a packet store (verification, ping, TC answers) is sent at
    once; reports about a TC released from the onboard schedule are stored in the
    ``verification`` store for the ground. Without contact such TM is not sent
    (``tm_dropped_no_contact``).
Store and forward
    Every TM[3,25], TM[5,x] and TM[140,1] is stored in its packet store whether or not there
    is contact, and in contact sent at once (to every connection). On each tick in contact
    the rest of the budget goes to the backlog: events, then verification reports, then
    housekeeping, then job results, oldest first, within the tick's share of the frame's
    ``downlink_rate_bps`` (``rate × tick_s / 8`` bytes, real time included; in ``always``
    contact without a pass rate :data:`LAB_DOWNLINK_RATE_BPS`) and at most
    :data:`BACKLOG_PACKETS_PER_TICK` packets. The backlog goes only to *archiving*
    connections, those that have sent a TC[15,130] downlink acknowledgement. A stored packet
    sent to archiving connections is done once one acknowledges it, and goes back to the
    backlog when every one it went to closed without acknowledging it; with no archiving
    connection it waits on board.
Commits
    What a tick stores is committed at the end of the tick once :data:`STORE_COMMIT_INTERVAL_S`
    of wall time has passed since the last commit (every tick at real-time speed; a group of
    ticks when the simulation runs faster); a store change commanded by TC[15,x] is committed
    before its completion is reported, and a job result before it is sent (:meth:`Downlink.store_result`). A crash loses at most that interval of stored
    telemetry, never a store change the ground was told was done; a packet sent before the
    crash and stored again after it is the same bytes, which the ground archive keeps once.
    Acknowledgements are committed with the telemetry: one lost to a crash only sends its
    packets again.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from flight.subsystems.link.connections import Connections
from flight.subsystems.link.packet_stores import DOWNLINK_ORDER, STORE_BY_NAME, STORE_FILE, PacketStores
from flight.subsystems.link.state import ONBOARD, EventBudget, LinkCounters, LinkState

BACKLOG_PACKETS_PER_TICK = 2000
"""Most stored packets sent per tick: bounds the tick's time (~10 ms) however large the backlog."""
LAB_DOWNLINK_RATE_BPS = 2e9
"""Downlink rate in ``always`` contact when the frame gives none: DESIGN's Ka-band 2 Gbit/s."""
STORE_COMMIT_INTERVAL_S = 0.1
"""Most wall seconds between packet-store commits: a SQLite WAL commit costs ~0.1 ms, which
per tick was a quarter of the link's time per housekeeping packet at full simulation speed
(``tools/bench_link.py``); a crash loses at most this much of the stored telemetry."""

StoreItem = tuple[bytes, float, float]
"""``(packet, time_s, utc_unix_s)``: a TM and the onboard time and UTC it is stored with."""


class Downlink:
    """TM to the ground over ``connections`` (see the module). ``tick_s`` is the onboard
    seconds per tick; ``always_in_contact`` for ``contact == "always"``."""

    def __init__(self, connections: Connections, state: LinkState, counters: LinkCounters, budget: EventBudget,
                 tick_s: float, always_in_contact: bool) -> None:
        self.connections = connections
        self._state = state
        self._counters = counters
        self._event = budget
        self._tick_s = tick_s
        self._always = always_in_contact
        self.stores: PacketStores | None = None
        self._budget_bytes = 0.0
        self._committed_at = -float("inf")

    def open(self, data_path: Path) -> None:
        """Open the packet stores in ``data_path``.

        Raises:
            sqlite3.Error: the store file cannot be opened.
        """
        self.stores = PacketStores(data_path / STORE_FILE)

    def close(self) -> None:
        if self.stores is not None:
            self.stores.close()
            self.stores = None

    def connection_closed(self, identity: bytes) -> None:
        """What ``identity`` was sent and did not acknowledge goes back to the backlog."""
        if self.stores is not None:
            self._counters.tm_requeued += self.stores.closed(identity)

    def new_tick(self, rate_bps: float) -> None:
        """This tick's byte budget from the frame's downlink rate (bit/s)."""
        if self._always and rate_bps <= 0:
            rate_bps = LAB_DOWNLINK_RATE_BPS
        self._budget_bytes = rate_bps * self._tick_s / 8

    # -- real time -------------------------------------------------------------------------
    def send(self, identity: bytes, packets: list[bytes]) -> bool:
        """Write TM packets to one connection, in contact; whether they went, all or none."""
        if not self._state.contact:
            self._counters.tm_dropped_no_contact += len(packets)
            return False
        return self.connections.write(identity, packets)

    def broadcast(self, packet: bytes) -> None:
        if not self._state.contact:
            self._counters.tm_dropped_no_contact += 1
            return
        for identity in list(self.connections.table):
            self.send(identity, [packet])

    def reply(self, identity: bytes, packet: bytes) -> None:
        """A report about a TC from ``identity``: stored for a TC of the onboard schedule, else
        sent to every connection (see the module)."""
        if identity == ONBOARD:
            self.store("verification", [(packet, self._state.time_s, self._state.utc_now())])
        else:
            self.broadcast(packet)

    # -- store and forward ------------------------------------------------------------------
    def store(self, store: str, items: list[StoreItem]) -> None:
        """Keep the TM ``items`` in ``store`` and, in contact, send them at once, in one
        write; with storage disabled for that store they are only sent, if in contact."""
        if not items:
            return
        try:
            seqs = self.stores.add_many(store, items)
        except sqlite3.Error as exc:
            self._store_failed(store, str(exc))
            seqs = [None] * len(items)
        if seqs[0] is None:  # storage disabled for the store (all or none), or it failed: sent only
            for packet, _, _ in items:
                self.broadcast(packet)
        elif self._state.contact:
            self._send_stored(STORE_BY_NAME[store].store_id, [(seq, item[0]) for seq, item in zip(seqs, items)])

    def store_result(self, job_id: int, item: StoreItem) -> bool:
        """Keep a job's TM[140,1] in the results store, marked stored for ``job_id`` in the
        same transaction, committed at once, and in contact send it; whether it was stored (a
        store error is counted and reported, and nothing is sent).

        Committed before it can leave: a crash that lost the transaction after the packet was
        sent would have the job runner offer the result again (unacknowledged) and the link
        build it anew, with other counters, which the ground archive would keep as a second
        result of the job. A result per job makes this commit rare."""
        packet, time_s, utc = item
        try:
            seq = self.stores.add_result(job_id, packet, time_s, utc)
            self.stores.commit()
        except sqlite3.Error as exc:
            self._store_failed("results", str(exc))
            return False
        if self._state.contact and seq is not None:
            self._send_stored(STORE_BY_NAME["results"].store_id, [(seq, packet)])
        return True

    def _store_failed(self, store: str, why: str) -> None:
        self._counters.store_errors += 1
        self._event("store_failed", store=store, why=why[:160])

    def _send_stored(self, store_id: int, items: list[tuple[int, bytes]], backlog: bool = False) -> bool:
        """Send stored ``(seq, packet)`` to every connection (the backlog only to archiving
        ones); the archiving ones hold them until acknowledged. Whether an archiving one took them."""
        sent = False
        packets = [packet for _, packet in items]
        for identity, conn in list(self.connections.table.items()):
            if backlog and not conn.archiving:
                continue  # a connection that never acknowledges would be sent the whole backlog again and again
            first = conn.tm_count + 1
            if self.send(identity, packets) and conn.archiving:
                self.stores.sent_many(identity, first, store_id, [seq for seq, _ in items])
                sent = True
        self._budget_bytes -= sum(map(len, packets))
        return sent

    def backlog(self) -> None:
        """Send stored packets in priority order within what is left of the tick's budget."""
        room = BACKLOG_PACKETS_PER_TICK
        if (not any(self.stores.pending_counts.values())
                or not any(c.archiving for c in self.connections.table.values())):
            return
        for spec in DOWNLINK_ORDER:
            while room > 0:
                batch = self.stores.pending(spec.store_id, min(room, 256))
                if not batch:
                    break
                fits, size = [], 0
                for stored in batch:
                    if size + len(stored.packet) > self._budget_bytes:
                        break
                    size += len(stored.packet)
                    fits.append((stored.seq, stored.packet))
                # a lower priority never overtakes: out of budget or queue room, wait for the next tick
                if not fits or not self._send_stored(spec.store_id, fits, backlog=True):
                    return
                room -= len(fits)
                self._counters.tm_backlog_sent += len(fits)
                if len(fits) < len(batch):
                    return

    def commit(self) -> bool:
        """Commit the stores if :data:`STORE_COMMIT_INTERVAL_S` has passed since the last
        commit; whether this call committed (a failure is counted and reported)."""
        now = time.monotonic()
        if now - self._committed_at < STORE_COMMIT_INTERVAL_S:
            return False
        self._committed_at = now
        try:
            self.stores.commit()
        except sqlite3.Error as exc:
            self._store_failed("all", f"commit: {str(exc)[:140]}")
            return False
        return True
