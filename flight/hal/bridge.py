"""The HAL bridge: flight's end of the hardware-interface link, and the lockstep keeper.

:class:`HalBridge` (component ``hal``) checks every sensor frame of a rig (the simulator or a
hardware-in-the-loop adapter, see :mod:`flight.hal.protocol`) against the protocol, has it
sent to the participants as ``hw/hal.frame`` (:mod:`flight.core.lockstep`) and publishes ``hal.hk``: at the housekeeping rate,
the latest frame's key values and the run statistics the bridge accumulates from every frame
(time in eclipse, energy harvested, lowest state of charge, hottest GPU, GPU thermal
shutdowns). It gathers the subsystems' ``hal.done`` answers (each carrying that subsystem's
actuator settings) and, in lockstep, sends the merged actuation and ``hal.tick_done`` to the
rig only when every present participant has finished the tick, so the rig never runs
ahead of flight. Paced, each subsystem's settings go to the rig as soon as they arrive.
A setting of an actuator field the sender does not own (its component's ``actuates``,
:func:`flight.core.component.actuator_owners`) is refused and counted
(``actuations_refused``, event ``actuation_refused``); the sender's other fields still apply.

A participant that dies (the executive says so with ``ctl/down``) or does not answer within
:data:`LOCKSTEP_TIMEOUT_S` stops being waited for, which is counted as a cycle slip; its
next ``hal.done`` makes it a participant again.

Fault injection (test and lab): the bridge owns the telecommands ``hal.inject_fault`` and
``hal.clear_fault``. A fault is checked against the catalogue of :mod:`flight.hal.faults`
before anything is sent (VALIDATION_ERROR otherwise, nothing changes), then handed to the
rig: a call for the simulator in this process, the ``hal.fault`` protocol message for a rig
behind an endpoint, which completes the command when the rig answers ``hal.fault_ack`` (a
real rig may refuse).

Onboard time never goes backwards: a frame whose UTC is before the previous frame's, or before
what the mission has already flown on this data directory (:mod:`flight.hal.onboard_clock`), is
refused with the event ``clock_backwards`` and the bridge stops (:attr:`HalBridge.refused`).

The bridge never touches a socket: the transports that drive it (a rig behind a HAL
endpoint, the simulator in the same process) are :mod:`flight.hal.rigs`; a scenario's
timed telecommands are :mod:`flight.hal.timed_commands`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from flight.core.component import (
    Arg, Channel, Command, CommandError, Component, Event, EventArg, actuator_owners, owned_settings,
)
from flight.core.config import RunConfig
from flight.core.messages import Message
from flight.core.subsystem import Subsystem
from flight.hal import faults
from flight.hal.onboard_clock import OnboardClock, iso_utc
from flight.hal import protocol as hal
from flight.core.dictionary import all_subsystem_classes

LOCKSTEP_TIMEOUT_S = 10.0
"""Wall seconds a lockstep tick waits for a silent participant before going on without it."""
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
                Arg("fault", "str", choices=FAULT_NAMES, doc="Fault from the catalogue (flight/hal/faults.py)."),
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
            Channel("actuations_refused", "int", "count",
                    "Actuator settings refused because the sender does not own the field.", yellow=(0, 0)),
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
            Event("actuation_refused", 12, "MEDIUM",
                  "{component} set actuator {field}, which it does not own: refused (reported once per pair)",
                  args=(EventArg("component", "str"), EventArg("field", "str"))),
            Event("rebooted", 13, "MEDIUM",
                  "flight computer rebooted: onboard time resumes at {utc} (mission time {time_s:.0f} s), "
                  "battery SOC {battery_soc:.4f}",
                  args=(EventArg("utc", "str"), EventArg("utc_unix_s", "float", "s"), EventArg("time_s", "float", "s"),
                        EventArg("battery_soc", "float"))),
            Event("clock_backwards", 14, "HIGH",
                  "onboard time went backwards: the rig says {utc}, this mission has already flown to {floor_utc}; "
                  "refusing to run on (flight run --fresh starts a new mission)",
                  args=(EventArg("utc", "str"), EventArg("floor_utc", "str"))),
        ),
    )

    def __init__(self, config: RunConfig, emit, send_rig, owners: dict[str, str] | None = None) -> None:
        super().__init__(config, emit)
        self._send_rig = send_rig
        self.owners = owners if owners is not None else actuator_owners(
            c.COMPONENT for c in all_subsystem_classes())
        """Actuator field -> the component that owns it (every subsystem's declaration)."""
        self.actuations_refused = 0
        self.refused_reported: set[tuple[str, str]] = set()
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
        self.clock = OnboardClock(None)
        """Refuses frames whose onboard time went backwards (:mod:`flight.hal.onboard_clock`)."""
        self.refused = False
        """Set once onboard time went backwards: the transport ends the process (``REFUSED_EXIT``)."""

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
            actuations_refused=self.actuations_refused,
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
    def on_rig_frame(self, tick: int, time_s: float, frame: Any, publish: Callable[[], None],
                     trusted: bool = False) -> None:
        """Check a rig's sensor frame; if sound, ``publish()`` it on the bus and open the tick.

        ``trusted``: the frame was built in this process by the simulator from the protocol's
        own fields (:class:`flight.hal.rigs.LocalRig`), so the check of its every field (~55 us,
        on the lockstep path every tick) is skipped; a rig's message is always checked."""
        if self.waiting:
            self.finish_tick(late=True)
        problems = [] if trusted else hal.check_frame(frame)
        self.tick, self.time_s = tick, time_s
        if not problems and self.clock.went_back(frame["utc_unix_s"]):
            self.refused = True
            self.event("clock_backwards", utc=iso_utc(frame["utc_unix_s"]), floor_utc=iso_utc(self.clock.latest_s))
            return
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
                self.merge_actuation(msg.src, msg.data["actuate"])
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

    def merge_actuation(self, src: str, settings: dict[str, Any]) -> None:
        """Take ``src``'s actuator settings into this tick's actuation: the fields it owns;
        each other one is refused, counted, and announced the first time for that pair."""
        mine, refused = owned_settings(self.owners, src, settings)
        self.actuation.update(mine)
        self.actuations_refused += len(refused)
        for name in refused:
            key = (src, name if name in self.owners else "(not an actuator)")
            if key not in self.refused_reported:
                self.refused_reported.add(key)
                self.event("actuation_refused", component=key[0], field=key[1])

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
