"""The simulator's HAL server: the rig side of :mod:`flight.hal.protocol` over ZeroMQ.

One ROUTER socket bound at the HAL endpoint; every message is one envelope body
(:mod:`flight.core.messages`) after the peer identity frame, ``kind="hw"``. One client at a
time: a ``hal.hello`` makes its sender the client (replacing any previous one) and is
answered with ``hal.welcome``; a repeated hello from the present client is only welcomed
again; ``hal.bye`` drops the client.

Timing:

* lockstep (``--speed max``): frame N is sent, then the server waits for
  ``hal.tick_done {"tick": N}`` from the client, applying valid ``hal.actuate`` messages as
  they come, before stepping the physics and sending frame N+1. Without a client the
  simulation does not advance.
* paced (``--speed realtime`` or a factor): from the first hello on, the physics steps and
  a frame goes out every ``tick_s / factor`` wall-clock seconds whatever the client does;
  a server that falls more than one period behind counts a cycle slip and re-anchors its
  schedule instead of bursting.

Every frame is preceded by one physics step, so frame N shows the state at
``time_s = N · tick_s``; tick numbers continue across a re-hello (the simulation is not
restarted). A message that does not decode, is not ``kind="hw"``, comes from a peer that is
not the client, has an unknown name or an invalid payload is answered with ``hal.reject``
and counted in the frame's ``hal_rejected_count`` (all rejections, not only actuations);
nothing about it is applied. The server never exits because of what it receives.

Fault injection: ``hal.fault`` is applied to the satellite (:mod:`sim_hw.faults`) and
answered ``hal.fault_ack`` (``ok`` False with the reason for one that does not validate,
which changes nothing); a timed fault's end is announced with ``hal.fault_ended``.

Run it as ``python -m sim_hw.server --bind ipc:///tmp/hal.sock`` (see :func:`main`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import time
from typing import Any

import zmq

from flight.hal import protocol as hal
from flight.core.bus import drain
from flight.core.messages import MAX_BODY_BYTES, DecodeError, Encoder, decode
from flight.core.orbit import OrbitError
from flight.core.runtime import name_process
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from sim_hw.faults import FaultError
from sim_hw.local import SimRig
from sim_hw.satellite import Satellite

log = logging.getLogger("sim_hw.server")

SNDHWM = 64
"""Outgoing messages queued per peer: ~64 frames (~0.4 MiB); beyond that a paced frame is
dropped and counted rather than blocking the simulated clock."""
RCVHWM = 1024
"""Incoming messages queued: a client may send several actuations per tick."""
POLL_MS = 100
"""Longest wait between checks of the stop flag (bounds the reaction to SIGTERM)."""
FINAL_GRACE_S = 5.0
"""After the last frame of a ``--duration`` run, how long to wait for its tick_done."""


class HalServer:
    """Serve one :class:`~sim_hw.satellite.Satellite` on a HAL endpoint.

    Args:
        endpoint: ZeroMQ endpoint to bind (``ipc://...`` or ``tcp://host:port``).
        satellite: the simulation to serve (stepped only by this server).
        tick_s: simulated seconds per tick (> 0).
        speed: ``None`` for lockstep, else the pace as a multiple of real time (> 0).
        duration_s: stop after this many simulated seconds (``None``: run until stopped).
        context: ZeroMQ context to use (a private one if ``None``).

    Raises:
        ValueError: non-positive ``tick_s``, ``speed`` or ``duration_s``.
        zmq.ZMQError: the endpoint cannot be bound.

    Attributes:
        endpoint: the endpoint actually bound (wildcards resolved).
        tick: number of the last frame produced (0 before the first).
        decode_errors: bodies that failed to decode.
        frames_dropped: frames not delivered (client gone or its queue full).
        cycle_slips: paced ticks that started more than one period late.
    """

    def __init__(self, endpoint: str, satellite: Satellite, *, tick_s: float = 1.0, speed: float | None = None,
                 duration_s: float | None = None, context: zmq.Context | None = None) -> None:
        if not tick_s > 0:
            raise ValueError("tick_s must be positive")
        if speed is not None and not speed > 0:
            raise ValueError("speed must be positive (None for lockstep)")
        if duration_s is not None and not duration_s > 0:
            raise ValueError("duration_s must be positive")
        self.sat = satellite
        self.rig = SimRig(satellite, float(tick_s), speed)
        self.tick_s = float(tick_s)
        self.speed = speed
        self.duration_s = duration_s
        self.decode_errors = 0
        self.frames_dropped = 0
        self.cycle_slips = 0
        self._client: bytes | None = None
        self._awaiting: int | None = None
        self._started = False
        self._stop = False
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._enc = Encoder("sim")
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
            sock.setsockopt(zmq.SNDHWM, SNDHWM)
            sock.setsockopt(zmq.RCVHWM, RCVHWM)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.bind(endpoint)
        except zmq.ZMQError:
            sock.close(0)
            if self._own_ctx:
                self._ctx.term()
            raise
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def tick(self) -> int:
        return self.rig.tick

    # --- life cycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`serve` to return (safe from a signal handler or another thread)."""
        self._stop = True

    def close(self) -> None:
        """Close the socket (and the context if it is private) and remove an ipc:// socket
        file, which libzmq leaves behind. Idempotent."""
        if self._sock.closed:
            return
        self._sock.close(0)
        if self._own_ctx:
            self._ctx.term()
        if self.endpoint.startswith("ipc://"):
            path = self.endpoint[len("ipc://"):]
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass  # already gone, or a path we may not touch: nothing to clean up

    def serve(self) -> None:
        """Run until :meth:`stop`, or until ``duration_s`` of simulated time has been served;
        then tell the client (``hal.end``) so it need not time out to find out."""
        try:
            if self.speed is None:
                self._serve_lockstep()
            else:
                self._serve_paced()
            if self._client is not None:
                self._send(self._client, "hal.end", {"reason": "stopped" if self._stop else "duration reached"})
        finally:
            self.close()

    def _finished(self) -> bool:
        return self.duration_s is not None and self.sat.time_s >= self.duration_s - 1e-9

    def _serve_lockstep(self) -> None:
        final_deadline: float | None = None
        while not self._stop:
            if self._client is not None and self._awaiting is None:
                if self._finished():
                    return
                self._advance()
                if self._finished():
                    final_deadline = time.monotonic() + FINAL_GRACE_S
            if final_deadline is not None and time.monotonic() > final_deadline:
                return
            self._pump(POLL_MS)

    def _serve_paced(self) -> None:
        period = self.tick_s / self.speed
        deadline = 0.0
        while not self._stop:
            now = time.monotonic()
            if self._started and now >= deadline:
                if self._finished():
                    return  # the last frame left a whole period ago
                if now - deadline > period:
                    self.cycle_slips += 1
                    deadline = now
                self._advance()
                deadline += period
            wait = POLL_MS if not self._started else max(0.0, min(POLL_MS / 1000, deadline - time.monotonic())) * 1000
            was_started = self._started
            self._pump(int(wait))
            if self._started and not was_started:
                deadline = time.monotonic()

    # --- messages ------------------------------------------------------------------------

    def _pump(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for input, then handle everything queued."""
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return
        for frames in drain(self._sock, RCVHWM):
            self._handle(frames)
            if self.speed is None and self._awaiting is None and self._client is not None:
                return  # lockstep: step now; later messages belong to the next tick

    def _handle(self, frames: list[bytes]) -> None:
        ident = frames[0]
        if len(frames) != 2:
            self._reject(ident, f"expected one body frame after the identity, got {len(frames) - 1}")
            return
        try:
            msg = decode(frames[1])
        except DecodeError as exc:
            self.decode_errors += 1
            self._reject(ident, f"undecodable message: {exc}")
            return
        if msg.kind != "hw":
            self._reject(ident, f"kind {msg.kind!r} is not 'hw'")
        elif msg.name == "hal.hello":
            self._hello(ident, msg.data)
        elif ident != self._client:
            self._reject(ident, f"{msg.name!r} from a peer that is not the client: send hal.hello first")
        elif msg.name == "hal.actuate":
            why = self.rig.actuate(msg.data)
            if why:
                self._send(ident, "hal.reject", {"reason": why, "rejected_count": self.sat.hal_rejected_count})
        elif msg.name == "hal.tick_done":
            self._tick_done(ident, msg.data)
        elif msg.name == "hal.fault":
            self._fault(ident, msg.data)
        elif msg.name == "hal.bye":
            log.info("client left")
            self._client = None
            self._awaiting = None
        else:
            self._reject(ident, f"unknown message {msg.name!r}")

    def _hello(self, ident: bytes, data: Any) -> None:
        if not isinstance(data, dict) or data.get("version") != hal.HAL_VERSION:
            self._reject(ident, f"hal.hello must carry {{'version': {hal.HAL_VERSION}}}")
            return
        if ident != self._client:
            if self._client is not None:
                log.info("a new client replaces the previous one")
            self._client = ident
            self._awaiting = None
        # A repeated hello from the client itself (e.g. queued while the rig was starting) is
        # only welcomed again: the frame it awaits is already on its way, and stepping here
        # would make the run depend on how many hellos were queued.
        self._started = True
        self._send(ident, "hal.welcome", self.rig.welcome)

    def _tick_done(self, ident: bytes, data: Any) -> None:
        tick = data.get("tick") if isinstance(data, dict) else None
        if not isinstance(tick, int) or isinstance(tick, bool) or not 0 <= tick <= self.tick:
            self._reject(ident, f"hal.tick_done needs {{'tick': N}} with 0 <= N <= {self.tick}")
        elif tick == self._awaiting:
            self._awaiting = None
        # An older tick_done (e.g. one in flight across a re-hello) is simply late.

    def _fault(self, ident: bytes, data: Any) -> None:
        command_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(command_id, str):
            self._reject(ident, "hal.fault needs a string id")
            return
        try:
            done = self.rig.fault({k: v for k, v in data.items() if k != "id"})
        except FaultError as exc:
            self._send(ident, "hal.fault_ack", {"id": command_id, "ok": False, "reason": str(exc)})
        else:
            self._send(ident, "hal.fault_ack", {"id": command_id, "ok": True, "reason": done})

    def _reject(self, ident: bytes, reason: str) -> None:
        self.rig.reject()
        log.warning("rejected message: %s", reason)
        self._send(ident, "hal.reject", {"reason": reason, "rejected_count": self.sat.hal_rejected_count})

    def _send(self, ident: bytes, name: str, data: Any) -> bool:
        _, body = self._enc.encode("hw", name, data, tick=self.tick, t=self.sat.time_s)
        try:
            self._sock.send_multipart([ident, body], zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH and ident == self._client:
                log.info("client is gone")
                self._client = None
                self._awaiting = None
            elif exc.errno != zmq.EHOSTUNREACH:
                log.error("send failed: %s", exc)
            return False

    # --- ticks ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """Step the physics one tick and send the new frame to the client."""
        _, _, frame = self.rig.step()
        client = self._client
        if client is not None:
            for fault, target in self.rig.take_ended_faults():
                self._send(client, "hal.fault_ended", {"fault": fault, "target": target})
            if not self._send(client, "hal.frame", frame):
                self.frames_dropped += 1
            if self.speed is None and self._client == client:
                # Even a frame lost to a full queue waits for its tick_done: lockstep never runs
                # ahead of a client that does not read.
                self._awaiting = self.tick
        self.rig.between_ticks()


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    if text == "realtime":
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("speed is max, realtime or a positive factor") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("speed factor must be positive")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line: ``flight sim`` / ``python -m sim_hw.server``. Returns the exit status."""
    ap = argparse.ArgumentParser(prog="flight sim", description="Simulated rack-satellite HAL server.")
    ap.add_argument("--bind", required=True, help="ZeroMQ endpoint, e.g. ipc:///tmp/rackflight/hal.sock")
    ap.add_argument("--tle", default=str(DEFAULT_TLE_PATH), help="TLE file (default: the bundled tle-real.txt)")
    ap.add_argument("--sat", default=None, help="name of the element set in the TLE file (default: the first)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (memory upsets)")
    ap.add_argument("--speed", type=_speed, default=None, help="max (lockstep, default), realtime or a factor")
    ap.add_argument("--tick-s", type=_positive, default=1.0, help="simulated seconds per tick")
    ap.add_argument("--duration", type=_positive, default=None, help="stop after this many simulated seconds")
    ap.add_argument("--log-level", default="WARNING", help="logging level")
    args = ap.parse_args(argv)
    if argv is None:
        name_process("sim")  # the rig's own process (not `flight sim` run in a shell's process)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s sim %(levelname)s %(message)s")

    try:
        _, tle = load_tle(args.tle, args.sat)
        sat = Satellite(tle, seed=args.seed)
        server = HalServer(args.bind, sat, tick_s=args.tick_s, speed=args.speed, duration_s=args.duration)
    except (OSError, ValueError, zmq.ZMQError) as exc:
        print(f"flight sim: {exc}", file=sys.stderr)
        return 2

    def _on_signal(signum: int, _frame: Any) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("serving %s (%s)", args.bind, "lockstep" if args.speed is None else f"x{args.speed:g}")
        server.serve()
    except OrbitError as exc:
        print(f"flight sim: the orbit cannot be propagated any further: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped at tick %d; rejected %d, dropped %d, slips %d", server.tick, sat.hal_rejected_count,
             server.frames_dropped, server.cycle_slips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
