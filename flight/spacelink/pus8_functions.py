"""PUS service 8, function management (ECSS-E-ST-70-41C 6.8): TC[8,1] perform a function,
the way every dictionary command travels up the space link.

TC[8,1] data: ``function_id u16`` (the dictionary opcode, ``component_id << 8 | local_id``)
then the command's arguments in their declared order, each in its type's encoding
(:mod:`flight.spacelink.codec`). The dictionary fixes number and order, so the PUS-C ``N``
and argument ids are not sent.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

from spacepackets.ecss.defs import PusService
from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Dictionary
from flight.spacelink.framing import ACK_ALL, MAX_TC_APP_DATA, build_tc
from flight.spacelink.codec import Reader, pack_value, unpack_value
from flight.spacelink.layout import Field, Message

FUNCTION_SERVICE, PERFORM_FUNCTION = PusService.S8_FUNC_CMD, 1
MESSAGES = (
    Message("TC", FUNCTION_SERVICE, PERFORM_FUNCTION, "perform a function",
            (Field("function_id", "u16", "the command's opcode: component_id << 8 | local_id (see Commands)"),
             Field("arguments", "value", "each declared argument in declared order, in its type's encoding; "
                                         "no N, no argument ids")),
            "ground", "link (APID 4), which sends it on board to the command's owner"),
)


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
            out += pack_value(arg.type, args[arg.name])
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
    reader = Reader(bytes(app_data))
    try:
        opcode = reader.unpack(">H")
    except ValueError:
        raise CommandError("FORMAT_ERROR", "TC[8,1] data shorter than its 2-byte function id") from None
    qualified = dictionary.opcodes.get(opcode)
    if qualified is None:
        raise CommandError("INVALID_OPCODE", f"no command with function id 0x{opcode:04x}")
    try:
        args = {a.name: unpack_value(a.type, reader) for a in dictionary.commands[qualified].args}
        reader.end()
    except ValueError as exc:
        raise CommandError("FORMAT_ERROR", f"{qualified}: {exc}") from None
    return qualified, args


def function_tc(dictionary: Dictionary, qualified: str, args: Mapping[str, Any], *, seq_count: int,
                source_id: int, ack_flags: int = ACK_ALL) -> PusTc:
    """TC[8,1] perform function ``qualified`` with ``args`` (see :func:`encode_function`)."""
    return build_tc(FUNCTION_SERVICE, PERFORM_FUNCTION, encode_function(dictionary, qualified, args),
                    seq_count=seq_count, source_id=source_id, ack_flags=ack_flags)


def is_function(tc: PusTc) -> bool:
    """Whether ``tc`` is a TC[8,1]."""
    return (tc.service, tc.message_subtype) == (FUNCTION_SERVICE, PERFORM_FUNCTION)
