"""A minimal flight-side HAL client for the HIL suite: speaks only the protocol documented
in :mod:`flight.hal.protocol`, so the same checks run against the simulator or a real rig."""

from __future__ import annotations

from typing import Any

import zmq

from flight.hal import protocol as hal
from flight.core.messages import MAX_BODY_BYTES, Encoder, Message, decode


class HalTimeout(AssertionError):
    pass


class HalClient:
    def __init__(self, endpoint: str, timeout_s: float = 10.0) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
        self.sock.connect(endpoint)
        self.encoder = Encoder("hil")
        self.timeout_ms = int(timeout_s * 1000)
        self.rejects: list[dict] = []
        self.welcome: dict[str, Any] = {}
        self.last_tick = 0

    def send(self, name: str, data: Any) -> None:
        self.sock.send(self.encoder.encode("hw", name, data, self.last_tick)[1])

    def recv(self, wanted: str) -> Message:
        """Next message called ``wanted``; rejects seen on the way are kept in ``rejects``."""
        while True:
            if not self.sock.poll(self.timeout_ms):
                raise HalTimeout(f"no {wanted} from the rig within {self.timeout_ms} ms")
            msg = decode(self.sock.recv())
            if msg.name == "hal.reject":
                self.rejects.append(msg.data)
            if msg.name == wanted:
                return msg

    def hello(self) -> dict[str, Any]:
        self.send("hal.hello", {"version": hal.HAL_VERSION})
        self.welcome = self.recv("hal.welcome").data
        return self.welcome

    def next_frame(self) -> Message:
        """The next sensor frame; in lockstep, acknowledges the previous tick first."""
        if self.welcome.get("lockstep") and self.last_tick:
            self.send("hal.tick_done", {"tick": self.last_tick})
        msg = self.recv("hal.frame")
        self.last_tick = msg.tick
        return msg

    def close(self) -> None:
        try:
            self.send("hal.bye", {})
        finally:
            self.ctx.destroy(linger=100)
