"""The one bus runtime every flight process runs on, and the subsystem process built on it.

:class:`BusRuntime` is a process's end of the bus (:mod:`flight.core.bus`): it connects the
publisher, the subscriber and (for a commandable process) the command DEALER; emits
telemetry, events, data products and control messages stamped with the owner's
clock; sends commands and answers them with their verification stages; decodes what
arrives and counts what does not decode; heartbeats; and makes sure, before the loop,
that the proxy has its publisher. Every process uses it: a subsystem
(:class:`ProcessRunner`, ``python -m flight.core.runtime NAME CONFIG_JSON``), the HAL bridge
(:mod:`flight.hal.rigs`) and the executive's own telemetry and events
(:mod:`flight.executive.supervisor`). :func:`serve` is every process's ``main``: it names
the process, ignores SIGINT (on Ctrl-C the executive stops its children with SIGTERM, so
shutdown has one owner), stops the loop on SIGTERM and runs it, profiled on request.

The slow-joiner probe: a ZeroMQ PUB socket drops what it sends until the proxy's
subscriptions have reached it, so a process restarted mid-run, which gets frames at once,
could lose the first messages of its first tick (a restarted job runner's
``job_restored`` events, say). :meth:`BusRuntime.await_bus` publishes a probe only it
subscribes to until one comes back, and hands back what arrived meanwhile.

The subsystem loop (:class:`ProcessRunner`): poll the bus subscriber, the lockstep channel's
frames (:mod:`flight.core.lockstep`), the command DEALER and the subsystem's own extra
sockets; hand each HAL frame to the subsystem and answer ``hal.done``; execute commands
with their verification stages; heartbeat every ``heartbeat_s`` of wall time; answer the
HAL bridge's ``ctl/sync``. A malformed message is
counted and reported, never fatal. The process names itself after the subsystem
(``ps -e`` shows ``thermal``) and dies with its parent (``PR_SET_PDEATHSIG``, and a
parent-pid check at each heartbeat).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import zmq

from flight.core import bus, lockstep
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

Clock = Callable[[], tuple[int, float]]
"""``clock()``: the owner's ``(tick, time_s)``, stamped on everything it emits."""
OnDecodeError = Callable[[str, str], None]
"""``on_decode_error(where, why)``: count (and maybe report) a message that did not decode."""


def name_process(name: str) -> None:
    """Set the kernel's process name (``ps -e``, ``top``) and die when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent-pid check in the loop still ends orphans
    die_with_parent()


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``;
    elsewhere nothing). Also a ``preexec_fn`` for a child of another program (it survives exec)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class BusRuntime:
    """One process's bus endpoints and everything it does with them.

    Args:
        config: the run (bus endpoints, heartbeat period, parent pid).
        src: the source name stamped on every message (``thermal``, ``hal``, ``exec``); also
            the command DEALER's identity.
        topics: subscription prefixes.
        clock: the owner's ``(tick, time_s)``.
        on_decode_error: called for each message that does not decode (default: counted
            in :attr:`decode_errors` only).
        commands: whether to connect a command DEALER (the executive owns the ROUTER).
        process: the OS process named in heartbeats (default ``src``).
        ctx: a ZeroMQ context to share (the executive's, which also holds the broker);
            a private one otherwise, destroyed by :meth:`close`.
    """

    def __init__(self, config: RunConfig, src: str, topics: tuple[bytes, ...], clock: Clock, *,
                 on_decode_error: OnDecodeError | None = None, commands: bool = True, process: str = "",
                 ctx: zmq.Context | None = None) -> None:
        self.config = config
        self.src = src
        self.process = process or src
        self.clock = clock
        self.decode_errors = 0
        self.on_decode_error = on_decode_error or self._count
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.pub = bus.publisher(self.ctx, config.bus)
        self.sub = bus.subscriber(self.ctx, config.bus, topics)
        self.dealer = bus.dealer(self.ctx, config.bus, src) if commands else None
        self.encoder = Encoder(src)
        self.cmd_encoder = Encoder(src)
        self.probe = f"{src}.bus_probe"
        """Data product only this process subscribes to (:meth:`await_bus`)."""
        self.probe_topic = topic_for("data", self.probe)
        self.running = True
        self.next_beat = 0.0
        self.holding = False
        self.held: list[list[bytes]] = []
        """Messages encoded but not yet sent while :meth:`hold` is on."""

    def _count(self, _where: str, _why: str) -> None:
        self.decode_errors += 1

    # -- out -------------------------------------------------------------------------
    def emit(self, kind: str, name: str, data: Any) -> None:
        """Publish one message of ``kind`` (``tm``, ``ev``, ``data``, ``hw``, ``ctl``, ``hb``):
        encoded now (stamped, its content taken), sent now or, while :meth:`hold` is on, by
        :meth:`release`."""
        tick, time_s = self.clock()
        parts = self.encoder.encode(kind, name, data, tick, time_s)
        if self.holding:
            self.held.append(parts)
        else:
            self.pub.send_multipart(parts)

    def hold(self) -> None:
        """Keep what :meth:`emit` publishes from now until :meth:`release`.

        Why: a send wakes ZeroMQ's I/O thread, which on a busy machine takes the CPU from the
        sender at once. A lockstep participant holds its telemetry and events while it handles
        a frame and sends them after its ``hal.done``, so that the simulator steps meanwhile
        instead of waiting (on 2 cores, a housekeeping tick took 0.6 ms longer without)."""
        self.holding = True

    def release(self) -> None:
        """Send what was held, in order, and stop holding."""
        self.holding = False
        for parts in self.held:
            self.pub.send_multipart(parts)
        self.held.clear()

    def _to_dispatcher(self, kind: str, name: str, data: dict) -> None:
        tick, time_s = self.clock()
        self.dealer.send(self.cmd_encoder.encode(kind, name, data, tick, time_s)[1])

    def command(self, command_id: str, qualified: str, args: dict) -> None:
        """Send command ``qualified`` with ``args`` to the dispatcher under ``command_id``."""
        self._to_dispatcher("cmd", qualified, {"id": command_id, "args": args})

    def respond(self, msg: Message, stage: str, code: str = "", message: str = "") -> None:
        """Answer command ``msg`` with a verification ``stage`` (``started``, ``completed``,
        ``failed`` with ``code`` and ``message``)."""
        self._to_dispatcher("rsp", msg.name, {"id": msg.data.get("id", ""), "stage": stage, "code": code,
                                              "message": message})

    def execute(self, target: Subsystem, msg: Message) -> Any:
        """Run command ``msg`` on ``target`` with its verification stages (:func:`execute_command`);
        the handler's result for the caller to complete, or ``None`` once it has failed."""
        return execute_command(target, msg, self.respond)

    def serve_commands(self, target: Subsystem) -> None:
        """Take what the command DEALER holds: answers to ``target``'s own commands go to its
        ``on_response``; commands for it run with their verification stages (:meth:`execute`)
        and complete with the handler's result; anything else is a decode error."""
        for msg, _ in self.decoded(self.dealer):
            if msg.kind == "rsp":
                target.on_response(msg)
            elif msg.kind == "cmd" and isinstance(msg.data, dict):
                result = self.execute(target, msg)
                if result is not None:
                    self.respond(msg, "completed", message=str(result))
            else:
                self.on_decode_error("command", f"unexpected {msg.kind} message")

    def heartbeat(self, now: float) -> bool:
        """Send ``<process>.heartbeat`` when ``heartbeat_s`` has passed since the last; return
        False when the parent has gone (the process should end)."""
        if now < self.next_beat:
            return True
        tick, _ = self.clock()
        self.emit("hb", f"{self.process}.heartbeat", {"pid": os.getpid(), "tick": tick})
        self.next_beat = now + self.config.heartbeat_s
        return not (self.config.parent_pid and os.getppid() != self.config.parent_pid)

    # -- in --------------------------------------------------------------------------
    def decoded(self, sock: zmq.Socket) -> Iterator[tuple[Message, bytes]]:
        """Every message queued on ``sock`` (at most :data:`flight.core.bus.DRAIN_BATCH`) as
        ``(message, body)``; one that does not decode goes to ``on_decode_error``, a probe of
        :meth:`await_bus` still in flight is dropped."""
        for frames in bus.drain(sock):
            yield from self._decode(frames, sock is not self.dealer)

    def _decode(self, frames: list[bytes], published: bool) -> Iterator[tuple[Message, bytes]]:
        if published and frames[0] == self.probe_topic:
            return
        if len(frames) != (2 if published else 1):
            self.on_decode_error("?" if published else "command", f"{len(frames)} frames")
            return
        try:
            yield decode(frames[-1]), frames[-1]
        except DecodeError as exc:
            where = frames[0].decode("ascii", "replace")[:40] if published else "command"
            self.on_decode_error(where, str(exc))

    def await_bus(self) -> list[tuple[Message, bytes]]:
        """Publish probes until one comes back through the proxy, at most
        :data:`BUS_PROBE_TIMEOUT_S`; returns the messages that arrived meanwhile, decoded, in order."""
        topic = self.probe_topic
        self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        held: list[tuple[Message, bytes]] = []
        deadline = time.monotonic() + BUS_PROBE_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                self.emit("data", self.probe, {})
                if self.sub.poll(BUS_PROBE_PERIOD_S * 1000):
                    for frames in bus.drain(self.sub):
                        if frames[0] == topic:
                            return held
                        held.extend(self._decode(frames, True))
            return held
        finally:
            self.sub.setsockopt(zmq.UNSUBSCRIBE, topic)

    # -- the loop --------------------------------------------------------------------
    def loop(self, handlers: dict[zmq.Socket, Callable[[], None]], step: Callable[[float], float]) -> None:
        """Until :meth:`stop` or the parent's death: heartbeat, ``step(now)`` (returns how
        long, s, it may wait for input), then run the handler of each socket with input."""
        poller = zmq.Poller()
        for sock in handlers:
            poller.register(sock, zmq.POLLIN)
        while self.running:
            now = time.monotonic()
            if not self.heartbeat(now):
                break
            timeout_s = min(step(now), self.next_beat - now)
            for sock, _ in poller.poll(max(0.0, timeout_s) * 1000):
                handlers[sock]()

    def stop(self) -> None:
        """End :meth:`loop` (safe from a signal handler)."""
        self.running = False

    def close(self, linger_ms: int = 0) -> None:
        """Close the sockets (and destroy the context, if it is private)."""
        if self._own_ctx:
            self.ctx.destroy(linger=linger_ms)
            return
        for sock in (self.pub, self.sub, self.dealer):
            if sock is not None:
                sock.close(linger_ms)


class ProcessRunner:
    """Drives one :class:`Subsystem` in its own process: the bus through a :class:`BusRuntime`,
    the HAL bridge's frames through the lockstep channel (:mod:`flight.core.lockstep`).

    What the subsystem tells other subsystems on the lockstep path (its data products and
    ``ctl`` messages) rides in its next ``hal.done``, and what the others told it arrives
    relayed inside the frame it is about to handle: it is handed over, in the order made,
    before :meth:`Subsystem.on_frame`, each as if received alone. ``ctl`` messages also go
    out on the bus at once, for the executive. The subsystem's other ``SUBSCRIBE`` topics
    (the link's ``tm/`` and ``ev/``) come from the bus."""

    exit_status = 0

    def __init__(self, cls: type[Subsystem], config: RunConfig) -> None:
        self.config = config
        name = cls.COMPONENT.name
        self.relayed_topics = tuple(t for t in cls.SUBSCRIBE if t.split(b"/")[0].decode() in lockstep.RELAYED_KINDS)
        """``SUBSCRIBE`` prefixes this subsystem takes from relayed answers, not from the bus."""
        self.bus = BusRuntime(config, name, self._bus_topics(cls.SUBSCRIBE), self._clock)
        self.frames, self.answers = lockstep.participant_sockets(self.bus.ctx, config.bus)
        self.subscribed = cls.SUBSCRIBE
        self.subsystem = cls(config, self._emit, self.bus.command, listen=self._listen)
        self.bus.on_decode_error = report_decode_error(self.subsystem)
        self.last_tick = 0
        self.outputs: list[tuple[str, str, Any]] = []
        """Data products and ``ctl`` messages made since the last ``hal.done``."""
        self.answer_encoder = Encoder(name)
        """Stamps answers; its own ``seq`` keeps the bus's gap-free (the executive counts gaps)."""

    def _bus_topics(self, subscribe: tuple[bytes, ...]) -> tuple[bytes, ...]:
        return tuple(t for t in subscribe if t not in self.relayed_topics)

    def _emit(self, kind: str, name: str, data: Any) -> None:
        if kind in lockstep.RELAYED_KINDS:
            self.outputs.append((kind, name, data))
        if kind != "data":
            self.bus.emit(kind, name, data)

    def _clock(self) -> tuple[int, float]:
        return self.subsystem.tick, self.subsystem.time_s

    def _listen(self, on: bool) -> None:
        # SUB subscriptions are counted, so subscribe and unsubscribe only on a change
        wanted = self.subsystem.SUBSCRIBE if on else ()
        if wanted != self.subscribed:
            option = zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE
            for topic in self._bus_topics(self.subsystem.SUBSCRIBE):
                self.bus.sub.setsockopt(option, topic)
            self.subscribed = wanted

    def on_bus(self) -> None:
        self.handle(self.bus.decoded(self.bus.sub))

    def handle(self, messages: Iterable[tuple[Message, bytes]]) -> None:
        """Hand each decoded bus message to the subsystem."""
        for msg, _ in messages:
            self.subsystem.on_message(msg)

    def on_lockstep(self) -> None:
        """Take what the frames channel holds: answer ``ctl/sync``, handle each frame."""
        for parts in bus.drain(self.frames):
            try:
                body, relayed = lockstep.split_frame(parts)
                msg = decode(body)
                frame = lockstep.sensor_frame(msg) if msg.kind == "hw" and msg.name == "hal.frame" else None
            except DecodeError as exc:
                self.bus.on_decode_error("frames", str(exc))
                continue
            if frame is not None:
                self.deliver(relayed)
                self.on_frame(msg.tick, msg.t, frame)
            elif msg.kind == "ctl" and msg.name == "sync":
                self.answer("ctl", "ready", {"name": self.subsystem.name})
            else:
                self.bus.on_decode_error("frames", f"unexpected {msg.kind}/{msg.name}")

    def answer(self, kind: str, name: str, data: Any) -> None:
        """Send ``kind/name`` to the HAL bridge on the answers channel."""
        tick, time_s = self._clock()
        self.answers.send(self.answer_encoder.encode(kind, name, data, tick, time_s)[1])

    def deliver(self, relayed: list[tuple[str, bytes]]) -> None:
        """Hand the outputs of the other participants' answers in ``relayed`` to the
        subsystem, those on topics it listens to, in order."""
        for src, body in relayed:
            if src == self.subsystem.name:
                continue
            try:
                done = decode(body)
                outputs = lockstep.outputs_of(done)
            except DecodeError as exc:
                self.bus.on_decode_error(f"relayed {src}"[:40], str(exc))
                continue
            for kind, name, data in outputs:
                topic = topic_for(kind, name)
                if any(topic.startswith(prefix) for prefix in self.relayed_topics if prefix in self.subscribed):
                    self.subsystem.on_message(Message(done.src, done.seq, done.tick, done.t, kind, name, data))

    def on_frame(self, tick: int, time_s: float, frame: dict[str, Any]) -> None:
        """Handle sensor frame ``frame`` of ``tick`` (onboard ``time_s``, s) and answer ``hal.done``."""
        if tick <= self.last_tick:
            return
        s = self.subsystem
        if self.last_tick and tick > self.last_tick + 1:
            missed = tick - self.last_tick - 1
            s.cycle_slips += missed
            s.tick = tick
            s.event("cycle_slip", missed=missed, tick=tick)
        self.last_tick = tick
        started = time.perf_counter()
        self.bus.hold()
        try:
            s.on_frame(tick, time_s, frame)
            outputs, self.outputs = self.outputs, []
            self.answer("hw", "hal.done", lockstep.done_payload(tick, s.actuation, outputs))
            s.actuation = {}
            s.run_after_done()
        finally:
            self.bus.release()
        budget = self.config.tick_wall_s
        if budget is not None and time.perf_counter() - started > budget:
            s.cycle_slips += 1
            s.event("cycle_slip", missed=1, tick=tick)

    def on_commands(self) -> None:
        self.bus.serve_commands(self.subsystem)

    def run(self) -> None:
        handlers = {self.bus.sub: self.on_bus, self.frames: self.on_lockstep, self.bus.dealer: self.on_commands}
        self.subsystem.on_start()
        handlers.update(self.subsystem.poll_items())
        self.handle(self.bus.await_bus())
        self.subsystem.report_moved_aside()  # stores opened by on_start, now that the bus carries the events
        try:
            self.bus.loop(handlers, lambda _now: self.config.heartbeat_s)
        finally:
            self.subsystem.on_stop()
            self.bus.close()


def report_decode_error(subsystem: Subsystem) -> OnDecodeError:
    """The ``on_decode_error`` of a process that runs ``subsystem``: counted in its
    ``decode_errors`` (housekeeping) and announced with a ``decode_error`` event."""
    def report(where: str, why: str) -> None:
        subsystem.decode_errors += 1
        subsystem.event("decode_error", topic=where, why=why[:120])
    return report


def execute_command(subsystem: Subsystem, msg: Message, respond: Callable[..., None]) -> Any:
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


class Runner(Protocol):
    """What :func:`serve` runs: a process's loop over its :class:`BusRuntime`."""

    config: RunConfig
    bus: BusRuntime
    exit_status: int
    """The process's exit status once :meth:`run` has returned (0: a normal stop)."""

    def run(self) -> None:
        """Run until ``bus.stop()``; close the sockets before returning."""


def serve(name: str, build: Callable[[], Runner]) -> int:
    """Every flight process's ``main``: name the process ``name``, build its runner, ignore
    SIGINT (the executive owns shutdown), stop on SIGTERM, run (profiled on request:
    :func:`run_profiled`). Returns the runner's exit status."""
    name_process(name)
    runner = build()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: runner.bus.stop())
    run_profiled(runner.run, runner.config, name)
    return runner.exit_status


def run_profiled(run: Callable[[], None], config: RunConfig, name: str) -> None:
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


def main(argv: list[str] | None = None) -> int:
    """``python -m flight.core.runtime NAME CONFIG_JSON``: one subsystem's process."""
    from flight.core.dictionary import subsystem_class

    name, config_json = (argv or sys.argv[1:])[:2]
    return serve(name, lambda: ProcessRunner(subsystem_class(name), RunConfig.from_json(config_json)))


if __name__ == "__main__":
    sys.exit(main())
