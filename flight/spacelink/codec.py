"""The value codec of the space link's data fields: typed values, arrays, texts and id lists,
and the bounds-checked :class:`Reader` every service module reads its data fields with.

Value encoding (command arguments, housekeeping channels, parameters; integers big-endian):
``float`` → IEEE-754 f64, ``int`` → i64, ``bool`` → u8 (0 or 1), ``str`` → u8 length +
UTF-8 (at most 255 bytes); an array channel (``size > 0``) → u16 count + that many elements
of its channel's type (:data:`ARRAY_ELEMENTS`): ``float`` f64, ``int`` i32, ``bool`` u8 (0
or 1). Free texts (event messages, failure data) are cut to :data:`MAX_TEXT_BYTES`.
"""

from __future__ import annotations

import operator
import struct
from typing import Any, Callable

import numpy as np

from flight.core.component import CommandError
from flight.spacelink.layout import WIRE_TYPES

VALUE_WIRE = {"float": "f64", "int": "i64", "bool": "u8", "str": "str8"}
"""Wire type (:data:`~flight.spacelink.layout.WIRE_TYPES`) of a scalar value by its declared type."""
_SCALAR = {kind: struct.Struct(">" + WIRE_TYPES[VALUE_WIRE[kind]][0]) for kind in ("float", "int", "bool")}
MAX_TEXT_BYTES = 1024
"""Event messages and failure data are cut to this many UTF-8 bytes (whole characters)."""
MAX_LIST = 1024
"""Most ids in one TC's list (a longer one is a FORMAT_ERROR)."""


class Reader:
    """Bounds-checked big-endian reads from a data field; every short read is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes. Raises ValueError when fewer are left."""
        if self.pos + n > len(self.data):
            raise ValueError(f"field ends at byte {len(self.data)}, needed {self.pos + n}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        """The next value of ``struct`` format ``fmt`` (one field, e.g. ``">H"``)."""
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def end(self) -> None:
        """Raises ValueError unless every byte was read."""
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} unexpected trailing byte(s)")


def _as_int(value: Any) -> int:
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    return operator.index(value)


def pack_value(kind: str, value: Any) -> bytes:
    """Encode one scalar of type ``kind`` (see the module docstring).

    Raises:
        ValueError: a value that is not of the type or does not fit its encoding.
    """
    try:
        if kind == "float":
            if isinstance(value, (str, bytes)):
                raise TypeError(type(value).__name__)
            return _SCALAR[kind].pack(float(value))
        if kind == "int":
            return _SCALAR[kind].pack(_as_int(value))
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


def unpack_value(kind: str, reader: Reader) -> Any:
    """Read one scalar of type ``kind`` that :func:`pack_value` wrote.

    Raises:
        ValueError: short data, a bool byte other than 0/1 or an unknown type;
            UnicodeDecodeError: a string that is not UTF-8.
    """
    if kind in ("float", "int"):
        return _SCALAR[kind].unpack(reader.take(_SCALAR[kind].size))[0]
    if kind == "bool":
        byte = _SCALAR[kind].unpack(reader.take(1))[0]
        if byte > 1:
            raise ValueError(f"bool byte {byte} is not 0 or 1")
        return bool(byte)
    if kind == "str":
        return reader.take(reader.unpack(">B")).decode("utf-8")
    raise ValueError(f"unknown value type {kind!r}")


ARRAY_ELEMENTS = {"float": ">f8", "int": ">i4", "bool": "u1"}
"""Wire element (numpy dtype) of an array channel by channel type. Per-GPU arrays are most of
a housekeeping report's bytes, so ints and bools take the width their values need. The int
arrays flown hold job ids (``jobs.sqlite`` row ids, counting up from 1) and corrected-ECC
counts since the job runner started (~2e-4 per GPU-second, x50 in the South Atlantic
Anomaly): i32 holds both for far longer than a mission; a value outside it raises
ValueError rather than wrap."""
_I32 = np.iinfo(np.int32)


def pack_array(kind: str, value: Any) -> bytes:
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


def unpack_array(kind: str, reader: Reader) -> list:
    """The values :func:`pack_array` wrote, as a list of ``kind`` (float, int or bool).

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


def cut_utf8(text: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """``text`` as UTF-8, cut to at most ``limit`` bytes at a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore").encode("utf-8")


# -- id lists and TC data ----------------------------------------------------------------------
def u16_list(values: list[int]) -> bytes:
    """``N u16`` then N ``u16`` values."""
    return struct.pack(f">H{len(values)}H", len(values), *values)


def read_count(reader: Reader, what: str, *, empty_ok: bool = False) -> int:
    """A list's ``N u16``. Raises ValueError for N = 0 (unless ``empty_ok``) or N > :data:`MAX_LIST`."""
    n = reader.unpack(">H")
    if (n == 0 and not empty_ok) or n > MAX_LIST:
        raise ValueError(f"{n} {what}: need 1..{MAX_LIST}")
    return n


def decode_tc_data(service: int, subtype: int, read: Callable[[Reader], Any], data: bytes) -> Any:
    """``read`` TC[service,subtype]'s data with a :class:`Reader` that must end exactly at its end.

    Raises:
        CommandError: FORMAT_ERROR for short, long or malformed data.
    """
    reader = Reader(bytes(data))
    try:
        out = read(reader)
        reader.end()
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError("FORMAT_ERROR", f"TC[{service},{subtype}]: {exc}") from None
    return out


def parse_empty(service: int, subtype: int, data: bytes) -> None:
    """Check that a TC that carries no data carries none.

    Raises:
        CommandError: FORMAT_ERROR for any data.
    """
    if data:
        raise CommandError("FORMAT_ERROR", f"TC[{service},{subtype}] carries no application data")
