"""The flight control code flying the simulated satellite in one process, for long runs.

:class:`InProcessRack` steps :class:`sim_hw.local.SimRig` and the real power manager,
thermal controller and job runner exactly as a lockstep ``flight run`` does — frame N to
every subsystem, their actuator settings applied from the next step, data products and
``ctl`` messages of tick N delivered before frame N+1 — without the bus, the executive or
the link, so a simulated day takes tens of seconds rather than minutes. As the HAL bridge,
it applies only the actuator fields each subsystem owns
(:meth:`flight.hal.bridge.HalBridge.merge_actuation`); the others are counted in
:attr:`InProcessRack.actuations_refused`.

    rack = InProcessRack(tmp_path, SimRig.lockstep(tle_lines), tle_lines)
    rack.fly(86400)
    rack.series("power.hk", "battery_soc")       # every housekeeping value, in time order
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.messages import Message
from flight.hal.bridge import HalBridge
from flight.subsystems.jobs.runner import JobRunner
from flight.subsystems.power.manager import PowerManager
from flight.subsystems.thermal.controller import ThermalController
from flight.hal.rigs import LocalRig


class InProcessRack:
    """The simulated satellite with the power, thermal and job subsystems in this process.

    Args:
        data_dir: the run's data directory (the job and monitoring databases go there).
        rig: the hardware, stepped in this process (:class:`flight.hal.rigs.LocalRig`; the
            simulator's is ``sim_hw.local.SimRig.lockstep(tle_lines, tick_s, seed)``); its
            ``welcome["tick_s"]`` sets the tick.
        tle_lines: the element set the rig flies, forecast on board.
        seed: the run's seed (``RunConfig.seed``: the jobs' synthetic workload).
        params: the run's per-subsystem parameters (``RunConfig.params``), e.g.
            ``{"jobs": {"workload": "none"}}``.
    """

    def __init__(self, data_dir: Path, rig: LocalRig, tle_lines: tuple[str, str], seed: int = 0,
                 params: dict | None = None) -> None:
        tick_s = float(rig.welcome["tick_s"])
        self.config = RunConfig(bus=BusAddress("inproc://a", "inproc://b", "inproc://c"), data_dir=str(data_dir),
                                tick_s=tick_s, tle_lines=tuple(tle_lines), seed=seed, params=params or {})
        self.rig = rig
        self.telemetry: dict[str, list[tuple[float, dict]]] = {}
        self.events: list[tuple[float, str, dict]] = []
        self.time_s = 0.0
        """Time of the frame being flown, s: every subsystem's time while it handles it."""
        self._queue: list[Message] = []
        self.subsystems = [cls(self.config, self._emitter(cls.COMPONENT.name))
                           for cls in (PowerManager, ThermalController, JobRunner)]
        self.hal = HalBridge(self.config, self._emitter("hal"), lambda _name, _data: None)
        """Only its actuation merge is used: the same ownership rule as the full stack."""
        for s in self.subsystems:
            s.on_start()

    def _emitter(self, src: str):
        def emit(kind: str, name: str, data) -> None:
            t = self.time_s
            if kind == "tm":
                self.telemetry.setdefault(name, []).append((t, data))
            elif kind == "ev":
                self.events.append((t, name, data))
            else:
                self._queue.append(Message(src, 0, 0, t, kind, name, data))
        return emit

    def fly(self, duration_s: float, on_frame=None) -> None:
        """Fly ``duration_s`` of simulated time; ``on_frame(frame)`` sees every frame."""
        for _ in range(round(duration_s / self.config.tick_s)):
            tick, time_s, frame = self.rig.step()
            if on_frame is not None:
                on_frame(frame)
            self.time_s = time_s
            for s in self.subsystems:
                s.on_frame(tick, time_s, frame)
                self.hal.merge_actuation(s.name, s.actuation)
                s.actuation = {}
            if self.hal.actuation:
                why = self.rig.actuate(self.hal.actuation)
                assert why is None, why
                self.hal.actuation = {}
            queue, self._queue = self._queue, []
            for msg in queue:
                topic = msg.topic
                for s in self.subsystems:
                    if s.name != msg.src and any(topic.startswith(p) for p in s.SUBSCRIBE):
                        s.on_message(msg)

    def submit(self, gpus: int, work_gpu_s: float) -> int:
        """Submit a synthetic job on exactly ``gpus`` GPUs (priority 5, no deadline, a 600 s
        checkpoint costing 5 s) through the job runner's command handler; its job id."""
        message = self.subsystem("jobs").execute("submit", {
            "gpus_min": gpus, "gpus_max": gpus, "work_gpu_s": work_gpu_s, "priority": 5,
            "checkpoint_interval_s": 600.0, "checkpoint_cost_s": 5.0, "deadline_s": 0.0, "critical": False,
            "kind": "synthetic"})
        return int(message.split()[1])  # "job N queued"

    @property
    def actuations_refused(self) -> int:
        """Actuator settings refused because the subsystem does not own the field."""
        return self.hal.actuations_refused

    def subsystem(self, name: str):
        return next(s for s in self.subsystems if s.name == name)

    def series(self, packet: str, channel: str) -> tuple[np.ndarray, np.ndarray]:
        """``(time_s, values)`` of one housekeeping channel over the run so far."""
        rows = self.telemetry.get(packet, [])
        return np.array([t for t, _ in rows]), np.array([d[channel] for _, d in rows])

    def close(self) -> None:
        for s in self.subsystems:
            s.on_stop()
