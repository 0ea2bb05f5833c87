"""The link's uplink: connections opened and closed, TC framing, the per-connection rate
limit, contact, SDLS-style authentication and replay protection, then routing
(:class:`~flight.subsystems.link.routing.Router`).

Authentication
    Every TC must carry the SDLS-style security header and MAC of :mod:`flight.spacelink.sdls`
    (HMAC-SHA256 with a per-ground-station key chosen by its SPI, CCSDS 355.0-B-2 manner)
    and a sequence number (ARSN) it has not accepted before. The station keys and their
    states are the onboard key store's (:mod:`~flight.subsystems.link.key_store`, seeded on
    the mission's first run with every ``*.key`` in ``config.keys_dir``, then changed by
    service 141); only an active key authenticates. The highest ARSN accepted per SPI is
    stored in :data:`REPLAY_STATE_FILE` in the run data directory before the TC is acted
    on, so a restarted link still refuses old numbers. A TC that fails (no security fields,
    unknown SPI, MAC mismatch, replayed or stale ARSN) gets TM[1,2] AUTHENTICATION_ERROR
    with the reason; one whose MAC checks under a key that is not active (pre-active, or
    deactivated: revoked) gets TM[1,2] KEY_NOT_ACTIVE. Either is counted (``tc_rejected``
    and ``tc_auth_failed``, the second also ``tc_key_not_active``), reported by an event
    (MEDIUM; HIGH for a key not active), and nothing of it is executed, not even a ping,
    nor is its sequence number admitted. The verdict goes down like every TM (to every
    connection). With ``config.unauthenticated_lab`` TCs carry no security fields and are
    not checked.

Order of checks per framed TC
    rate limit (``tc_rate_limited``: TM[1,2] RATE_LIMITED while the connection's report
    bucket allows, else only counted in ``tc_rate_limited_unreported``, so a flood cannot
    come back down as a flood of reports; :mod:`~flight.subsystems.link.connections`),
    contact (dropped, ``tc_dropped_no_contact``), authentication, then the route. Bytes that
    do not frame as a TC (garbage, bad CRC) cannot be answered (their request id is not
    trustworthy): they are discarded up to the next plausible header, counted
    (``tc_rejected``, ``bytes_discarded``) and reported by event; a partial packet left for
    :data:`STALL_S` without new bytes is discarded.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from spacepackets.ecss.tc import PusTc

from flight.spacelink.framing import OVERFLOW, Rejection
from flight.spacelink.keys import Kek
from flight.spacelink.sdls import Authenticated, AuthenticationError, ReplayGuard, StationKey, unprotect
from flight.subsystems.link import connections as conns
from flight.subsystems.link.connections import Connection, Connections
from flight.subsystems.link.key_store import KEYS_FILE, KeyStore
from flight.subsystems.link.routing import Reject, Router
from flight.subsystems.link.state import EventBudget, LinkCounters, LinkState

STALL_S = 2.0
"""Wall seconds a partial packet may wait for its remaining bytes before it is discarded."""
REPLAY_STATE_FILE = "link_replay.sqlite"
"""Anti-replay state (highest accepted ARSN per SPI) in the run data directory."""


class Authenticator:
    """The onboard key store (seeded with the key files' ``keys``, by SPI), the
    key-encryption keys ``keks`` (by id) that unwrap uploaded keys, and the replay guard;
    in ``lab`` mode nothing is checked."""

    def __init__(self, keys: dict[int, StationKey], lab: bool, keks: dict[int, Kek] | None = None) -> None:
        self.file_keys = keys
        self.keks = keks or {}
        self.lab = lab
        self.store: KeyStore | None = None
        self.replay: ReplayGuard | None = None

    def open(self, data_path: Path) -> None:
        """Open the key store (seeded on the mission's first run) and the replay state in
        ``data_path`` (not in lab mode).

        Raises:
            sqlite3.Error: either cannot be opened, or the store cannot be seeded.
        """
        if not self.lab:
            self.store = KeyStore(data_path / KEYS_FILE)
            self.store.seed(self.file_keys)
            self.replay = ReplayGuard(data_path / REPLAY_STATE_FILE)

    @property
    def mirror_failures(self) -> int:
        """Changes of the key store and the anti-replay state that reached their file but not
        its mirror (0 in lab mode)."""
        return sum(part.mirror_failures for part in (self.replay, self.store) if part is not None)

    def close(self) -> None:
        for part in (self.replay, self.store):
            if part is not None:
                part.close()
        self.replay = self.store = None

    def _check(self, tc: PusTc) -> Authenticated:
        auth = unprotect(tc, self.store.material)  # any state: a revoked key's own MAC is told from a forgery
        self.store.check_active(auth.spi)
        return auth

    def data(self, tc: PusTc) -> bytes:
        """The service data of ``tc`` once its MAC checks (the application data as it is in
        lab mode); its sequence number is not admitted.

        Raises:
            AuthenticationError: no security fields, an unknown SPI or a MAC mismatch;
                :class:`~flight.subsystems.link.key_store.KeyNotActive`: a key not active.
        """
        return bytes(tc.app_data) if self.lab else self._check(tc).data

    def admit(self, tcs: list[PusTc]) -> None:
        """Check each TC's MAC and admit its sequence number, stored before this returns
        (nothing in lab mode).

        Raises:
            AuthenticationError: a bad MAC or key, a key not active, or a replayed or stale
                sequence number (the earlier ones stay admitted).
            sqlite3.Error: the sequence number cannot be stored, so it is not admitted.
        """
        if self.lab:
            return
        for tc in tcs:
            auth = self._check(tc)
            self.replay.admit(auth.spi, auth.arsn)

    def accept(self, tc: PusTc) -> bytes:
        """:meth:`admit` ``tc`` and return its service data.

        Raises:
            AuthenticationError, sqlite3.Error: as :meth:`admit`.
        """
        if self.lab:
            return bytes(tc.app_data)
        auth = self._check(tc)
        self.replay.admit(auth.spi, auth.arsn)
        return auth.data


class Uplink:
    """Serves the ground connections' events and bytes (:meth:`service`) up to
    ``router.route`` for each TC that passes; refusals go through ``reject``, TCs over the
    rate through ``rate_limited`` (TM[1,2] only: they are counted here)."""

    def __init__(self, connections: Connections, state: LinkState, counters: LinkCounters, budget: EventBudget,
                 auth: Authenticator, router: Router, reject: Reject, rate_limited: Reject) -> None:
        self.connections = connections
        self._state = state
        self._counters = counters
        self._event = budget
        self._auth = auth
        self._router = router
        self._reject = reject
        self._rate_limited = rate_limited

    def service(self) -> None:
        """Connections opened and closed, uplink bytes, held-back downlink written."""
        table = self.connections.table
        for kind, identity, payload in self.connections.server.service():
            if kind == "connected":
                self._connected(identity, payload)
            elif kind == "closed":
                conn = self.connections.forget(identity)
                if conn is not None:
                    self._event("client_disconnected", peer=conn.peer, clients=len(table))
            elif (conn := table.get(identity)) is not None:  # else: bytes of a connection we closed
                self._counters.bytes_up += len(payload)
                conn.last_rx = time.monotonic()
                self._handle(conn, conn.parser.feed(payload))

    def flush_stalled(self, now: float) -> None:
        """Discard partial packets waiting longer than :data:`STALL_S` (called each tick)."""
        for conn in list(self.connections.table.values()):
            if conn.parser.buffered and now - conn.last_rx > STALL_S:
                self._handle(conn, conn.parser.flush_stalled())

    def _connected(self, identity: bytes, peer: str) -> None:
        if self.connections.open(identity, peer, time.monotonic()) is None:
            self._event("connection_refused", peer=peer, clients=len(self.connections),
                        limit=conns.MAX_CONNECTIONS)
            return
        self._event("client_connected", peer=peer, clients=len(self.connections))

    def _handle(self, conn: Connection, items: list[PusTc | Rejection]) -> None:
        for item in items:
            if isinstance(item, PusTc):
                self._on_tc(conn, item)
                continue
            self._counters.tc_rejected += 1
            self._counters.bytes_discarded += item.nbytes
            if item.reason == OVERFLOW:
                self._counters.buffer_overflows += 1
                self.connections.drop(conn.identity)
                self._event("buffer_overflow", peer=conn.peer, limit=conns.RX_BUFFER_BYTES)
            else:
                self._event("bytes_rejected", peer=conn.peer, nbytes=item.nbytes, why=item.reason)

    def _on_tc(self, conn: Connection, tc: PusTc) -> None:
        self._counters.tc_received += 1
        now = time.monotonic()
        if not conn.bucket.take(now):
            self._counters.tc_rate_limited += 1
            self._event("tc_rate_limited", peer=conn.peer, service=tc.service, subtype=tc.message_subtype,
                        rate=conns.TC_RATE_PER_S)
            if conn.report_bucket.take(now):
                self._rate_limited(conn, tc, "RATE_LIMITED", f"over {conns.TC_RATE_PER_S:g} TCs/s "
                                                             f"(bursts of {conns.TC_BURST:g}) on this connection")
            else:
                self._counters.tc_rate_limited_unreported += 1
            return
        if not self._state.contact:
            self._counters.tc_dropped_no_contact += 1
            self._event("tc_dropped_no_contact", peer=conn.peer, service=tc.service, subtype=tc.message_subtype)
            return
        try:
            data = self._auth.accept(tc)
        except AuthenticationError as exc:
            self._reject(conn, tc, exc.code, str(exc))
            return
        except sqlite3.Error as exc:  # not stored, so not admitted: acting on it would reopen replay
            self._reject(conn, tc, "EXECUTION_ERROR", f"cannot store the sequence number: {exc}")
            return
        self._router.route(conn, tc, data)
