"""Ground side of the space link: one TCP connection to the link manager, speaking the
CCSDS/PUS-C packets of :mod:`flight.spacelink.framing` and the PUS service modules beside it.

    with LinkClient("127.0.0.1:52001", full_dictionary(), key=load_key(keys_dir()),
                    tm_keys=verifying_keys(keys_dir())) as link:
        rtt_s = link.ping(timeout_s=5)
        for report in link.command("thermal.set_setpoint", {"setpoint_c": 30.0}, timeout_s=10):
            print(report.stage, report.code or "")
        report = link.receive(timeout_s=1)   # HkReport, EventReport, ... or None

Each client picks a random PUS source id (echoed as the destination id of the TM[1,x] and
TM[17,2] it provokes) and a random first sequence count, so several clients on one link
can tell their answers apart. Every TC is signed with the station ``key`` and a fresh
sequence number (:mod:`flight.spacelink.sdls`); ``key=None`` sends unsigned TCs, which only a
link in unauthenticated lab mode takes.

Every TM is checked with the telemetry keys ``tm_keys`` (:mod:`flight.spacelink.tm_sdls`):
a forged or altered one (MAC, SPI or shape wrong) is counted (:attr:`LinkClient.tm_forged`),
handed to :attr:`LinkClient.on_forged` (the archive keeps it apart, the ground CLI warns with
its APID and counts) and never decoded or delivered; a verified one is delivered as plain
PUS (its security fields stripped), once: a repeat of a sequence number already seen is
counted (:attr:`LinkClient.tm_repeated`) and not delivered again. ``tm_keys=None`` (lab mode)
takes TM as it comes.
"""

from __future__ import annotations

import random
import select
import socket
import time
from collections import deque
from typing import Any, Callable, Iterator, Mapping

from spacepackets.ecss.tc import PusTc

from flight.core.component import Dictionary
from flight.ground.archive import Archive
from flight.spacelink.sdls import ArsnCounter, StationKey, protect
from flight.spacelink.framing import (
    ACK_ALL,
    ACK_NONE,
    MAX_TM_LEN,
    SEQ_COUNT_MODULO,
    TmDecodeError,
    build_tc,
    parse_endpoint,
    request_id,
    split_tm_stream,
    tm_packet_ids,
)
from flight.spacelink.pus15_storage import DOWNLINK_ACK, StoreStatusReport, storage_tc
from flight.spacelink.pus17_test import PingReply, ping_tc
from flight.spacelink.pus1_verification import Verification
from flight.spacelink.pus8_functions import function_tc
from flight.spacelink.services import Report, decode_tm
from flight.spacelink.tm_sdls import LATE, REPEAT, SequenceWindow, TmAuthenticationError, TmVerifier, describe, strip

RECV_BYTES = 65536
MAX_RX_BUFFER = 4 * MAX_TM_LEN


class Rejected(Exception):
    """The satellite refused a TC at acceptance (TM[1,2]); ``report`` says why."""

    def __init__(self, report: Verification) -> None:
        super().__init__(f"{report.code}: {report.message}")
        self.report = report


class LinkClient:
    """A connection to the link manager at ``endpoint`` (``HOST:PORT``), signing its TCs
    with ``key`` (``None``: unsigned, for a link in unauthenticated lab mode) and verifying
    its TM with the telemetry keys ``tm_keys`` by SPI (``None``: not verified, lab mode).

    Raises:
        ValueError: a malformed endpoint.
        OSError: the link cannot be reached within ``connect_timeout_s`` (e.g.
            ``ConnectionRefusedError``).
    """

    def __init__(self, endpoint: str, dictionary: Dictionary, *, key: StationKey | None,
                 tm_keys: Mapping[int, StationKey] | None = None, connect_timeout_s: float = 5.0) -> None:
        host, port = parse_endpoint(endpoint)
        self.endpoint = endpoint
        self.dictionary = dictionary
        self.key = key
        self._arsn = ArsnCounter()
        self.sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        self.sock.setblocking(False)
        self.source_id = random.randint(1, 0xFFFF)
        self._seq = random.randrange(SEQ_COUNT_MODULO)
        self._packet_ids = tm_packet_ids(dictionary)
        self._buf = bytearray()
        self._reports: deque[Report] = deque()
        self.undecodable = 0
        """Packets or bytes received that did not decode as TM this ground knows."""
        self.tm_received = 0
        """TM packets framed on this connection (what :meth:`acknowledge` reports)."""
        self.verifier = None if tm_keys is None else TmVerifier(dict(tm_keys))
        self.window = SequenceWindow()
        self.tm_forged = 0
        """TM that failed verification: forged, altered, or not sealed at all."""
        self.tm_late = 0
        """Verified TM numbered below one already seen: playback or reordering."""
        self.tm_repeated = 0
        """Verified TM whose sequence number was seen before: re-sent or replayed, not delivered again."""
        self.on_packet: Callable[[bytes, Report | None], None] | None = None
        """Called with every framed packet that is genuine (verified, or any in lab mode), as
        received (security fields included), and its report (``None``: not decoded, or
        undecodable) as it arrives, e.g. :meth:`flight.ground.archive.Archive.add`."""
        self.on_forged: Callable[[bytes, str], None] | None = None
        """Called with every packet that failed verification and why, e.g.
        :meth:`flight.ground.archive.Archive.add_forged`."""
        self.on_sent: Callable[[PusTc, int], None] | None = None
        """Called with every TC (before signing) and its request id once sent, e.g.
        :meth:`flight.ground.archive.Archive.command_sent`; not with downlink acknowledgements
        (:meth:`acknowledge`), which are the link's bookkeeping, not commands."""
        self.archive: Archive | None = None

    def __enter__(self) -> "LinkClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()
        if self.archive is not None:
            self.archive.close()
            self.archive = None

    def keep_in(self, archive: Archive) -> None:
        """Archive every packet received and TC sent from now on; the archive closes with
        this client."""
        self.archive = archive
        self.on_packet = archive.add
        self.on_forged = archive.add_forged
        self.on_sent = archive.command_sent

    # -- sending -----------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % SEQ_COUNT_MODULO
        return self._seq

    def send(self, tc: PusTc) -> int:
        """Sign (unless this client has no key) and send one TC; return its PUS request id (u32).

        Raises:
            OSError: the connection is broken.
        """
        sent = self.signed(tc)
        self.sock.sendall(sent.pack())
        req = request_id(sent)
        if self.on_sent is not None:
            self.on_sent(tc, req)
        return req

    def ping(self, timeout_s: float) -> float:
        """Send TC[17,1] and wait for its TM[17,2]; return the round trip in seconds.

        Raises:
            Rejected: the satellite refused the TC (e.g. AUTHENTICATION_ERROR).
            TimeoutError: no reply within ``timeout_s``.
            ConnectionError: the link closed the connection.
        """
        return self._ping(timeout_s)[0]

    def onboard_utc(self, timeout_s: float) -> float:
        """Onboard UTC (Unix seconds) now, read from the time field of a TM[17,2], plus half
        the round trip. Raises as :meth:`ping`."""
        rtt_s, reply = self._ping(timeout_s)
        return reply.utc_unix_s + rtt_s / 2

    def _ping(self, timeout_s: float) -> tuple[float, PingReply]:
        started = time.monotonic()
        req = self.send(ping_tc(seq_count=self._next_seq(), source_id=self.source_id))
        deadline = started + timeout_s
        while (report := self.receive(deadline - time.monotonic())) is not None:
            if isinstance(report, PingReply) and report.dest_id == self.source_id:
                return time.monotonic() - started, report
            if (isinstance(report, Verification) and report.request_id == req and report.dest_id == self.source_id
                    and not report.ok):
                raise Rejected(report)
        raise TimeoutError(f"no TM[17,2] within {timeout_s:g} s")

    def function(self, qualified: str, args: Mapping[str, Any], ack_flags: int = ACK_ALL) -> PusTc:
        """An unsigned TC[8,1] ``qualified(**args)`` from this client.

        Raises:
            CommandError: the command or its arguments do not encode.
        """
        return function_tc(self.dictionary, qualified, args, seq_count=self._next_seq(), source_id=self.source_id,
                           ack_flags=ack_flags)

    def signed(self, tc: PusTc) -> PusTc:
        """``tc`` as this client would send it (signed with a fresh sequence number unless
        unauthenticated), e.g. to embed in a TC[11,4]."""
        return tc if self.key is None else protect(tc, self.key, self._arsn.next())

    def tc(self, service: int, subtype: int, data: bytes = b"", ack_flags: int = ACK_ALL) -> PusTc:
        """An unsigned TC[service,subtype] from this client (next sequence count, its source id)."""
        return build_tc(service, subtype, data, seq_count=self._next_seq(), source_id=self.source_id,
                        ack_flags=ack_flags)

    def request(self, service: int, subtype: int, data: bytes, timeout_s: float,
                ack_flags: int = ACK_ALL) -> Iterator[Report]:
        """Send TC[service,subtype] with ``data`` and yield what answers it as it arrives: its
        verification reports and the reports it asks for (TM[3,10], TM[5,8], TM[11,10],
        TM[15,13], TM[20,2], TM[141,132], TM[141,135] addressed to this client's source id: every connection gets
        every TM), up to the final verification.

        Raises:
            TimeoutError: no final report within ``timeout_s`` of sending.
            ConnectionError: the link closed the connection.
        """
        from flight.spacelink.pus11_scheduling import ScheduleReport
        from flight.spacelink.pus141_keys import KeyInventoryReport, KeyVerificationReport
        from flight.spacelink.pus20_parameters import ParameterReport
        from flight.spacelink.pus3_housekeeping import HkStructureReport
        from flight.spacelink.pus5_events import DisabledEventsReport

        req = self.send(self.tc(service, subtype, data, ack_flags))
        yield from self._answers(req, timeout_s, f"TC[{service},{subtype}]", (
            HkStructureReport, DisabledEventsReport, ScheduleReport, ParameterReport, StoreStatusReport,
            KeyVerificationReport, KeyInventoryReport))

    def command(self, qualified: str, args: Mapping[str, Any], timeout_s: float,
                ack_flags: int = ACK_ALL) -> Iterator[Verification]:
        """Send TC[8,1] for ``qualified(**args)`` and yield its verification reports as they
        arrive, up to and including the final one (completed, or any failure).

        Raises:
            CommandError: the command or its arguments do not encode (nothing was sent).
            TimeoutError: no final report within ``timeout_s`` of sending.
            ConnectionError: the link closed the connection.
        """
        req = self.send(self.function(qualified, args, ack_flags))
        yield from self._answers(req, timeout_s, qualified, ())

    def _answers(self, req: int, timeout_s: float, what: str, reports: tuple[type, ...]) -> Iterator[Report]:
        """Yield the verification reports of request ``req`` to this client, and any report of
        the types ``reports``, until its final verification.

        Raises:
            TimeoutError: no final report within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while (report := self.receive(deadline - time.monotonic())) is not None:
            if isinstance(report, Verification) and report.request_id == req and report.dest_id == self.source_id:
                yield report
                if report.final:
                    return
            elif reports and isinstance(report, reports) and report.dest_id == self.source_id:
                yield report
        raise TimeoutError(f"no final verification of {what} within {timeout_s:g} s")

    # -- receiving ---------------------------------------------------------------------
    def receive(self, timeout_s: float) -> Report | None:
        """The next decoded TM report, waiting up to ``timeout_s``; ``None`` on timeout.

        Raises:
            ConnectionError: the link closed the connection.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._reports:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                return None
            chunk = self.sock.recv(RECV_BYTES)
            if not chunk:
                raise ConnectionError(f"the link at {self.endpoint} closed the connection")
            self._take(chunk)
        return self._reports.popleft()

    def read(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for bytes and take what arrived, for :attr:`on_packet`
        only (nothing is queued for :meth:`receive`); return how many packets it framed.

        Raises:
            ConnectionError: the link closed the connection.
        """
        if not select.select([self.sock], [], [], max(0.0, timeout_s))[0]:
            return 0
        chunk = self.sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionError(f"the link at {self.endpoint} closed the connection")
        before = self.tm_received
        self._take(chunk, queue=False)
        return self.tm_received - before

    def _take(self, chunk: bytes, queue: bool = True) -> None:
        self._buf += chunk
        packets, consumed, skipped = split_tm_stream(self._buf, self._packet_ids)
        del self._buf[:consumed]
        self.undecodable += skipped
        if len(self._buf) > MAX_RX_BUFFER:  # a bogus length field that would never complete
            self.undecodable += len(self._buf)
            self._buf.clear()
        for packet in packets:
            self.tm_received += 1
            plain, deliver = packet, queue
            if self.verifier is not None:
                try:
                    verified = self.verifier.verify(packet)
                except TmAuthenticationError as exc:
                    self.tm_forged += 1
                    if self.on_forged is not None:
                        self.on_forged(packet, f"{describe(packet)}: {exc}")
                    continue
                seen = self.window.admit(verified.spi, verified.sn)
                self.tm_late += seen == LATE
                self.tm_repeated += seen == REPEAT
                deliver = queue and seen != REPEAT
                if deliver:
                    plain = strip(packet)
            report = None
            if deliver:  # only :meth:`receive` needs every packet decoded here
                try:
                    report = decode_tm(self.dictionary, plain)
                except TmDecodeError:
                    self.undecodable += 1
                else:
                    self._reports.append(report)
            if self.on_packet is not None:
                self.on_packet(packet, report)

    def acknowledge(self) -> None:
        """Tell the link how many TM packets this connection has received (TC[15,130]), so
        it stops holding the stored ones among them for re-sending (:mod:`flight.subsystems.link.packet_stores`);
        the first one also asks for the stored backlog. Only failures are reported back.
        Not passed to :attr:`on_sent` (an archiving connection sends one every half second).

        Raises:
            OSError: the connection is broken.
        """
        tc = storage_tc(DOWNLINK_ACK, received=self.tm_received, seq_count=self._next_seq(), source_id=self.source_id,
                        ack_flags=ACK_NONE)
        self.sock.sendall(self.signed(tc).pack())
