"""The HAL bridge's transports: the processes that drive a :class:`~flight.hal.bridge.HalBridge`.

* :class:`BridgeRunner`: a rig behind a HAL endpoint (``flight run --hal``, the HIL suite):
  frames, actuations and faults are :mod:`flight.hal.protocol` messages over one DEALER. Run as
  ``python -m flight.hal.rigs CONFIG_JSON``.
* :class:`LocalRigRunner`: a :class:`LocalRig` in the bridge's own process (the simulator in
  ``flight run``, :mod:`sim_hw.local`): frames and actuations are calls, which spares a process
  and two hops per tick.

Both run on the process's :class:`~flight.core.runtime.BusRuntime`, bind the lockstep
channel (:mod:`flight.core.lockstep`: frames out, the participants' answers in, each frame
relaying the answers that carry outputs for others) and share :class:`RigRunner`: the start-up sync that makes sure every participant and the executive's
recorder hear the bus before the first frame, the bridge's own commands (deferred fault
commands answer when the rig does) and a scenario's timed telecommands
(:mod:`flight.hal.timed_commands`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from flight.core import bus, lockstep
from flight.core.config import RunConfig
from flight.core.messages import MAX_BODY_BYTES, DecodeError, Encoder, Message, decode
from flight.core.runtime import BusRuntime, report_decode_error, serve
from flight.hal import protocol as hal
from flight.hal.bridge import DEFERRED, HalBridge
from flight.hal.onboard_clock import REFUSED_EXIT, OnboardClock, iso_utc
from flight.hal.timed_commands import TimedCommands

SYNC_PERIOD_S = 0.1
"""Wall seconds between ``ctl/sync`` calls before the first frame, and the longest poll."""
HELLO_PERIOD_S = 1.0
"""Wall seconds between ``hal.hello`` attempts while no rig has answered."""
RIG_HWM = 10_000


class RigRunner:
    """What both transports share. ``process`` names the OS process in heartbeats;
    ``send_rig(name, data)`` is the bridge's port to the rig."""

    def __init__(self, config: RunConfig, process: str, send_rig: Callable[[str, Any], None],
                 clock_autosave: bool) -> None:
        self.config = config
        self.bus = BusRuntime(config, HalBridge.COMPONENT.name, (b"ctl/ready", b"ctl/down"), self._clock,
                              process=process)
        self.frames, self.answers = lockstep.bridge_sockets(self.bus.ctx, config.bus)
        self.relayed: list[tuple[str, bytes]] = []
        """Answers since the last frame that carry outputs for other participants."""
        self._order = {name: i for i, name in enumerate(config.participants)}
        self.bridge = HalBridge(config, self.bus.emit, send_rig)
        self.bus.on_decode_error = report_decode_error(self.bridge)
        self.bridge.clock = OnboardClock(config.data_path if config.data_dir else None, clock_autosave)
        self.synced = False
        self._expected = set(config.participants) | {"exec"}
        self._next_sync = 0.0
        self.frame_encoder = Encoder(process)
        """Stamps the sensor frames on the frames channel (:func:`lockstep.frame_body`)."""
        self.sync_encoder = Encoder(HalBridge.COMPONENT.name)
        """Stamps ``ctl/sync`` on the frames channel; its own ``seq`` keeps the bus's gap-free."""
        self.command_id = ""
        """Id of the command being executed (a deferred fault command answers under it)."""
        self.deferred: dict[str, Message] = {}
        """Fault commands sent to the rig, awaiting its ``hal.fault_ack``."""
        self.timed = TimedCommands(config.params.get("hal", {}).get("schedule", []))

    def _clock(self) -> tuple[int, float]:
        return self.bridge.tick, self.bridge.time_s

    def sync(self, now: float) -> None:
        """Until synced, ask every participant to answer ``ctl/sync``."""
        if self.synced:
            return
        if self._expected <= self.bridge.ready:
            self.synced = True
            self.bridge.present = set(self.config.participants)
        elif now >= self._next_sync:
            # the executive answers on the bus, the participants on the lockstep channel
            self.bus.emit("ctl", "sync", {"expected": sorted(self._expected)})
            b = self.bridge
            self.frames.send(self.sync_encoder.encode("ctl", "sync", {"expected": sorted(self._expected)},
                                                      b.tick, b.time_s)[1])
            self._next_sync = now + SYNC_PERIOD_S

    def drain_bus(self) -> None:
        for msg, _ in self.bus.decoded(self.bus.sub):
            self.bridge.on_message(msg)

    def drain_answers(self) -> None:
        """Take the participants' answers: ``hal.done`` (kept for relay when it carries
        outputs) and ``ctl/ready``."""
        for parts in bus.drain(self.answers):
            try:
                msg = decode(parts[-1])
                relay = msg.name == "hal.done" and bool(lockstep.outputs_of(msg))
            except DecodeError as exc:
                self.bus.on_decode_error("answers", str(exc))
                continue
            if relay:
                self.relayed.append((msg.src, parts[-1]))
            self.bridge.on_message(msg)

    def publish_frame(self, tick: int, time_s: float, frame: dict[str, Any]) -> None:
        """Send sensor frame ``frame`` of ``tick`` (onboard ``time_s``, s) to the participants
        with the answers to relay, in participant order."""
        relayed = sorted(self.relayed, key=lambda answer: self._order.get(answer[0], len(self._order)))
        self.relayed = []
        body = lockstep.frame_body(self.frame_encoder, frame, tick, time_s)
        self.frames.send_multipart(lockstep.frame_parts(body, relayed))

    def on_commands(self) -> None:
        """Execute the bridge's own commands; follow the timed commands' responses."""
        for msg, _ in self.bus.decoded(self.bus.dealer):
            if not isinstance(msg.data, dict):
                self.bus.on_decode_error("command", f"{msg.kind} payload is not a map")
            elif msg.kind == "cmd":
                self._execute(msg)
            elif msg.kind == "rsp":
                failed = self.timed.on_response(msg.data)
                if failed is not None:
                    self.bridge.event("scenario_command_failed", command=failed[1], at_s=failed[0],
                                      code=str(msg.data.get("code")), message=str(msg.data.get("message"))[:160])

    def _execute(self, msg: Message) -> None:
        self.command_id = str(msg.data.get("id", ""))
        result = self.bus.execute(self.bridge, msg)
        if result == DEFERRED:
            self.deferred[self.command_id] = msg
        elif result is not None:
            self.bus.respond(msg, "completed", message=str(result))

    def issue_timed(self) -> bool:
        """Send the timed commands due by the bridge's time; whether any is still pending."""
        return self.timed.issue_due(self.bridge.time_s, self.bus.command)

    @property
    def exit_status(self) -> int:
        """The process's exit status: :data:`~flight.hal.onboard_clock.REFUSED_EXIT` once onboard
        time went backwards, else 0."""
        return REFUSED_EXIT if self.bridge.refused else 0

    def check_refused(self) -> bool:
        """Stop the loop once the bridge refused to run on; whether it did."""
        if self.bridge.refused:
            self.bus.stop()
        return self.bridge.refused

    def rig_connected(self, welcome: dict) -> None:
        self.bridge.event("rig_connected", version=welcome.get("version"), n_gpus=welcome.get("n_gpus"),
                          tick_s=welcome.get("tick_s"), lockstep=welcome.get("lockstep"))
        clock = welcome.get("clock")
        if isinstance(clock, dict) and clock.get("resumed"):
            # a reboot: the mission goes on from the rig's saved state, and a scenario's commands
            # timed before it were the previous run's to send
            time_s, utc = float(clock.get("time_s", 0.0)), float(clock.get("utc_unix_s", math.nan))
            self.timed.skip_through(time_s)
            self.bridge.event("rebooted", utc=iso_utc(utc) if math.isfinite(utc) else "?", utc_unix_s=utc,
                              time_s=time_s, battery_soc=float(clock.get("battery_soc", math.nan)))


class BridgeRunner(RigRunner):
    """The bridge process for a rig behind a HAL endpoint (``flight run --hal``)."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config, "hal", self._send_rig, clock_autosave=True)
        self.rig = self.bus.ctx.socket(zmq.DEALER)
        self.rig.setsockopt(zmq.LINGER, 100)
        self.rig.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
        self.rig.setsockopt(zmq.SNDHWM, RIG_HWM)
        self.rig.setsockopt(zmq.RCVHWM, RIG_HWM)
        self.rig.connect(config.hal_endpoint)
        self.rig_encoder = Encoder("flight")
        self.welcomed = False
        self.next_hello = 0.0
        self.fault_payloads: dict[str, dict] = {}
        self.bridge.send_fault = self._send_fault

    def _send_fault(self, payload: dict) -> str:
        if not self.welcomed:
            raise ValueError("no rig connected")
        self.fault_payloads[self.command_id] = payload
        self._send_rig("hal.fault", {"id": self.command_id, **payload})
        return DEFERRED

    def _fault_ack(self, data: Any) -> None:
        command_id = data.get("id") if isinstance(data, dict) else None
        msg = self.deferred.pop(command_id, None)
        payload = self.fault_payloads.pop(command_id, None)
        if msg is None or payload is None:
            return
        if data.get("ok") is True:
            self.bridge.fault_applied(payload)
            self.bus.respond(msg, "completed", message=f"{payload['action']} {payload['fault']} applied by the rig")
        else:
            self.bus.respond(msg, "failed", "EXECUTION_ERROR", f"the rig refused: {str(data.get('reason'))[:160]}")

    def _fail_deferred(self, why: str) -> None:
        for command_id, msg in self.deferred.items():
            self.fault_payloads.pop(command_id, None)
            self.bus.respond(msg, "failed", "EXECUTION_ERROR", why)
        self.deferred.clear()

    def _send_rig(self, name: str, data: Any) -> None:
        b = self.bridge
        self.rig.send(self.rig_encoder.encode("hw", name, data, b.tick, b.time_s)[1])

    def drain_rig(self) -> None:
        for frames in bus.drain(self.rig):
            body = frames[-1]
            try:
                msg = decode(body)
            except DecodeError as exc:
                self.bus.on_decode_error("rig", str(exc))
                continue
            if msg.name == "hal.frame":
                if self.welcomed:
                    self.bridge.on_rig_frame(msg.tick, msg.t, msg.data,
                                             lambda m=msg: self.publish_frame(m.tick, m.t, m.data))
            elif msg.name == "hal.welcome" and isinstance(msg.data, dict):
                self.welcomed = True
                self.rig_connected(msg.data)
            elif msg.name == "hal.reject":
                self.bridge.on_rig_reject(msg.data)
                if self.deferred:  # a rig that does not know hal.fault rejects it
                    reason = msg.data.get("reason", "?") if isinstance(msg.data, dict) else "?"
                    self._fail_deferred(f"the rig rejected a message: {str(reason)[:160]}")
            elif msg.name == "hal.fault_ack":
                self._fault_ack(msg.data)
            elif msg.name == "hal.fault_ended" and isinstance(msg.data, dict):
                self.bridge.fault_ended(str(msg.data.get("fault")), str(msg.data.get("target")), "duration passed")
            elif msg.name == "hal.end":
                reason = msg.data.get("reason", "?") if isinstance(msg.data, dict) else "?"
                self.bridge.event("rig_ended", reason=str(reason)[:200])
                self.welcomed = False

    def _step(self, now: float) -> float:
        if self.check_refused():
            return 0.0
        self.bridge.check_deadline()
        self.sync(now)
        if self.synced and not self.welcomed and now >= self.next_hello:
            self._send_rig("hal.hello", {"version": hal.HAL_VERSION})
            self.next_hello = now + HELLO_PERIOD_S
        if self.welcomed:
            self.issue_timed()
        return SYNC_PERIOD_S

    def run(self) -> None:
        """Sync, greet the rig, then relay frames and answers until stopped."""
        handlers = {self.rig: self.drain_rig, self.answers: self.drain_answers, self.bus.sub: self.drain_bus,
                    self.bus.dealer: self.on_commands}
        try:
            self.bus.loop(handlers, self._step)
        finally:
            if self.welcomed:
                self._send_rig("hal.bye", {})
            if not self.bridge.refused:
                self.bridge.clock.save(self.bridge.clock.latest_s)
            self.bridge.clock.close()
            self.bus.close(linger_ms=100)


class LocalRig(Protocol):
    """A rig in the bridge's own process (the simulator in ``flight run``): frames and
    actuations are calls, not messages, which spares a process and two hops per tick."""

    name: str
    welcome: dict

    def step(self) -> tuple[int, float, dict]:
        """Advance one tick; return ``(tick, time_s, sensor frame)``."""

    def between_ticks(self) -> None:
        """Work that changes no frame (saving state, say), done once the last frame is out:
        in lockstep it then overlaps flight's handling of that frame."""

    def actuate(self, fields: Any) -> str | None:
        """Apply an ``hal.actuate`` payload; return why it was rejected, or None."""

    def energy_balance_error(self) -> float:
        """Relative residual of the rig's energy ledger since the start, >= 0 (published in
        ``hal.hk``): simulator truth that no sensor measures, so only an in-process rig has it."""

    def fault(self, payload: dict) -> str:
        """Apply a ``hal.fault`` payload (inject or clear); return what was done.

        Raises:
            ValueError: the rig refuses it (nothing changed).
        """

    def take_ended_faults(self) -> list[tuple[str, str]]:
        """``(fault, target)`` of the timed faults that ended since the last call."""

    saved_utc_s: float | None
    """Onboard UTC (Unix s) of the state the rig last saved durably and would resume from
    after a reboot; ``None`` for a rig that saves none."""

    def close(self) -> None:
        """Save what the rig resumes from (the run ends or the process stops)."""


class LocalRigRunner(RigRunner):
    """The bridge driving a :class:`LocalRig`: in lockstep it steps the rig as soon as every
    participant has finished the tick; paced, on the wall clock."""

    def __init__(self, config: RunConfig, rig: LocalRig) -> None:
        super().__init__(config, rig.name, self._send_rig, clock_autosave=False)
        self.rig = rig
        self.bridge.energy_balance_error = rig.energy_balance_error
        self.bridge.send_fault = rig.fault
        self.next_frame = 0.0

    def _send_rig(self, name: str, data: Any) -> None:
        if name == "hal.actuate":
            why = self.rig.actuate(data)
            if why:
                self.bridge.on_rig_reject({"reason": why})
        # tick_done needs no message here: the loop steps once bridge.waiting is empty

    def step(self) -> None:
        tick, time_s, frame = self.rig.step()
        self.bridge.on_rig_frame(tick, time_s, frame, lambda: self.publish_frame(tick, time_s, frame), trusted=True)
        for fault, target in self.rig.take_ended_faults():
            self.bridge.fault_ended(fault, target, "duration passed")
        self.rig.between_ticks()
        self._record_saved()

    def _record_saved(self) -> None:
        # the floor follows what the simulator has saved, never ahead of it: after a crash it
        # resumes from that state, which must not count as going backwards
        saved = self.rig.saved_utc_s
        if saved is not None and saved > self.bridge.clock.saved_s and not self.bridge.refused:
            self.bridge.clock.save(saved)

    def _step(self, now: float) -> float:
        if self.check_refused():
            return 0.0
        self.bridge.check_deadline()
        was_synced = self.synced
        self.sync(now)
        if not self.synced:
            return SYNC_PERIOD_S
        if not was_synced:
            self.rig_connected(self.rig.welcome)
            self.next_frame = now
        if self.config.last_tick and self.bridge.tick >= self.config.last_tick:
            return SYNC_PERIOD_S  # the run's end: the state the rig saves is the one the run ended in
        period = self.config.tick_wall_s
        if period is None:
            if not self.bridge.waiting and not self.issue_timed():
                self.step()
            return SYNC_PERIOD_S
        if now >= self.next_frame:
            self.issue_timed()
            self.step()
            self.next_frame = max(self.next_frame + period, now)  # re-anchor after a stall, don't burst
        return min(SYNC_PERIOD_S, self.next_frame - time.monotonic())

    def run(self) -> None:
        handlers = {self.answers: self.drain_answers, self.bus.sub: self.drain_bus, self.bus.dealer: self.on_commands}
        try:
            self.bus.loop(handlers, self._step)
        finally:
            if not self.bridge.refused:
                self.rig.close()
                self._record_saved()
            self.bridge.clock.close()
            self.bus.close(linger_ms=100)


def main(argv: list[str] | None = None) -> int:
    """``python -m flight.hal.rigs CONFIG_JSON``: the bridge process for the rig at ``config.hal_endpoint``."""
    config_json = (argv or sys.argv[1:])[0]
    return serve("hal", lambda: BridgeRunner(RunConfig.from_json(config_json)))


if __name__ == "__main__":
    sys.exit(main())
