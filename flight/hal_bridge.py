"""The HAL bridge: flight's end of the hardware-interface link, and the lockstep keeper.

It connects to a rig's HAL endpoint (the simulator or a hardware-in-the-loop adapter, see
:mod:`flight.hal`), checks every sensor frame against the protocol, republishes it on the
bus as ``hw/hal.frame`` and publishes ``hal.hk``, a per-tick housekeeping summary of the
frame. It gathers the subsystems' ``hal.done`` answers (each carrying that subsystem's
actuator settings) and, in lockstep, sends the merged actuation and ``hal.tick_done`` to the
rig only when every present participant has finished the tick — so the rig never runs
ahead of flight. Paced, each subsystem's settings go to the rig as soon as they arrive.

A participant that dies (the executive says so with ``ctl/down``) or does not answer within
:data:`LOCKSTEP_TIMEOUT_S` stops being waited for, which is counted as a cycle slip; its
next ``hal.done`` makes it a participant again. Run as ``python -m flight.hal_bridge CONFIG``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import numpy as np
import zmq

from flight import bus, hal
from flight.config import RunConfig
from flight.dictionary import Channel, Component, Event
from flight.messages import MAX_BODY_BYTES, DecodeError, Encoder, Message, decode
from flight.process import name_process, run_profiled
from flight.subsystem import Subsystem

LOCKSTEP_TIMEOUT_S = 10.0
"""Wall seconds a lockstep tick waits for a silent participant before going on without it."""
SYNC_PERIOD_S = 0.1
HELLO_PERIOD_S = 1.0


class HalBridge(Subsystem):
    COMPONENT = Component(
        "hal", 5, doc="Bridge between the bus and the hardware interface (simulator or rig).",
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
            Channel("gpus_online", "int", "count", "GPUs not shut down.", yellow=(72, 72), red=(60, 72)),
            Channel("coolant_supply_temp_c", "float", "degC", "Coolant into the cold plates.", yellow=(10, 45), red=(0, 55)),
            Channel("ground_contact", "bool", "", "A ground station is in view."),
            Channel("downlink_rate_bps", "float", "bit/s", "Available downlink rate."),
            Channel("participants", "int", "count", "Lockstep participants present."),
            Channel("frames_rejected", "int", "count", "Sensor frames that failed the protocol check."),
            Channel("actuations_rejected", "int", "count", "Actuations the rig rejected."),
        ),
        events=(
            Event("rig_connected", 1, "INFO", "HAL rig connected: protocol v{version}, {n_gpus} GPUs, tick {tick_s} s, lockstep={lockstep}"),
            Event("frame_rejected", 2, "HIGH", "sensor frame {tick} rejected: {why}"),
            Event("actuation_rejected", 3, "MEDIUM", "rig rejected an actuation: {reason}"),
            Event("participant_absent", 4, "MEDIUM", "{name} stopped answering in lockstep at tick {tick}; going on without it"),
            Event("participant_back", 5, "INFO", "{name} answering again at tick {tick}"),
            Event("rig_ended", 6, "HIGH", "the HAL rig stopped serving: {reason}"),
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

    def hk(self, frame: dict[str, Any]) -> None:
        temps = frame["gpu_temp_c"]
        self.telemetry(
            time_s=frame["time_s"], utc_unix_s=frame["utc_unix_s"], eclipse=frame["eclipse"],
            sun_fraction=frame["sun_fraction"], beta_angle_deg=frame["beta_angle_deg"],
            latitude_deg=frame["latitude_deg"], longitude_deg=frame["longitude_deg"],
            solar_array_power_w=frame["solar_array_power_w"], battery_soc=frame["battery_soc"],
            battery_temp_c=frame["battery_temp_c"], battery_current_a=frame["battery_current_a"],
            bus_load_w=frame["bus_load_w"], gpu_power_total_w=float(np.sum(frame["gpu_power_w"])),
            gpu_temp_max_c=float(np.max(temps)), gpu_temp_mean_c=float(np.mean(temps)),
            gpus_online=int(np.count_nonzero(frame["gpu_online"])),
            coolant_supply_temp_c=frame["coolant_supply_temp_c"], ground_contact=frame["ground_contact"],
            downlink_rate_bps=frame["downlink_rate_bps"], participants=len(self.present),
            frames_rejected=self.frames_rejected, actuations_rejected=self.actuations_rejected,
        )

    # -- rig side --------------------------------------------------------------------
    def on_rig_frame(self, msg: Message, body: bytes, publish_raw) -> None:
        if self.waiting:
            self.finish_tick(late=True)
        problems = hal.check_frame(msg.data)
        self.tick, self.time_s = msg.tick, msg.t
        if problems:
            self.frames_rejected += 1
            self.event("frame_rejected", tick=msg.tick, why="; ".join(problems)[:200])
            self._send_rig("hal.tick_done", {"tick": msg.tick})
            return
        publish_raw(body)
        self.hk(msg.data)
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


class BridgeRunner:
    """Sockets and loop of the bridge process."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.ctx = zmq.Context()
        self.pub = bus.publisher(self.ctx, config.bus)
        self.sub = bus.subscriber(self.ctx, config.bus, (b"hw/hal.done", b"ctl/ready", b"ctl/down"))
        self.rig = self.ctx.socket(zmq.DEALER)
        self.rig.setsockopt(zmq.LINGER, 0)
        self.rig.setsockopt(zmq.MAXMSGSIZE, MAX_BODY_BYTES + 1024)
        self.rig.setsockopt(zmq.SNDHWM, 10_000)
        self.rig.setsockopt(zmq.RCVHWM, 10_000)
        self.rig.connect(config.hal_endpoint)
        self.encoder = Encoder("hal")
        self.rig_encoder = Encoder("flight")
        self.bridge = HalBridge(config, self._emit, self._send_rig)
        self.running = True
        self.welcomed = False

    def _emit(self, kind: str, name: str, data: Any) -> None:
        b = self.bridge
        self.pub.send_multipart(self.encoder.encode(kind, name, data, b.tick, b.time_s))

    def _send_rig(self, name: str, data: Any) -> None:
        b = self.bridge
        self.rig.send(self.rig_encoder.encode("hw", name, data, b.tick, b.time_s)[1])

    def _publish_frame(self, body: bytes) -> None:
        self.pub.send_multipart([b"hw/hal.frame", body])

    def drain_bus(self) -> None:
        for frames in bus.drain(self.sub):
            try:
                msg = decode(frames[-1])
            except DecodeError:
                self.bridge.decode_errors += 1
                continue
            self.bridge.on_message(msg)

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
                    self.bridge.on_rig_frame(msg, body, self._publish_frame)
            elif msg.name == "hal.welcome" and isinstance(msg.data, dict):
                self.welcomed = True
                d = msg.data
                self.bridge.event("rig_connected", version=d.get("version"), n_gpus=d.get("n_gpus"),
                                  tick_s=d.get("tick_s"), lockstep=d.get("lockstep"))
            elif msg.name == "hal.reject":
                self.bridge.on_rig_reject(msg.data)
            elif msg.name == "hal.end":
                reason = msg.data.get("reason", "?") if isinstance(msg.data, dict) else "?"
                self.bridge.event("rig_ended", reason=str(reason)[:200])
                self.welcomed = False

    def run(self) -> None:
        """Sync with every participant and the executive's recorder, greet the rig, then
        relay frames and answers until SIGTERM."""
        expected = set(self.config.participants) | {"exec"}
        synced = False
        poller = zmq.Poller()
        poller.register(self.rig, zmq.POLLIN)
        poller.register(self.sub, zmq.POLLIN)
        next_sync = next_hello = next_beat = 0.0
        try:
            while self.running:
                now = time.monotonic()
                if now >= next_beat:
                    self._emit("hb", "hal.heartbeat", {"pid": os.getpid(), "tick": self.bridge.tick})
                    next_beat = now + self.config.heartbeat_s
                if not synced and expected <= self.bridge.ready:
                    synced = True
                    self.bridge.present = set(self.config.participants)
                if not synced and now >= next_sync:
                    self._emit("ctl", "sync", {"expected": sorted(expected)})
                    next_sync = now + SYNC_PERIOD_S
                if synced and not self.welcomed and now >= next_hello:
                    self._send_rig("hal.hello", {"version": hal.HAL_VERSION})
                    next_hello = now + HELLO_PERIOD_S
                for sock, _ in poller.poll(SYNC_PERIOD_S * 1000):
                    if sock is self.rig:
                        self.drain_rig()
                    else:
                        self.drain_bus()
                self.bridge.check_deadline()
        finally:
            if self.welcomed:
                self._send_rig("hal.bye", {})
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
