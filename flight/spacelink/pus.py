"""The space-link packet codec: the one place PUS/CCSDS packets are built and parsed, for
both the satellite (:mod:`flight.subsystems.link.manager`) and the ground (:mod:`flight.ground.client`).

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
    Every TM secondary header has a 7-byte CDS short time code (CCSDS 301.0-B-4, epoch
    1958-01-01, 16-bit day, 32-bit ms of day): the onboard UTC at which the content was
    produced (:func:`cds_timestamp`).

Authentication
    Every TC's application data is wrapped in an SDLS-style security header (SPI, sequence
    number) and MAC trailer (:mod:`flight.spacelink.sdls`) unless the link runs in its
    unauthenticated lab mode; the data fields below are what sits between the two.

Services and their data fields (all integers big-endian)
    ========  ===================================================================================
    TC[17,1]  are-you-alive; no application data
    TM[17,2]  are-you-alive report; no source data
    TC[8,1]   perform a function: ``function_id u16`` (the dictionary opcode,
              ``component_id << 8 | local_id``) then the command's arguments in their declared
              order (:func:`encode_function`). The dictionary fixes number and order, so the
              PUS-C ``N`` and argument ids are not sent.
    TM[1,1..8] verification (spacepackets ``VerificationParams``): the TC's 4-byte request id;
              step reports add a 1-byte step id; failure reports add a 1-byte failure code
              (:data:`FAILURE_CODE_NUMBERS`) and the failure message as UTF-8 failure data
    TM[3,25]  housekeeping parameter report: ``structure_id u16`` (the component id) then
              every declared channel in declared order (:func:`encode_hk`)
    TM[5,1..4] event report, subtype by severity INFO/LOW/MEDIUM/HIGH: ``event_id u16``
              (``component_id << 8 | local_id``) then the message, ``u16`` length + UTF-8
    TC[15,x]  on-board storage and retrieval (:func:`storage_tc`): 15,1/15,2 enable/disable
              storage, 15,9 retrieve by time range, 15,11 delete up to, 15,12 report status,
              mission 15,130 downlink acknowledgement (:mod:`flight.subsystems.link.packet_stores`)
    TM[15,13] packet store status report (:class:`StoreStatusReport`)
    3,5 3,6 3,9 3,10 3,31, 5,5..5,8, 11,1..11,5 11,10 11,16, 20,1..20,3: the operations
              services, in :mod:`flight.spacelink.pus_ops`
    TM[140,1] mission service: job result report (:class:`JobResultReport`)
    ========  ===================================================================================

Value encoding (arguments and housekeeping): ``float`` → IEEE-754 f64, ``int`` → i64,
``bool`` → u8 (0 or 1), ``str`` → u8 length + UTF-8 (at most 255 bytes); an array channel
(``size > 0``) → u16 count + that many elements of its channel's type (:data:`ARRAY_ELEMENTS`):
``float`` f64, ``int`` i32, ``bool`` u8 (0 or 1).
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import operator
import re
import struct
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np
from spacepackets.ccsds.spacepacket import (
    CCSDS_HEADER_LEN,
    PacketId,
    PacketType,
    SequenceFlags,
    SpacePacketHeader,
    parse_space_packets,
)
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.defs import PusService, PusVersion
from spacepackets.ecss.fields import PacketFieldEnum
from spacepackets.ecss.pus_1_verification import (
    FailureNotice,
    ManagedParamsVerification,
    MessageSubtype as VerifSubtype,
    Service1Tm,
    VerificationParams,
)
from spacepackets.ecss.req_id import RequestId
from spacepackets.ecss.tc import InvalidTcCrc16Error, PusTc, PusTcDataFieldHeader
from spacepackets.ecss.tm import InvalidTmCrc16Error, PusTm, PusTmSecondaryHeader

from flight.core.component import FAILURE_CODES, SEVERITIES, CommandError, Component, Dictionary
from flight.spacelink.sdls import SECURITY_OVERHEAD

LINK_COMPONENT_ID = 4
"""The link manager's dictionary component id."""
TC_APID = LINK_COMPONENT_ID
"""The one APID every telecommand is addressed to; verification and ping TM come from it."""

LINK_FAILURE_CODES = ("AUTHENTICATION_ERROR",)
"""Failure codes only the link manager reports, in TM[1,2] before a TC becomes an internal
command (so they are not among the internal dictionary's ``FAILURE_CODES``):
AUTHENTICATION_ERROR is a TC without a valid security header and MAC, or with a replayed
sequence number (:mod:`flight.spacelink.sdls`)."""
FAILURE_CODE_NUMBERS = {
    "INVALID_OPCODE": 1,
    "VALIDATION_ERROR": 2,
    "FORMAT_ERROR": 3,
    "EXECUTION_ERROR": 4,
    "BUSY": 5,
    "AUTHENTICATION_ERROR": 128,
}
"""Failure code of TM[1,2/4/6/8] (1 byte) for each dictionary failure code (from 1) and each
link failure code (from 128, so the two lists can grow apart). Part of the wire format:
never renumber, only add."""
FAILURE_CODE_NAMES = {number: name for name, number in FAILURE_CODE_NUMBERS.items()}
if set(FAILURE_CODE_NUMBERS) != set(FAILURE_CODES) | set(LINK_FAILURE_CODES):
    raise ImportError("FAILURE_CODE_NUMBERS must number every flight.core.component.FAILURE_CODES entry "
                      "and every LINK_FAILURE_CODES entry")

EVENT_SUBTYPES = {severity: subtype for subtype, severity in enumerate(SEVERITIES, start=1)}
"""TM[5,x] subtype per severity: INFO 1, LOW 2, MEDIUM 3, HIGH 4 (ECSS-E-ST-70-41C 6.5)."""
SEVERITY_OF_SUBTYPE = {subtype: severity for severity, subtype in EVENT_SUBTYPES.items()}

ACK_ACCEPTANCE, ACK_START, ACK_PROGRESS, ACK_COMPLETION = 0b1000, 0b0100, 0b0010, 0b0001
"""PUS-C TC acknowledgement flags (the 4 low bits of the TC secondary header's first byte):
which *success* reports the sender asks for. Failure reports are sent regardless."""
ACK_ALL = 0b1111
ACK_NONE = 0b0000

TIMESTAMP_LEN = CdsShortTimestamp.TIMESTAMP_SIZE
MAX_TC_APP_DATA = 4096
"""Largest TC data of a service accepted (bytes), not counting the SDLS security fields."""
MIN_TC_LEN = CCSDS_HEADER_LEN + PusTcDataFieldHeader.PUS_C_SEC_HEADER_LEN + 2
MAX_TC_LEN = MIN_TC_LEN + SECURITY_OVERHEAD + MAX_TC_APP_DATA
"""Largest TC packet the link frames (bytes): anything longer is discarded unread."""
MAX_TM_SOURCE_DATA = 16384
"""Largest TM source data sent (bytes): room for ~28 per-GPU float arrays in one HK report
(twice as many int arrays, eight times as many bool arrays)."""
MAX_TM_LEN = CCSDS_HEADER_LEN + PusTmSecondaryHeader.MIN_LEN + TIMESTAMP_LEN + MAX_TM_SOURCE_DATA + 2
MAX_TEXT_BYTES = 1024
"""Event messages and failure data are cut to this many UTF-8 bytes (whole characters)."""
SEQ_COUNT_MODULO = 1 << 14

_HK_SERVICE, _HK_REPORT = PusService.S3_HOUSEKEEPING, 25
_EVENT_SERVICE = PusService.S5_EVENT
_FUNCTION_SERVICE, _PERFORM_FUNCTION = PusService.S8_FUNC_CMD, 1
_TEST_SERVICE, _PING, _PING_REPLY = PusService.S17_TEST, 1, 2
_VERIF_PARAMS = ManagedParamsVerification(bytes_step_id=1, bytes_err_code=1)


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


# -- values --------------------------------------------------------------------------------
class _Reader:
    """Bounds-checked big-endian reads from a data field; every short read is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"field ends at byte {len(self.data)}, needed {self.pos + n}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} unexpected trailing byte(s)")


def _as_int(value: Any) -> int:
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    return operator.index(value)


def _pack_value(kind: str, value: Any) -> bytes:
    """Encode one scalar of type ``kind`` (see the module docstring).

    Raises:
        ValueError: a value that is not of the type or does not fit its encoding.
    """
    try:
        if kind == "float":
            if isinstance(value, (str, bytes)):
                raise TypeError(type(value).__name__)
            return struct.pack(">d", float(value))
        if kind == "int":
            return struct.pack(">q", _as_int(value))
        if kind == "bool":
            if isinstance(value, (bool, np.bool_)) or value in (0, 1):
                return b"\x01" if value else b"\x00"
            raise ValueError(f"{value!r} is not a bool")
        if kind == "str":
            raw = value.encode("utf-8")
            if len(raw) > 255:
                raise ValueError(f"string of {len(raw)} UTF-8 bytes does not fit a u8 length")
            return bytes([len(raw)]) + raw
    except (TypeError, AttributeError, OverflowError, struct.error) as exc:
        raise ValueError(f"cannot encode {value!r} as {kind}: {exc}") from None
    raise ValueError(f"unknown value type {kind!r}")


def _unpack_value(kind: str, reader: _Reader) -> Any:
    if kind == "float":
        return reader.unpack(">d")
    if kind == "int":
        return reader.unpack(">q")
    if kind == "bool":
        byte = reader.unpack(">B")
        if byte > 1:
            raise ValueError(f"bool byte {byte} is not 0 or 1")
        return bool(byte)
    if kind == "str":
        return reader.take(reader.unpack(">B")).decode("utf-8")
    raise ValueError(f"unknown value type {kind!r}")


def _cut_utf8(text: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore").encode("utf-8")


# -- TC[8,1] function management -----------------------------------------------------------
def encode_function(dictionary: Dictionary, qualified: str, args: Mapping[str, Any]) -> bytes:
    """Application data of TC[8,1] for command ``qualified`` with ``args``.

    Only types are checked (ranges and choices are the validator's business, so a ground
    tool can still send an out-of-range value on purpose).

    Raises:
        CommandError: INVALID_OPCODE for a command not in ``dictionary``; FORMAT_ERROR for a
            missing or unknown argument or a value that does not encode as its type.
    """
    cmd = dictionary.commands.get(qualified)
    if cmd is None:
        raise CommandError("INVALID_OPCODE", f"no command {qualified!r}")
    names = [a.name for a in cmd.args]
    if set(args) != set(names):
        raise CommandError("FORMAT_ERROR", f"{qualified} takes {names}, got {sorted(map(str, args))}")
    out = bytearray(struct.pack(">H", dictionary.opcode(qualified)))
    for arg in cmd.args:
        try:
            out += _pack_value(arg.type, args[arg.name])
        except ValueError as exc:
            raise CommandError("FORMAT_ERROR", f"{arg.name}: {exc}") from None
    if len(out) > MAX_TC_APP_DATA:
        raise CommandError("FORMAT_ERROR", f"arguments take {len(out)} bytes, more than {MAX_TC_APP_DATA}")
    return bytes(out)


def decode_function(dictionary: Dictionary, app_data: bytes) -> tuple[str, dict[str, Any]]:
    """Command name and arguments from TC[8,1] application data; values typed, not validated.

    Raises:
        CommandError: INVALID_OPCODE for an unknown function id; FORMAT_ERROR for data that is
            short, has trailing bytes, a bool byte other than 0/1 or a string not UTF-8.
    """
    reader = _Reader(bytes(app_data))
    try:
        opcode = reader.unpack(">H")
    except ValueError:
        raise CommandError("FORMAT_ERROR", "TC[8,1] data shorter than its 2-byte function id") from None
    qualified = dictionary.opcodes.get(opcode)
    if qualified is None:
        raise CommandError("INVALID_OPCODE", f"no command with function id 0x{opcode:04x}")
    try:
        args = {a.name: _unpack_value(a.type, reader) for a in dictionary.commands[qualified].args}
        reader.end()
    except ValueError as exc:
        raise CommandError("FORMAT_ERROR", f"{qualified}: {exc}") from None
    return qualified, args


# -- TM[3,25] housekeeping and TM[5,x] events --------------------------------------------------
def encode_hk(component: Component, values: Mapping[str, Any]) -> bytes:
    """Source data of TM[3,25]: the component id as structure id, then every declared channel.

    Raises:
        ValueError: a declared channel missing from ``values``, a value that does not encode
            as its channel's type, or a report longer than :data:`MAX_TM_SOURCE_DATA`.
    """
    out = bytearray(struct.pack(">H", component.component_id))
    for ch in component.telemetry:
        if ch.name not in values:
            raise ValueError(f"{component.name}.{ch.name} missing from the packet")
        value = values[ch.name]
        try:
            out += _pack_array(ch.type, value) if ch.size else _pack_value(ch.type, value)
        except ValueError as exc:
            raise ValueError(f"{component.name}.{ch.name}: {exc}") from None
    if len(out) > MAX_TM_SOURCE_DATA:
        raise ValueError(f"{component.name} report of {len(out)} bytes exceeds {MAX_TM_SOURCE_DATA}")
    return bytes(out)


ARRAY_ELEMENTS = {"float": ">f8", "int": ">i4", "bool": "u1"}
"""Wire element (numpy dtype) of an array channel by channel type. Per-GPU arrays are most of
a housekeeping report's bytes, so ints and bools take the width their values need. The int
arrays flown hold job ids (``jobs.sqlite`` row ids, counting up from 1) and corrected-ECC
counts since the job runner started (~2e-4 per GPU-second, x50 in the South Atlantic
Anomaly): i32 holds both for far longer than a mission; a value outside it raises
ValueError rather than wrap."""
_I32 = np.iinfo(np.int32)


def _pack_array(kind: str, value: Any) -> bytes:
    """u16 count + the elements of an array channel of type ``kind`` (:data:`ARRAY_ELEMENTS`).

    Raises:
        ValueError: not a flat-able numeric array, an int channel's value that is not a whole
            number within i32, a bool channel's value other than 0/1, a ``str`` array channel,
            or more than 65535 values.
    """
    if kind not in ARRAY_ELEMENTS:
        raise ValueError(f"no array encoding for {kind!r} channels")
    try:
        arr = np.asarray(value).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"not a numeric array: {arr.dtype} values")
    if arr.size > 0xFFFF:
        raise ValueError(f"array of {arr.size} values does not fit a u16 count")
    if arr.size and kind == "int":
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.trunc(arr)):
            raise ValueError("int array holds values that are not whole numbers")
        if arr.min() < _I32.min or arr.max() > _I32.max:
            raise ValueError(f"int array value outside i32 ({arr.min()}..{arr.max()})")
    elif arr.size and kind == "bool" and arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
        raise ValueError("bool array holds values other than 0 and 1")
    return struct.pack(">H", arr.size) + arr.astype(ARRAY_ELEMENTS[kind]).tobytes()


def _unpack_array(kind: str, reader: _Reader) -> list:
    """The values :func:`_pack_array` wrote, as a list of ``kind`` (float, int or bool).

    Raises:
        ValueError: short data, a channel type without an array encoding, or a bool byte
            other than 0/1.
    """
    if kind not in ARRAY_ELEMENTS:
        raise ValueError(f"no array encoding for {kind!r} channels")
    dtype = np.dtype(ARRAY_ELEMENTS[kind])
    arr = np.frombuffer(reader.take(dtype.itemsize * reader.unpack(">H")), dtype=dtype)
    if kind == "bool":
        if arr.size and arr.max() > 1:
            raise ValueError(f"bool array byte {arr.max()} is not 0 or 1")
        return arr.astype(bool).tolist()
    return arr.tolist()


def decode_hk(dictionary: Dictionary, data: bytes) -> tuple[Component, dict[str, Any]]:
    """Component and channel values of TM[3,25] source data; arrays come back as lists of
    their channel's type (float, int or bool).

    Raises:
        ValueError: an unknown structure id, short or trailing data, or a bad value.
    """
    reader = _Reader(bytes(data))
    sid = reader.unpack(">H")
    component = next((c for c in dictionary.components.values() if c.component_id == sid), None)
    if component is None:
        raise ValueError(f"no component with structure id {sid}")
    values: dict[str, Any] = {}
    for ch in component.telemetry:
        values[ch.name] = _unpack_array(ch.type, reader) if ch.size else _unpack_value(ch.type, reader)
    reader.end()
    return component, values


def encode_event(event_id: int, message: str) -> bytes:
    """Source data of TM[5,x]: ``event_id`` (u16) and the message (u16 length + UTF-8, cut
    to :data:`MAX_TEXT_BYTES`)."""
    raw = _cut_utf8(message)
    return struct.pack(">HH", event_id, len(raw)) + raw


def decode_event(data: bytes) -> tuple[int, str]:
    """Event id and message of TM[5,x] source data.

    Raises:
        ValueError: short or trailing data, or a message that is not UTF-8.
    """
    reader = _Reader(bytes(data))
    event_id = reader.unpack(">H")
    message = reader.take(reader.unpack(">H")).decode("utf-8")
    reader.end()
    return event_id, message


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


def ping_tc(*, seq_count: int, source_id: int, ack_flags: int = ACK_NONE) -> PusTc:
    """TC[17,1] are-you-alive."""
    return build_tc(_TEST_SERVICE, _PING, seq_count=seq_count, source_id=source_id, ack_flags=ack_flags)


def function_tc(dictionary: Dictionary, qualified: str, args: Mapping[str, Any], *, seq_count: int,
                source_id: int, ack_flags: int = ACK_ALL) -> PusTc:
    """TC[8,1] perform function ``qualified`` with ``args`` (see :func:`encode_function`)."""
    return build_tc(_FUNCTION_SERVICE, _PERFORM_FUNCTION, encode_function(dictionary, qualified, args),
                    seq_count=seq_count, source_id=source_id, ack_flags=ack_flags)


def is_ping(tc: PusTc) -> bool:
    return (tc.service, tc.message_subtype) == (_TEST_SERVICE, _PING)


def is_function(tc: PusTc) -> bool:
    return (tc.service, tc.message_subtype) == (_FUNCTION_SERVICE, _PERFORM_FUNCTION)


def request_id(tc: PusTc) -> int:
    """The TC's PUS request id as a u32 (packet id and sequence control of its header)."""
    return RequestId.from_sp_header(tc.sp_header).as_u32()


# -- TM building (satellite side) -------------------------------------------------------------
class TmEncoder:
    """Builds PUS-C TM packets, keeping the CCSDS sequence count per APID (14 bits) and the
    PUS-C message type counter per destination, service and subtype (16 bits)."""

    def __init__(self) -> None:
        self._seq: dict[int, int] = {}
        self._msg: dict[tuple[int, int, int], int] = {}
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
        seq = self._seq.get(apid, 0)
        self._seq[apid] = (seq + 1) % SEQ_COUNT_MODULO
        key = (dest_id, service, subtype)
        counter = self._msg.get(key, 0)
        self._msg[key] = (counter + 1) & 0xFFFF
        return bytes(PusTm(service=service, message_subtype=subtype, timestamp=self._time_code[1],
                           source_data=source_data, apid=apid, seq_count=seq, message_counter=counter,
                           destination_id=dest_id).pack())

    def ping_reply(self, tc: PusTc, *, utc_unix_s: float) -> bytes:
        """TM[17,2] answering ``tc``, addressed to its source."""
        return self.packet(TC_APID, _TEST_SERVICE, _PING_REPLY, b"", utc_unix_s=utc_unix_s, dest_id=tc.source_id)

    def verification(self, subtype: int, tc: PusTc, *, utc_unix_s: float, code: str | None = None,
                     message: str = "", step: int | None = None) -> bytes:
        """TM[1,subtype] about ``tc``: success (odd subtypes) or failure with dictionary failure
        ``code`` and ``message`` (even subtypes); ``step`` (u8) for the step reports 5 and 6.

        Raises:
            KeyError: an unknown failure code.
            spacepackets.ecss.pus_1_verification.InvalidVerifParamsError: fields that do not
                match the subtype.
        """
        notice = None if code is None else FailureNotice(
            PacketFieldEnum.with_byte_size(1, FAILURE_CODE_NUMBERS[code]), _cut_utf8(message))
        params = VerificationParams(RequestId.from_sp_header(tc.sp_header),
                                    None if step is None else PacketFieldEnum.with_byte_size(1, step & 0xFF),
                                    notice)
        params.verify_against_message_subtype(VerifSubtype(subtype))
        return self.packet(TC_APID, PusService.S1_VERIFICATION, subtype, bytes(params.pack()),
                           utc_unix_s=utc_unix_s, dest_id=tc.source_id)

    def hk_report(self, component: Component, values: Mapping[str, Any], *, utc_unix_s: float) -> bytes:
        """TM[3,25] of ``component``'s channel ``values`` (see :func:`encode_hk`)."""
        return self.packet(component.component_id, _HK_SERVICE, _HK_REPORT, encode_hk(component, values),
                           utc_unix_s=utc_unix_s)

    def event_report(self, dictionary: Dictionary, qualified: str, message: str, *, utc_unix_s: float) -> bytes:
        """TM[5,1..4] of declared event ``qualified`` (subtype from its declared severity).

        Raises:
            KeyError: an event that is not in ``dictionary``.
        """
        event = dictionary.events[qualified]
        component = dictionary.components[qualified.partition(".")[0]]
        return self.packet(component.component_id, _EVENT_SERVICE, EVENT_SUBTYPES[event.severity],
                           encode_event(dictionary.event_id(qualified), message), utc_unix_s=utc_unix_s)


# -- TM parsing (ground side) ------------------------------------------------------------------
class TmDecodeError(ValueError):
    """A downlinked packet that cannot be read: bad CRC, wrong shape or unknown content."""


@dataclass(frozen=True)
class PingReply:
    """TM[17,2]."""

    dest_id: int
    utc_unix_s: float


@dataclass(frozen=True)
class Verification:
    """TM[1,subtype] about the TC with ``request_id``; ``code`` and ``message`` for failures."""

    subtype: int
    request_id: int
    dest_id: int
    utc_unix_s: float
    code: str | None = None
    message: str = ""
    step: int | None = None

    STAGES = {1: "accepted", 2: "acceptance failed", 3: "started", 4: "start failed",
              5: "progress", 6: "progress failed", 7: "completed", 8: "completion failed"}

    @property
    def ok(self) -> bool:
        return self.subtype % 2 == 1

    @property
    def final(self) -> bool:
        """No further report about this TC will follow."""
        return not self.ok or self.subtype == VerifSubtype.TM_COMPLETION_SUCCESS

    @property
    def stage(self) -> str:
        return self.STAGES[self.subtype]


@dataclass(frozen=True)
class HkReport:
    """TM[3,25]: one component's channel values sampled at ``utc_unix_s``."""

    component: Component
    values: dict[str, Any]
    utc_unix_s: float


@dataclass(frozen=True)
class EventReport:
    """TM[5,x]: event ``name`` (qualified) with its severity and message."""

    name: str
    event_id: int
    severity: str
    message: str
    utc_unix_s: float


Report = Union[PingReply, Verification, HkReport, EventReport, "StoreStatusReport", "JobResultReport"]


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


def decode_tm(dictionary: Dictionary, packet: bytes) -> Report:
    """Read one downlinked packet into a report (operations reports: :mod:`flight.spacelink.pus_ops`).

    Raises:
        TmDecodeError: bad CRC, malformed packet, or a service, subtype, structure or event
            this ground does not know.
    """
    from flight.spacelink.pus_ops import decode_ops_tm  # it builds on this module

    try:
        tm = PusTm.unpack(packet, timestamp_len=TIMESTAMP_LEN)
        utc = unix_from_cds(tm.timestamp)
        service, subtype, data = tm.service, tm.message_subtype, tm.source_data
        dest = tm.pus_tm_sec_header.dest_id
        if (service, subtype) == (_TEST_SERVICE, _PING_REPLY):
            return PingReply(dest, utc)
        if service == PusService.S1_VERIFICATION:
            s1 = Service1Tm.from_tm(tm, _VERIF_PARAMS)
            code = message = None
            if s1.failure_notice is not None:
                code = FAILURE_CODE_NAMES.get(s1.failure_notice.code.val, f"code {s1.failure_notice.code.val}")
                message = s1.failure_notice.data.decode("utf-8", "replace")
            step = None if s1.step_id is None else s1.step_id.val
            return Verification(subtype, s1.tc_req_id.as_u32(), dest, utc, code, message or "", step)
        if (service, subtype) == (_HK_SERVICE, _HK_REPORT):
            component, values = decode_hk(dictionary, data)
            return HkReport(component, values, utc)
        if service == _EVENT_SERVICE and subtype in SEVERITY_OF_SUBTYPE:
            event_id, message = decode_event(data)
            name = dictionary.event_ids.get(event_id, f"event 0x{event_id:04x}")
            return EventReport(name, event_id, SEVERITY_OF_SUBTYPE[subtype], message, utc)
        if (storage := _decode_storage_tm(service, subtype, data, dest, utc)) is not None:
            return storage
        if (operations := decode_ops_tm(dictionary, service, subtype, data, utc)) is not None:
            return operations
    except (ValueError, InvalidTmCrc16Error) as exc:  # BytesTooShortError is a ValueError
        raise TmDecodeError(f"{type(exc).__name__}: {exc}") from None
    raise TmDecodeError(f"unexpected TM[{service},{subtype}]")



# -- service 15 on-board storage and retrieval, TM[140,1] job results ----------------------------
STORAGE_SERVICE = PusService.S15_TM_STORAGE
ENABLE_STORAGE, DISABLE_STORAGE = 1, 2
RETRIEVE_BY_TIME_RANGE = 9
DELETE_UP_TO = 11
REPORT_STORE_STATUS, STORE_STATUS_REPORT = 12, 13
DOWNLINK_ACK = 130
"""Mission-specific TC[15,130] (ECSS-E-ST-70-41C leaves subtypes from 128 to the mission):
the ground has received this connection's first ``u64`` TM packets
(:mod:`flight.subsystems.link.packet_stores`)."""
JOB_RESULT_SERVICE, JOB_RESULT_REPORT = 140, 1
"""Mission-specific TM[140,1] (services from 128 are the mission's): one job's result."""
STORAGE_TC_SUBTYPES = (ENABLE_STORAGE, DISABLE_STORAGE, RETRIEVE_BY_TIME_RANGE, DELETE_UP_TO, REPORT_STORE_STATUS,
                       DOWNLINK_ACK)
_STATUS_ENTRY = struct.Struct(">BBII7s7sIIII")


def _store_list(store_ids: list[int]) -> bytes:
    if not 1 <= len(store_ids) <= 255 or not all(0 <= i <= 255 for i in store_ids):
        raise ValueError(f"1..255 store ids of 0..255 each, got {store_ids!r}")
    return bytes([len(store_ids), *store_ids])


def _read_store_list(reader: _Reader) -> list[int]:
    n = reader.unpack(">B")
    if n == 0:
        raise ValueError("an empty packet store list")
    return list(reader.take(n))


def storage_tc(subtype: int, *, store_ids: list[int] = (), from_utc_unix_s: float = 0.0,
               to_utc_unix_s: float = 0.0, received: int = 0, seq_count: int, source_id: int,
               ack_flags: int = ACK_ALL) -> PusTc:
    """A TC[15,subtype] with the data of :func:`storage_data`."""
    data = storage_data(subtype, store_ids=store_ids, from_utc_unix_s=from_utc_unix_s, to_utc_unix_s=to_utc_unix_s,
                        received=received)
    return build_tc(STORAGE_SERVICE, subtype, data, seq_count=seq_count, source_id=source_id, ack_flags=ack_flags)


def storage_data(subtype: int, *, store_ids: list[int] = (), from_utc_unix_s: float = 0.0,
                 to_utc_unix_s: float = 0.0, received: int = 0) -> bytes:
    """Application data of TC[15,subtype] (all integers big-endian, store ids u8, times CDS short):

    =========  ==========================================================================
    15,1 15,2  enable / disable storage: ``N u8`` then N store ids
    15,9       retrieve by time range: ``store_id u8``, start time, end time (inclusive)
    15,11      delete up to: time, then ``N u8`` and N store ids
    15,12      report store status: ``N u8`` and N store ids (N = 0: every store)
    15,130     downlink acknowledgement: ``received u64``
    =========  ==========================================================================

    Raises:
        ValueError: an unknown subtype, a missing or out-of-range field.
    """
    if subtype in (ENABLE_STORAGE, DISABLE_STORAGE):
        data = _store_list(list(store_ids))
    elif subtype == RETRIEVE_BY_TIME_RANGE:
        (store_id,) = store_ids
        data = bytes([store_id]) + cds_timestamp(from_utc_unix_s) + cds_timestamp(to_utc_unix_s)
    elif subtype == DELETE_UP_TO:
        data = cds_timestamp(to_utc_unix_s) + _store_list(list(store_ids))
    elif subtype == REPORT_STORE_STATUS:
        data = _store_list(list(store_ids)) if store_ids else b"\x00"
    elif subtype == DOWNLINK_ACK:
        data = struct.pack(">Q", received)
    else:
        raise ValueError(f"no TC[15,{subtype}]")
    return data


@dataclass(frozen=True)
class StorageRequest:
    """A decoded TC[15,x]: the fields its subtype carries (see :func:`storage_tc`)."""

    subtype: int
    store_ids: tuple[int, ...] = ()
    from_utc_unix_s: float = 0.0
    to_utc_unix_s: float = 0.0
    received: int = 0


def decode_storage_tc(subtype: int, data: bytes) -> StorageRequest:
    """Read the application data of TC[15,subtype] (store ids not yet checked to exist).

    Raises:
        CommandError: INVALID_OPCODE for a subtype this satellite does not serve;
            FORMAT_ERROR for short, long or malformed data (a bad time code, an empty store
            list where one is needed, a start time after the end time).
    """
    if subtype not in STORAGE_TC_SUBTYPES:
        raise CommandError("INVALID_OPCODE", f"TC[15,{subtype}] is not served")
    reader = _Reader(bytes(data))
    try:
        if subtype in (ENABLE_STORAGE, DISABLE_STORAGE):
            request = StorageRequest(subtype, tuple(_read_store_list(reader)))
        elif subtype == RETRIEVE_BY_TIME_RANGE:
            store_id = reader.unpack(">B")
            start, end = unix_from_cds(reader.take(TIMESTAMP_LEN)), unix_from_cds(reader.take(TIMESTAMP_LEN))
            if start > end:
                raise ValueError("start time after end time")
            request = StorageRequest(subtype, (store_id,), start, end)
        elif subtype == DELETE_UP_TO:
            up_to = unix_from_cds(reader.take(TIMESTAMP_LEN))
            request = StorageRequest(subtype, tuple(_read_store_list(reader)), to_utc_unix_s=up_to)
        elif subtype == REPORT_STORE_STATUS:
            request = StorageRequest(subtype, tuple(reader.take(reader.unpack(">B"))))
        else:
            request = StorageRequest(subtype, received=reader.unpack(">Q"))
        reader.end()
    except ValueError as exc:
        raise CommandError("FORMAT_ERROR", f"TC[15,{subtype}]: {exc}") from None
    return request


@dataclass(frozen=True)
class StoreStatusEntry:
    """One packet store in TM[15,13]: times are UTC (Unix s), ``None`` for an empty store;
    ``unacknowledged`` counts packets the ground has not acknowledged; ``dropped`` and
    ``expired`` are retention deletions of unacknowledged and acknowledged packets;
    ``deleted`` by TC[15,11]; ``not_stored`` while storage was disabled."""

    store_id: int
    enabled: bool
    count: int
    unacknowledged: int
    oldest_utc_unix_s: float | None
    newest_utc_unix_s: float | None
    dropped: int
    expired: int
    deleted: int
    not_stored: int


@dataclass(frozen=True)
class StoreStatusReport:
    """TM[15,13]: ``N u8`` then per store ``store_id u8, enabled u8, count u32,
    unacknowledged u32, oldest CDS, newest CDS, dropped u32, expired u32, deleted u32,
    not_stored u32`` (an empty store's times are the CDS code of Unix time 0)."""

    stores: tuple[StoreStatusEntry, ...]
    dest_id: int
    utc_unix_s: float


@dataclass(frozen=True)
class JobResultReport:
    """TM[140,1], timed at the job's finish: ``job_id u32``, ``outcome`` (u8 length +
    UTF-8), ``work_gpu_s f64``, ``done_gpu_s f64``, ``detail`` (u16 length + UTF-8)."""

    job_id: int
    outcome: str
    work_gpu_s: float
    done_gpu_s: float
    detail: str
    utc_unix_s: float


def store_status_report(encoder: TmEncoder, entries: list[StoreStatusEntry], *, dest_id: int,
                        utc_unix_s: float) -> bytes:
    """TM[15,13] from the link's APID (see :class:`StoreStatusReport`)."""
    out = bytearray([len(entries)])
    for e in entries:
        empty = e.oldest_utc_unix_s is None
        out += _STATUS_ENTRY.pack(e.store_id, int(e.enabled), e.count, e.unacknowledged,
                                  cds_timestamp(0.0 if empty else e.oldest_utc_unix_s),
                                  cds_timestamp(0.0 if empty else e.newest_utc_unix_s),
                                  e.dropped, e.expired, e.deleted, e.not_stored)
    return encoder.packet(TC_APID, STORAGE_SERVICE, STORE_STATUS_REPORT, bytes(out), utc_unix_s=utc_unix_s,
                          dest_id=dest_id)


def job_result_report(encoder: TmEncoder, component: Component, job_id: int, outcome: str, work_gpu_s: float,
                      done_gpu_s: float, detail: str, *, utc_unix_s: float) -> bytes:
    """TM[140,1] from ``component``'s APID (see :class:`JobResultReport`).

    Raises:
        ValueError: a job id outside u32 or an outcome over 255 UTF-8 bytes.
    """
    detail_raw = _cut_utf8(detail)
    try:
        data = (struct.pack(">I", job_id) + _pack_value("str", outcome)
                + struct.pack(">ddH", work_gpu_s, done_gpu_s, len(detail_raw)) + detail_raw)
    except struct.error as exc:
        raise ValueError(f"job result {job_id!r}: {exc}") from None
    return encoder.packet(component.component_id, JOB_RESULT_SERVICE, JOB_RESULT_REPORT, data,
                          utc_unix_s=utc_unix_s)


def _decode_storage_tm(service: int, subtype: int, data: bytes, dest_id: int,
                       utc: float) -> StoreStatusReport | JobResultReport | None:
    reader = _Reader(bytes(data))
    if (service, subtype) == (STORAGE_SERVICE, STORE_STATUS_REPORT):
        entries = []
        for _ in range(reader.unpack(">B")):
            (store_id, enabled, count, unacked, oldest, newest, dropped, expired, deleted,
             not_stored) = _STATUS_ENTRY.unpack(reader.take(_STATUS_ENTRY.size))
            times = (None, None) if count == 0 else (unix_from_cds(oldest), unix_from_cds(newest))
            entries.append(StoreStatusEntry(store_id, bool(enabled), count, unacked, *times, dropped, expired,
                                            deleted, not_stored))
        reader.end()
        return StoreStatusReport(tuple(entries), dest_id, utc)
    if (service, subtype) == (JOB_RESULT_SERVICE, JOB_RESULT_REPORT):
        job_id = reader.unpack(">I")
        outcome = _unpack_value("str", reader)
        work, done = reader.unpack(">d"), reader.unpack(">d")
        detail = reader.take(reader.unpack(">H")).decode("utf-8")
        reader.end()
        return JobResultReport(job_id, outcome, work, done, detail, utc)
    return None
