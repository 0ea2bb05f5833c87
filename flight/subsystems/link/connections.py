"""The link's ground connections: its TCP server (:mod:`flight.subsystems.link.stream_server`),
the table of open connections with each one's own state, and writing TM to one of them.

Bounds: :data:`MAX_CONNECTIONS` clients (more are refused and counted); one partial TC per
connection of at most :data:`RX_BUFFER_BYTES` (``TcStreamParser``: overflow drops the
connection); each connection may send :data:`TC_RATE_PER_S` TCs per wall second with bursts
of :data:`TC_BURST` (its :class:`TokenBucket`, which the uplink checks before any
authentication work). A TC over the rate gets TM[1,2] RATE_LIMITED as long as the
connection's second bucket allows (:data:`RATE_LIMIT_REPORTS_PER_S`, bursts of
:data:`RATE_LIMIT_REPORT_BURST`); past that a flood is only counted, so that it cannot come
back down as a flood of reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flight.spacelink.framing import MAX_TC_LEN, TcStreamParser
from flight.subsystems.link.state import LinkCounters
from flight.subsystems.link.stream_server import Sent, StreamServer

MAX_CONNECTIONS = 4
RX_BUFFER_BYTES = 4 * MAX_TC_LEN
"""Per-connection receive buffer cap (a partial TC waiting for its remaining bytes)."""
TC_RATE_PER_S = 10.0
TC_BURST = 20.0
"""Per-connection TC token bucket: sustained TCs per wall second, and the burst allowed."""
RATE_LIMIT_REPORTS_PER_S = TC_RATE_PER_S
RATE_LIMIT_REPORT_BURST = TC_BURST
"""Per-connection bucket of TM[1,2] RATE_LIMITED reports: a ground sending up to twice the
TC rate hears about every TC it sent too many; a flood past that is counted
(``tc_rate_limited_unreported``) and not answered."""


@dataclass
class TokenBucket:
    """``rate`` tokens per wall second, at most ``burst`` saved up; one token per TC."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Connection:
    identity: bytes
    peer: str
    parser: TcStreamParser
    last_rx: float
    """Wall (monotonic) s of its latest bytes."""
    bucket: TokenBucket
    """TCs it may send."""
    report_bucket: TokenBucket
    """RATE_LIMITED reports it may be answered with."""
    tm_count: int = 0
    """TM packets written to this connection so far (what TC[15,130] acknowledges)."""
    archiving: bool = False
    """It has sent a TC[15,130]: a ground that archives and acknowledges, so it is sent the
    stored backlog and holds what it was sent until it acknowledges it."""


class Connections:
    """The server on ``host:port`` (port 0: any free one, see ``endpoint``), once started, and
    its open connections by identity. ``on_forget(identity)`` is told of every connection
    dropped from the table (closed by the peer, by the link, or found gone while writing)."""

    def __init__(self, host: str, port: int, counters: LinkCounters, on_forget: Callable[[bytes], None]) -> None:
        self._address = (host, port)
        self.server: StreamServer | None = None
        self.endpoint = ""
        """``HOST:PORT`` actually bound."""
        self.table: dict[bytes, Connection] = {}
        self._counters = counters
        self._on_forget = on_forget

    def start(self) -> None:
        """Bind and listen.

        Raises:
            OSError: the address cannot be bound.
        """
        self.server = StreamServer(*self._address)
        self.endpoint = self.server.endpoint

    def __len__(self) -> int:
        return len(self.table)

    def fileno(self) -> int:
        return self.server.fileno()

    def open(self, identity: bytes, peer: str, now: float) -> Connection | None:
        """A new connection, or ``None`` when :data:`MAX_CONNECTIONS` are open (it is closed
        and counted in ``connections_refused``)."""
        if len(self.table) >= MAX_CONNECTIONS:
            self._counters.connections_refused += 1
            self.server.close(identity)
            return None
        conn = Connection(identity, peer, TcStreamParser(RX_BUFFER_BYTES), now,
                          TokenBucket(TC_RATE_PER_S, TC_BURST, TC_BURST, now),
                          TokenBucket(RATE_LIMIT_REPORTS_PER_S, RATE_LIMIT_REPORT_BURST, RATE_LIMIT_REPORT_BURST, now))
        self.table[identity] = conn
        return conn

    def forget(self, identity: bytes) -> Connection | None:
        """Drop a connection from the table (the socket is not touched)."""
        conn = self.table.pop(identity, None)
        if conn is not None:
            self._on_forget(identity)
        return conn

    def drop(self, identity: bytes) -> None:
        """Forget a connection and close its socket."""
        self.forget(identity)
        self.server.close(identity)

    def write(self, identity: bytes, packets: list[bytes]) -> bool:
        """Write TM packets to one connection in one write (TCP is a byte stream, so the
        ground frames them apart); whether they went, all or none (counted ``tm_sent`` or
        ``tm_dropped``)."""
        data = packets[0] if len(packets) == 1 else b"".join(packets)
        sent = self.server.send(identity, data)
        if sent is not Sent.SENT:  # its send buffer is full, or it closed under us
            self._counters.tm_dropped += len(packets)
            if sent is Sent.GONE:
                self.forget(identity)
            return False
        conn = self.table.get(identity)
        if conn is not None:
            conn.tm_count += len(packets)
        self._counters.tm_sent += len(packets)
        self._counters.bytes_down += len(data)
        return True

    def close_all(self) -> None:
        if self.server is not None:
            self.server.close_all()
            self.server = None
