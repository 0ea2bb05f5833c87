"""Space Packet framing and the time code: the transport under every PUS service of the space
link, for both the satellite (:mod:`flight.subsystems.link.manager`) and the ground
(:mod:`flight.ground.client`).

Transport
    A TCP byte stream of CCSDS Space Packets (CCSDS 133.0-B-2), each carrying an ECSS PUS-C
    packet (ECSS-E-ST-70-41C): telecommands (TC) up, telemetry (TM) down, no other framing.
    Packets are built and read with the ``spacepackets`` library; every packet has the
    PUS-C packet error control field (CRC-16/CCITT-FALSE, "ibm_3740" in ``fastcrc``).

APIDs (11 bits)
    A component's APID is its dictionary ``component_id`` (1..127), so the ground can tell
    the source of every TM from the primary header alone:

    * all TCs go to one onboard application process, the link manager: :data:`TC_APID` (4);
    * TM[1,x] verification and TM[17,2] ping replies come from :data:`TC_APID`;
    * TM[3,25] housekeeping and TM[5,x] events carry the APID of the component they describe.

Time field
    Every TM secondary header ends with a 7-byte CDS time code (CCSDS 301.0-B-4 3.3): the
    P-field byte :data:`CDS_P_FIELD` (0x40: CDS, agency epoch 1958-01-01, 16-bit day, no
    sub-millisecond field), then the 6-byte T-field, u16 days since 1958-01-01 and u32
    milliseconds of that day (UTC, no leap seconds): the onboard UTC at which the content
    was produced (:func:`cds_timestamp`).

Authentication
    Every TC's application data is wrapped in an SDLS-style security header (SPI, sequence
    number) and MAC trailer (:mod:`flight.spacelink.sdls`) unless the link runs in its
    unauthenticated lab mode; the services' data fields sit between the two. Every TM's
    source data is wrapped the same way under the telemetry key
    (:mod:`flight.spacelink.tm_sdls`), sealed by the :class:`TmFramer` that builds it.

Services
    One module per PUS service holds its TCs and TMs together: ``pus1_verification``,
    ``pus3_housekeeping``, ``pus5_events``, ``pus8_functions``, ``pus11_scheduling``,
    ``pus15_storage``, ``pus17_test``, ``pus20_parameters`` and the mission's
    ``pus140_results``; their typed values are :mod:`flight.spacelink.codec`'s, and
    :mod:`flight.spacelink.services` reads any TM into its report.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
from dataclasses import dataclass

from spacepackets.ccsds.spacepacket import (
    CCSDS_HEADER_LEN,
    PacketId,
    PacketType,
    SequenceFlags,
    SpacePacketHeader,
    parse_space_packets,
)
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.defs import PusVersion
from spacepackets.ecss.req_id import RequestId
from spacepackets.ecss.tc import InvalidTcCrc16Error, PusTc, PusTcDataFieldHeader
from spacepackets.ecss.tm import PusTm, PusTmSecondaryHeader

from flight.core.component import Dictionary
from flight.spacelink.sdls import SECURITY_OVERHEAD
from flight.spacelink.tm_sdls import SECURITY_OVERHEAD as TM_SECURITY_OVERHEAD, TmSealer

LINK_COMPONENT_ID = 4
"""The link manager's dictionary component id."""
TC_APID = LINK_COMPONENT_ID
"""The one APID every telecommand is addressed to; verification and ping TM come from it."""
GATEWAY_APID = 0x7F0
"""APID of the TM[1,2] a ground gateway (:mod:`flight.ground.gateway`) sends itself about a TC
it refuses (2032): outside the satellite's component APIDs (1..127) and below the idle-packet
APID 0x7FF (CCSDS 133.0-B-2 4.1.3.3.4)."""

ACK_ACCEPTANCE, ACK_START, ACK_PROGRESS, ACK_COMPLETION = 0b1000, 0b0100, 0b0010, 0b0001
"""PUS-C TC acknowledgement flags (the 4 low bits of the TC secondary header's first byte):
which *success* reports the sender asks for. Failure reports are sent regardless."""
ACK_ALL = 0b1111
ACK_NONE = 0b0000

TIMESTAMP_LEN = CdsShortTimestamp.TIMESTAMP_SIZE
"""Bytes of the time code: 1 P-field byte and the 6-byte T-field."""
CDS_P_FIELD = 0x40
"""The time code's P-field: 0 (no extension), 100 (CDS, agency-defined epoch 1958-01-01), 0
(16-bit day), 00 (no sub-millisecond field)."""
CDS_EPOCH = datetime.datetime(1958, 1, 1, tzinfo=datetime.timezone.utc)
CRC_NAME = "CRC-16/CCITT-FALSE"
"""The packet error control of every TC and TM (ECSS-E-ST-70-41C annex B.1): polynomial
0x1021, initial value 0xFFFF, no reflection, no final XOR, over every byte of the packet
before it, appended big-endian; check value 0x29B1 for ASCII "123456789"."""
MAX_TC_APP_DATA = 4096
"""Largest TC data of a service accepted (bytes), not counting the SDLS security fields."""
MIN_TC_LEN = CCSDS_HEADER_LEN + PusTcDataFieldHeader.PUS_C_SEC_HEADER_LEN + 2
MAX_TC_LEN = MIN_TC_LEN + SECURITY_OVERHEAD + MAX_TC_APP_DATA
"""Largest TC packet the link frames (bytes): anything longer is discarded unread."""
MAX_TM_SOURCE_DATA = 16384
"""Largest TM source data sent (bytes): room for ~28 per-GPU float arrays in one HK report
(twice as many int arrays, eight times as many bool arrays)."""
MAX_TM_LEN = (CCSDS_HEADER_LEN + PusTmSecondaryHeader.MIN_LEN + TIMESTAMP_LEN + TM_SECURITY_OVERHEAD
              + MAX_TM_SOURCE_DATA + 2)
"""Largest TM packet (bytes), security fields included."""
SEQ_COUNT_MODULO = 1 << 14


# -- transport ---------------------------------------------------------------------------
def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split a link endpoint ``"HOST:PORT"`` (IPv6 as ``"[::1]:PORT"``) into host and port.

    Raises:
        ValueError: not ``HOST:PORT`` or a port outside 0..65535 (0: any free port).
    """
    host, sep, port = endpoint.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"link endpoint must be HOST:PORT, got {endpoint!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- time --------------------------------------------------------------------------------
def cds_timestamp(utc_unix_s: float) -> bytes:
    """The 7-byte CDS short time code of a UTC instant given as Unix seconds (ms resolution).

    Raises:
        ValueError: a time that is not finite or outside the CDS short range 1970..2137.
    """
    if not math.isfinite(utc_unix_s) or utc_unix_s < 0:
        raise ValueError(f"no CDS time code for {utc_unix_s!r}")
    dt = datetime.datetime.fromtimestamp(utc_unix_s, tz=datetime.timezone.utc)
    return CdsShortTimestamp.from_datetime(dt).pack()


def unix_from_cds(stamp: bytes) -> float:
    """Unix seconds of a 7-byte CDS short time code.

    Raises:
        ValueError: not a CDS short time code.
    """
    return CdsShortTimestamp.unpack(stamp).as_unix_seconds()


# -- TC framing (satellite side) -------------------------------------------------------------
_TC_FIRST_BYTE = re.compile(rb"[\x18-\x1f]")
"""First byte of a PUS TC: version 000, type 1 (TC), secondary header 1, then APID bits 10..8."""

OVERFLOW = "receive buffer overflow"


@dataclass(frozen=True)
class Rejection:
    """Bytes of an uplink stream that were discarded: ``nbytes`` of them, and why."""

    reason: str
    nbytes: int


class TcStreamParser:
    """Frames PUS-C telecommands out of one connection's byte stream.

    A *plausible header* is one that could start a TC this link accepts: CCSDS version 0,
    type TC, secondary header present, unsegmented, total length ``MIN_TC_LEN..MAX_TC_LEN``
    and PUS version 2 (C). A complete plausible packet whose CRC checks is a TC; any other
    byte is discarded, one at a time, so a valid packet right after garbage (or inside a
    corrupted packet's claimed length) is still found. Every discarded byte is reported in
    exactly one :class:`Rejection` (a run of consecutive discarded bytes is one rejection).

    The buffer holds at most one incomplete packet plus what has just arrived; feeding more
    than ``max_buffer`` bytes at once discards everything as :data:`OVERFLOW`.
    """

    def __init__(self, max_buffer: int = 4 * MAX_TC_LEN) -> None:
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._run = 0
        self._run_reason = ""

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[PusTc | Rejection]:
        """Add received bytes; return the TCs and rejections they complete, in stream order."""
        if len(self._buf) + len(data) > self.max_buffer:
            lost = len(self._buf) + len(data) + self._run
            self._buf.clear()
            self._run = 0
            return [Rejection(OVERFLOW, lost)]
        self._buf += data
        return self._scan()

    def flush_stalled(self) -> list[PusTc | Rejection]:
        """Give up on an incomplete packet whose rest is not coming (the sender went quiet):
        discard its first byte and rescan, until nothing is buffered; return the TCs found on
        the way (a valid TC hidden behind a cut header) and the rejections."""
        out: list[PusTc | Rejection] = []
        while self._buf:
            self._discard(1, "incomplete packet, sender went quiet")
            del self._buf[:1]
            out += self._scan()
        return out

    def _discard(self, n: int, reason: str) -> None:
        if not self._run:
            self._run_reason = reason
        self._run += n

    def _end_run(self, out: list) -> None:
        if self._run:
            out.append(Rejection(self._run_reason, self._run))
            self._run = 0

    def _scan(self) -> list[PusTc | Rejection]:
        out: list[PusTc | Rejection] = []
        buf, pos = self._buf, 0
        while pos < len(buf):
            m = _TC_FIRST_BYTE.search(buf, pos)
            start = m.start() if m else len(buf)
            if start > pos:
                self._discard(start - pos, "not a telecommand header")
                pos = start
                continue
            length = _plausible_tc_length(buf, pos)
            if length is None:
                self._discard(1, "not a telecommand header")
                pos += 1
            elif length == 0 or pos + length > len(buf):
                break
            else:
                try:
                    tc = PusTc.unpack(bytes(buf[pos:pos + length]))
                except InvalidTcCrc16Error:
                    self._discard(1, "bad CRC")
                    pos += 1
                    continue
                except ValueError as exc:  # BytesTooShortError or not PUS-C
                    self._discard(1, f"malformed: {exc}")
                    pos += 1
                    continue
                self._end_run(out)
                out.append(tc)
                pos += length
        del buf[:pos]
        self._end_run(out)
        return out


def _plausible_tc_length(buf: bytearray, pos: int) -> int | None:
    """Total length of the plausible TC header at ``pos``; 0 when more bytes are needed to
    tell; ``None`` when it is not one. The first byte is already known to match."""
    avail = len(buf) - pos
    if avail >= 3 and buf[pos + 2] >> 6 != SequenceFlags.UNSEGMENTED:
        return None
    if avail < CCSDS_HEADER_LEN:
        return 0
    header = SpacePacketHeader.unpack(buf[pos:pos + CCSDS_HEADER_LEN])
    if not MIN_TC_LEN <= header.packet_len <= MAX_TC_LEN:
        return None
    if avail > CCSDS_HEADER_LEN and buf[pos + CCSDS_HEADER_LEN] >> 4 != PusVersion.PUS_C:
        return None
    return header.packet_len


# -- TC building (ground side) ---------------------------------------------------------------
def build_tc(service: int, subtype: int, app_data: bytes = b"", *, seq_count: int, source_id: int,
             ack_flags: int = ACK_ALL) -> PusTc:
    """A PUS-C TC to :data:`TC_APID` (call ``.pack()`` for its bytes).

    Raises:
        ValueError: application data over :data:`MAX_TC_APP_DATA`, or a field out of range.
    """
    if len(app_data) > MAX_TC_APP_DATA:
        raise ValueError(f"{len(app_data)} bytes of application data exceed {MAX_TC_APP_DATA}")
    return PusTc(service=service, message_subtype=subtype, apid=TC_APID, app_data=app_data,
                 seq_count=seq_count % SEQ_COUNT_MODULO, source_id=source_id, ack_flags=ack_flags)


def request_id(tc: PusTc) -> int:
    """The TC's PUS request id as a u32 (packet id and sequence control of its header)."""
    return RequestId.from_sp_header(tc.sp_header).as_u32()


# -- TM framing --------------------------------------------------------------------------------
class TmFramer:
    """Builds PUS-C TM packets with their two counters. The service modules build their
    reports on one (``framer.packet(...)``), so all of a link's TM share the counters.

    Packet sequence count
        One 14-bit count per APID, +1 for every packet of that APID, wrapping to 0 after
        16383 (CCSDS 133.0-B-2 4.1.3.4.2: the sequential count of the packets generated by
        the application process that the APID identifies). The link sends every TM on every
        connection in the order they were counted (:mod:`flight.subsystems.link.downlink`),
        so a gap in one APID's count is a packet this connection did not get.
    Message type counter
        One 16-bit counter per APID, destination id and message type (service, subtype),
        +1 for every packet of that type sent by that application process to that
        destination, wrapping to 0 after 65535 (ECSS-E-ST-70-41C 7.4.3.1, TM packet
        secondary header: the application process keeps a message type counter per
        destination and message type). A ground reads its own reports' counters to tell
        loss of a report addressed to it from reports addressed to others.

    A packet's counters are taken when it is built: a caller builds its packets in the
    order it sends them. With a ``sealer`` (:class:`flight.spacelink.tm_sdls.TmSealer`) every
    packet carries the telemetry security header and MAC; without one (lab mode, the ground
    gateway's own reports) it is plain PUS-C.
    """

    def __init__(self, sealer: TmSealer | None = None) -> None:
        self.sealer = sealer
        self._seq: dict[int, int] = {}
        self._msg: dict[tuple[int, int, int, int], int] = {}
        self._time_code: tuple[float, bytes] | None = None
        """The last time code built, with its UTC: the reports of one tick share their time."""

    def packet(self, apid: int, service: int, subtype: int, source_data: bytes, *, utc_unix_s: float,
               dest_id: int = 0) -> bytes:
        """One TM packet with the time code of ``utc_unix_s``.

        Raises:
            ValueError: source data over :data:`MAX_TM_SOURCE_DATA` or a field out of range.
        """
        if len(source_data) > MAX_TM_SOURCE_DATA:
            raise ValueError(f"{len(source_data)} bytes of source data exceed {MAX_TM_SOURCE_DATA}")
        if self._time_code is None or self._time_code[0] != utc_unix_s:
            self._time_code = (utc_unix_s, cds_timestamp(utc_unix_s))
        if self.sealer is not None:  # first: a packet that cannot be sealed takes no count
            source_data = self.sealer.wrap(source_data)
        seq = self._seq.get(apid, 0)
        self._seq[apid] = (seq + 1) % SEQ_COUNT_MODULO
        key = (apid, dest_id, service, subtype)
        counter = self._msg.get(key, 0)
        self._msg[key] = (counter + 1) & 0xFFFF
        packet = PusTm(service=service, message_subtype=subtype, timestamp=self._time_code[1],
                       source_data=source_data, apid=apid, seq_count=seq, message_counter=counter,
                       destination_id=dest_id).pack()
        if self.sealer is not None:
            self.sealer.seal(packet)
        return bytes(packet)


# -- TM parsing (ground side) ------------------------------------------------------------------
class TmDecodeError(ValueError):
    """A downlinked packet that cannot be read: bad CRC, wrong shape or unknown content."""


def tm_packet_ids(dictionary: Dictionary) -> list[PacketId]:
    """The TM packet ids the satellite sends: one per component APID."""
    return [PacketId(PacketType.TM, True, c.component_id) for c in dictionary.components.values()]


def split_tm_stream(buf: bytes | bytearray, packet_ids: list[PacketId]) -> tuple[list[bytes], int, int]:
    """Cut complete TM packets off the front of a received byte stream.

    Returns:
        ``(packets, consumed, skipped)``: the packets, how many leading bytes of ``buf`` they
        and any skipped bytes took (drop those), and how many bytes were skipped as not a
        packet start.
    """
    result = parse_space_packets(bytes(buf), packet_ids)
    skipped = sum(len(r) for r in result.skipped_ranges)
    return [bytes(p) for p in result.tm_list], result.scanned_bytes, skipped
