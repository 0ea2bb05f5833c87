"""The lockstep channel: sensor frames from the HAL bridge to the participants, and their
``hal.done`` answers back, on two sockets of their own beside the bus.

Why beside the bus: every message through the executive's proxy wakes two more threads
(the proxy's and its I/O thread) on a machine of two cores, and a lockstep tick is a frame
out to four participants and four answers back. Here the bridge binds a PUB (frames) and a
PULL (answers); each participant connects a SUB and a PUSH. The proxy still carries
telemetry, events, heartbeats and ``ctl`` for everyone else.

What one participant tells another on the lockstep path (data products, ``ctl`` messages
such as ``ctl/mode``) no longer needs the proxy's total order either: a participant puts
every such output it made since its last answer into its next ``hal.done``
(:func:`done_payload`), and the bridge relays those answers, unchanged and in
participant order, inside the next frame (:func:`frame_parts`). So tick N's outputs reach
every consumer just before it handles frame N+1, and an output made between frames (by a
command) just before frame N+2 — what :class:`flight.hal.inprocess.InProcessRack` does in
one process, whatever the timing of the processes.

Wire format (the one place it is encoded and decoded):

* frames channel, one ZeroMQ multipart message per frame or sync:
  part 0 the envelope body (:mod:`flight.core.messages`) of ``hw/hal.frame`` (its ``data``
  the sensor frame packed by :func:`flight.hal.protocol.pack_frame`, msgpack bin) or
  ``ctl/sync``; then pairs ``(source name, ASCII; that source's hal.done body)`` for each
  relayed answer.
* answers channel, one single-part message: the envelope body of ``hw/hal.done`` (map
  ``tick`` int, ``actuate`` map of actuator fields, ``outputs`` list of ``[kind, name,
  data]`` with kind ``data`` or ``ctl``) or of ``ctl/ready`` (``{"name": participant}``).

A message that does not follow it is a decode error, counted by the receiver, never fatal.
"""

from __future__ import annotations

from typing import Any

import zmq

from flight.core import bus
from flight.core.messages import MAX_BODY_BYTES, DecodeError, Encoder, Message
from flight.hal.protocol import pack_frame, unpack_frame

RELAYED_KINDS = ("data", "ctl")
"""Kinds of output a participant's ``hal.done`` carries to the others."""
MAX_RELAYED = 64
"""Most answers relayed in one frame (four participants answer once per tick; more means a
backlog after a stall, and the rest waits for the next frame)."""


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
    return sock


def bridge_sockets(ctx: zmq.Context, addr: bus.BusAddress) -> tuple[zmq.Socket, zmq.Socket]:
    """The bridge's end: ``(frames PUB, answers PULL)``, both bound at ``addr``."""
    frames = _socket(ctx, zmq.PUB)
    frames.setsockopt(zmq.SNDHWM, bus.PUB_HWM)
    frames.bind(addr.frames)
    answers = _socket(ctx, zmq.PULL)
    answers.setsockopt(zmq.RCVHWM, bus.PUB_HWM)
    answers.bind(addr.done)
    return frames, answers


def participant_sockets(ctx: zmq.Context, addr: bus.BusAddress) -> tuple[zmq.Socket, zmq.Socket]:
    """A participant's end: ``(frames SUB, answers PUSH)``, both connected to ``addr``."""
    frames = _socket(ctx, zmq.SUB)
    frames.setsockopt(zmq.RCVHWM, bus.PUB_HWM)
    frames.setsockopt(zmq.SUBSCRIBE, b"")
    frames.connect(addr.frames)
    answers = _socket(ctx, zmq.PUSH)
    answers.setsockopt(zmq.SNDHWM, bus.PUB_HWM)
    answers.connect(addr.done)
    return frames, answers


def frame_body(encoder: Encoder, frame: dict[str, Any], tick: int, time_s: float) -> bytes:
    """The envelope body of ``hw/hal.frame`` for sensor frame ``frame`` of ``tick`` at
    onboard time ``time_s``, s (every field of :data:`flight.hal.protocol.SENSOR_FIELDS`).

    Raises:
        KeyError, ValueError: a field is missing or of the wrong size
            (:func:`flight.hal.protocol.pack_frame`).
    """
    return encoder.encode("hw", "hal.frame", pack_frame(frame), tick, time_s)[1]


def sensor_frame(msg: Message) -> dict[str, Any]:
    """The sensor frame of a frames-channel ``hw/hal.frame`` message.

    Raises:
        DecodeError: its data is not a packed sensor frame.
    """
    return unpack_frame(msg.data)


def frame_parts(body: bytes, relayed: list[tuple[str, bytes]]) -> list[bytes]:
    """The multipart message of frame (or sync) ``body`` with the answers ``relayed``
    (``(source, hal.done body)``, in the order the consumers are to see them)."""
    parts = [body]
    for src, done in relayed[:MAX_RELAYED]:
        parts += [src.encode("ascii"), done]
    return parts


def split_frame(parts: list[bytes]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``(frame body, [(source, hal.done body), ...])`` of a frames-channel message.

    Raises:
        DecodeError: an even number of parts, or a source name that is not ASCII.
    """
    if len(parts) % 2 != 1:
        raise DecodeError(f"{len(parts)} parts on the frames channel")
    try:
        relayed = [(parts[i].decode("ascii"), parts[i + 1]) for i in range(1, len(parts), 2)]
    except UnicodeDecodeError:
        raise DecodeError("relayed source name is not ASCII") from None
    return parts[0], relayed


def done_payload(tick: int, actuate: dict[str, Any], outputs: list[tuple[str, str, Any]]) -> dict:
    """The ``data`` of a participant's ``hal.done`` for ``tick``."""
    return {"tick": tick, "actuate": actuate, "outputs": [list(o) for o in outputs]}


def outputs_of(msg: Message) -> list[tuple[str, str, Any]]:
    """The relayed outputs ``(kind, name, data)`` of ``hal.done`` message ``msg``, in the
    order they were made.

    Raises:
        DecodeError: ``outputs`` missing or not a list of ``[kind, name, data]`` with a
            relayed kind and an ASCII name.
    """
    outputs = msg.data.get("outputs") if isinstance(msg.data, dict) else None
    if not isinstance(outputs, list):
        raise DecodeError("hal.done without an outputs list")
    checked = []
    for item in outputs:
        if not (isinstance(item, list) and len(item) == 3 and item[0] in RELAYED_KINDS
                and isinstance(item[1], str) and item[1].isascii()):
            raise DecodeError("hal.done output is not [kind, name, data]")
        checked.append((item[0], item[1], item[2]))
    return checked
