"""PUS service 20, on-board parameter management (ECSS-E-ST-70-41C 6.20): reading and setting
the dictionary's parameters (integers big-endian; TM from
:data:`~flight.spacelink.framing.TC_APID`, addressed to the TC's source).

    ==========  ===============================================================================
    TC[20,1]    report parameter values: ``N u16`` (>= 1), N × ``parameter_id u16``
    TM[20,2]    parameter values: ``N u16``, N × (``parameter_id u16``, value)
    TC[20,3]    set a parameter value: ``N u16`` (= 1), ``parameter_id u16``, value
    ==========  ===============================================================================

Parameter ids are the dictionary's. A parameter value is encoded as its declared type
(``float`` f64, ``int`` i64, ``bool`` u8; :mod:`flight.spacelink.codec`). TC[20,3] sets one
parameter per TC, so that its verification reports speak for exactly one owner's change.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from flight.core.component import CommandError, Dictionary, Parameter
from flight.spacelink.codec import Reader, decode_tc_data, pack_value, read_count, u16_list, unpack_value
from flight.spacelink.layout import Field, Message, Repeat

PARAMETER_SERVICE = 20
PARAMETER_REPORT_VALUES, PARAMETER_VALUE_REPORT, PARAMETER_SET = 1, 2, 3
PARAMETER_TCS = {(PARAMETER_SERVICE, PARAMETER_REPORT_VALUES), (PARAMETER_SERVICE, PARAMETER_SET)}
"""(service, subtype) of every service 20 TC the satellite serves."""

_PARAMETER_ID = Field("parameter_id", "u16", "component_id << 8 | local_id (see Parameters)")
_VALUE = Field("value", "value", "in the parameter's declared type")
_LINK = "link (APID 4)"
MESSAGES = (
    Message("TC", PARAMETER_SERVICE, PARAMETER_REPORT_VALUES, "report parameter values",
            (Field("N", "u16", ">= 1"), Repeat("N", (_PARAMETER_ID,))), "ground", _LINK),
    Message("TM", PARAMETER_SERVICE, PARAMETER_VALUE_REPORT, "parameter value report",
            (Field("N", "u16"), Repeat("N", (_PARAMETER_ID, _VALUE))), _LINK,
            "the TC's source id; sent on every connection"),
    Message("TC", PARAMETER_SERVICE, PARAMETER_SET, "set parameter values",
            (Field("N", "u16", "= 1: one parameter per TC"), _PARAMETER_ID, _VALUE), "ground",
            "link (APID 4), which sends it on board to the parameter's owner",
            "verified like a TC[8,1]"),
)


def parameter_value(par: Parameter, value: Any) -> bytes:
    """The wire encoding of ``value`` as ``par``'s declared type.

    Raises:
        ValueError: a value that does not encode as that type.
    """
    return pack_value(par.type, value)


def parameter_ids_data(parameter_ids: list[int]) -> bytes:
    """Data of TC[20,1]."""
    return u16_list(parameter_ids)


def parse_parameter_ids(dictionary: Dictionary, data: bytes) -> list[str]:
    """Qualified parameter names of TC[20,1] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for an unknown id.
    """
    ids = decode_tc_data(PARAMETER_SERVICE, PARAMETER_REPORT_VALUES,
                         lambda r: [r.unpack(">H") for _ in range(read_count(r, "parameter ids"))], data)
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
    def read(r: Reader) -> tuple[str, Any]:
        if r.unpack(">H") != 1:
            raise ValueError("sets one parameter per TC (N = 1)")
        name = _parameter_name(dictionary, r.unpack(">H"))
        return name, unpack_value(dictionary.parameters[name].type, r)

    name, value = decode_tc_data(PARAMETER_SERVICE, PARAMETER_SET, read, data)
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


@dataclass(frozen=True)
class ParameterReport:
    """TM[20,2]: parameter values by qualified name."""

    values: dict[str, Any]
    utc_unix_s: float
    dest_id: int = 0
    """The source id of the TC it answers (:func:`flight.spacelink.services.decode_tm` sets it)."""


def decode_report(dictionary: Dictionary, subtype: int, data: bytes, utc_unix_s: float) -> ParameterReport | None:
    """The report of TM[20,2] source ``data``; ``None`` for another subtype.

    Raises:
        ValueError: malformed data or a parameter this ground does not know.
    """
    if subtype != PARAMETER_VALUE_REPORT:
        return None
    reader = Reader(bytes(data))
    values = {}
    for _ in range(reader.unpack(">H")):
        name = dictionary.parameter_ids.get(reader.unpack(">H"))
        if name is None:
            raise ValueError("a parameter this ground does not know")
        values[name] = unpack_value(dictionary.parameters[name].type, reader)
    reader.end()
    return ParameterReport(values, utc_unix_s)
