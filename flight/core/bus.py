"""The bus: one XSUB/XPUB proxy for published traffic and one ROUTER for commands.

Every published message (telemetry, events, heartbeats, ``ctl``) passes the one proxy, so
every subscriber sees one total order of them. HAL frames and the participants' answers do
not: they have their own sockets (:mod:`flight.core.lockstep`), which carry what lockstep
determinism rests on. Commands go
DEALER -> ROUTER (never REQ/REP) with ``ROUTER_MANDATORY`` so an unreachable target is an
error, not a silent drop.

Socket options are set before ``bind``/``connect`` (ZeroMQ applies most of them only to
connections made afterwards). High-water marks are sized for a burst of a few seconds of
traffic: PUB drops silently at HWM, which the per-source ``seq`` then exposes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import zmq

from flight.core.messages import MAX_BODY_BYTES

PUB_HWM = 100_000
"""Messages queued per pipe before PUB drops (~5 minutes of 1 Hz traffic at max speed)."""
CMD_HWM = 10_000


@dataclass(frozen=True)
class BusAddress:
    """Endpoints of one bus: ``pub`` where publishers connect (the proxy's XSUB), ``sub``
    where subscribers connect (its XPUB), ``cmd`` the command ROUTER; and the HAL bridge's
    lockstep channel (:mod:`flight.core.lockstep`): ``frames`` its frame PUB, ``done`` its
    answer PULL (empty where no bridge runs)."""

    pub: str
    sub: str
    cmd: str
    frames: str = ""
    done: str = ""

    @classmethod
    def in_dir(cls, run_dir: Path) -> "BusAddress":
        """ipc:// endpoints inside ``run_dir`` (keep it short: ipc paths are limited to ~100 bytes)."""
        return cls(*(f"ipc://{run_dir}/{name}" for name in ("pub", "sub", "cmd", "frames", "done")))


def _common(sock: zmq.Socket) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
    return sock


DRAIN_BATCH = 256
"""Messages taken from one socket per wake-up, so one busy socket can't starve another."""


def drain(sock: zmq.Socket, limit: int = DRAIN_BATCH) -> Iterator[list[bytes]]:
    """Yield the multipart messages already queued on ``sock``, at most ``limit``.

    Asks the socket (``ZMQ_EVENTS``) rather than catching ``zmq.Again``: building that
    exception costs more than handling a small message, and every wake-up would pay it.
    """
    for _ in range(limit):
        if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return
        yield sock.recv_multipart()


def publisher(ctx: zmq.Context, addr: BusAddress) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.PUB))
    sock.setsockopt(zmq.SNDHWM, PUB_HWM)
    sock.connect(addr.pub)
    return sock


def subscriber(ctx: zmq.Context, addr: BusAddress, topics: tuple[bytes, ...]) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.SUB))
    sock.setsockopt(zmq.RCVHWM, PUB_HWM)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(addr.sub)
    return sock


def dealer(ctx: zmq.Context, addr: BusAddress, identity: str) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.DEALER))
    sock.setsockopt(zmq.IDENTITY, identity.encode())
    sock.setsockopt(zmq.SNDHWM, CMD_HWM)
    sock.setsockopt(zmq.RCVHWM, CMD_HWM)
    sock.connect(addr.cmd)
    return sock


class Broker:
    """The proxy (in a background thread: ``zmq.proxy`` runs in C without the GIL) and the
    bound command ROUTER, which the owner (the executive) polls itself."""

    def __init__(self, ctx: zmq.Context, addr: BusAddress) -> None:
        self.addr = addr
        self._ctx = ctx
        self._xsub = _common(ctx.socket(zmq.XSUB))
        self._xsub.setsockopt(zmq.RCVHWM, PUB_HWM)
        self._xsub.bind(addr.pub)
        self._xpub = _common(ctx.socket(zmq.XPUB))
        self._xpub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self._xpub.bind(addr.sub)
        self.router = _common(ctx.socket(zmq.ROUTER))
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # A restarted subsystem reconnects with the same identity; let it take the route over.
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.SNDHWM, CMD_HWM)
        self.router.setsockopt(zmq.RCVHWM, CMD_HWM)
        self.router.bind(addr.cmd)
        self._control_addr = f"inproc://proxy-control-{id(self)}"
        self._control = ctx.socket(zmq.PAIR)
        self._control.bind(self._control_addr)
        self._thread = threading.Thread(target=self._run, name="bus-proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        control = self._ctx.socket(zmq.PAIR)
        control.connect(self._control_addr)
        try:
            zmq.proxy_steerable(self._xsub, self._xpub, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            control.close(0)
            self._xsub.close(0)
            self._xpub.close(0)

    def close(self) -> None:
        """Stop the proxy thread and close every socket."""
        self._control.send(b"TERMINATE")
        self._thread.join(timeout=2.0)
        self._control.close(0)
        self.router.close(0)
