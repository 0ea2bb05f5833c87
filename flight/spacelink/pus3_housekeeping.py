"""PUS service 3, housekeeping (ECSS-E-ST-70-41C 6.3): the periodic TM[3,25] parameter
reports and their control (integers big-endian; control TM from
:data:`~flight.spacelink.framing.TC_APID`, addressed to the TC's source).

    ==========  ===============================================================================
    TM[3,25]    housekeeping parameter report, from the component's APID: ``structure_id
                u16`` (the component id) then every declared channel in declared order, each
                in its channel's encoding (:mod:`flight.spacelink.codec`)
    TC[3,5/6]   enable / disable periodic housekeeping: ``N u16`` (>= 1), N × ``sid u16``
    TC[3,9]     report structures: ``N u16``, N × ``sid u16`` (N = 0: every structure)
    TM[3,10]    one structure: ``sid u16``, periodic generation ``u8`` (0/1), collection
                interval ``u32`` ms, ``N u16``, N × channel id ``u16``
    TC[3,31]    modify collection intervals: ``N u16`` (>= 1), N × (``sid u16``, ``u32`` ms)
    ==========  ===============================================================================

A structure id (sid) is its component's id; a channel id is ``component_id << 8`` | its
position in the component's declared telemetry (from 1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping

from flight.core.component import CommandError, Component, Dictionary
from flight.spacelink.framing import MAX_TM_SOURCE_DATA, TmFramer
from flight.spacelink.codec import (
    Reader,
    decode_tc_data,
    pack_array,
    pack_value,
    read_count,
    u16_list,
    unpack_array,
    unpack_value,
)
from flight.spacelink.layout import Field, Message, Repeat, fixed_struct

HK_SERVICE = 3
HK_ENABLE, HK_DISABLE, HK_REPORT_STRUCTURES, HK_STRUCTURE_REPORT = 5, 6, 9, 10
HK_PARAMETER_REPORT, HK_MODIFY_INTERVAL = 25, 31
HK_TCS = {(HK_SERVICE, s) for s in (HK_ENABLE, HK_DISABLE, HK_REPORT_STRUCTURES, HK_MODIFY_INTERVAL)}
"""(service, subtype) of every service 3 TC the satellite serves."""

MIN_INTERVAL_MS, MAX_INTERVAL_MS = 1_000, 3_600_000
"""Housekeeping collection interval limits (1 s .. 1 h), as ``link.set_hk_interval``."""

_SID = Field("structure_id", "u16", "the component id (see Housekeeping structures)")
_SIDS = (Field("N", "u16"), Repeat("N", (_SID,)))
_INTERVAL = Field("interval_ms", "u32", f"collection interval, ms ({MIN_INTERVAL_MS}..{MAX_INTERVAL_MS})")
STRUCTURE_HEADER = (_SID, Field("periodic", "u8", "1: periodic generation on, 0: off"), _INTERVAL)
"""TM[3,10]'s fixed part."""
INTERVAL_ENTRY = (_SID, _INTERVAL)
"""One entry of TC[3,31]."""
_STRUCTURE_HEADER, _INTERVAL_ENTRY = fixed_struct(STRUCTURE_HEADER), fixed_struct(INTERVAL_ENTRY)
_LINK, _TO_SOURCE = "link (APID 4)", "the TC's source id; sent on every connection"
MESSAGES = (
    Message("TM", HK_SERVICE, HK_PARAMETER_REPORT, "housekeeping parameter report",
            (_SID, Field("channels", "channel", "every channel of the structure, in its order")),
            "the component (APID = its id)", "every connection (destination id 0)",
            "periodic, every collection interval, timed at the sampling time"),
    Message("TC", HK_SERVICE, HK_ENABLE, "enable periodic housekeeping reports", _SIDS, "ground", _LINK,
            "N >= 1"),
    Message("TC", HK_SERVICE, HK_DISABLE, "disable periodic housekeeping reports", _SIDS, "ground", _LINK,
            "N >= 1"),
    Message("TC", HK_SERVICE, HK_REPORT_STRUCTURES, "report housekeeping structures", _SIDS, "ground", _LINK,
            "N = 0: every structure; answered by one TM[3,10] per structure"),
    Message("TM", HK_SERVICE, HK_STRUCTURE_REPORT, "housekeeping structure report",
            (*STRUCTURE_HEADER, Field("N", "u16"),
             Repeat("N", (Field("channel_id", "u16", "component_id << 8 | position in the structure (from 1)"),))),
            _LINK, _TO_SOURCE),
    Message("TC", HK_SERVICE, HK_MODIFY_INTERVAL, "modify collection intervals",
            (Field("N", "u16", ">= 1, no structure twice"), Repeat("N", INTERVAL_ENTRY)), "ground", _LINK),
)


# -- TM[3,25] parameter report -----------------------------------------------------------------
def encode_hk(component: Component, values: Mapping[str, Any]) -> bytes:
    """Source data of TM[3,25]: the component id as structure id, then every declared channel.

    Raises:
        ValueError: a declared channel missing from ``values``, a value that does not encode
            as its channel's type, or a report longer than
            :data:`~flight.spacelink.framing.MAX_TM_SOURCE_DATA`.
    """
    out = bytearray(struct.pack(">H", component.component_id))
    for ch in component.telemetry:
        if ch.name not in values:
            raise ValueError(f"{component.name}.{ch.name} missing from the packet")
        value = values[ch.name]
        try:
            out += pack_array(ch.type, value) if ch.size else pack_value(ch.type, value)
        except ValueError as exc:
            raise ValueError(f"{component.name}.{ch.name}: {exc}") from None
    if len(out) > MAX_TM_SOURCE_DATA:
        raise ValueError(f"{component.name} report of {len(out)} bytes exceeds {MAX_TM_SOURCE_DATA}")
    return bytes(out)


def _component_of_sid(dictionary: Dictionary, sid: int) -> Component:
    component = next((c for c in dictionary.components.values() if c.component_id == sid), None)
    if component is None:
        raise ValueError(f"no component with structure id {sid}")
    return component


def decode_hk(dictionary: Dictionary, data: bytes) -> tuple[Component, dict[str, Any]]:
    """Component and channel values of TM[3,25] source data; arrays come back as lists of
    their channel's type (float, int or bool).

    Raises:
        ValueError: an unknown structure id, short or trailing data, or a bad value.
    """
    reader = Reader(bytes(data))
    component = _component_of_sid(dictionary, reader.unpack(">H"))
    values: dict[str, Any] = {}
    for ch in component.telemetry:
        values[ch.name] = unpack_array(ch.type, reader) if ch.size else unpack_value(ch.type, reader)
    reader.end()
    return component, values


def hk_report(framer: TmFramer, component: Component, values: Mapping[str, Any], *, utc_unix_s: float) -> bytes:
    """TM[3,25] of ``component``'s channel ``values``, from its APID (see :func:`encode_hk`)."""
    return framer.packet(component.component_id, HK_SERVICE, HK_PARAMETER_REPORT, encode_hk(component, values),
                         utc_unix_s=utc_unix_s)


@dataclass(frozen=True)
class HkReport:
    """TM[3,25]: one component's channel values sampled at ``utc_unix_s``."""

    component: Component
    values: dict[str, Any]
    utc_unix_s: float


# -- control: TC[3,5/6/9/31], TM[3,10] -----------------------------------------------------------
def sid_list_data(sids: list[int]) -> bytes:
    """Data of TC[3,5], TC[3,6] and TC[3,9] (see the module table)."""
    return u16_list(sids)


def interval_data(intervals_s: dict[int, float]) -> bytes:
    """Data of TC[3,31]: collection interval in seconds per structure id (sent in ms)."""
    out = struct.pack(">H", len(intervals_s))
    for sid, interval_s in intervals_s.items():
        out += _INTERVAL_ENTRY.pack(sid, round(interval_s * 1000))
    return out


def parse_sids(dictionary: Dictionary, subtype: int, data: bytes) -> list[int]:
    """Structure ids of TC[3,5/6/9] data; an empty list for TC[3,9]'s "every structure".

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for a structure id
            that is no component's.
    """
    sids = decode_tc_data(HK_SERVICE, subtype, lambda r: [r.unpack(">H") for _ in range(
        read_count(r, "structure ids", empty_ok=subtype == HK_REPORT_STRUCTURES))], data)
    _known_sids(dictionary, sids)
    return sids


def parse_intervals(dictionary: Dictionary, data: bytes) -> dict[int, float]:
    """Collection interval (s) per structure id of TC[3,31] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data or a repeated structure id;
            VALIDATION_ERROR for an unknown structure or an interval outside 1 s .. 1 h.
    """
    pairs = decode_tc_data(HK_SERVICE, HK_MODIFY_INTERVAL, lambda r: [
        _INTERVAL_ENTRY.unpack(r.take(_INTERVAL_ENTRY.size)) for _ in range(read_count(r, "intervals"))], data)
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
    return _STRUCTURE_HEADER.pack(component.component_id, int(enabled), round(interval_s * 1000)) + u16_list(ids)


@dataclass(frozen=True)
class HkStructureReport:
    """TM[3,10]: one housekeeping structure, its generation state and interval."""

    component: Component
    enabled: bool
    interval_s: float
    channels: tuple[str, ...]
    utc_unix_s: float
    dest_id: int = 0
    """The source id of the TC it answers (:func:`flight.spacelink.services.decode_tm` sets it)."""


# -- ground side -----------------------------------------------------------------------------------
def decode_report(dictionary: Dictionary, subtype: int, data: bytes,
                  utc_unix_s: float) -> HkReport | HkStructureReport | None:
    """The report of TM[3,25] or TM[3,10] source ``data``; ``None`` for another subtype.

    Raises:
        ValueError: malformed data or a structure this ground does not know.
    """
    if subtype == HK_PARAMETER_REPORT:
        component, values = decode_hk(dictionary, data)
        return HkReport(component, values, utc_unix_s)
    if subtype != HK_STRUCTURE_REPORT:
        return None
    reader = Reader(bytes(data))
    sid, enabled, interval_ms = _STRUCTURE_HEADER.unpack(reader.take(_STRUCTURE_HEADER.size))
    component = _component_of_sid(dictionary, sid)
    ids = [reader.unpack(">H") for _ in range(reader.unpack(">H"))]
    reader.end()
    names = {channel_id(component, i): f"{component.name}.{ch.name}" for i, ch in enumerate(component.telemetry)}
    return HkStructureReport(component, bool(enabled), interval_ms / 1000,
                             tuple(names.get(i, f"channel 0x{i:04x}") for i in ids), utc_unix_s)
