"""The one HAL test client: a flight-side DEALER that speaks only the protocol documented in
:mod:`flight.hal.protocol`, so the same checks run against the simulator's server (tests/unit)
or a real rig (tests/hil). Every receive is bounded by a timeout."""

from __future__ import annotations

import time
from typing import Any

import zmq

from flight.hal import protocol as hal
from flight.core.messages import MAX_BODY_BYTES, Encoder, Message, decode


class HalTimeout(TimeoutError):
    """The rig did not send what was awaited within the timeout."""


class HalClient:
    """One connection to a rig at ``endpoint``.

    ``timeout_s`` bounds every receive unless a call gives its own; ``ctx`` shares a ZeroMQ
    context the caller owns (else the client makes and destroys its own); ``name`` is the
    envelope's source. ``rejects`` keeps every ``hal.reject`` seen while receiving."""

    def __init__(self, endpoint: str, timeout_s: float = 10.0, ctx: zmq.Context | None = None,
                 name: str = "hil") -> None:
        self.own_ctx = ctx is None
        self.ctx = zmq.Context() if ctx is None else ctx
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.encoder = Encoder(name)
        self.timeout_s = timeout_s
        self.rejects: list[dict] = []
        self.welcome: dict[str, Any] = {}
        self.last_tick = 0

    def send(self, name: str, data: Any, tick: int | None = None) -> None:
        """One ``hw`` message; its envelope tick is ``tick``, else the last frame's."""
        self.sock.send(self.encoder.encode("hw", name, data, self.last_tick if tick is None else tick)[1])

    def recv(self, wanted: str, timeout_s: float | None = None) -> Message:
        """Next message called ``wanted``; rejects seen on the way are kept in ``rejects``.
        Raises :class:`HalTimeout` if none arrives within ``timeout_s`` (default: the client's)."""
        limit_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit_s
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.poller.poll(left_ms):
                raise HalTimeout(f"no {wanted} from the rig within {limit_s:g} s")
            msg = decode(self.sock.recv())
            if msg.name == "hal.reject":
                self.rejects.append(msg.data)
            if msg.name == wanted:
                return msg

    def quiet(self, timeout_s: float = 0.3) -> bool:
        """True if nothing arrives within ``timeout_s`` (what a lockstep rig does between
        frames, or any rig after ``hal.bye``)."""
        return not self.poller.poll(int(timeout_s * 1000))

    def hello(self, timeout_s: float | None = None) -> dict[str, Any]:
        """``hal.hello`` answered by ``hal.welcome``; returns (and keeps) the welcome."""
        self.send("hal.hello", {"version": hal.HAL_VERSION})
        self.welcome = self.recv("hal.welcome", timeout_s).data
        return self.welcome

    def await_welcome(self, timeout_s: float = 15.0, retry_s: float = 0.5) -> dict[str, Any]:
        """Say hello every ``retry_s`` until the rig answers (a rig process just started needs
        a moment to import and bind); :class:`HalTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.hello(retry_s)
            except HalTimeout:
                if time.monotonic() > deadline:
                    raise HalTimeout(f"no hal.welcome from the rig within {timeout_s:g} s") from None

    def next_frame(self) -> Message:
        """The next sensor frame; in lockstep, acknowledges the previous tick first."""
        if self.welcome.get("lockstep") and self.last_tick:
            self.send("hal.tick_done", {"tick": self.last_tick})
        msg = self.recv("hal.frame")
        self.last_tick = msg.tick
        return msg

    def close(self) -> None:
        """``hal.bye`` if it can leave at once (not if the rig is gone), then close."""
        try:
            self.sock.send(self.encoder.encode("hw", "hal.bye", {}, self.last_tick)[1], zmq.NOBLOCK)
        except zmq.Again:
            pass
        self.sock.close(linger=100)
        if self.own_ctx:
            self.ctx.destroy(linger=100)
