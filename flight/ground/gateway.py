"""The ground gateway: the ground station's front end for any standard PUS ground tool
(``flight ground gateway``).

    tool ──plain PUS-C TC──▶ gateway ──TC + security header + MAC──▶ satellite link
    tool ◀──plain PUS-C TM── gateway ◀──TM + security header + MAC─── satellite link
                               └──▶ ground archive   (--playback: ──TC[15,130]──▶ link)

Client side
    A TCP server (loopback unless told otherwise) speaking the link's own transport: a byte
    stream of CCSDS Space Packets (CCSDS 133.0-B-2) carrying PUS-C (ECSS-E-ST-70-41C), framed
    by the primary header's packet length field and nothing else, so a generic CCSDS/PUS TCP
    client (tmtccmd's TCP communication interface, a ``spacepackets`` script) talks to it as
    it would to the satellite in lab mode. A client sends plain TCs, without the security
    fields; everything about them (APID, sequence count, source id, ack flags) is kept, so
    their PUS request ids and the satellite's verification reports match what the client sent.
    At most :data:`MAX_CLIENTS` at once.

Signing
    Each TC is wrapped with the SDLS-style security header and MAC of
    :mod:`flight.spacelink.sdls` (the station key, a fresh anti-replay sequence number of
    :class:`~flight.spacelink.sdls.ArsnCounter`) by :class:`~flight.ground.client.LinkClient`,
    then sent on the gateway's one connection to the satellite. The satellite's per-connection
    rate limit therefore applies to all clients together.

Telemetry
    Every TM packet from the satellite is verified with the telemetry keys
    (:mod:`flight.spacelink.tm_sdls`, by the gateway's :class:`~flight.ground.client.LinkClient`):
    a genuine one goes, its security fields stripped (plain PUS-C, as a lab-mode satellite
    sends, with its own headers, counters and time), to every connected client, in the order
    it came, and into the ground archive (:mod:`flight.ground.archive`, which checks it
    again and keeps each packet once). A forged or altered one goes to no client: it is counted
    (``tm_forged``), kept apart in the archive and reported by a warning line naming its APID
    and sequence count. By default that is real-time telemetry only: the gateway sends no
    downlink acknowledgements (TC[15,130]), and the stored backlog of the passes (PUS 15
    packet stores, :mod:`flight.subsystems.link.downlink`) goes to an archiving connection
    beside it (``flight ground listen``).

Playback (``playback=True``, ``--playback``; ``flight ground yamcs`` turns it on)
    The gateway's connection to the link becomes an archiving one: once the satellite is heard
    and at least one client is connected (so the backlog reaches a tool, not only the archive),
    it acknowledges what it received the way ``flight ground listen`` does
    (:class:`~flight.ground.archive.DownlinkAcknowledger`: the archive committed first, at
    most every :data:`~flight.ground.archive.ACK_INTERVAL_S`, and once more on closing). The
    link then sends it the stored backlog, housekeeping and events recorded while nobody was
    listening, each packet with the CDS time it was sampled at, interleaved with real-time
    TM; the gateway verifies, relays and archives them like any TM. A ground tool tells them
    apart by the packet time (Yamcs' archive files them by it). Off by default: every
    archiving connection is sent the backlog, so beside a ``flight ground listen`` the packets
    come down twice, and an acknowledged packet counts as delivered on board.

Contact: a probe, then forward or refuse (never hold for a pass)
    The satellite drops TCs silently outside contact. The gateway counts it as heard while
    its connection is up and a TM came within :data:`CONTACT_QUIET_S`, and forwards at once.
    A TC arriving while the link is connected but quiet (housekeeping may come only every
    ``link.hk_interval_s``) waits while the gateway sends its own TC[17,1] (ack flags 0000,
    its own source id): any TM within :data:`PROBE_TIMEOUT_S` and the waiting TCs go, in
    order; none and they are refused. A TC arriving with no connection to the link is
    refused at once. Refused means not forwarded and not queued (a command held for the next
    pass would run at a time nobody chose): the gateway answers it itself with a TM[1,2]
    acceptance failure, code BUSY, failure data starting ``gateway:``. At most
    :data:`MAX_WAITING` TCs wait for a probe (more are refused). A plain TC whose data would
    not fit once signed gets TM[1,2] FORMAT_ERROR the same way. These local reports
    come from :data:`GATEWAY_APID`, with that APID's own sequence count, and go to every
    client (their destination id is the TC's source id), so the satellite's APIDs stay
    gap-free and every client sees the gateway APID gap-free too.

Garbage
    A client whose bytes do not frame as PUS-C TCs (not a TC header, bad CRC, a length over
    :data:`~flight.spacelink.framing.MAX_TC_LEN`, a packet left incomplete for
    :data:`STALL_S`) is disconnected and counted; nothing of it is forwarded and the other
    clients go on. A client that stops reading is cut off once
    :data:`~flight.subsystems.link.stream_server.SEND_BUFFER_BYTES` of TM wait for it (the
    client side is the link's own non-blocking TCP server,
    :class:`~flight.subsystems.link.stream_server.StreamServer`).

Link
    The gateway connects to the satellite's link at start and again after every loss (a pass
    ending with the connection, a satellite restart), waiting :data:`RECONNECT_MIN_S`
    doubling up to :data:`RECONNECT_MAX_S` between tries; it never exits on its own.
"""

from __future__ import annotations

import selectors
import sqlite3
import time
from dataclasses import dataclass, field, fields

from spacepackets.ecss.tc import PusTc

from flight.core.component import Dictionary
from flight.ground.archive import COMMIT_INTERVAL_S, Archive, DownlinkAcknowledger, forged_warning
from flight.ground.client import LinkClient
from flight.spacelink.framing import ACK_NONE, GATEWAY_APID, MAX_TC_APP_DATA, Rejection, TcStreamParser, TmFramer, parse_endpoint
from flight.spacelink.pus17_test import PING, TEST_SERVICE
from flight.spacelink.pus1_verification import verification_report
from flight.spacelink.sdls import StationKey
from flight.spacelink.tm_sdls import strip
from flight.subsystems.link.stream_server import Sent, StreamServer

MAX_CLIENTS = 8
CONTACT_QUIET_S = 5.0
"""Wall seconds after the last TM during which the satellite counts as heard (in contact)."""
PROBE_TIMEOUT_S = 5.0
"""Wall seconds a probe TC[17,1] waits for any TM before the TCs waiting on it are refused:
in contact the link answers within a tick."""
MAX_WAITING = 64
STALL_S = 2.0
"""Wall seconds a client's partial packet may wait for the rest before it counts as garbage."""
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 8.0
NO_LINK = "gateway: no connection to the satellite's link, TC not forwarded"
NOT_HEARD = f"gateway: satellite did not answer a probe within {PROBE_TIMEOUT_S:g} s (no contact), TC not forwarded"


@dataclass
class GatewayCounters:
    """What the gateway has done since it started (the summary on exit)."""

    clients_accepted: int = 0
    clients_refused: int = 0
    """Connections over :data:`MAX_CLIENTS`, closed at once."""
    clients_garbage: int = 0
    """Clients disconnected for bytes that are not PUS-C TCs."""
    clients_slow: int = 0
    """Clients cut off for not reading their TM."""
    garbage_bytes: int = 0
    tc_forwarded: int = 0
    tc_refused: int = 0
    """TCs answered by the gateway itself with TM[1,2] (not heard, too large, send failed)."""
    probes: int = 0
    """TC[17,1] the gateway sent to learn whether the satellite is in contact."""
    tm_relayed: int = 0
    """Genuine TM packets received from the satellite (each goes to every client)."""
    tm_forged: int = 0
    """TM packets that failed verification: relayed to nobody."""
    playbacks: int = 0
    """Link connections made archiving (playback: the stored backlog asked for)."""
    link_connects: int = 0
    link_losses: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Client:
    identity: bytes
    peer: str
    parser: TcStreamParser = field(default_factory=TcStreamParser)
    last_rx: float = 0.0
    tcs: int = 0


class Gateway:
    """Listens on ``listen`` (``HOST:PORT``, port 0: any free one, see :attr:`endpoint`) for
    PUS tools and relays to the satellite's link at ``link``, signing with ``key`` and
    verifying TM with the telemetry keys ``tm_keys`` (both ``None``: unsigned and unverified,
    for a satellite in unauthenticated lab mode); keeps
    every TM in ``archive`` (``None``: not archived). ``dictionary`` frames and decodes the
    satellite's TM. ``playback``: acknowledge what arrives, so the stored backlog comes too
    (module docstring, Playback). Call :meth:`step` in a loop, then :meth:`close`.

    Raises:
        ValueError: a malformed endpoint.
        OSError: ``listen`` cannot be bound.
    """

    def __init__(self, listen: str, link: str, key: StationKey | None, dictionary: Dictionary,
                 archive: Archive | None = None, connect_timeout_s: float = 5.0,
                 tm_keys: dict[int, StationKey] | None = None, playback: bool = False) -> None:
        host, port = parse_endpoint(listen)
        parse_endpoint(link)
        self.link_endpoint = link
        self.counters = GatewayCounters()
        self._key = key
        self._tm_keys = tm_keys
        self._dictionary = dictionary
        self.archive = archive
        """Where every TM and forwarded TC is kept (``None``: nowhere); used only from the
        thread that steps the gateway, as SQLite requires."""
        self._connect_timeout_s = connect_timeout_s
        self._framer = TmFramer()
        self._server = StreamServer(host, port)
        self.endpoint = self._server.endpoint
        """``HOST:PORT`` actually bound."""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ, "clients")
        self.clients: dict[bytes, Client] = {}
        self.link: LinkClient | None = None
        self._next_try = 0.0
        self._backoff_s = RECONNECT_MIN_S
        self._last_tm = -float("inf")
        self._committed = time.monotonic()
        self._waiting: list[PusTc] = []
        """TCs that arrived while the link was quiet, waiting on the probe."""
        self._probe_deadline: float | None = None
        self._notes: list[str] = []
        """Lines from the link's callbacks, returned by the next :meth:`step`."""
        self.playback = playback
        self._acks: DownlinkAcknowledger | None = None
        """The link connection's acknowledgements once it is archiving (playback only)."""

    # -- state ----------------------------------------------------------------------------
    def heard(self, now: float | None = None) -> bool:
        """Whether TCs are forwarded now: the link is connected and a TM came within
        :data:`CONTACT_QUIET_S`."""
        now = time.monotonic() if now is None else now
        return self.link is not None and now - self._last_tm < CONTACT_QUIET_S

    def status(self) -> str:
        """One line: link state, clients, counters."""
        c = self.counters
        link = "heard" if self.heard() else "connected, not heard" if self.link else "not connected"
        return (f"link {self.link_endpoint} {link}; {len(self.clients)} client(s); TC forwarded {c.tc_forwarded}, "
                f"refused {c.tc_refused}; TM relayed {c.tm_relayed}; garbage {c.garbage_bytes} B from "
                f"{c.clients_garbage} client(s); TM forged or altered {c.tm_forged}")

    # -- running --------------------------------------------------------------------------
    def step(self, timeout_s: float) -> list[str]:
        """Connect to the link if it is due, wait up to ``timeout_s`` for sockets, serve them;
        return what changed, as lines."""
        lines: list[str] = []
        now = time.monotonic()
        if self.link is None and now >= self._next_try:
            self._connect_link(lines)
        ready = {key.data for key, _ in self._selector.select(timeout_s)}
        if "link" in ready:
            self._read_link(lines)
            lines += self._notes
            self._notes.clear()
        self._serve_clients(lines)  # also writes what waits for a client whose socket takes it now
        self._settle_waiting(lines)
        if self.playback:
            self._acknowledge(lines)
        now = time.monotonic()
        for client in list(self.clients.values()):
            if client.parser.buffered and now - client.last_rx > STALL_S:
                self._take(client, client.parser.flush_stalled(), lines)
        if self.archive is not None and now - self._committed >= COMMIT_INTERVAL_S:
            # the archive commits as packets arrive; this keeps the last ones of a burst from waiting
            self._committed = now
            try:
                self.archive.commit()
            except sqlite3.Error as exc:
                lines.append(f"ground archive {self.archive.path}: {exc}")
        return lines

    def close(self) -> None:
        """Close every connection and the listener (the archive is the caller's); with
        playback, acknowledge what arrived first (what is not acknowledged stays on board for
        the next archiving connection, so this only saves sending it again)."""
        if self._acks is not None:
            try:
                self._acks.finish()
            except (OSError, sqlite3.Error):
                pass  # closing anyway: the satellite sends the unacknowledged packets again, the archive keeps them once
        self._close_link()
        self._selector.close()
        self._server.close_all()
        self.clients.clear()

    # -- link -----------------------------------------------------------------------------
    def _connect_link(self, lines: list[str]) -> None:
        try:
            link = LinkClient(self.link_endpoint, self._dictionary, key=self._key, tm_keys=self._tm_keys,
                              connect_timeout_s=self._connect_timeout_s)
        except OSError as exc:
            self._next_try = time.monotonic() + self._backoff_s
            if self._backoff_s == RECONNECT_MIN_S:  # the first failure says so; the retries go on quietly
                lines.append(f"link {self.link_endpoint} not reachable ({exc}); trying again every "
                             f"{RECONNECT_MIN_S:g} s doubling up to {RECONNECT_MAX_S:g} s")
            self._backoff_s = min(RECONNECT_MAX_S, self._backoff_s * 2)
            return
        link.on_packet = self._relay
        link.on_forged = self._forged
        if self.archive is not None:
            link.on_sent = self.archive.command_sent
        self.link = link
        self._backoff_s = RECONNECT_MIN_S
        self._selector.register(link.sock, selectors.EVENT_READ, "link")
        self.counters.link_connects += 1
        lines.append(f"connected to the link at {self.link_endpoint}")

    def _close_link(self) -> None:
        self._acks = None  # a new connection starts real-time only, until it acknowledges in turn
        if self.link is not None:
            self._selector.unregister(self.link.sock)
            self.link.close()
            self.link = None

    def _lost_link(self, why: str, lines: list[str]) -> None:
        self._close_link()
        self.counters.link_losses += 1
        self._last_tm = -float("inf")
        self._next_try = time.monotonic() + self._backoff_s
        lines.append(f"link {self.link_endpoint} lost ({why}); next try in {self._backoff_s:g} s")

    def _acknowledge(self, lines: list[str]) -> None:
        """Playback: make the link connection archiving once the satellite is heard and a
        client is connected, then acknowledge what arrived as it becomes due."""
        try:
            if self._acks is None:
                if self.heard() and self.clients:
                    self._acks = DownlinkAcknowledger(self.link, self.archive)
                    self._acks.start()
                    self.counters.playbacks += 1
                    lines.append("playback: asked the link for the stored backlog (TC[15,130])")
            else:
                self._acks.due()
        except OSError as exc:
            self._lost_link(str(exc), lines)
        except sqlite3.Error as exc:  # not acknowledged: the satellite keeps those packets for the next try
            lines.append(f"ground archive {self.archive.path}: {exc}")

    def _read_link(self, lines: list[str]) -> None:
        try:
            self.link.read(0)
        except OSError as exc:  # ConnectionError included: the satellite closed or restarted
            self._lost_link(str(exc), lines)

    def _relay(self, packet: bytes, _report: object) -> None:
        """A genuine TM (verified by the link client): archived, and relayed as plain PUS-C."""
        self.counters.tm_relayed += 1
        self._last_tm = time.monotonic()
        if self.archive is not None:
            self.archive.add(packet)
        self._broadcast(packet if self._tm_keys is None else strip(packet))

    def _forged(self, packet: bytes, why: str) -> None:
        """A TM that failed verification: counted, archived apart, reported, relayed to nobody."""
        self.counters.tm_forged += 1
        if self.archive is not None:
            self.archive.add_forged(packet, why)
        self._notes.append(forged_warning(why))

    # -- clients --------------------------------------------------------------------------
    def _serve_clients(self, lines: list[str]) -> None:
        for kind, identity, payload in self._server.service():
            if kind == "connected":
                if len(self.clients) >= MAX_CLIENTS:
                    self._server.close(identity)
                    self.counters.clients_refused += 1
                    lines.append(f"refused {payload}: {MAX_CLIENTS} clients already connected")
                    continue
                self.clients[identity] = Client(identity, payload, last_rx=time.monotonic())
                self.counters.clients_accepted += 1
                lines.append(f"client {payload} connected ({len(self.clients)} now)")
            elif kind == "closed":
                client = self.clients.pop(identity, None)
                if client is not None:
                    lines.append(f"client {client.peer} disconnected after {client.tcs} TC(s) "
                                 f"({len(self.clients)} now)")
            elif (client := self.clients.get(identity)) is not None:  # else: bytes of one cut off just now
                client.last_rx = time.monotonic()
                self._take(client, client.parser.feed(payload), lines)

    def _drop(self, client: Client) -> None:
        if self.clients.pop(client.identity, None) is not None:
            self._server.close(client.identity)

    def _take(self, client: Client, items: list[PusTc | Rejection], lines: list[str]) -> None:
        for item in items:
            if isinstance(item, Rejection):
                self.counters.garbage_bytes += item.nbytes
                self.counters.clients_garbage += 1
                self._drop(client)
                lines.append(f"client {client.peer} disconnected: {item.nbytes} byte(s) that are not a PUS-C TC "
                             f"({item.reason}); nothing of it forwarded")
                return
            client.tcs += 1
            self._forward(item, lines)

    def _forward(self, tc: PusTc, lines: list[str]) -> None:
        if len(tc.app_data) > MAX_TC_APP_DATA:
            self._refuse(tc, "FORMAT_ERROR", f"gateway: {len(tc.app_data)} bytes of application data exceed "
                                             f"{MAX_TC_APP_DATA}, TC not forwarded")
            return
        if self.link is None:
            self._refuse(tc, "BUSY", NO_LINK)
        elif self.heard():
            self._send(tc, lines)
        elif len(self._waiting) >= MAX_WAITING:
            self._refuse(tc, "BUSY", f"gateway: {MAX_WAITING} TCs already wait for the satellite to answer, "
                                     "TC not forwarded")
        else:
            self._waiting.append(tc)
            if self._probe_deadline is None:
                self._probe_deadline = time.monotonic() + PROBE_TIMEOUT_S
                self.counters.probes += 1
                self._send(self.link.tc(TEST_SERVICE, PING, ack_flags=ACK_NONE), lines, probe=True)

    def _send(self, tc: PusTc, lines: list[str], probe: bool = False) -> None:
        try:
            self.link.send(tc)
        except OSError as exc:
            if not probe:
                self._refuse(tc, "BUSY", f"gateway: sending to the satellite failed ({exc}), TC not forwarded")
            self._lost_link(str(exc), lines)
            return
        if not probe:
            self.counters.tc_forwarded += 1

    def _settle_waiting(self, lines: list[str]) -> None:
        """Forward the TCs waiting on a probe once the satellite is heard; refuse them when
        it did not answer in time or the link is gone."""
        if not self._waiting:
            self._probe_deadline = None
            return
        if self.heard():
            waiting, self._waiting, self._probe_deadline = self._waiting, [], None
            for tc in waiting:
                if self.link is None:
                    self._refuse(tc, "BUSY", NO_LINK)
                else:
                    self._send(tc, lines)
        elif self.link is None or time.monotonic() >= self._probe_deadline:
            waiting, self._waiting, self._probe_deadline = self._waiting, [], None
            for tc in waiting:
                self._refuse(tc, "BUSY", NO_LINK if self.link is None else NOT_HEARD)

    def _refuse(self, tc: PusTc, code: str, message: str) -> None:
        """TM[1,2] from the gateway itself about ``tc``, to every client."""
        self.counters.tc_refused += 1
        self._broadcast(verification_report(self._framer, 2, tc, utc_unix_s=time.time(), code=code,
                                            message=message, apid=GATEWAY_APID))

    def _broadcast(self, packet: bytes) -> None:
        for client in list(self.clients.values()):
            sent = self._server.send(client.identity, packet)
            if sent is Sent.FULL:  # it stopped reading: cut off rather than hold the satellite's TM for it
                self.counters.clients_slow += 1
                self._drop(client)
            elif sent is Sent.GONE:
                self.clients.pop(client.identity, None)
