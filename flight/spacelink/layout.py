"""Declared layouts of the space link's data fields: one :class:`Message` per TC and TM of
every PUS service, each a table of named :class:`Field` s (and :class:`Repeat` groups).

The service modules declare their messages here once (``MESSAGES`` in each of them); the
interface control document (:mod:`flight.spacelink.icd`) prints them, and the codecs pack
and unpack their fixed-size parts with :func:`fixed_struct` of the same fields, so the
document and the bytes cannot drift apart. All integers are big-endian (network order).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

WIRE_TYPES: dict[str, tuple[str | None, str]] = {
    "u8": ("B", "unsigned 8-bit integer"),
    "u16": ("H", "unsigned 16-bit integer, big-endian"),
    "u32": ("I", "unsigned 32-bit integer, big-endian"),
    "u64": ("Q", "unsigned 64-bit integer, big-endian"),
    "i32": ("i", "signed 32-bit integer, two's complement, big-endian"),
    "i64": ("q", "signed 64-bit integer, two's complement, big-endian"),
    "f64": ("d", "IEEE-754 binary64, big-endian"),
    "cds": ("7s", "CDS time code, 7 bytes: P-field 0x40 then the 6-byte T-field (see Time code)"),
    "str8": (None, "u8 length N, then N bytes of UTF-8"),
    "text16": (None, "u16 length N, then N bytes of UTF-8 (N <= 1024)"),
    "text": (None, "UTF-8 to the end of the data field (<= 1024 bytes), no length"),
    "value": (None, "a typed value in its declared type's encoding (see Value encoding)"),
    "channel": (None, "a housekeeping channel in its declared encoding (see Value encoding)"),
    "packet": (None, "a whole TC packet, as many bytes as the length field before it says"),
    "bytes16": ("16s", "16 opaque bytes"),
    "bytes48": ("48s", "48 opaque bytes"),
}
"""Wire types of the fields: ``struct`` code (``None``: variable size) and meaning."""


@dataclass(frozen=True)
class Field:
    """One field: ``name``, wire ``type`` (a :data:`WIRE_TYPES` key) and what it holds."""

    name: str
    type: str
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in WIRE_TYPES:
            raise ValueError(f"field {self.name}: unknown wire type {self.type!r}")

    @property
    def size(self) -> int | None:
        """Bytes on the wire; ``None`` when variable."""
        code = WIRE_TYPES[self.type][0]
        return None if code is None else struct.calcsize(">" + code)


@dataclass(frozen=True)
class Repeat:
    """``fields`` repeated as many times as the earlier field ``count`` says."""

    count: str
    fields: tuple[Field, ...]
    doc: str = ""


@dataclass(frozen=True)
class Message:
    """TC or TM[service, subtype]: its ``fields`` in order (the TC's service data, inside
    the security header and MAC; the TM's source data), who sends it (``source``) and to
    whom (``destination``), and what it does."""

    kind: str
    service: int
    subtype: int
    name: str
    fields: tuple[Field | Repeat, ...]
    source: str
    destination: str
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("TC", "TM"):
            raise ValueError(f"{self.name}: kind must be TC or TM, not {self.kind!r}")

    @property
    def label(self) -> str:
        return f"{self.kind}[{self.service},{self.subtype}]"


def fixed_struct(fields: tuple[Field, ...] | list[Field]) -> struct.Struct:
    """The big-endian ``struct`` of fixed-size ``fields``, in order.

    Raises:
        ValueError: a field of variable size.
    """
    codes = []
    for f in fields:
        code = WIRE_TYPES[f.type][0]
        if code is None:
            raise ValueError(f"field {f.name} ({f.type}) has no fixed size")
        codes.append(code)
    return struct.Struct(">" + "".join(codes))
