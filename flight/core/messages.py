"""The bus message envelope: the one place messages are encoded and decoded.

Every message on the bus (and on the HAL link) is a two-frame ZeroMQ message:

* frame 0, the topic: ``b"<kind>/<name>"`` (ASCII) — subscribers filter on its prefix;
* frame 1, the body: a msgpack map with exactly the envelope keys below.

Arrays (numpy, at most 2-D, dtypes in ``_ALLOWED_DTYPES``) are msgpack ext type
:data:`EXT_NDARRAY` with payload ``u8 dtype code, u8 ndim, ndim x u32 dims (little-endian),
raw little-endian data``; decoded arrays are read-only views of the message.

==========  ======  =====================================================================
key         type    meaning
==========  ======  =====================================================================
``v``       int     schema version, :data:`SCHEMA_VERSION`
``src``     str     publishing process (``power``, ``thermal``, ``sim``, ...)
``seq``     int     per-source, per-kind sequence number, +1 per message; gaps are counted
``tick``    int     base tick the message belongs to (0 before the first frame)
``t``       float   simulation / onboard time in seconds since the run epoch
``kind``    str     one of :data:`KINDS`
``name``    str     qualified name, e.g. ``power.hk`` or ``thermal.set_setpoint``
``data``    any     payload; numpy arrays travel as msgpack ext type :data:`EXT_NDARRAY`
==========  ======  =====================================================================

Decoding never trusts its input: the body size is bounded, map keys must be strings,
the key set must match exactly, every field is type checked and array extension payloads
are checked against an allow-list of dtypes and their declared shape. Any problem raises
:class:`DecodeError`, which callers count and report rather than die on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 1
KINDS = ("tm", "ev", "cmd", "rsp", "hw", "hb", "ctl", "data")
"""Telemetry (housekeeping: recorded, downlinked), event, command, command response,
hardware (HAL), heartbeat, control, and data: per-tick products one subsystem makes for
another (thermal headroom for the power manager), neither recorded nor downlinked."""

EXT_NDARRAY = 1
MAX_BODY_BYTES = 1 << 20
"""Largest body accepted (1 MiB); a sensor frame for 72 GPUs is ~6 KiB."""
MAX_ARRAY_DIMS = 2
_ALLOWED_DTYPES = ("<f8", "<f4", "<i8", "<i4", "<u4", "<u8", "|u1", "|i1", "|b1")
_ENVELOPE_KEYS = frozenset({"v", "src", "seq", "tick", "t", "kind", "name", "data"})


class DecodeError(ValueError):
    """A message that cannot be trusted: malformed, oversize or of the wrong shape."""


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded bus message (see the module docstring for field meanings)."""

    src: str
    seq: int
    tick: int
    t: float
    kind: str
    name: str
    data: Any

    @property
    def topic(self) -> bytes:
        return topic_for(self.kind, self.name)


def topic_for(kind: str, name: str) -> bytes:
    """Topic frame for a message of ``kind`` and ``name``: ``b"kind/name"``."""
    return f"{kind}/{name}".encode("ascii")


_DTYPES = tuple(np.dtype(d) for d in _ALLOWED_DTYPES)
_DTYPE_CODE = {d: i for i, d in enumerate(_DTYPES)}
_ITEMSIZE = tuple(d.itemsize for d in _DTYPES)
_DIMS = tuple(struct.Struct(f"<{n}I") for n in range(MAX_ARRAY_DIMS + 1))
"""``ndim x u32`` little-endian dims, by ndim."""
_HEADER = tuple(struct.Struct(f"<BB{n}I") for n in range(MAX_ARRAY_DIMS + 1))
"""``u8 dtype code, u8 ndim, ndim x u32 dims``, by ndim."""

# Every lockstep frame carries a dozen arrays and every participant decodes it each tick,
# so both directions below are written for the fewest interpreter steps per array
# (precompiled structs, no reshape of a 1-D array): a third of a frame's decode time.


def _default(obj: Any) -> Any:
    # ext payload: u8 dtype code (index into _DTYPES), u8 ndim, ndim x u32 LE dims, raw bytes
    if isinstance(obj, np.ndarray):
        code = _DTYPE_CODE.get(obj.dtype)
        ndim = obj.ndim
        if code is None or ndim > MAX_ARRAY_DIMS:
            raise TypeError(f"array dtype {obj.dtype.str} / ndim {ndim} not allowed on the bus")
        # tobytes() is C order whatever the array's own layout
        return msgpack.ExtType(EXT_NDARRAY, _HEADER[ndim].pack(code, ndim, *obj.shape) + obj.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} on the bus")


def _ext_hook(code: int, raw: bytes) -> Any:
    if code != EXT_NDARRAY:
        raise DecodeError(f"unknown msgpack ext type {code}")
    size = len(raw)
    if size < 2 or raw[0] >= len(_DTYPES) or raw[1] > MAX_ARRAY_DIMS:
        raise DecodeError("bad array header")
    dtype_code, ndim = raw[0], raw[1]
    start = 2 + 4 * ndim
    if size < start:
        raise DecodeError("truncated array header")
    shape = _DIMS[ndim].unpack_from(raw, 2)
    count = 1
    for n in shape:
        count *= n
    if count * _ITEMSIZE[dtype_code] != size - start:
        raise DecodeError("array buffer size does not match shape")
    flat = np.frombuffer(raw, _DTYPES[dtype_code], count, start)
    return flat if ndim == 1 else flat.reshape(shape)


class Encoder:
    """Stamps and encodes messages for one source, keeping one ``seq`` counter per kind.

    Per kind, so that a subscriber to some kinds only (the recorder takes telemetry and
    events, not HAL traffic) can still tell a gap from a message it never asked for; and so
    that in lockstep the telemetry stream's numbering does not depend on how many
    wall-clock heartbeats happened to interleave. Not thread-safe: one per socket.
    """

    def __init__(self, src: str) -> None:
        self.src = src
        self.seq = dict.fromkeys(KINDS, 0)
        self._packer = msgpack.Packer(default=_default, use_bin_type=True)

    def encode(self, kind: str, name: str, data: Any, tick: int = 0, t: float = 0.0) -> list[bytes]:
        """Return the two frames ``[topic, body]`` of a new message; advances ``seq[kind]``."""
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        seq = self.seq[kind] = self.seq[kind] + 1
        body = self._packer.pack(
            {"v": SCHEMA_VERSION, "src": self.src, "seq": seq, "tick": tick, "t": t,
             "kind": kind, "name": name, "data": data}
        )
        return [topic_for(kind, name), body]


def decode(body: bytes) -> Message:
    """Decode and validate one message body.

    Raises:
        DecodeError: oversize body, not msgpack, wrong envelope keys or types, unknown
            kind, wrong schema version or a bad array extension.
    """
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        # unpackb reads only the bytes given, so the size check above is the buffer bound
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=_ext_hook)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"not a msgpack envelope: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict) or obj.keys() != _ENVELOPE_KEYS:
        raise DecodeError("envelope keys do not match the schema")
    if obj["v"] != SCHEMA_VERSION:
        raise DecodeError(f"schema version {obj['v']!r} is not {SCHEMA_VERSION}")
    src, seq, tick, t, kind, name = (obj[k] for k in ("src", "seq", "tick", "t", "kind", "name"))
    if not (isinstance(src, str) and isinstance(name, str) and kind in KINDS):
        raise DecodeError("src/name must be strings and kind known")
    if not (isinstance(seq, int) and isinstance(tick, int) and isinstance(t, (int, float))):
        raise DecodeError("seq/tick must be integers and t a number")
    return Message(src, seq, tick, float(t), kind, name, obj["data"])


class SeqTracker:
    """Counts gaps in each (source, kind) ``seq`` so that lost messages are never silent.

    Feed it every message of the kinds it tracks. A restarted publisher starts again at 1;
    that is recognised as a restart, not a gap.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self.gaps = 0
        """Messages known to be missing, summed over all streams."""

    def observe(self, msg: Message) -> int:
        """Record ``msg``; return how many messages of its stream were skipped before it."""
        key = (msg.src, msg.kind)
        last = self._last.get(key)
        self._last[key] = msg.seq
        if last is None or msg.seq <= last:
            return 0
        missed = msg.seq - last - 1
        self.gaps += missed
        return missed
