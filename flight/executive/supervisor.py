"""The executive: hosts the bus, starts and supervises every flight process, keeps the
mode, records the run and writes its summary.

Supervision (after cFS ES/HS and F Prime Health): every child is its own OS process; one
that exits or misses heartbeats for :data:`HEARTBEAT_TIMEOUT_S` is killed, announced with an
event, reported to the HAL bridge (``ctl/down``, so lockstep stops waiting for it) and
restarted after an exponential backoff. More than :data:`SAFE_RESTARTS` restarts within
:data:`SAFE_WINDOW_S` escalate the mode to SAFE. The simulator (the satellite itself) is
never restarted: losing it ends the run.

Modes (:mod:`flight.subsystems.power.modes`): the power manager is the mode manager, the
one writer of ``ctl/mode``, on the lockstep path. The executive only reads it: it announces
each change (``exec.mode_changed``) and reports the mode in ``exec.hk``. It orders a mode as
a command to the mode manager (``power.set_mode``): ``exec.set_mode`` is handed on as that
command and completes when the mode manager has taken it; SAFE after repeated restarts is
issued as one, and issued again on the power manager's next housekeeping until a mode change
comes back (the power manager may be the process that is restarting). When its housekeeping
shows another mode than the last it announced (it restarted and lost it), the executive
orders that mode again. One order is in flight at a time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import zmq

from flight.core import bus
from flight.core.config import SUBSYSTEMS, RunConfig
from flight.core.dictionary import full_dictionary
from flight.core.component import Arg, Channel, Command, CommandError, Component, Event, EventArg
from flight.core.messages import SeqTracker
from flight.core.runtime import BusRuntime
from flight.core.storage import take_moved_aside
from flight.core.subsystem import moved_aside_args, store_moved_aside_event
from flight.executive.dispatcher import Dispatcher, Forward
from flight.hal.onboard_clock import REFUSED_EXIT, MissionError, read_mission
from flight.subsystems.power.modes import MODES
from flight.executive.recorder import MAX_HELD_ROWS, Recorder, RunStats

HEARTBEAT_TIMEOUT_S = 10.0
"""Generous: a child on a loaded 2-core machine can take seconds just to import numpy."""
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
SAFE_RESTARTS = 5
SAFE_WINDOW_S = 300.0
FIRST_FRAME_TIMEOUT_S = 60.0
STOP_GRACE_S = 3.0
BATCH_S = 0.01
END_GRACE_S = 5.0

COMPONENT = Component(
    "exec", 1, doc="Executive: supervisor, bus broker, command dispatcher, mode and health.",
    commands=(
        Command("noop", 1, doc="Do nothing; proves the command path end to end.", idempotent=True),
        Command("restart", 2, (Arg("subsystem", "str", choices=SUBSYSTEMS + ("hal",),
                                   doc="Process to restart."),), doc="Restart one flight process."),
        Command("set_mode", 3, (Arg("mode", "str", choices=MODES, doc="Mode to enter."),),
                doc="Enter a mode (SAFE can be left only by command)."),
    ),
    telemetry=(
        Channel("mode", "str", "", "Current mode."),
        Channel("restarts", "int", "count", "Process restarts this run.", yellow=(0, 0), red=(0, SAFE_RESTARTS)),
        Channel("commands_pending", "int", "count", "Commands accepted and not yet final."),
        Channel("commands_executed", "int", "count", "Commands completed this run."),
        Channel("bus_gaps", "int", "count", "Bus messages known lost (seq gaps)."),
        Channel("decode_errors", "int", "count", "Malformed bus messages the executive rejected."),
        Channel("uptime_s", "float", "s", "Wall seconds since the executive started."),
        Channel("recording_held", "int", "count",
                "Telemetry and event rows waiting in memory because telemetry.sqlite cannot be written.",
                yellow=(0, 0)),
        Channel("recording_dropped", "int", "count",
                "Rows the recorder dropped this run: held beyond its limit while it could not write.", yellow=(0, 0)),
    ),
    events=(
        Event("run_started", 1, "INFO", "run started: data in {data_dir}",
              args=(EventArg("data_dir", "str"),)),
        Event("process_died", 2, "MEDIUM", "{name} (pid {pid}) exited with {code}; restart in {delay_s:g} s",
              args=(EventArg("name", "str"), EventArg("pid", "int"), EventArg("code", "int"),
                    EventArg("delay_s", "float", "s"))),
        Event("heartbeat_lost", 3, "MEDIUM", "{name} sent no heartbeat for {age_s:.1f} s; killing it",
              args=(EventArg("name", "str"), EventArg("age_s", "float", "s"))),
        Event("process_restarted", 4, "LOW", "{name} restarted (pid {pid}, restart #{count})",
              args=(EventArg("name", "str"), EventArg("pid", "int"), EventArg("count", "int", "count"))),
        Event("mode_changed", 5, "HIGH", "mode {old} -> {new}: {why}",
              args=(EventArg("old", "str"), EventArg("new", "str"), EventArg("why", "str"))),
        Event("command_failed", 6, "LOW", "{command} failed: {code} {message}",
              args=(EventArg("command", "str"), EventArg("code", "str"), EventArg("message", "str"))),
        Event("hal_lost", 7, "HIGH", "the HAL rig process exited with {code}; ending the run",
              args=(EventArg("code", "int"),)),
        Event("run_completed", 8, "INFO", "run completed at tick {tick}",
              args=(EventArg("tick", "int"),)),
        Event("recording_failed", 10, "MEDIUM",
              "cannot write telemetry.sqlite ({why}): holding the recording in memory ({held} rows), "
              "the oldest dropped beyond {limit}; commanding and the link go on",
              args=(EventArg("why", "str"), EventArg("held", "int", "count"), EventArg("limit", "int", "count"))),
        Event("recording_recovered", 11, "INFO",
              "telemetry.sqlite written again: {written} held rows stored, {dropped} dropped this run",
              args=(EventArg("written", "int", "count"), EventArg("dropped", "int", "count"))),
        store_moved_aside_event(9),
    ),
)


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    restartable: bool = True
    proc: subprocess.Popen | None = None
    log: IO | None = None
    last_heartbeat: float = 0.0
    restart_at: float | None = None
    restart_times: list[float] = field(default_factory=list)


class Executive:
    """One run of the flight stack. ``sim_args`` (TLE, satellite, seed options of
    :mod:`sim_hw.local`) start the simulated satellite with the HAL bridge in its process;
    ``None`` flies against the external rig at ``config.hal_endpoint`` through a bridge
    process. ``on_progress(sim_time_s)`` is called a few times a second for the display."""

    def __init__(self, config: RunConfig, duration_s: float, sim_args: list[str] | None,
                 on_progress: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.last_tick = config.last_tick = int(round(duration_s / config.tick_s))
        self.sim_args = sim_args
        self.on_progress = on_progress or (lambda _t: None)
        self.data_dir = config.data_path
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self.mode = "NOMINAL"
        """The mode as the mode manager last announced it (``ctl/mode``)."""
        self.mode_orders = 0
        self.mode_order_id = ""
        """Id of the executive's latest ``power.set_mode``."""
        self.mode_wanted: tuple[str, str] | None = None
        """``(mode, why)`` the executive ordered, until the mode manager announces a change."""
        self.restarts = 0
        self.decode_errors = 0
        self.recording_failed = False
        self.stop_reason = ""
        self.interrupted = False
        self.finished: set[str] = set()
        """Processes whose last-tick housekeeping has been recorded."""
        self.end_seen_at: float | None = None
        self.children: dict[str, Child] = {}
        self.seq = SeqTracker()
        self.stats = RunStats(self.last_tick, config.tick_s)
        try:
            mission = read_mission(self.data_dir)
        except MissionError:
            mission = None  # the run refuses a malformed record before it starts an executive
        self.rebooting = mission is not None and mission.utc_floor_s is not None
        """The mission flew before (a reboot): onboard time is where the rig resumes it, unknown
        until ``hal.rebooted`` says."""
        self.dictionary = full_dictionary()
        self.started = time.monotonic()

    # -- set-up ----------------------------------------------------------------------
    def _open_bus(self) -> None:
        self.ctx = zmq.Context()
        self.broker = bus.Broker(self.ctx, self.config.bus)
        self.bus = BusRuntime(self.config, "exec", (b"tm/", b"ev/", b"hb/", b"ctl/"), self._clock,
                              on_decode_error=self._decode_error, commands=False, ctx=self.ctx)
        self.recorder = Recorder(self.data_dir / "telemetry.sqlite")
        self.dispatcher = Dispatcher(self.broker.router, self.dictionary, "exec", self._local_command,
                                     self._command_failed)

    def _spawn(self, child: Child) -> None:
        if child.log is None:
            child.log = open(self.data_dir / "logs" / f"{child.name}.log", "ab")
        child.proc = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL, stdout=child.log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        child.last_heartbeat = time.monotonic()
        child.restart_at = None

    def _children(self) -> list[Child]:
        cfg = self.config.to_json()
        py = sys.executable
        if self.sim_args is not None:
            kids = [Child("sim", [py, "-m", "sim_hw.local", cfg, *self.sim_args], restartable=False)]
        else:
            kids = [Child("hal", [py, "-m", "flight.hal.rigs", cfg])]
        kids += [Child(n, [py, "-m", "flight.core.runtime", n, cfg]) for n in self.config.participants]
        return kids

    # -- outputs ---------------------------------------------------------------------
    def _clock(self) -> tuple[int, float]:
        """The executive's time: the latest onboard (mission) time recorded, and this run's tick.
        Mission time, not the time this run has flown: the link stamps what the executive
        publishes with the UTC of its time (:meth:`flight.subsystems.link.state.LinkState.utc_at`),
        so after a reboot the run's own time would put its housekeeping back at the mission's start."""
        return int(round(self.stats.sim_time_s / self.config.tick_s)), self.stats.onboard_time_s

    def _decode_error(self, _where: str, _why: str) -> None:
        self.decode_errors += 1

    def event(self, event: str, /, **args: Any) -> None:
        self.bus.emit("ev", f"exec.{event}", COMPONENT.event_payload(event, args))

    def housekeeping(self) -> None:
        if self.rebooting and self.stats.time_start_s is None:
            return  # a sample now would carry the mission's start as its time (:meth:`_clock`)
        data = {"mode": self.mode, "restarts": self.restarts, "commands_pending": len(self.dispatcher.pending),
                "commands_executed": self.dispatcher.executed, "bus_gaps": self.seq.gaps,
                "decode_errors": self.decode_errors + self.dispatcher.rejected_messages,
                "uptime_s": time.monotonic() - self.started, "recording_held": self.recorder.held,
                "recording_dropped": self.recorder.rows_dropped}
        self.bus.emit("tm", "exec.hk", data)

    def order_mode(self, mode: str, why: str) -> None:
        """Order ``mode`` from the mode manager (command ``power.set_mode``); the change, when
        it takes, comes back as ``ctl/mode``."""
        self.mode_wanted = (mode, why)
        self._send_mode_order()

    def _send_mode_order(self) -> None:
        self.mode_orders += 1
        self.mode_order_id = f"exec-mode-{self.mode_orders}"
        mode, why = self.mode_wanted
        self.dispatcher.issue(self.mode_order_id, "power.set_mode", {"mode": mode, "why": why})

    def _on_mode_report(self, msg) -> None:
        """A mode change by the mode manager (``ctl/mode``) or its housekeeping's mode."""
        mode = msg.data.get("mode") if isinstance(msg.data, dict) else None
        if mode not in MODES:
            return
        if msg.kind == "ctl":
            self.mode_wanted = None  # taken, or overtaken by the mode manager's own change
            if mode != self.mode:
                self.event("mode_changed", old=self.mode, new=mode, why=str(msg.data.get("why", ""))[:200])
                self.mode = mode
        elif self.mode_order_id in self.dispatcher.pending:
            return
        elif self.mode_wanted is not None and mode != self.mode_wanted[0]:
            self._send_mode_order()
        elif self.mode_wanted is None and mode != self.mode:
            self.order_mode(self.mode, f"restored (the power manager reported {mode})")

    # -- commands ----------------------------------------------------------------------
    def _local_command(self, name: str, args: dict) -> str | Forward:
        if name == "exec.noop":
            return "no-op"
        if name == "exec.restart":
            child = self.children.get(args["subsystem"])
            if child is None or child.proc is None:
                raise CommandError("EXECUTION_ERROR", f"{args['subsystem']} is not running")
            child.proc.kill()
            return f"{args['subsystem']} killed; the supervisor restarts it"
        if name == "exec.set_mode":
            return Forward("power.set_mode", {"mode": args["mode"], "why": "commanded"})
        raise CommandError("INVALID_OPCODE", name)

    def _command_failed(self, name: str, code: str, message: str) -> None:
        self.event("command_failed", command=name, code=code, message=message[:160])

    # -- supervision -------------------------------------------------------------------
    def supervise(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self._spawn(child)
                    self.event("process_restarted", name=child.name, pid=child.proc.pid,
                               count=len(child.restart_times))
                continue
            code = child.proc.poll()
            if code is None and now - child.last_heartbeat > HEARTBEAT_TIMEOUT_S:
                self.event("heartbeat_lost", name=child.name, age_s=now - child.last_heartbeat)
                child.proc.kill()
                code = child.proc.wait()
            if code is not None:
                self._died(child, code, now)

    def _died(self, child: Child, code: int, now: float) -> None:
        pid = child.proc.pid
        child.proc = None
        if child.name in ("sim", "hal") and code == REFUSED_EXIT:
            self.stop_reason = "onboard time went backwards (event hal.clock_backwards)"
            return
        if not child.restartable:
            self.event("hal_lost", code=code)
            self.stop_reason = f"{child.name} exited with {code}"
            return
        child.restart_times = [t for t in child.restart_times if now - t < SAFE_WINDOW_S] + [now]
        delay = BACKOFF_S[min(len(child.restart_times), len(BACKOFF_S)) - 1]
        child.restart_at = now + delay
        self.restarts += 1
        self.event("process_died", name=child.name, pid=pid, code=code, delay_s=delay)
        self.bus.emit("ctl", "down", {"name": child.name})
        self.dispatcher.fail_target(child.name, f"{child.name} restarted while the command was pending")
        if len(child.restart_times) > SAFE_RESTARTS:
            self.order_mode("SAFE", f"{child.name} restarted {len(child.restart_times)} times in {SAFE_WINDOW_S:g} s")

    def flush_recording(self) -> None:
        """Write the recording; announce when it starts failing (a full disk) and when it recovers."""
        held = self.recorder.held
        written = self.recorder.flush()
        if not written and not self.recording_failed:
            self.recording_failed = True
            self.event("recording_failed", why=self.recorder.failing[:160], held=self.recorder.held, limit=MAX_HELD_ROWS)
        elif written and self.recording_failed:
            self.recording_failed = False
            self.event("recording_recovered", written=held, dropped=self.recorder.rows_dropped)

    # -- the bus -----------------------------------------------------------------------
    def drain_bus(self) -> bool:
        """Handle queued bus messages; return True once the last tick's traffic is in: every
        flight process publishes housekeeping on the last tick, after all else it had for it
        (one publisher's messages keep their order through the proxy)."""
        for msg, body in self.bus.decoded(self.bus.sub):
            self.seq.observe(msg)
            if msg.kind == "hb":
                child = self.children.get(msg.name.partition(".")[0])
                if child is not None:
                    child.last_heartbeat = time.monotonic()
            elif msg.kind == "ctl" and msg.name == "sync":
                self.bus.emit("ctl", "ready", {"name": "exec"})
            elif msg.kind == "ctl" and msg.name == "mode" and msg.src == "power":
                self._on_mode_report(msg)
            elif msg.kind in ("tm", "ev"):
                if msg.tick > self.last_tick:  # past the run's end: not part of it
                    continue
                if msg.kind == "tm" and msg.tick == self.last_tick and msg.name == f"{msg.src}.hk":
                    self.finished.add(msg.src)
                self.recorder.record(msg, body)
                self.stats.observe(msg)
                if msg.name == "power.hk":
                    self._on_mode_report(msg)
        return self._run_complete()

    def _run_complete(self) -> bool:
        if "hal" not in self.finished:
            return False
        if self.end_seen_at is None:
            self.end_seen_at = time.monotonic()
        # a participant that is down at the very end will not report; don't wait for it forever
        return set(self.config.participants) <= self.finished or time.monotonic() - self.end_seen_at > END_GRACE_S

    # -- the run -----------------------------------------------------------------------
    def run(self) -> dict:
        """Fly the run to its end, Ctrl-C or a fatal loss; return the summary."""
        self._open_bus()
        self.event("run_started", data_dir=str(self.data_dir))
        for moved in take_moved_aside():
            self.event("store_moved_aside", **moved_aside_args(moved))
        self.children = {c.name: c for c in self._children()}
        for child in self.children.values():
            self._spawn(child)
        poller = zmq.Poller()
        poller.register(self.bus.sub, zmq.POLLIN)
        poller.register(self.broker.router, zmq.POLLIN)
        next_slow = 0.0
        try:
            while not self.stop_reason:
                for sock, _ in poller.poll(50):
                    if sock is self.bus.sub:
                        if self.drain_bus():
                            self.stop_reason = "completed"
                    else:
                        self.dispatcher.drain()
                # Off the lockstep path: a batch every BATCH_S costs far fewer wake-ups than
                # one per message, and the CPU goes to the processes the tick waits for.
                time.sleep(BATCH_S)
                now = time.monotonic()
                if now >= next_slow:
                    next_slow = now + 0.25
                    self.supervise()
                    self.dispatcher.expire()
                    self.flush_recording()
                    self.housekeeping()
                    self.on_progress(self.stats.sim_time_s)
                    if self.stats.sim_time_s == 0 and now - self.started > FIRST_FRAME_TIMEOUT_S:
                        self.stop_reason = "no sensor frame from the HAL"
        except KeyboardInterrupt:
            self.interrupted = True
            self.stop_reason = "interrupted"
        finally:
            self.shutdown()
        return self.summary()

    def shutdown(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after a grace period) and close the bus."""
        if self.stop_reason == "completed":
            self.event("run_completed", tick=self.last_tick)
        live = [c for c in self.children.values() if c.proc is not None]
        for child in live:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in live:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        for child in self.children.values():
            if child.log:
                child.log.close()
        self.drain_bus()
        self.recorder.flush()
        self.broker.close()
        self.ctx.destroy(linger=0)

    def summary(self) -> dict:
        out = self.stats.summary()
        out.update(
            wall_time_s=time.monotonic() - self.started,
            commands_executed=self.dispatcher.executed,
            restarts=self.restarts,
            telemetry_sha256=self.recorder.telemetry_sha256(self.last_tick),
            telemetry_rows_dropped=self.recorder.rows_dropped + self.recorder.held,
            bus_gaps=self.seq.gaps,
            mode=self.mode,
            end=self.stop_reason,
            data_dir=str(self.data_dir),
        )
        self.recorder.close()
        return out


def short_run_dir() -> Path:
    """A private directory for the run's ipc:// endpoints (ipc paths must stay short)."""
    return Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp"))


def remove_run_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sim_options(tle_path: str, tle_name: str, seed: int) -> list[str]:
    """Options of :mod:`sim_hw.local` for the run's simulated satellite."""
    return ["--tle", tle_path, "--sat", tle_name, "--seed", str(seed)]

