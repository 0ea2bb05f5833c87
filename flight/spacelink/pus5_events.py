"""PUS service 5, event reporting (ECSS-E-ST-70-41C 6.5): the TM[5,1..4] event reports and
their control (integers big-endian; control TM from :data:`~flight.spacelink.framing.TC_APID`,
addressed to the TC's source).

    ==========  ===============================================================================
    TM[5,1..4]  event report from the component's APID, subtype by severity
                INFO/LOW/MEDIUM/HIGH: ``event_id u16`` (``component_id << 8 | local_id``),
                the message, ``u16`` length + UTF-8 (cut to
                :data:`~flight.spacelink.codec.MAX_TEXT_BYTES`), then the auxiliary data
                (6.5): ``N u8`` and the event's N declared arguments in declared order,
                each in its type's value encoding (N = 0 when they were malformed)
    TC[5,5/6]   enable / disable event reports: ``N u16`` (>= 1), N × ``event_id u16``
    TC[5,7]     report the disabled events; no data
    TM[5,8]     disabled events: ``N u16``, N × ``event_id u16``
    ==========  ===============================================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

from spacepackets.ecss.defs import PusService

from flight.core.component import SEVERITIES, CommandError, Dictionary, Event
from flight.spacelink.framing import TmFramer
from flight.spacelink.codec import Reader, cut_utf8, decode_tc_data, pack_value, read_count, u16_list, unpack_value
from flight.spacelink.layout import Field, Message, Repeat

EVENT_SERVICE = PusService.S5_EVENT
EVENT_ENABLE, EVENT_DISABLE, EVENT_REPORT_DISABLED, EVENT_DISABLED_REPORT = 5, 6, 7, 8
EVENT_TCS = {(EVENT_SERVICE, s) for s in (EVENT_ENABLE, EVENT_DISABLE, EVENT_REPORT_DISABLED)}
"""(service, subtype) of every service 5 TC the satellite serves."""

EVENT_SUBTYPES = {severity: subtype for subtype, severity in enumerate(SEVERITIES, start=1)}
"""TM[5,x] subtype per severity: INFO 1, LOW 2, MEDIUM 3, HIGH 4 (ECSS-E-ST-70-41C 6.5)."""
SEVERITY_OF_SUBTYPE = {subtype: severity for severity, subtype in EVENT_SUBTYPES.items()}

_EVENT_ID = Field("event_id", "u16", "component_id << 8 | local_id (see Events)")
_EVENT_IDS = (Field("N", "u16"), Repeat("N", (_EVENT_ID,)))
_LINK = "link (APID 4)"
MESSAGES = (
    *(Message("TM", EVENT_SERVICE, subtype, f"{severity} severity event report",
              (_EVENT_ID, Field("message", "text16", "the event's format filled with its arguments"),
               Field("N", "u8", "number of arguments: the event's declared count, or 0 when they were malformed"),
               Field("arguments", "value", "the event's declared arguments in declared order (see Events); a "
                                           "str argument cut to 255 UTF-8 bytes")),
              "the component (APID = its id)", "every connection (destination id 0)")
      for severity, subtype in EVENT_SUBTYPES.items()),
    Message("TC", EVENT_SERVICE, EVENT_ENABLE, "enable event report generation", _EVENT_IDS, "ground", _LINK,
            "N >= 1"),
    Message("TC", EVENT_SERVICE, EVENT_DISABLE, "disable event report generation", _EVENT_IDS, "ground", _LINK,
            "N >= 1; the event is still recorded on board"),
    Message("TC", EVENT_SERVICE, EVENT_REPORT_DISABLED, "report the list of disabled events", (), "ground", _LINK),
    Message("TM", EVENT_SERVICE, EVENT_DISABLED_REPORT, "disabled event list report", _EVENT_IDS, _LINK,
            "the TC's source id; sent on every connection"),
)


# -- TM[5,1..4] event reports --------------------------------------------------------------------
MAX_STR_ARG_BYTES = 255
"""A str event argument is cut to this many UTF-8 bytes (its u8 length)."""


def encode_event(event_id: int, message: str, event: Event | None = None,
                 args: Mapping[str, Any] | None = None) -> bytes:
    """Source data of TM[5,x]: ``event_id`` (u16), the message (u16 length + UTF-8, cut to
    :data:`~flight.spacelink.codec.MAX_TEXT_BYTES`), then ``N u8`` and ``event``'s declared
    arguments from ``args`` in declared order; N = 0 when ``args`` lacks one or one does not
    encode as its type (a malformed event still goes down, its message says what was wrong)."""
    raw = cut_utf8(message)
    values = _event_args(event, args)
    return struct.pack(">HH", event_id, len(raw)) + raw + bytes([len(event.args) if values else 0]) + values


def _event_args(event: Event | None, args: Mapping[str, Any] | None) -> bytes:
    """``event``'s declared arguments from ``args``, or nothing when one is missing or does
    not encode as its type."""
    if event is None or args is None:
        return b""
    out = bytearray()
    for arg in event.args:
        value = args.get(arg.name)
        if arg.type == "str" and isinstance(value, str):
            value = cut_utf8(value, MAX_STR_ARG_BYTES).decode("utf-8")
        try:
            out += pack_value(arg.type, value)
        except ValueError:
            return b""
    return bytes(out)


def decode_event(dictionary: Dictionary, data: bytes) -> tuple[int, str, dict[str, Any]]:
    """Event id, message and arguments (name → value) of TM[5,x] source data; the arguments
    of an event ``dictionary`` does not declare are not read.

    Raises:
        ValueError: short or trailing data, an argument count that is neither 0 nor the
            declared one, or a message that is not UTF-8.
    """
    reader = Reader(bytes(data))
    event_id = reader.unpack(">H")
    message = reader.take(reader.unpack(">H")).decode("utf-8")
    n = reader.unpack(">B")
    qualified = dictionary.event_ids.get(event_id)
    if qualified is None:
        return event_id, message, {}
    declared = dictionary.events[qualified].args
    if n not in (0, len(declared)):
        raise ValueError(f"{qualified}: {n} arguments, declared {len(declared)}")
    args = {a.name: unpack_value(a.type, reader) for a in declared} if n else {}
    reader.end()
    return event_id, message, args


def event_report(framer: TmFramer, dictionary: Dictionary, qualified: str, message: str, *,
                 utc_unix_s: float, args: Mapping[str, Any] | None = None) -> bytes:
    """TM[5,1..4] of declared event ``qualified`` with its ``args`` (see :func:`encode_event`)
    from its component's APID (subtype from its declared severity).

    Raises:
        KeyError: an event that is not in ``dictionary``.
    """
    event = dictionary.events[qualified]
    component = dictionary.components[qualified.partition(".")[0]]
    return framer.packet(component.component_id, EVENT_SERVICE, EVENT_SUBTYPES[event.severity],
                         encode_event(dictionary.event_id(qualified), message, event, args), utc_unix_s=utc_unix_s)


@dataclass(frozen=True)
class EventReport:
    """TM[5,x]: event ``name`` (qualified) with its severity, message and typed arguments
    (empty when they were malformed or the event is unknown)."""

    name: str
    event_id: int
    severity: str
    message: str
    utc_unix_s: float
    args: dict[str, Any] = field(default_factory=dict)


# -- control: TC[5,5/6/7], TM[5,8] ------------------------------------------------------------------
def event_list_data(event_ids: list[int]) -> bytes:
    """Data of TC[5,5] / TC[5,6], and source data of TM[5,8]."""
    return u16_list(event_ids)


def parse_event_ids(dictionary: Dictionary, subtype: int, data: bytes) -> list[int]:
    """Event ids of TC[5,5/6] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for an event id
            that is not declared.
    """
    ids = decode_tc_data(EVENT_SERVICE, subtype,
                         lambda r: [r.unpack(">H") for _ in range(read_count(r, "event ids"))], data)
    unknown = sorted(i for i in set(ids) if i not in dictionary.event_ids)
    if unknown:
        raise CommandError("VALIDATION_ERROR", f"no event with id {', '.join(f'0x{i:04x}' for i in unknown)}")
    return ids


@dataclass(frozen=True)
class DisabledEventsReport:
    """TM[5,8]: the events whose TM[5,x] generation is disabled (qualified names)."""

    events: tuple[str, ...]
    utc_unix_s: float
    dest_id: int = 0
    """The source id of the TC it answers (:func:`flight.spacelink.services.decode_tm` sets it)."""


# -- ground side -----------------------------------------------------------------------------------
def decode_report(dictionary: Dictionary, subtype: int, data: bytes,
                  utc_unix_s: float) -> EventReport | DisabledEventsReport | None:
    """The report of TM[5,1..4] or TM[5,8] source ``data``; ``None`` for another subtype.
    An event id the dictionary does not know is named ``event 0xNNNN``.

    Raises:
        ValueError: malformed data.
    """
    if subtype in SEVERITY_OF_SUBTYPE:
        event_id, message, args = decode_event(dictionary, data)
        name = dictionary.event_ids.get(event_id, f"event 0x{event_id:04x}")
        return EventReport(name, event_id, SEVERITY_OF_SUBTYPE[subtype], message, utc_unix_s, args)
    if subtype != EVENT_DISABLED_REPORT:
        return None
    reader = Reader(bytes(data))
    ids = [reader.unpack(">H") for _ in range(reader.unpack(">H"))]
    reader.end()
    return DisabledEventsReport(tuple(dictionary.event_ids.get(i, f"event 0x{i:04x}") for i in ids), utc_unix_s)
