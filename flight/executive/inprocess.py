"""The executive's part of an in-process run (``flight run --in-process``, campaign cases).

:class:`InProcessRun` flies a :class:`flight.hal.inprocess.InProcessRack` for a run's length
and does what the executive does for the full stack, from the same code: it records every
telemetry packet and event into ``<data dir>/telemetry.sqlite`` (:class:`~flight.executive.recorder.Recorder`),
folds them into the run statistics (:class:`~flight.executive.recorder.RunStats`), announces
the mode manager's mode changes (``exec.mode_changed``) and the failures of timed
telecommands (``exec.command_failed``) as its events, and returns the run summary with the
keys of :meth:`flight.executive.supervisor.Executive.summary`.

Its ``telemetry_sha256`` equals the full stack's for the same element set, seed, scenario and
commands (the link's telemetry is left out of it in both: :mod:`flight.hal.inprocess` says
why). Summary fields that differ: ``wall_time_s`` and ``data_dir``; and where the full stack
had trouble, which cannot happen here: ``events`` has none of its wall-clock events
(heartbeats lost, processes restarted), ``cycle_slips``, ``restarts`` and ``bus_gaps`` are 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flight.core.config import RunConfig
from flight.core.messages import Message
from flight.executive.recorder import Recorder, RunStats
from flight.executive.supervisor import COMPONENT
from flight.hal.inprocess import InProcessRack, simulator_rig
from flight.hal.rigs import LocalRig
from flight.subsystems.power.modes import MODES

PROGRESS_EVERY_TICKS = 300
"""Ticks between ``on_progress`` calls (a tenth of a second or so of wall time)."""


class InProcessRun:
    """One run of the flight stack in this process.

    Args:
        config: the run (:func:`flight.hal.inprocess.in_process_config`); its ``last_tick``
            is set from ``duration_s``.
        duration_s: simulated seconds to fly (whole ticks).
        rig: the hardware (default: the simulator, :func:`flight.hal.inprocess.simulator_rig`).
        on_progress: ``on_progress(sim_time_s)``, called every :data:`PROGRESS_EVERY_TICKS` ticks.

    Raises:
        TypeError, ValueError: the simulator refuses ``config.params["sim"]``; the link's
            endpoint is not loopback or its keys are missing.
    """

    def __init__(self, config: RunConfig, duration_s: float, rig: LocalRig | None = None,
                 on_progress: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.last_tick = config.last_tick = int(round(duration_s / config.tick_s))
        self.on_progress = on_progress or (lambda _t: None)
        self.data_dir = config.data_path
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.mode = "NOMINAL"
        self.stats = RunStats(self.last_tick)
        self.recorder = Recorder(self.data_dir / "telemetry.sqlite")
        self.rack = InProcessRack(None, rig if rig is not None else simulator_rig(config), config=config,
                                  observe=self._observe, on_command_failed=self._command_failed)

    def _observe(self, msg: Message, body: bytes) -> None:
        if msg.kind == "ctl":
            if msg.name == "mode" and msg.src == "power":
                self._on_mode(msg)
            return
        self.recorder.record(msg, body)
        self.stats.observe(msg)

    def _on_mode(self, msg: Message) -> None:
        mode = msg.data.get("mode") if isinstance(msg.data, dict) else None
        if mode in MODES and mode != self.mode:
            self._event("mode_changed", old=self.mode, new=mode, why=str(msg.data.get("why", ""))[:200])
            self.mode = mode

    def _command_failed(self, name: str, code: str, message: str) -> None:
        self._event("command_failed", command=name, code=code, message=message[:160])

    def _event(self, event: str, /, **args: Any) -> None:
        msg = Message("exec", 0, self.rack.tick, self.rack.hal.time_s, "ev", f"exec.{event}",
                      COMPONENT.event_payload(event, args))
        self.recorder.record(msg, b"")
        self.stats.observe(msg)

    def run(self) -> dict:
        """Fly to the end (Ctrl-C ends it early, ``end`` = ``interrupted``); the summary."""
        end = "completed"
        self._event("run_started", data_dir=str(self.data_dir))
        try:
            for tick in range(1, self.last_tick + 1):
                self.rack.step()
                if tick % PROGRESS_EVERY_TICKS == 0:
                    self.on_progress(self.rack.hal.time_s)
        except KeyboardInterrupt:
            end = "interrupted"
        finally:
            self.rack.close()
        self.on_progress(self.rack.hal.time_s)
        if end == "completed":
            self._event("run_completed", tick=self.last_tick)
        return self.summary(end)

    def summary(self, end: str) -> dict:
        """The run summary (:meth:`flight.executive.supervisor.Executive.summary`'s keys)."""
        out = self.stats.summary()
        out.update(
            wall_time_s=time.monotonic() - self.started,
            commands_executed=self.rack.commands_executed,
            restarts=0,
            telemetry_sha256=self.recorder.telemetry_sha256(self.last_tick),
            telemetry_rows_dropped=self.recorder.rows_dropped + self.recorder.held,
            bus_gaps=0,
            mode=self.mode,
            end=end,
            data_dir=str(self.data_dir),
        )
        self.recorder.close()
        return out
