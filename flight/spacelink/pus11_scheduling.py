"""PUS service 11, time-based scheduling (ECSS-E-ST-70-41C 6.11): TCs released on board at
their time (integers big-endian; TM from :data:`~flight.spacelink.framing.TC_APID`, addressed
to the TC's source).

    ==========  ===============================================================================
    TC[11,1/2]  enable / disable the schedule's execution function; no data
    TC[11,3]    reset: delete every activity; no data
    TC[11,4]    insert: ``N u16`` (>= 1), N × (release time CDS short, ``len u16``, a whole
                TC packet, signed as it would be sent alone)
    TC[11,5]    delete: ``N u16`` (>= 1), N × ``request_id u32`` of the embedded TC
    TC[11,16]   detail-report every activity; no data
    TM[11,10]   detail report: ``N u16``, N × (release time, ``len u16``, TC packet), in
                release order; split over several packets when long
    ==========  ===============================================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Dictionary
from flight.spacelink.framing import MAX_TM_SOURCE_DATA, TIMESTAMP_LEN, TcStreamParser, cds_timestamp, \
    request_id, unix_from_cds
from flight.spacelink.pus8_functions import decode_function, is_function
from flight.spacelink.pus20_parameters import PARAMETER_SERVICE, PARAMETER_SET, parse_set_parameter
from flight.spacelink.sdls import MAC_LEN, SECURITY_HEADER_LEN
from flight.spacelink.codec import Reader, decode_tc_data, read_count
from flight.spacelink.layout import Field, Message, Repeat

SCHEDULE_SERVICE = 11
(SCHEDULE_ENABLE, SCHEDULE_DISABLE, SCHEDULE_RESET, SCHEDULE_INSERT, SCHEDULE_DELETE, SCHEDULE_DETAIL_REPORT,
 SCHEDULE_REPORT_ALL) = 1, 2, 3, 4, 5, 10, 16
SCHEDULE_TCS = {(SCHEDULE_SERVICE, s) for s in (SCHEDULE_ENABLE, SCHEDULE_DISABLE, SCHEDULE_RESET, SCHEDULE_INSERT,
                                                SCHEDULE_DELETE, SCHEDULE_REPORT_ALL)}
"""(service, subtype) of every service 11 TC the satellite serves."""

_ACTIVITIES = (Field("N", "u16"), Repeat("N", (
    Field("release_time", "cds", "UTC at which the TC is released on board"),
    Field("length", "u16", "bytes of the TC packet that follows"),
    Field("tc", "packet", "the whole TC packet (headers, signed service data, CRC), as it would be sent alone"))))
_LINK, _TO_SOURCE = "link (APID 4)", "the TC's source id; sent on every connection"
MESSAGES = (
    Message("TC", SCHEDULE_SERVICE, SCHEDULE_ENABLE, "enable the time-based schedule execution function", (),
            "ground", _LINK),
    Message("TC", SCHEDULE_SERVICE, SCHEDULE_DISABLE, "disable the time-based schedule execution function", (),
            "ground", _LINK),
    Message("TC", SCHEDULE_SERVICE, SCHEDULE_RESET, "reset the time-based schedule (delete every activity)", (),
            "ground", _LINK),
    Message("TC", SCHEDULE_SERVICE, SCHEDULE_INSERT, "insert activities into the time-based schedule", _ACTIVITIES,
            "ground", _LINK, "N >= 1; a TC[11,x] cannot be scheduled"),
    Message("TC", SCHEDULE_SERVICE, SCHEDULE_DELETE, "delete activities by request id",
            (Field("N", "u16", ">= 1"), Repeat("N", (Field("request_id", "u32", "of the scheduled TC"),))),
            "ground", _LINK),
    Message("TC", SCHEDULE_SERVICE, SCHEDULE_REPORT_ALL, "detail-report all activities", (), "ground", _LINK,
            "answered by one or more TM[11,10]"),
    Message("TM", SCHEDULE_SERVICE, SCHEDULE_DETAIL_REPORT, "time-based schedule detail report", _ACTIVITIES,
            _LINK, _TO_SOURCE, "activities in release order, split over several packets when long"),
)


def insert_data(activities: list[tuple[float, bytes]]) -> bytes:
    """Data of TC[11,4]: (release time as UTC Unix seconds, TC packet bytes) per activity.

    Raises:
        ValueError: a release time outside the CDS short range, or a TC over 65535 bytes.
    """
    out = struct.pack(">H", len(activities))
    for release_utc_s, packet in activities:
        out += cds_timestamp(release_utc_s) + struct.pack(">H", len(packet)) + packet
    return out


def _read_timed_tcs(reader: Reader) -> list[tuple[float, bytes]]:
    out = []
    for _ in range(read_count(reader, "activities")):
        release = unix_from_cds(reader.take(TIMESTAMP_LEN))
        out.append((release, reader.take(reader.unpack(">H"))))
    return out


def parse_insert(data: bytes) -> list[tuple[float, PusTc]]:
    """Release time (UTC Unix s) and embedded TC of each activity of TC[11,4] data; the
    embedded TCs are framed and CRC-checked here, nothing else.

    Raises:
        CommandError: FORMAT_ERROR for malformed data or an embedded packet that is not one
            whole PUS-C TC with a good CRC.
    """
    timed = decode_tc_data(SCHEDULE_SERVICE, SCHEDULE_INSERT, _read_timed_tcs, data)
    out = []
    for i, (release, packet) in enumerate(timed):
        parsed = TcStreamParser(len(packet) + 1).feed(packet)
        if len(parsed) != 1 or not isinstance(parsed[0], PusTc):
            why = parsed[0].reason if parsed and not isinstance(parsed[0], PusTc) else "not one whole TC"
            raise CommandError("FORMAT_ERROR", f"TC[11,4] activity {i + 1}: {why}")
        out.append((release, parsed[0]))
    return out


def request_id_data(request_ids: list[int]) -> bytes:
    """Data of TC[11,5]."""
    return struct.pack(f">H{len(request_ids)}I", len(request_ids), *request_ids)


def parse_request_ids(data: bytes) -> list[int]:
    """Request ids of TC[11,5] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data.
    """
    return decode_tc_data(SCHEDULE_SERVICE, SCHEDULE_DELETE,
                          lambda r: [r.unpack(">I") for _ in range(read_count(r, "request ids"))], data)


def schedule_report_data(activities: list[tuple[float, bytes]]) -> list[bytes]:
    """Source data of the TM[11,10] reporting ``activities`` (release time, TC packet):
    as many packets as it takes to stay within
    :data:`~flight.spacelink.framing.MAX_TM_SOURCE_DATA` (one, with N = 0, for an empty
    schedule)."""
    chunks: list[bytes] = []
    count, body = 0, b""
    for release_utc_s, packet in activities:
        entry = cds_timestamp(release_utc_s) + struct.pack(">H", len(packet)) + packet
        if count and 2 + len(body) + len(entry) > MAX_TM_SOURCE_DATA:
            chunks.append(struct.pack(">H", count) + body)
            count, body = 0, b""
        count, body = count + 1, body + entry
    chunks.append(struct.pack(">H", count) + body)
    return chunks


# -- ground side -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduledTc:
    """One activity of TM[11,10]: release time, the embedded TC's request id, type and,
    for a TC[8,1] or TC[20,3], what it does."""

    release_utc_s: float
    request_id: int
    service: int
    subtype: int
    summary: str


@dataclass(frozen=True)
class ScheduleReport:
    """TM[11,10]: activities in release order (one packet's share of them)."""

    activities: tuple[ScheduledTc, ...]
    utc_unix_s: float
    dest_id: int = 0
    """The source id of the TC it answers (:func:`flight.spacelink.services.decode_tm` sets it)."""


def _service_data(tc: PusTc) -> bytes:
    """The embedded TC's own data: inside the SDLS header and MAC when it has room for them
    (the ground reads, it does not authenticate), else as it is (lab mode)."""
    data = bytes(tc.app_data)
    return data[SECURITY_HEADER_LEN:-MAC_LEN] if len(data) >= SECURITY_HEADER_LEN + MAC_LEN else data


def summarize_tc(dictionary: Dictionary, tc: PusTc) -> str:
    """What a (scheduled) TC does, in words: ``thermal.set_setpoint setpoint_c=30`` or
    ``TC[17,1]``."""
    data = _service_data(tc)
    try:
        if is_function(tc):
            name, args = decode_function(dictionary, data)
            return " ".join([name, *(f"{k}={v!r}" for k, v in args.items())])
        if (tc.service, tc.message_subtype) == (PARAMETER_SERVICE, PARAMETER_SET):
            name, value = parse_set_parameter(dictionary, data)
            return f"set {name}={value!r}"
    except CommandError:
        pass  # shown by its type alone
    return f"TC[{tc.service},{tc.message_subtype}]"


def decode_report(dictionary: Dictionary, subtype: int, data: bytes, utc_unix_s: float) -> ScheduleReport | None:
    """The report of TM[11,10] source ``data``; ``None`` for another subtype.

    Raises:
        ValueError: malformed data or an embedded TC that does not unpack.
    """
    if subtype != SCHEDULE_DETAIL_REPORT:
        return None
    reader = Reader(bytes(data))
    activities = []
    for _ in range(reader.unpack(">H")):
        release = unix_from_cds(reader.take(TIMESTAMP_LEN))
        tc = PusTc.unpack(reader.take(reader.unpack(">H")))
        activities.append(ScheduledTc(release, request_id(tc), tc.service, tc.message_subtype,
                                      summarize_tc(dictionary, tc)))
    reader.end()
    return ScheduleReport(tuple(activities), utc_unix_s)
