"""The HAL bridge: flight's end of the hardware-interface link, and the lockstep keeper.

It connects to a rig's HAL endpoint (the simulator or a hardware-in-the-loop adapter, see
:mod:`flight.hal.protocol`), checks every sensor frame against the protocol, republishes it on the
bus as ``hw/hal.frame`` and publishes ``hal.hk``: at the housekeeping rate, the latest
frame's key values and the run statistics the bridge accumulates from every frame (time in
eclipse, energy harvested, lowest state of charge, hottest GPU, GPU thermal shutdowns). It gathers the subsystems' ``hal.done`` answers (each carrying that subsystem's
actuator settings) and, in lockstep, sends the merged actuation and ``hal.tick_done`` to the
rig only when every present participant has finished the tick — so the rig never runs
ahead of flight. Paced, each subsystem's settings go to the rig as soon as they arrive.

A participant that dies (the executive says so with ``ctl/down``) or does not answer within
:data:`LOCKSTEP_TIMEOUT_S` stops being waited for, which is counted as a cycle slip; its
next ``hal.done`` makes it a participant again. Run as ``python -m flight.hal.bridge CONFIG``.

Fault injection (test and lab): the bridge owns the telecommands ``hal.inject_fault`` and
``hal.clear_fault``. A fault is checked against the catalogue of :mod:`sim_hw.faults` before
anything is sent (VALIDATION_ERROR otherwise, nothing changes), then handed to the rig: a
call for the simulator in this process, the ``hal.fault`` protocol message for a rig behind
an endpoint, which completes the command when the rig answers ``hal.fault_ack`` (a real rig
may refuse). A scenario's timed telecommands (``config.params["hal"]["schedule"]``, from
:mod:`sim_hw.scenario`) go out from here through the dispatcher like any ground command, at
their simulated time; in lockstep the next tick waits until each has completed or failed,
so a scenario run stays reproducible.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import zmq

from flight.core import bus

from flight.hal import protocol as hal
from flight.core.config import RunConfig
from flight.core.component import Arg, Channel, Command, CommandError, Component, Event, EventArg
from flight.core.messages import MAX_BODY_BYTES, DecodeError, Encoder, Message, decode
from flight.core.runtime import execute_command, name_process, run_profiled
from flight.core.subsystem import Subsystem
from sim_hw import faults

LOCKSTEP_TIMEOUT_S = 10.0
"""Wall seconds a lockstep tick waits for a silent participant before going on without it."""
SYNC_PERIOD_S = 0.1
HELLO_PERIOD_S = 1.0
GPU_SHUTDOWN_C = 92.0
"""Die temperature at which a B200-class GPU shuts itself down (nvidia-smi "GPU Shutdown Temp"
class value, DESIGN.md). A GPU going offline at or above it is counted as a thermal shutdown;
one going offline cooler (its feed cut, a dead board) is not."""


DEFERRED = "deferred"
"""What a fault handler returns when the rig will answer later (``hal.fault_ack``)."""
FAULT_NAMES = tuple(faults.CATALOGUE)


class HalBridge(Subsystem):
    COMPONENT = Component(
        "hal", 5, doc="Bridge between the bus and the hardware interface (simulator or rig).",
        commands=(
            Command("inject_fault", 1, (
                Arg("fault", "str", choices=FAULT_NAMES, doc="Fault from the catalogue (sim_hw/faults.py)."),
                Arg("value", "float", doc="The fault's number (fraction, count, multiplier, noise sigma); "
                                          "0 for a fault that takes none."),
                Arg("target", "str", doc="GPU index (gpu_dead) or sensor (gpu_temp_c[5], "
                                         "coolant_supply_temp_c); empty otherwise."),
                Arg("duration_s", "float", "s", 0.0, faults.MAX_DURATION_S,
                    doc="Clears itself after this long; 0 = until hal.clear_fault."),
            ), doc="Test/lab: inject a fault into the rig (the simulator; a real rig may refuse)."),
            Command("clear_fault", 2, (
                Arg("fault", "str", choices=FAULT_NAMES, doc="Fault to clear."),
                Arg("target", "str", doc="Its target, as injected (empty for none)."),
            ), doc="Test/lab: undo an injected fault."),
        ),
        telemetry=(
            Channel("time_s", "float", "s", "Onboard time since the run epoch."),
            Channel("utc_unix_s", "float", "s", "UTC as Unix seconds."),
            Channel("eclipse", "bool", "", "Satellite in Earth's shadow."),
            Channel("sun_fraction", "float", "", "Visible fraction of the solar disc, 0..1."),
            Channel("beta_angle_deg", "float", "deg", "Sun angle to the orbit plane."),
            Channel("latitude_deg", "float", "deg", "Sub-satellite latitude."),
            Channel("longitude_deg", "float", "deg", "Sub-satellite longitude."),
            Channel("solar_array_power_w", "float", "W", "Solar array output."),
            Channel("battery_soc", "float", "", "Battery state of charge, 0..1.", yellow=(0.5, 1.0), red=(0.3, 1.0)),
            Channel("battery_temp_c", "float", "degC", "Battery cell temperature.", yellow=(5, 35), red=(0, 45)),
            Channel("battery_current_a", "float", "A", "Battery current, + charging."),
            Channel("bus_load_w", "float", "W", "Platform load."),
            Channel("gpu_power_total_w", "float", "W", "Sum of GPU board power."),
            Channel("gpu_temp_max_c", "float", "degC", "Hottest GPU.", yellow=(-10, 85), red=(-20, 89)),
            Channel("gpu_temp_mean_c", "float", "degC", "Mean GPU temperature."),
            Channel("gpu_temp_min_c", "float", "degC", "Coolest GPU."),
            Channel("gpus_online", "int", "count", "GPUs not shut down.", yellow=(72, 72), red=(60, 72)),
            Channel("coolant_supply_temp_c", "float", "degC", "Coolant into the cold plates.", yellow=(10, 45), red=(0, 55)),
            Channel("ground_contact", "bool", "", "A ground station is in view."),
            Channel("downlink_rate_bps", "float", "bit/s", "Available downlink rate."),
            Channel("participants", "int", "count", "Lockstep participants present."),
            Channel("frames_rejected", "int", "count", "Sensor frames that failed the protocol check."),
            Channel("actuations_rejected", "int", "count", "Actuations the rig rejected."),
            Channel("eclipse_time_s", "float", "s", "Time in eclipse, summed over every frame since the bridge started."),
            Channel("energy_harvested_j", "float", "J", "Array energy, integrated over every frame since the bridge started."),
            Channel("battery_soc_low", "float", "", "Lowest state of charge in any frame since the bridge started."),
            Channel("gpu_temp_peak_c", "float", "degC", "Hottest GPU in any frame since the bridge started."),
            Channel("gpu_shutdowns", "int", "count",
                    f"GPU hardware shutdowns (a GPU going offline at >= {GPU_SHUTDOWN_C:g} degC), counted over "
                    "every frame since the bridge started."),
            Channel("energy_balance_error", "float", "",
                    "Simulator only: |harvested - consumed - losses - stored| / energy flow of its ledger since "
                    "the run started; NaN with an external rig, which keeps no ledger."),
            Channel("faults_active", "int", "count", "Injected faults in effect in the rig.", yellow=(0, 0)),
        ),
        events=(
            Event("rig_connected", 1, "INFO", "HAL rig connected: protocol v{version}, {n_gpus} GPUs, tick {tick_s} s, lockstep={lockstep}",
                  args=(EventArg("version", "int"), EventArg("n_gpus", "int", "count"),
                        EventArg("tick_s", "float", "s"), EventArg("lockstep", "bool"))),
            Event("frame_rejected", 2, "HIGH", "sensor frame {tick} rejected: {why}",
                  args=(EventArg("tick", "int"), EventArg("why", "str"))),
            Event("actuation_rejected", 3, "MEDIUM", "rig rejected an actuation: {reason}",
                  args=(EventArg("reason", "str"),)),
            Event("participant_absent", 4, "MEDIUM", "{name} stopped answering in lockstep at tick {tick}; going on without it",
                  args=(EventArg("name", "str"), EventArg("tick", "int"))),
            Event("participant_back", 5, "INFO", "{name} answering again at tick {tick}",
                  args=(EventArg("name", "str"), EventArg("tick", "int"))),
            Event("rig_ended", 6, "HIGH", "the HAL rig stopped serving: {reason}",
                  args=(EventArg("reason", "str"),)),
            Event("fault_injected", 7, "MEDIUM",
                  "FAULT INJECTION: {fault} value={value:g} target={target!r} duration {duration_s:g} s",
                  args=(EventArg("fault", "str"), EventArg("value", "float"), EventArg("target", "str"),
                        EventArg("duration_s", "float", "s"))),
            Event("fault_cleared", 8, "INFO", "fault {fault} target={target!r} cleared ({why})",
                  args=(EventArg("fault", "str"), EventArg("target", "str"), EventArg("why", "str"))),
            Event("scenario_command_failed", 9, "MEDIUM", "scenario command {command} at {at_s:g} s failed: {code} {message}",
                  args=(EventArg("command", "str"), EventArg("at_s", "float", "s"), EventArg("code", "str"),
                        EventArg("message", "str"))),
            Event("gpus_offline", 10, "MEDIUM",
                  "GPU {gpus} went offline ({shutdowns} at >= {shutdown_c:g} degC: thermal shutdown); {online} online",
                  args=(EventArg("gpus", "str"), EventArg("shutdowns", "int", "count"),
                        EventArg("shutdown_c", "float", "degC"), EventArg("online", "int", "count"))),
            Event("gpus_back", 11, "INFO", "GPU {gpus} back online; {online} online",
                  args=(EventArg("gpus", "str"), EventArg("online", "int", "count"))),
        ),
    )

    def __init__(self, config: RunConfig, emit, send_rig) -> None:
        super().__init__(config, emit)
        self._send_rig = send_rig
        self.ready: set[str] = set()
        """Who answered ``ctl/sync`` (the executive's recorder too); used only before the first frame."""
        self.present: set[str] = set()
        """Lockstep participants waited for each tick."""
        self.waiting: set[str] = set()
        self.actuation: dict[str, Any] = {}
        self.frames_rejected = 0
        self.actuations_rejected = 0
        self.deadline = 0.0
        self.frame: dict[str, Any] = {}
        self.eclipse_time_s = self.energy_harvested_j = 0.0
        self.battery_soc_low, self.gpu_temp_peak_c = float("inf"), float("-inf")
        self.gpu_shutdowns = 0
        self.energy_balance_error: Callable[[], float] = lambda: math.nan
        """The rig's energy-ledger residual, when the rig is in this process (:class:`LocalRig`)."""
        self.send_fault: Callable[[dict], str] = lambda _payload: DEFERRED
        """Hands a checked ``hal.fault`` payload to the rig; returns the completion message,
        or :data:`DEFERRED` when the rig answers later; raises ``ValueError`` if refused."""
        self.faults_active: set[tuple[str, str]] = set()

    def accumulate(self, frame: dict[str, Any]) -> None:
        """Fold one frame into the run statistics (every frame, not just the published ones)."""
        dt_s = frame["time_s"] - self.frame["time_s"] if self.frame else self.config.tick_s
        self.eclipse_time_s += dt_s if frame["eclipse"] else 0.0
        self.energy_harvested_j += frame["solar_array_power_w"] * dt_s
        self.battery_soc_low = min(self.battery_soc_low, frame["battery_soc"])
        self.gpu_temp_peak_c = max(self.gpu_temp_peak_c, float(np.max(frame["gpu_temp_c"])))
        if self.frame:
            was, now = self.frame["gpu_online"], frame["gpu_online"]
            if (was != now).any():
                self._gpus_changed(was, now, frame["gpu_temp_c"])
        self.frame = frame

    def _gpus_changed(self, was: np.ndarray, now: np.ndarray, temp_c: np.ndarray) -> None:
        """Count thermal shutdowns and announce GPUs lost or regained (a dead board, a cut
        feed, a shutdown): the operator and the job runner's rollbacks then tell one story."""
        online = int(np.count_nonzero(now))
        fell, rose = was & ~now, now & ~was
        if fell.any():
            shutdowns = int(np.count_nonzero(fell & (temp_c >= GPU_SHUTDOWN_C)))
            self.gpu_shutdowns += shutdowns
            self.event("gpus_offline", gpus=",".join(map(str, np.flatnonzero(fell))), shutdowns=shutdowns,
                       shutdown_c=GPU_SHUTDOWN_C, online=online)
        if rose.any():
            self.event("gpus_back", gpus=",".join(map(str, np.flatnonzero(rose))), online=online)

    def housekeeping(self) -> None:
        frame = self.frame
        temps = frame["gpu_temp_c"]
        self.telemetry(
            eclipse_time_s=self.eclipse_time_s, energy_harvested_j=self.energy_harvested_j,
            battery_soc_low=self.battery_soc_low, gpu_temp_peak_c=self.gpu_temp_peak_c,
            gpu_shutdowns=self.gpu_shutdowns, energy_balance_error=self.energy_balance_error(),
            time_s=frame["time_s"], utc_unix_s=frame["utc_unix_s"], eclipse=frame["eclipse"],
            sun_fraction=frame["sun_fraction"], beta_angle_deg=frame["beta_angle_deg"],
            latitude_deg=frame["latitude_deg"], longitude_deg=frame["longitude_deg"],
            solar_array_power_w=frame["solar_array_power_w"], battery_soc=frame["battery_soc"],
            battery_temp_c=frame["battery_temp_c"], battery_current_a=frame["battery_current_a"],
            bus_load_w=frame["bus_load_w"], gpu_power_total_w=float(np.sum(frame["gpu_power_w"])),
            gpu_temp_max_c=float(np.max(temps)), gpu_temp_mean_c=float(np.mean(temps)),
            gpu_temp_min_c=float(np.min(temps)),
            gpus_online=int(np.count_nonzero(frame["gpu_online"])),
            coolant_supply_temp_c=frame["coolant_supply_temp_c"], ground_contact=frame["ground_contact"],
            downlink_rate_bps=frame["downlink_rate_bps"], participants=len(self.present),
            frames_rejected=self.frames_rejected, actuations_rejected=self.actuations_rejected,
            faults_active=len(self.faults_active),
        )

    # -- fault injection ---------------------------------------------------------------
    def cmd_inject_fault(self, fault: str, value: float, target: str, duration_s: float) -> str:
        try:
            checked = faults.validate(fault, value, target, duration_s)
        except faults.FaultError as exc:
            raise CommandError("VALIDATION_ERROR", str(exc)) from None
        return self._to_rig({"action": "inject", **checked.as_dict()})

    def cmd_clear_fault(self, fault: str, target: str) -> str:
        if (fault, target) not in self.faults_active:
            raise CommandError("VALIDATION_ERROR", f"no active fault {fault} {target!r}")
        return self._to_rig({"action": "clear", "fault": fault, "target": target})

    def _to_rig(self, payload: dict) -> str:
        try:
            result = self.send_fault(payload)
        except ValueError as exc:
            raise CommandError("EXECUTION_ERROR", f"the rig refused: {exc}") from None
        if result != DEFERRED:
            self.fault_applied(payload)
        return result

    def fault_applied(self, payload: dict) -> None:
        """Record (event, active set) a fault the rig has applied or cleared."""
        key = (payload["fault"], payload["target"])
        if payload["action"] == "inject":
            self.faults_active.add(key)
            self.event("fault_injected", fault=key[0], value=float(payload["value"]), target=key[1],
                       duration_s=float(payload["duration_s"]))
        else:
            self.fault_ended(key[0], key[1], "commanded")

    def fault_ended(self, fault: str, target: str, why: str) -> None:
        """A fault stopped acting: cleared by command, or its duration passed (``why``)."""
        self.faults_active.discard((fault, target))
        self.event("fault_cleared", fault=fault, target=target, why=why)

    # -- rig side --------------------------------------------------------------------
    def on_rig_frame(self, tick: int, time_s: float, frame: Any, publish: Callable[[], None]) -> None:
        """Check a rig's sensor frame; if sound, ``publish()`` it on the bus and open the tick."""
        if self.waiting:
            self.finish_tick(late=True)
        problems = hal.check_frame(frame)
        self.tick, self.time_s = tick, time_s
        if problems:
            self.frames_rejected += 1
            self.event("frame_rejected", tick=tick, why="; ".join(problems)[:200])
            self._send_rig("hal.tick_done", {"tick": tick})
            return
        publish()
        self.accumulate(frame)
        if self.config.housekeeping_due(tick):
            self.housekeeping()
        self.waiting = set(self.present)
        self.deadline = time.monotonic() + LOCKSTEP_TIMEOUT_S
        if not self.waiting:
            self.finish_tick()

    def on_rig_reject(self, data: Any) -> None:
        self.actuations_rejected += 1
        reason = data.get("reason", "?") if isinstance(data, dict) else "?"
        self.event("actuation_rejected", reason=str(reason)[:200])

    # -- bus side --------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        if msg.name == "hal.done" and isinstance(msg.data, dict):
            if isinstance(msg.data.get("actuate"), dict):
                self.actuation.update(msg.data["actuate"])
                if not self.config.lockstep:
                    self.flush_actuation()
            if msg.src not in self.present:
                self.present.add(msg.src)
                if self.tick > 1:
                    self.event("participant_back", name=msg.src, tick=self.tick)
            if msg.data.get("tick") == self.tick:
                self.waiting.discard(msg.src)
                if not self.waiting:
                    self.finish_tick()
        elif msg.name == "ready" and isinstance(msg.data, dict):
            self.ready.add(str(msg.data.get("name")))
        elif msg.name == "down" and isinstance(msg.data, dict):
            name = msg.data.get("name")
            self.present.discard(name)
            if name in self.waiting:
                self.waiting.discard(name)
                if not self.waiting:
                    self.finish_tick()

    def flush_actuation(self) -> None:
        if self.actuation:
            self._send_rig("hal.actuate", self.actuation)
            self.actuation = {}

    def finish_tick(self, late: bool = False) -> None:
        """Close the current tick: everyone answered, or (``late``) some did not in time."""
        if self.waiting:
            self.cycle_slips += len(self.waiting)
            for name in sorted(self.waiting):
                if not late:
                    self.present.discard(name)
                    self.event("participant_absent", name=name, tick=self.tick)
            self.waiting = set()
        self.flush_actuation()
        self._send_rig("hal.tick_done", {"tick": self.tick})

    def check_deadline(self) -> None:
        if self.waiting and self.config.lockstep and time.monotonic() > self.deadline:
            self.finish_tick()


class BusSide:
    """What every bridge runner shares: the bus sockets, heartbeats and the start-up sync
    that makes sure every participant and the executive's recorder hear the bus before the
    first frame. ``process`` names the OS process in its heartbeats."""

    def __init__(self, config: RunConfig, process: str, send_rig: Callable[[str, Any], None]) -> None:
        self.config = config
        self.process = process
        self.ctx = zmq.Context()
        self.pub = bus.publisher(self.ctx, config.bus)
        self.sub = bus.subscriber(self.ctx, config.bus, (b"hw/hal.done", b"ctl/ready", b"ctl/down"))
        self.encoder = Encoder("hal")
        self.dealer = bus.dealer(self.ctx, config.bus, HalBridge.COMPONENT.name)
        self.cmd_encoder = Encoder("hal")
        self.bridge = HalBridge(config, self._emit, send_rig)
        self.running = True
        self.synced = False
        self._expected = set(config.participants) | {"exec"}
        self._next_beat = self._next_sync = 0.0
        self.command_id = ""
        """Id of the command being executed (a deferred fault command answers under it)."""
        self.deferred: dict[str, Message] = {}
        """Fault commands sent to the rig, awaiting its ``hal.fault_ack``."""
        schedule = config.params.get("hal", {}).get("schedule", [])
        self.schedule = sorted(((float(c["at_s"]), str(c["command"]), dict(c["args"])) for c in schedule),
                               key=lambda c: c[0])
        """A scenario's timed telecommands: ``(at_s, qualified name, args)`` by time."""
        self.next_scheduled = 0
        self.scheduled_pending: dict[str, tuple[float, str]] = {}

    def _emit(self, kind: str, name: str, data: Any) -> None:
        b = self.bridge
        self.pub.send_multipart(self.encoder.encode(kind, name, data, b.tick, b.time_s))

    def keep_up(self, now: float) -> None:
        """Heartbeat when due; until synced, ask every participant to answer ``ctl/sync``."""
        if now >= self._next_beat:
            self._emit("hb", f"{self.process}.heartbeat", {"pid": os.getpid(), "tick": self.bridge.tick})
            self._next_beat = now + self.config.heartbeat_s
        if self.synced:
            return
        if self._expected <= self.bridge.ready:
            self.synced = True
            self.bridge.present = set(self.config.participants)
        elif now >= self._next_sync:
            self._emit("ctl", "sync", {"expected": sorted(self._expected)})
            self._next_sync = now + SYNC_PERIOD_S

    def _decoded(self, sock: zmq.Socket) -> Iterator[Message]:
        """Every message queued on ``sock``; an undecodable one is counted, not delivered."""
        for frames in bus.drain(sock):
            try:
                yield decode(frames[-1])
            except DecodeError:
                self.bridge.decode_errors += 1

    def drain_bus(self) -> None:
        for msg in self._decoded(self.sub):
            self.bridge.on_message(msg)

    # -- commands ----------------------------------------------------------------------
    def _command_message(self, kind: str, name: str, data: dict) -> None:
        b = self.bridge
        self.dealer.send(self.cmd_encoder.encode(kind, name, data, b.tick, b.time_s)[1])

    def _respond(self, msg: Message, stage: str, code: str = "", message: str = "") -> None:
        self._command_message("rsp", msg.name, {"id": msg.data.get("id", ""), "stage": stage, "code": code,
                                                "message": message})

    def on_commands(self) -> None:
        """Execute the bridge's own commands; follow the scenario commands' responses."""
        for msg in self._decoded(self.dealer):
            if not isinstance(msg.data, dict):
                self.bridge.decode_errors += 1
            elif msg.kind == "cmd":
                self._execute(msg)
            elif msg.kind == "rsp":
                self._scheduled_response(msg.data)

    def _execute(self, msg: Message) -> None:
        self.command_id = str(msg.data.get("id", ""))
        result = execute_command(self.bridge, msg, self._respond)
        if result == DEFERRED:
            self.deferred[self.command_id] = msg
        elif result is not None:
            self._respond(msg, "completed", message=str(result))

    def issue_scheduled(self) -> bool:
        """Send the scenario commands due by the bridge's time; return whether any sent
        command is still waiting for its final answer."""
        now = self.bridge.time_s
        while self.next_scheduled < len(self.schedule) and self.schedule[self.next_scheduled][0] <= now + 1e-9:
            at_s, name, args = self.schedule[self.next_scheduled]
            command_id = f"scenario-{self.next_scheduled}"
            self.next_scheduled += 1
            self.scheduled_pending[command_id] = (at_s, name)
            self._command_message("cmd", name, {"id": command_id, "args": args})
        return bool(self.scheduled_pending)

    def _scheduled_response(self, data: dict) -> None:
        entry = self.scheduled_pending.get(data.get("id"))
        if entry is None or data.get("stage") not in ("completed", "failed"):
            return
        del self.scheduled_pending[data["id"]]
        if data["stage"] == "failed":
            self.bridge.event("scenario_command_failed", command=entry[1], at_s=entry[0],
                              code=str(data.get("code")), message=str(data.get("message"))[:160])

    def rig_connected(self, welcome: dict) -> None:
        self.bridge.event("rig_connected", version=welcome.get("version"), n_gpus=welcome.get("n_gpus"),
                          tick_s=welcome.get("tick_s"), lockstep=welcome.get("lockstep"))


class BridgeRunner(BusSide):
    """The bridge process for a rig behind a HAL endpoint (``flight run --hal``)."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config, "hal", self._send_rig)
        self.rig = self.ctx.socket(zmq.DEALER)
        self.rig.setsockopt(zmq.LINGER, 100)
        self.rig.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
        self.rig.setsockopt(zmq.SNDHWM, 10_000)
        self.rig.setsockopt(zmq.RCVHWM, 10_000)
        self.rig.connect(config.hal_endpoint)
        self.rig_encoder = Encoder("flight")
        self.welcomed = False
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
            self._respond(msg, "completed", message=f"{payload['action']} {payload['fault']} applied by the rig")
        else:
            self._respond(msg, "failed", "EXECUTION_ERROR", f"the rig refused: {str(data.get('reason'))[:160]}")

    def _fail_deferred(self, why: str) -> None:
        for command_id, msg in self.deferred.items():
            self.fault_payloads.pop(command_id, None)
            self._respond(msg, "failed", "EXECUTION_ERROR", why)
        self.deferred.clear()

    def _send_rig(self, name: str, data: Any) -> None:
        b = self.bridge
        self.rig.send(self.rig_encoder.encode("hw", name, data, b.tick, b.time_s)[1])

    def drain_rig(self) -> None:
        for frames in bus.drain(self.rig):
            body = frames[-1]
            try:
                msg = decode(body)
            except DecodeError:
                self.bridge.decode_errors += 1
                continue
            if msg.name == "hal.frame":
                if self.welcomed:
                    self.bridge.on_rig_frame(msg.tick, msg.t, msg.data,
                                             lambda body=body: self.pub.send_multipart([b"hw/hal.frame", body]))
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

    def run(self) -> None:
        """Sync, greet the rig, then relay frames and answers until SIGTERM."""
        poller = zmq.Poller()
        poller.register(self.rig, zmq.POLLIN)
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.dealer, zmq.POLLIN)
        next_hello = 0.0
        try:
            while self.running:
                now = time.monotonic()
                self.keep_up(now)
                if self.synced and not self.welcomed and now >= next_hello:
                    self._send_rig("hal.hello", {"version": hal.HAL_VERSION})
                    next_hello = now + HELLO_PERIOD_S
                if self.welcomed:
                    self.issue_scheduled()
                for sock, _ in poller.poll(SYNC_PERIOD_S * 1000):
                    if sock is self.rig:
                        self.drain_rig()
                    elif sock is self.dealer:
                        self.on_commands()
                    else:
                        self.drain_bus()
                self.bridge.check_deadline()
        finally:
            if self.welcomed:
                self._send_rig("hal.bye", {})
            self.ctx.destroy(linger=100)


class LocalRig(Protocol):
    """A rig in the bridge's own process (the simulator in ``flight run``): frames and
    actuations are calls, not messages, which spares a process and two hops per tick."""

    name: str
    welcome: dict

    def step(self) -> tuple[int, float, dict]:
        """Advance one tick; return ``(tick, time_s, sensor frame)``."""

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


class LocalRigRunner(BusSide):
    """The bridge driving a :class:`LocalRig`: in lockstep it steps the rig as soon as every
    participant has finished the tick; paced, on the wall clock."""

    def __init__(self, config: RunConfig, rig: LocalRig) -> None:
        super().__init__(config, rig.name, self._send_rig)
        self.rig = rig
        self.frame_encoder = Encoder(rig.name)
        self.bridge.energy_balance_error = rig.energy_balance_error
        self.bridge.send_fault = rig.fault

    def _send_rig(self, name: str, data: Any) -> None:
        if name == "hal.actuate":
            why = self.rig.actuate(data)
            if why:
                self.bridge.on_rig_reject({"reason": why})
        # tick_done needs no message here: the loop steps once bridge.waiting is empty

    def step(self) -> None:
        tick, time_s, frame = self.rig.step()
        self.bridge.on_rig_frame(tick, time_s, frame, lambda: self.pub.send_multipart(
            self.frame_encoder.encode("hw", "hal.frame", frame, tick, time_s)))
        for fault, target in self.rig.take_ended_faults():
            self.bridge.fault_ended(fault, target, "duration passed")

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.dealer, zmq.POLLIN)
        period = self.config.tick_wall_s
        next_frame = 0.0
        try:
            while self.running:
                now = time.monotonic()
                was_synced = self.synced
                self.keep_up(now)
                timeout_s = SYNC_PERIOD_S
                if self.synced:
                    if not was_synced:
                        self.rig_connected(self.rig.welcome)
                        next_frame = now
                    if period is None and not self.bridge.waiting:
                        if not self.issue_scheduled():
                            self.step()
                    elif period is not None and now >= next_frame:
                        self.issue_scheduled()
                        self.step()
                        next_frame = max(next_frame + period, now)  # re-anchor after a stall, don't burst
                    if period is not None:
                        timeout_s = min(timeout_s, max(0.0, next_frame - time.monotonic()))
                for sock, _ in poller.poll(timeout_s * 1000):
                    if sock is self.dealer:
                        self.on_commands()
                    else:
                        self.drain_bus()
                self.bridge.check_deadline()
        finally:
            self.ctx.destroy(linger=100)


def main(argv: list[str] | None = None) -> None:
    config = RunConfig.from_json((argv or sys.argv[1:])[0])
    name_process("hal")
    runner = BridgeRunner(config)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: setattr(runner, "running", False))
    run_profiled(runner.run, config, "hal")


if __name__ == "__main__":
    main()
