"""Runs one subsystem as its own OS process: ``python -m flight.core.runtime NAME CONFIG_JSON``.

The loop: poll the bus subscriber, the command DEALER and the subsystem's own extra
sockets; hand each HAL frame to the subsystem and answer ``hal.done``; execute commands
with their verification stages; heartbeat every ``heartbeat_s`` of wall time; answer the
HAL bridge's ``ctl/sync``. A malformed message is counted and reported, never fatal.

Before the loop the process makes sure the proxy has its publisher: a ZeroMQ PUB socket
drops what it sends until the proxy's subscriptions have reached it (the "slow joiner"), so
a process restarted mid-run, which gets frames at once, could lose the first messages of
its first tick (a restarted job runner's ``job_restored`` events, say). It publishes a
probe only it subscribes to until one comes back (:meth:`ProcessRunner.await_bus`), and
handles what arrived meanwhile first.

The process names itself after the subsystem (``ps -e`` shows ``thermal``), dies with
its parent (``PR_SET_PDEATHSIG``) and ignores SIGINT: on Ctrl-C the executive stops it
with SIGTERM, so shutdown has one owner.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from flight.core import bus
from flight.core.config import RunConfig
from flight.core.component import CommandError
from flight.core.messages import DecodeError, Encoder, Message, decode, topic_for
from flight.core.subsystem import Subsystem

BUS_PROBE_PERIOD_S = 0.02
BUS_PROBE_TIMEOUT_S = 5.0
"""How long a starting process waits for its probe to come back through the proxy before it
goes on anyway (well inside the executive's heartbeat timeout of 10 s)."""
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def name_process(name: str) -> None:
    """Set the kernel's process name (``ps -e``, ``top``) and die when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent-pid check in the loop still ends orphans


class ProcessRunner:
    """Owns the sockets of one subsystem process and drives its :class:`Subsystem`."""

    def __init__(self, cls: type[Subsystem], config: RunConfig) -> None:
        self.config = config
        self.ctx = zmq.Context()
        self.pub = bus.publisher(self.ctx, config.bus)
        topics = (b"hw/hal.frame", b"ctl/sync", *cls.SUBSCRIBE)
        self.sub = bus.subscriber(self.ctx, config.bus, topics)
        self.dealer = bus.dealer(self.ctx, config.bus, cls.COMPONENT.name)
        self.encoder = Encoder(cls.COMPONENT.name)
        self.cmd_encoder = Encoder(cls.COMPONENT.name)
        self.subscribed = cls.SUBSCRIBE
        self.probe = f"{cls.COMPONENT.name}.bus_probe"
        """Data product only this process subscribes to (:meth:`await_bus`)."""
        self.probe_topic = topic_for("data", self.probe)
        self.subsystem = cls(config, self._emit, self._send_command, listen=self._listen)
        self.running = True
        self.last_tick = 0

    def _emit(self, kind: str, name: str, data: Any) -> None:
        s = self.subsystem
        self.pub.send_multipart(self.encoder.encode(kind, name, data, s.tick, s.time_s))

    def _listen(self, on: bool) -> None:
        # SUB subscriptions are counted, so subscribe and unsubscribe only on a change
        wanted = self.subsystem.SUBSCRIBE if on else ()
        if wanted != self.subscribed:
            option = zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE
            for topic in self.subsystem.SUBSCRIBE:
                self.sub.setsockopt(option, topic)
            self.subscribed = wanted

    def _send_command(self, command_id: str, qualified: str, args: dict) -> None:
        s = self.subsystem
        body = self.cmd_encoder.encode("cmd", qualified, {"id": command_id, "args": args}, s.tick, s.time_s)[1]
        self.dealer.send(body)

    def _respond(self, msg: Message, stage: str, code: str = "", message: str = "") -> None:
        data = {"id": msg.data.get("id", ""), "stage": stage, "code": code, "message": message}
        s = self.subsystem
        self.dealer.send(self.cmd_encoder.encode("rsp", msg.name, data, s.tick, s.time_s)[1])

    def _decode_error(self, topic: str, why: str) -> None:
        self.subsystem.decode_errors += 1
        self.subsystem.event("decode_error", topic=topic, why=why[:120])

    def await_bus(self) -> list[list[bytes]]:
        """Publish probes until one comes back through the proxy, at most
        :data:`BUS_PROBE_TIMEOUT_S`; returns the messages that arrived meanwhile, in order."""
        topic = self.probe_topic
        self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        held: list[list[bytes]] = []
        deadline = time.monotonic() + BUS_PROBE_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                self._emit("data", self.probe, {})
                if self.sub.poll(BUS_PROBE_PERIOD_S * 1000):
                    for frames in bus.drain(self.sub):
                        if frames[0] == topic:
                            return held
                        held.append(frames)
            return held
        finally:
            self.sub.setsockopt(zmq.UNSUBSCRIBE, topic)

    def on_bus(self) -> None:
        self.handle(bus.drain(self.sub))

    def handle(self, messages: Iterable[list[bytes]]) -> None:
        """Hand each bus message (``[topic, body]``) to the subsystem: frames, sync, the rest."""
        for frames in messages:
            if frames[0] == self.probe_topic:
                continue  # a probe still in flight when await_bus had its answer
            if len(frames) != 2:
                self._decode_error("?", f"{len(frames)} frames")
                continue
            try:
                msg = decode(frames[1])
            except DecodeError as exc:
                self._decode_error(frames[0].decode("ascii", "replace")[:40], str(exc))
                continue
            if msg.kind == "hw" and msg.name == "hal.frame":
                self.on_frame(msg)
            elif msg.kind == "ctl" and msg.name == "sync":
                self._emit("ctl", "ready", {"name": self.subsystem.name})
            else:
                self.subsystem.on_message(msg)

    def on_frame(self, msg: Message) -> None:
        if msg.tick <= self.last_tick:
            return
        s = self.subsystem
        if self.last_tick and msg.tick > self.last_tick + 1:
            missed = msg.tick - self.last_tick - 1
            s.cycle_slips += missed
            s.tick = msg.tick
            s.event("cycle_slip", missed=missed, tick=msg.tick)
        self.last_tick = msg.tick
        started = time.perf_counter()
        s.on_frame(msg.tick, msg.t, msg.data)
        self._emit("hw", "hal.done", {"tick": msg.tick, "actuate": s.actuation})
        s.actuation = {}
        budget = self.config.tick_wall_s
        if budget is not None and time.perf_counter() - started > budget:
            s.cycle_slips += 1
            s.event("cycle_slip", missed=1, tick=msg.tick)

    def on_commands(self) -> None:
        for frames in bus.drain(self.dealer):
            try:
                msg = decode(frames[-1])
            except DecodeError as exc:
                self._decode_error("command", str(exc))
                continue
            if msg.kind == "rsp":
                self.subsystem.on_response(msg)
            elif msg.kind == "cmd" and isinstance(msg.data, dict):
                self.execute(msg)
            else:
                self._decode_error("command", f"unexpected {msg.kind} message")

    def execute(self, msg: Message) -> None:
        result = execute_command(self.subsystem, msg, self._respond)
        if result is not None:
            self._respond(msg, "completed", message=str(result))

    def heartbeat(self) -> None:
        s = self.subsystem
        self._emit("hb", f"{s.name}.heartbeat", {"pid": os.getpid(), "tick": s.tick})

    def run(self) -> None:
        poller = zmq.Poller()
        handlers = {self.sub: self.on_bus, self.dealer: self.on_commands}
        self.subsystem.on_start()
        for sock, handler in self.subsystem.poll_items():
            handlers[sock] = handler
        for sock in handlers:
            poller.register(sock, zmq.POLLIN)
        self.handle(self.await_bus())
        period = self.config.heartbeat_s
        next_beat = time.monotonic()
        try:
            while self.running:
                now = time.monotonic()
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + period
                    if self.config.parent_pid and os.getppid() != self.config.parent_pid:
                        break
                for sock, _ in poller.poll(max(0.0, next_beat - now) * 1000):
                    handlers[sock]()
        finally:
            self.subsystem.on_stop()
            self.ctx.destroy(linger=0)


def execute_command(subsystem: Subsystem, msg: Message, respond: Callable[..., None]) -> str | None:
    """Run command ``msg`` (kind ``cmd``) on ``subsystem`` with its verification stages sent
    through ``respond(msg, stage, code="", message="")``: ``started``, then ``failed`` with the
    :class:`CommandError` code, or EXECUTION_ERROR (and a ``command_crashed`` event) for a handler
    that raised, returning ``None``; else the handler's result, for the caller to complete."""
    _, _, local = msg.name.partition(".")
    respond(msg, "started")
    try:
        return subsystem.execute(local, msg.data.get("args"))
    except CommandError as exc:
        respond(msg, "failed", exc.code, exc.message)
    except Exception as exc:  # a handler bug must fail the command, not kill the process
        respond(msg, "failed", "EXECUTION_ERROR", f"{type(exc).__name__}: {exc}")
        subsystem.event("command_crashed", command=msg.name, why=f"{type(exc).__name__}: {exc}"[:160])
    return None


def main(argv: list[str] | None = None) -> None:
    from flight.subsystems import subsystem_class

    name, config_json = (argv or sys.argv[1:])[:2]
    name_process(name)
    runner = ProcessRunner(subsystem_class(name), RunConfig.from_json(config_json))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: setattr(runner, "running", False))
    run_profiled(runner.run, runner.config, name)


def run_profiled(run, config: RunConfig, name: str) -> None:
    """Run ``run()``; with ``RACKFLIGHT_PROFILE=1`` in the environment, under cProfile, the
    statistics written to ``<data dir>/profile-<name>.prof`` (read with ``python -m pstats``)."""
    if not os.environ.get("RACKFLIGHT_PROFILE"):
        run()
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(run)
    finally:
        profiler.dump_stats(str(config.data_path / f"profile-{name}.prof"))


if __name__ == "__main__":
    main()
