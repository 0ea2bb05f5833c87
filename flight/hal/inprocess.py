"""The flight stack flying a rig in one process, in the full stack's lockstep order, without the bus.

:class:`InProcessRack` steps a :class:`~flight.hal.rigs.LocalRig` (the simulator's is
``sim_hw.local.SimRig``; :func:`simulator_rig` builds it by module name, as the executive
starts the simulator, so flight does not import it), the real HAL bridge and the real power
manager, thermal controller, job runner and link manager (those of ``config.participants``;
a rack built without a config leaves the link out, :data:`WITHOUT_LINK`) exactly as a
lockstep ``flight run`` does:

1. the scenario's timed telecommands due by the time of the last frame are executed, each
   on its owner (the bridge for ``hal.*``), before the next frame (the bridge holds the
   next tick until they are final: :mod:`flight.hal.timed_commands`);
2. the rig steps; the bridge takes frame N (its statistics, ``hal.hk`` when due) and the
   timed faults that ended;
3. every subsystem handles frame N; its actuator settings go to the bridge as its
   ``hal.done`` would (:meth:`flight.hal.bridge.HalBridge.merge_actuation`: the same
   ownership rule and merge), and the bridge closes the tick once every participant is done
   (:meth:`~flight.hal.bridge.HalBridge.finish_tick`: the merged actuation to the rig);
4. the data products, ``ctl`` messages, telemetry and events of tick N reach their
   subscribers (``SUBSCRIBE``: ``ctl/mode`` for the job runner, every ``tm/`` and ``ev/``
   for the link) before frame N+1, in the order each source emitted them.

Every telemetry packet is encoded with the source's own :class:`~flight.core.messages.Encoder`
and stamped with the source's own clock, so its body is byte for byte what that source
publishes on the bus; ``observe(msg, body)`` gets each telemetry packet, event and ``ctl``
message (the executive's part in ``flight run --in-process``: :mod:`flight.executive.inprocess`).

What differs from the full stack, by construction:

* no executive: nothing of its own (``exec.hk``, whose packets follow the wall clock, and
  its events) reaches the link here;
* the link's TCP server is bound (any free loopback port unless ``config.link_endpoint``
  names one) but never served: no ground station can connect;
* nothing is lost or late: no cycle slips, no restarts, no decode errors.

So the link's own telemetry, fed by the executive's wall-clock packets in ``flight run``,
is not the same; :data:`flight.executive.recorder.UNHASHED_SOURCES` leaves it out of
``telemetry_sha256`` in both modes. The link's effects on the others (the transmitter it
switches, the job results it acknowledges) are the same.

    rack = InProcessRack(tmp_path, SimRig.lockstep(tle_lines), tle_lines)
    rack.fly(86400)
    rack.series("power.hk", "battery_soc")       # every housekeeping value, in time order
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flight.core.bus import BusAddress
from flight.core.component import CommandError
from flight.core.config import SUBSYSTEMS, RunConfig
from flight.core.dictionary import full_dictionary, subsystem_class
from flight.core.messages import Encoder, Message, topic_for
from flight.core.runtime import execute_command
from flight.core.subsystem import Subsystem
from flight.hal.bridge import HalBridge
from flight.hal.rigs import LocalRig
from flight.hal.timed_commands import TimedCommands

SIMULATOR_RIG = "sim_hw.local"
"""The simulator's module whose ``lockstep_rig(config)`` builds its :class:`LocalRig` for a run."""
_NO_BUS = BusAddress("inproc://none-pub", "inproc://none-sub", "inproc://none-cmd")

WITHOUT_LINK = ("power", "thermal", "jobs")
"""What a rack built without a ``config`` flies (long tests and tools): no ground link, so
nothing to authenticate and no transmitter switched with the passes."""

Observe = Callable[[Message, bytes], None]
"""``observe(msg, body)``: a telemetry packet (``body``: its encoded bus message), an event or
a ``ctl`` message (``body``: ``b""``)."""
CommandFailed = Callable[[str, str, str], None]
"""``on_command_failed(qualified_name, code, message)``: as the dispatcher reports a failure."""


def in_process_config(data_dir: Path | str, tle_lines: tuple[str, str], seed: int = 0, params: dict | None = None,
                      **fields: Any) -> RunConfig:
    """A :class:`RunConfig` for an in-process run: no bus, the link on any free loopback port,
    unauthenticated (no station can connect anyway) unless ``keys_dir`` is given; ``fields``
    set the others (``tick_s``, ``last_tick``, ``contact``...)."""
    fields.setdefault("link_endpoint", "127.0.0.1:0")
    fields.setdefault("unauthenticated_lab", not fields.get("keys_dir"))
    return RunConfig(bus=_NO_BUS, data_dir=str(data_dir), tle_lines=tuple(tle_lines), seed=seed,
                     params=params or {}, **fields)


def simulator_rig(config: RunConfig) -> LocalRig:
    """The simulator as a lockstep rig for ``config`` (its element set, tick, seed and
    ``params["sim"]``), from :data:`SIMULATOR_RIG` by module name.

    Raises:
        TypeError, ValueError: the simulator refuses ``params["sim"]``.
    """
    return importlib.import_module(SIMULATOR_RIG).lockstep_rig(config)


class InProcessRack:
    """The rig, the HAL bridge and the flight subsystems in this process (module docstring).

    Args:
        data_dir: the run's data directory (job, link and parameter databases); ignored with ``config``.
        rig: the hardware, stepped in this process; its ``welcome["tick_s"]`` sets the tick.
        tle_lines: the element set the rig flies, forecast on board; ignored with ``config``.
        seed: the run's seed (the jobs' synthetic workload); ignored with ``config``.
        params: per-subsystem parameters (``RunConfig.params``), e.g. ``{"jobs": {"workload":
            "none"}}``, and ``params["hal"]["schedule"]``, the timed telecommands; ignored with ``config``.
        config: the whole run configuration (:func:`in_process_config`); its ``participants``
            are the subsystems flown. Without it, :data:`WITHOUT_LINK`.
        observe: gets every telemetry packet, event and ``ctl`` message of the ticks up to
            ``config.last_tick`` (all of them when it is 0).
        on_command_failed: told of each timed telecommand that failed.

    Raises:
        ValueError: the link's endpoint is not loopback, or keys are asked for and missing.
    """

    def __init__(self, data_dir: Path | None, rig: LocalRig, tle_lines: tuple[str, str] | None = None,
                 seed: int = 0, params: dict | None = None, *, config: RunConfig | None = None,
                 observe: Observe | None = None, on_command_failed: CommandFailed | None = None) -> None:
        tick_s = float(rig.welcome["tick_s"])
        self.config = config or in_process_config(data_dir, tle_lines, seed, params, tick_s=tick_s,
                                                  participants=WITHOUT_LINK)
        self.config.tick_s = tick_s
        self.rig = rig
        self.observe = observe
        self.on_command_failed = on_command_failed
        self.telemetry: dict[str, list[tuple[float, dict]]] = {}
        """Every housekeeping packet by name: ``(time_s, values)`` in time order."""
        self.events: list[tuple[float, str, dict]] = []
        self.commands_executed = 0
        self.tick = 0
        self._queue: list[Message] = []
        self._encoders: dict[str, Encoder] = {}
        self.dictionary = full_dictionary()
        self._owners: dict[str, Subsystem] = {}
        """Every component by name: the owner of its commands, and the clock of what it emits."""
        self.hal = self._owners["hal"] = HalBridge(self.config, self._emitter("hal"), self._to_rig)
        self.hal.energy_balance_error = rig.energy_balance_error
        self.hal.send_fault = rig.fault
        self.subsystems: list[Subsystem] = []
        for name in (n for n in SUBSYSTEMS if n in self.config.participants):
            self._owners[name] = subsystem_class(name)(self.config, self._emitter(name))
            self.subsystems.append(self._owners[name])
        self._subscribers = [(s, s.SUBSCRIBE) for s in self.subsystems if s.SUBSCRIBE]
        self.timed = TimedCommands(self.config.params.get("hal", {}).get("schedule", []))
        for s in self.subsystems:
            s.on_start()
        self.hal.present = {s.name for s in self.subsystems}
        self.hal.event("rig_connected", version=rig.welcome.get("version"), n_gpus=rig.welcome.get("n_gpus"),
                       tick_s=rig.welcome.get("tick_s"), lockstep=rig.welcome.get("lockstep"))

    # -- ports ---------------------------------------------------------------------------
    def _emitter(self, src: str):
        encoder = self._encoders.setdefault(src, Encoder(src))

        def emit(kind: str, name: str, data: Any) -> None:
            component = self._owners[src]
            tick, t = component.tick, component.time_s
            body = b""
            if kind == "tm":
                body = encoder.encode(kind, name, data, tick, t)[1]
                self.telemetry.setdefault(name, []).append((t, data))
            elif kind == "ev":
                self.events.append((t, name, data))
            msg = Message(src, 0, tick, t, kind, name, data)
            if kind in ("tm", "ev", "ctl") and self.observe is not None and tick <= (self.config.last_tick or tick):
                self.observe(msg, body)
            self._queue.append(msg)
        return emit

    def _to_rig(self, name: str, data: Any) -> None:
        # the bridge's port to the rig; tick_done needs no message: fly() steps once all are done
        if name == "hal.actuate":
            why = self.rig.actuate(data)
            if why:
                self.hal.on_rig_reject({"reason": why})

    # -- the run ---------------------------------------------------------------------------
    def fly(self, duration_s: float, on_frame: Callable[[dict], None] | None = None) -> None:
        """Fly ``duration_s`` of simulated time (whole ticks); ``on_frame(frame)`` sees every frame."""
        for _ in range(round(duration_s / self.config.tick_s)):
            self.step(on_frame)

    def step(self, on_frame: Callable[[dict], None] | None = None) -> None:
        """One tick, in the full stack's order (module docstring)."""
        self._issue_timed()
        tick, time_s, frame = self.rig.step()
        if on_frame is not None:
            on_frame(frame)
        self.tick = tick
        self.hal.on_rig_frame(tick, time_s, frame, _publish_nothing, trusted=True)
        for fault, target in self.rig.take_ended_faults():
            self.hal.fault_ended(fault, target, "duration passed")
        self.rig.between_ticks()
        hal = self.hal
        for s in self.subsystems:
            s.on_frame(tick, time_s, frame)
            if s.actuation:
                hal.merge_actuation(s.name, s.actuation)
                s.actuation = {}
        # every participant has answered: as the bridge's last hal.done closes the tick
        hal.waiting.clear()
        hal.finish_tick()
        for s in self.subsystems:
            s.run_after_done()
        self._deliver()

    def _deliver(self) -> None:
        """Hand every queued message to its subscribers, until none is left."""
        while self._queue:
            queue, self._queue = self._queue, []
            for msg in queue:
                topic = topic_for(msg.kind, msg.name)
                for s, prefixes in self._subscribers:
                    if topic.startswith(prefixes) and s.name != msg.src:
                        s.on_message(msg)

    def _issue_timed(self) -> None:
        """Execute the timed telecommands due by the last frame's time, each on its owner."""
        self.timed.issue_due(self.hal.time_s, self._execute)
        self._deliver()

    def _execute(self, command_id: str, qualified: str, args: dict) -> None:
        msg = Message("hal", 0, self.tick, self.hal.time_s, "cmd", qualified, {"id": command_id, "args": args})
        try:
            checked = self.dictionary.validate_command(qualified, args)
        except CommandError as exc:
            self._respond(msg, "failed", exc.code, exc.message)
            return
        owner = self._owners.get(qualified.partition(".")[0])
        if owner is None:
            self._respond(msg, "failed", "EXECUTION_ERROR", f"{qualified.partition('.')[0]} is not flown here")
            return
        msg = Message("hal", 0, self.tick, self.hal.time_s, "cmd", qualified, {"id": command_id, "args": checked})
        result = execute_command(owner, msg, self._respond)
        if result is not None:
            self._respond(msg, "completed", message=str(result))

    def _respond(self, msg: Message, stage: str, code: str = "", message: str = "") -> None:
        data = {"id": msg.data["id"], "stage": stage, "code": code, "message": message}
        if stage == "completed":
            self.commands_executed += 1
        elif stage == "failed" and self.on_command_failed is not None:
            self.on_command_failed(msg.name, code, message)
        failed = self.timed.on_response(data)
        if failed is not None:
            self.hal.event("scenario_command_failed", command=failed[1], at_s=failed[0], code=code,
                           message=message[:160])

    # -- for tests and tools -----------------------------------------------------------------
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

    def subsystem(self, name: str) -> Subsystem:
        return self._owners[name]

    def series(self, packet: str, channel: str) -> tuple[np.ndarray, np.ndarray]:
        """``(time_s, values)`` of one housekeeping channel over the run so far."""
        rows = self.telemetry.get(packet, [])
        return np.array([t for t, _ in rows]), np.array([d[channel] for _, d in rows])

    def close(self) -> None:
        for s in self.subsystems:
            s.on_stop()


def _publish_nothing() -> None:
    """No bus to republish the frame on: the subsystems get it by call."""
