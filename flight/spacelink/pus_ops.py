"""Space-link codec of the operations services: PUS-C 3 (housekeeping control), 5 (event
reporting control), 11 (time-based scheduling) and 20 (parameter management), for both the
satellite (:mod:`flight.subsystems.link.operations`) and the ground (:mod:`flight.ground.client`).
The transport, APIDs, time field and value encoding are :mod:`flight.spacelink.pus`'s; every
TM below comes from :data:`~flight.spacelink.pus.TC_APID`, addressed to the TC's source.
Subtypes are those of ECSS-E-ST-70-41C (and of ``spacepackets.ecss.pus_3_hk`` /
``pus_5_event`` where it names them). Data fields (integers big-endian):

    ==========  ===============================================================================
    TC[3,5/6]   enable / disable periodic housekeeping: ``N u16`` (>= 1), N × ``sid u16``
    TC[3,9]     report structures: ``N u16``, N × ``sid u16`` (N = 0: every structure)
    TM[3,10]    one structure: ``sid u16``, periodic generation ``u8`` (0/1), collection
                interval ``u32`` ms, ``N u16``, N × channel id ``u16``
    TC[3,31]    modify collection intervals: ``N u16`` (>= 1), N × (``sid u16``, ``u32`` ms)
    TC[5,5/6]   enable / disable event reports: ``N u16`` (>= 1), N × ``event_id u16``
    TC[5,7]     report the disabled events; no data
    TM[5,8]     disabled events: ``N u16``, N × ``event_id u16``
    TC[11,1/2]  enable / disable the schedule's execution function; no data
    TC[11,3]    reset: delete every activity; no data
    TC[11,4]    insert: ``N u16`` (>= 1), N × (release time CDS short, ``len u16``, a whole
                TC packet, signed as it would be sent alone)
    TC[11,5]    delete: ``N u16`` (>= 1), N × ``request_id u32`` of the embedded TC
    TC[11,16]   detail-report every activity; no data
    TM[11,10]   detail report: ``N u16``, N × (release time, ``len u16``, TC packet), in
                release order; split over several packets when long
    TC[20,1]    report parameter values: ``N u16`` (>= 1), N × ``parameter_id u16``
    TM[20,2]    parameter values: ``N u16``, N × (``parameter_id u16``, value)
    TC[20,3]    set a parameter value: ``N u16`` (= 1), ``parameter_id u16``, value
    ==========  ===============================================================================

A structure id (sid) is its component's id; a channel id is ``component_id << 8`` | its
position in the component's declared telemetry (from 1); event and parameter ids are the
dictionary's. A parameter value is encoded as its declared type (``float`` f64, ``int``
i64, ``bool`` u8). TC[20,3] sets one parameter per TC, so that its verification reports
speak for exactly one owner's change.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Component, Dictionary, Parameter
from flight.spacelink import pus
from flight.spacelink.sdls import MAC_LEN, SECURITY_HEADER_LEN

HK_SERVICE, EVENT_SERVICE, SCHEDULE_SERVICE, PARAMETER_SERVICE = 3, 5, 11, 20
HK_ENABLE, HK_DISABLE, HK_REPORT_STRUCTURES, HK_STRUCTURE_REPORT, HK_MODIFY_INTERVAL = 5, 6, 9, 10, 31
EVENT_ENABLE, EVENT_DISABLE, EVENT_REPORT_DISABLED, EVENT_DISABLED_REPORT = 5, 6, 7, 8
(SCHEDULE_ENABLE, SCHEDULE_DISABLE, SCHEDULE_RESET, SCHEDULE_INSERT, SCHEDULE_DELETE, SCHEDULE_DETAIL_REPORT,
 SCHEDULE_REPORT_ALL) = 1, 2, 3, 4, 5, 10, 16
PARAMETER_REPORT_VALUES, PARAMETER_VALUE_REPORT, PARAMETER_SET = 1, 2, 3

OPS_TCS = {
    (HK_SERVICE, HK_ENABLE), (HK_SERVICE, HK_DISABLE), (HK_SERVICE, HK_REPORT_STRUCTURES),
    (HK_SERVICE, HK_MODIFY_INTERVAL),
    (EVENT_SERVICE, EVENT_ENABLE), (EVENT_SERVICE, EVENT_DISABLE), (EVENT_SERVICE, EVENT_REPORT_DISABLED),
    (SCHEDULE_SERVICE, SCHEDULE_ENABLE), (SCHEDULE_SERVICE, SCHEDULE_DISABLE), (SCHEDULE_SERVICE, SCHEDULE_RESET),
    (SCHEDULE_SERVICE, SCHEDULE_INSERT), (SCHEDULE_SERVICE, SCHEDULE_DELETE), (SCHEDULE_SERVICE, SCHEDULE_REPORT_ALL),
    (PARAMETER_SERVICE, PARAMETER_REPORT_VALUES), (PARAMETER_SERVICE, PARAMETER_SET),
}
"""(service, subtype) of every operations TC the satellite serves."""

MIN_INTERVAL_MS, MAX_INTERVAL_MS = 1_000, 3_600_000
"""Housekeeping collection interval limits (1 s .. 1 h), as ``link.set_hk_interval``."""
MAX_LIST = 1024
"""Most ids in one TC's list (a longer one is a FORMAT_ERROR)."""


# -- lists and values ------------------------------------------------------------------------
def _u16_list(values: list[int]) -> bytes:
    return struct.pack(f">H{len(values)}H", len(values), *values)


def _read_count(reader: pus._Reader, what: str, *, empty_ok: bool = False) -> int:
    n = reader.unpack(">H")
    if (n == 0 and not empty_ok) or n > MAX_LIST:
        raise ValueError(f"{n} {what}: need 1..{MAX_LIST}")
    return n


def _decoded(service: int, subtype: int, read: Callable[[pus._Reader], Any], data: bytes) -> Any:
    """``read`` the TC data with a bounds-checked reader that must end exactly at its end.

    Raises:
        CommandError: FORMAT_ERROR for short, long or malformed data.
    """
    reader = pus._Reader(bytes(data))
    try:
        out = read(reader)
        reader.end()
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError("FORMAT_ERROR", f"TC[{service},{subtype}]: {exc}") from None
    return out


def parameter_value(par: Parameter, value: Any) -> bytes:
    """The wire encoding of ``value`` as ``par``'s declared type.

    Raises:
        ValueError: a value that does not encode as that type.
    """
    return pus._pack_value(par.type, value)


# -- service 3 ---------------------------------------------------------------------------------
def sid_list_data(sids: list[int]) -> bytes:
    """Data of TC[3,5], TC[3,6] and TC[3,9] (see the module table)."""
    return _u16_list(sids)


def interval_data(intervals_s: dict[int, float]) -> bytes:
    """Data of TC[3,31]: collection interval in seconds per structure id (sent in ms)."""
    out = struct.pack(">H", len(intervals_s))
    for sid, interval_s in intervals_s.items():
        out += struct.pack(">HI", sid, round(interval_s * 1000))
    return out


def parse_sids(dictionary: Dictionary, subtype: int, data: bytes) -> list[int]:
    """Structure ids of TC[3,5/6/9] data; an empty list for TC[3,9]'s "every structure".

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for a structure id
            that is no component's.
    """
    sids = _decoded(HK_SERVICE, subtype, lambda r: [r.unpack(">H") for _ in range(
        _read_count(r, "structure ids", empty_ok=subtype == HK_REPORT_STRUCTURES))], data)
    _known_sids(dictionary, sids)
    return sids


def parse_intervals(dictionary: Dictionary, data: bytes) -> dict[int, float]:
    """Collection interval (s) per structure id of TC[3,31] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data or a repeated structure id;
            VALIDATION_ERROR for an unknown structure or an interval outside 1 s .. 1 h.
    """
    pairs = _decoded(HK_SERVICE, HK_MODIFY_INTERVAL, lambda r: [
        struct.unpack(">HI", r.take(6)) for _ in range(_read_count(r, "intervals"))], data)
    if len({sid for sid, _ in pairs}) != len(pairs):
        raise CommandError("FORMAT_ERROR", "TC[3,31]: a structure id is repeated")
    _known_sids(dictionary, [sid for sid, _ in pairs])
    for sid, ms in pairs:
        if not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
            raise CommandError("VALIDATION_ERROR", f"structure {sid}: interval {ms} ms outside "
                                                   f"[{MIN_INTERVAL_MS}, {MAX_INTERVAL_MS}] ms")
    return {sid: ms / 1000 for sid, ms in pairs}


def _known_sids(dictionary: Dictionary, sids: list[int]) -> None:
    known = {c.component_id for c in dictionary.components.values() if c.telemetry}
    unknown = sorted(set(sids) - known)
    if unknown:
        raise CommandError("VALIDATION_ERROR", f"no housekeeping structure {unknown}")


def channel_id(component: Component, index: int) -> int:
    """Channel id of the ``index``-th (from 0) declared channel of ``component``."""
    return component.component_id << 8 | (index + 1)


def hk_structure_data(component: Component, enabled: bool, interval_s: float) -> bytes:
    """Source data of TM[3,10] for ``component``'s housekeeping structure."""
    ids = [channel_id(component, i) for i in range(len(component.telemetry))]
    return struct.pack(">HBI", component.component_id, int(enabled), round(interval_s * 1000)) + _u16_list(ids)


# -- service 5 ---------------------------------------------------------------------------------
def event_list_data(event_ids: list[int]) -> bytes:
    """Data of TC[5,5] / TC[5,6], and source data of TM[5,8]."""
    return _u16_list(event_ids)


def parse_event_ids(dictionary: Dictionary, subtype: int, data: bytes) -> list[int]:
    """Event ids of TC[5,5/6] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for an event id
            that is not declared.
    """
    ids = _decoded(EVENT_SERVICE, subtype, lambda r: [r.unpack(">H") for _ in range(_read_count(r, "event ids"))],
                   data)
    unknown = sorted(i for i in set(ids) if i not in dictionary.event_ids)
    if unknown:
        raise CommandError("VALIDATION_ERROR", f"no event with id {', '.join(f'0x{i:04x}' for i in unknown)}")
    return ids


def parse_empty(service: int, subtype: int, data: bytes) -> None:
    """Check that a TC that carries no data carries none.

    Raises:
        CommandError: FORMAT_ERROR for any data.
    """
    if data:
        raise CommandError("FORMAT_ERROR", f"TC[{service},{subtype}] carries no application data")


# -- service 11 --------------------------------------------------------------------------------
def insert_data(activities: list[tuple[float, bytes]]) -> bytes:
    """Data of TC[11,4]: (release time as UTC Unix seconds, TC packet bytes) per activity.

    Raises:
        ValueError: a release time outside the CDS short range, or a TC over 65535 bytes.
    """
    out = struct.pack(">H", len(activities))
    for release_utc_s, packet in activities:
        out += pus.cds_timestamp(release_utc_s) + struct.pack(">H", len(packet)) + packet
    return out


def _read_timed_tcs(reader: pus._Reader) -> list[tuple[float, bytes]]:
    out = []
    for _ in range(_read_count(reader, "activities")):
        release = pus.unix_from_cds(reader.take(pus.TIMESTAMP_LEN))
        out.append((release, reader.take(reader.unpack(">H"))))
    return out


def parse_insert(data: bytes) -> list[tuple[float, PusTc]]:
    """Release time (UTC Unix s) and embedded TC of each activity of TC[11,4] data; the
    embedded TCs are framed and CRC-checked here, nothing else.

    Raises:
        CommandError: FORMAT_ERROR for malformed data or an embedded packet that is not one
            whole PUS-C TC with a good CRC.
    """
    timed = _decoded(SCHEDULE_SERVICE, SCHEDULE_INSERT, _read_timed_tcs, data)
    out = []
    for i, (release, packet) in enumerate(timed):
        parsed = pus.TcStreamParser(len(packet) + 1).feed(packet)
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
    return _decoded(SCHEDULE_SERVICE, SCHEDULE_DELETE,
                    lambda r: [r.unpack(">I") for _ in range(_read_count(r, "request ids"))], data)


def schedule_report_data(activities: list[tuple[float, bytes]]) -> list[bytes]:
    """Source data of the TM[11,10] reporting ``activities`` (release time, TC packet):
    as many packets as it takes to stay within :data:`~flight.spacelink.pus.MAX_TM_SOURCE_DATA`
    (one, with N = 0, for an empty schedule)."""
    chunks: list[bytes] = []
    count, body = 0, b""
    for release_utc_s, packet in activities:
        entry = pus.cds_timestamp(release_utc_s) + struct.pack(">H", len(packet)) + packet
        if count and 2 + len(body) + len(entry) > pus.MAX_TM_SOURCE_DATA:
            chunks.append(struct.pack(">H", count) + body)
            count, body = 0, b""
        count, body = count + 1, body + entry
    chunks.append(struct.pack(">H", count) + body)
    return chunks


# -- service 20 --------------------------------------------------------------------------------
def parameter_ids_data(parameter_ids: list[int]) -> bytes:
    """Data of TC[20,1]."""
    return _u16_list(parameter_ids)


def parse_parameter_ids(dictionary: Dictionary, data: bytes) -> list[str]:
    """Qualified parameter names of TC[20,1] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for an unknown id.
    """
    ids = _decoded(PARAMETER_SERVICE, PARAMETER_REPORT_VALUES,
                   lambda r: [r.unpack(">H") for _ in range(_read_count(r, "parameter ids"))], data)
    return [_parameter_name(dictionary, i) for i in ids]


def _parameter_name(dictionary: Dictionary, parameter_id: int) -> str:
    name = dictionary.parameter_ids.get(parameter_id)
    if name is None:
        raise CommandError("VALIDATION_ERROR", f"no parameter with id 0x{parameter_id:04x}")
    return name


def set_parameter_data(dictionary: Dictionary, qualified: str, value: Any) -> bytes:
    """Data of TC[20,3] setting parameter ``qualified`` to ``value`` (type checked, range not,
    so a ground tool can still send an out-of-range value on purpose).

    Raises:
        KeyError: an unknown parameter. ValueError: a value that does not encode as its type.
    """
    par = dictionary.parameters[qualified]
    return struct.pack(">HH", 1, dictionary.parameter_id(qualified)) + parameter_value(par, value)


def parse_set_parameter(dictionary: Dictionary, data: bytes) -> tuple[str, Any]:
    """Qualified name and validated value of TC[20,3] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data, N other than 1 or a value of the
            wrong type; VALIDATION_ERROR for an unknown parameter or a value outside its
            declared range.
    """
    def read(r: pus._Reader) -> tuple[str, Any]:
        if r.unpack(">H") != 1:
            raise ValueError("sets one parameter per TC (N = 1)")
        name = _parameter_name(dictionary, r.unpack(">H"))
        return name, pus._unpack_value(dictionary.parameters[name].type, r)

    name, value = _decoded(PARAMETER_SERVICE, PARAMETER_SET, read, data)
    return name, dictionary.parameters[name].validate(value)


def parameter_report_data(dictionary: Dictionary, values: dict[str, Any]) -> bytes:
    """Source data of TM[20,2] for ``values`` (qualified name → value).

    Raises:
        ValueError: a value that does not encode as its parameter's type.
    """
    out = struct.pack(">H", len(values))
    for name, value in values.items():
        out += struct.pack(">H", dictionary.parameter_id(name)) + parameter_value(dictionary.parameters[name], value)
    return out


# -- ground side: reports ----------------------------------------------------------------------
@dataclass(frozen=True)
class HkStructureReport:
    """TM[3,10]: one housekeeping structure, its generation state and interval."""

    component: Component
    enabled: bool
    interval_s: float
    channels: tuple[str, ...]
    utc_unix_s: float


@dataclass(frozen=True)
class DisabledEventsReport:
    """TM[5,8]: the events whose TM[5,x] generation is disabled (qualified names)."""

    events: tuple[str, ...]
    utc_unix_s: float


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


@dataclass(frozen=True)
class ParameterReport:
    """TM[20,2]: parameter values by qualified name."""

    values: dict[str, Any]
    utc_unix_s: float


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
        if pus.is_function(tc):
            name, args = pus.decode_function(dictionary, data)
            return " ".join([name, *(f"{k}={v!r}" for k, v in args.items())])
        if (tc.service, tc.message_subtype) == (PARAMETER_SERVICE, PARAMETER_SET):
            name, value = parse_set_parameter(dictionary, data)
            return f"set {name}={value!r}"
    except CommandError:
        pass  # shown by its type alone
    return f"TC[{tc.service},{tc.message_subtype}]"


def decode_ops_tm(dictionary: Dictionary, service: int, subtype: int, data: bytes, utc: float) -> Any:
    """The report of TM[3,10], TM[5,8], TM[11,10] or TM[20,2] source ``data``; ``None`` for
    any other TM.

    Raises:
        ValueError: malformed data, or a structure, event or parameter this ground does not know.
    """
    reader = pus._Reader(bytes(data))
    if (service, subtype) == (HK_SERVICE, HK_STRUCTURE_REPORT):
        sid, enabled, interval_ms = struct.unpack(">HBI", reader.take(7))
        component = next((c for c in dictionary.components.values() if c.component_id == sid), None)
        if component is None:
            raise ValueError(f"no component with structure id {sid}")
        ids = [reader.unpack(">H") for _ in range(reader.unpack(">H"))]
        names = {channel_id(component, i): f"{component.name}.{ch.name}" for i, ch in enumerate(component.telemetry)}
        report: Any = HkStructureReport(component, bool(enabled), interval_ms / 1000,
                                        tuple(names.get(i, f"channel 0x{i:04x}") for i in ids), utc)
    elif (service, subtype) == (EVENT_SERVICE, EVENT_DISABLED_REPORT):
        ids = [reader.unpack(">H") for _ in range(reader.unpack(">H"))]
        report = DisabledEventsReport(tuple(dictionary.event_ids.get(i, f"event 0x{i:04x}") for i in ids), utc)
    elif (service, subtype) == (SCHEDULE_SERVICE, SCHEDULE_DETAIL_REPORT):
        activities = []
        for _ in range(reader.unpack(">H")):
            release = pus.unix_from_cds(reader.take(pus.TIMESTAMP_LEN))
            tc = PusTc.unpack(reader.take(reader.unpack(">H")))
            activities.append(ScheduledTc(release, pus.request_id(tc), tc.service, tc.message_subtype,
                                          summarize_tc(dictionary, tc)))
        report = ScheduleReport(tuple(activities), utc)
    elif (service, subtype) == (PARAMETER_SERVICE, PARAMETER_VALUE_REPORT):
        values = {}
        for _ in range(reader.unpack(">H")):
            name = dictionary.parameter_ids.get(reader.unpack(">H"))
            if name is None:
                raise ValueError("a parameter this ground does not know")
            values[name] = pus._unpack_value(dictionary.parameters[name].type, reader)
        report = ParameterReport(values, utc)
    else:
        return None
    reader.end()
    return report
