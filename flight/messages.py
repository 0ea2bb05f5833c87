"""The bus message envelope: the one place messages are encoded and decoded.

Every message on the bus (and on the HAL link) is a two-frame ZeroMQ message:

* frame 0, the topic: ``b"<kind>/<name>"`` (ASCII) — subscribers filter on its prefix;
* frame 1, the body: a msgpack map with exactly the envelope keys below.

==========  ======  =====================================================================
key         type    meaning
==========  ======  =====================================================================
``v``       int     schema version, :data:`SCHEMA_VERSION`
``src``     str     publishing process (``power``, ``thermal``, ``sim``, ...)
``seq``     int     per-source sequence number, +1 per message; gaps are counted
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

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 1
KINDS = ("tm", "ev", "cmd", "rsp", "hw", "hb", "ctl")
"""Telemetry, event, command, command response, hardware (HAL), heartbeat, control."""

EXT_NDARRAY = 1
MAX_BODY_BYTES = 1 << 20
"""Largest body accepted (1 MiB); a sensor frame for 72 GPUs is ~6 KiB."""
MAX_ARRAY_DIMS = 2
_ALLOWED_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "<u4", "<u8", "|u1", "|i1", "|b1"})
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


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        if arr.dtype.str not in _ALLOWED_DTYPES or arr.ndim > MAX_ARRAY_DIMS:
            raise TypeError(f"array dtype {arr.dtype.str} / ndim {arr.ndim} not allowed on the bus")
        return msgpack.ExtType(
            EXT_NDARRAY, msgpack.packb((arr.dtype.str, arr.shape, arr.tobytes()), use_bin_type=True)
        )
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} on the bus")


def _ext_hook(code: int, raw: bytes) -> Any:
    if code != EXT_NDARRAY:
        raise DecodeError(f"unknown msgpack ext type {code}")
    try:
        dtype_str, shape, buf = msgpack.unpackb(raw, raw=False, use_list=True)
    except Exception as exc:
        raise DecodeError(f"bad array extension: {exc}") from None
    if dtype_str not in _ALLOWED_DTYPES:
        raise DecodeError(f"array dtype {dtype_str!r} not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_DIMS
        or not all(isinstance(d, int) and 0 <= d for d in shape)
        or not isinstance(buf, bytes)
    ):
        raise DecodeError("bad array shape or buffer")
    dtype = np.dtype(dtype_str)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(buf):
        raise DecodeError("array buffer size does not match shape")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def encode_data(data: Any) -> bytes:
    """msgpack bytes of a payload alone, encoded as it is inside an envelope."""
    return msgpack.packb(data, default=_default, use_bin_type=True)


class Encoder:
    """Stamps and encodes messages for one source, keeping its ``seq`` counter.

    Not thread-safe: one per publishing socket.
    """

    def __init__(self, src: str) -> None:
        self.src = src
        self.seq = 0
        self._packer = msgpack.Packer(default=_default, use_bin_type=True)

    def encode(self, kind: str, name: str, data: Any, tick: int = 0, t: float = 0.0) -> list[bytes]:
        """Return the two frames ``[topic, body]`` of a new message; advances ``seq``."""
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        self.seq += 1
        body = self._packer.pack(
            {"v": SCHEMA_VERSION, "src": self.src, "seq": self.seq, "tick": tick, "t": t,
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
    """Counts gaps in each source's ``seq`` so that lost messages are never silent.

    A restarted publisher starts again at 1; that is recognised as a restart, not a gap.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self.gaps = 0
        """Messages known to be missing, summed over all sources."""

    def observe(self, msg: Message) -> int:
        """Record ``msg``; return how many messages from its source were skipped before it."""
        last = self._last.get(msg.src)
        self._last[msg.src] = msg.seq
        if last is None or msg.seq <= last:
            return 0
        missed = msg.seq - last - 1
        self.gaps += missed
        return missed
