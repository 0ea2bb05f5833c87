"""Records a run: every telemetry packet and event into SQLite, and the run statistics.

The database is ``<data dir>/telemetry.sqlite`` (WAL):

* ``tm(tick, time_s, src, name, body)`` — one row per housekeeping packet; ``body`` is the
  message exactly as published (decode it with :func:`flight.core.messages.decode`);
* ``ev(tick, time_s, src, name, severity, message, args)`` — one row per event: ``message``
  the formatted text, ``args`` its typed arguments as a JSON object (name -> number, bool or
  string, as the event's declaration in :mod:`flight.core.component` says; JSON has no NaN, so a
  non-finite float is null). Query fields with SQLite's JSON functions, e.g.
  ``SELECT json_extract(args, '$.fault') FROM ev WHERE name = 'hal.fault_injected'``, or with
  :func:`event_args`. A database recorded before ``args`` existed gains the column (NULL).

``telemetry_sha256`` hashes the flight telemetry (every source but those of
:data:`UNHASHED_SOURCES`) in simulation order — by tick, then source, then name —
so two lockstep runs with the same inputs give the same hash however the proxy happened to
interleave publishers within a tick. The bodies themselves are deterministic in lockstep:
``seq`` counts per source and kind, and a subsystem's telemetry follows its frames only.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from flight.core.component import SEVERITIES
from flight.core.messages import Message
from flight.core.storage import connect_checked
from flight.hal.onboard_clock import iso_utc
from flight.subsystems.power.modes import MODES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tm (tick INTEGER, time_s REAL, src TEXT, name TEXT, body BLOB);
CREATE TABLE IF NOT EXISTS ev (tick INTEGER, time_s REAL, src TEXT, name TEXT, severity TEXT, message TEXT,
                               args TEXT);
CREATE INDEX IF NOT EXISTS tm_tick ON tm(tick);
"""
UNHASHED_SOURCES = ("exec", "link")
"""Sources whose telemetry ``telemetry_sha256`` leaves out: the executive's packets follow the
wall clock, and the link's count what it was fed, the executive's packets and events among
them (and nothing of the executive's in an in-process run, :mod:`flight.hal.inprocess`). What
the link does to the others (its transmitter setting, its acknowledgements of job results)
shows in their telemetry, which is hashed."""
MAX_HELD_ROWS = 200_000
"""Rows the recorder holds in memory while it cannot write (a full disk): about 20 simulated
minutes at full speed, ~60 MB. Beyond it the oldest telemetry rows are dropped (counted in
:attr:`Recorder.rows_dropped`); events are kept."""


class Recorder:
    """Appends telemetry and events to the run database; commits in batches. A batch that cannot
    be written (a full disk, an I/O error) stays held in memory and is retried at the next
    :meth:`flush`: :attr:`failing` says why meanwhile, :attr:`held` how many rows wait, and
    :attr:`rows_dropped` counts what went beyond :data:`MAX_HELD_ROWS`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = connect_checked(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        if "args" not in {row[1] for row in self.db.execute("PRAGMA table_info(ev)")}:
            self.db.execute("ALTER TABLE ev ADD COLUMN args TEXT")
        self._tm: list[tuple] = []
        self._ev: list[tuple] = []
        self.rows_before = self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM tm").fetchone()[0]
        """Telemetry rows of earlier runs on this data directory (a resumed mission): not this run's."""
        self.failing = ""
        """Why the last flush could not write (empty when it could)."""
        self.rows_dropped = 0

    def record(self, msg: Message, body: bytes) -> None:
        """Keep ``msg`` (telemetry or event); ``body`` is its encoded form as received."""
        if msg.kind == "tm":
            self._tm.append((msg.tick, msg.t, msg.src, msg.name, body))
        elif msg.kind == "ev" and isinstance(msg.data, dict):
            self._ev.append((msg.tick, msg.t, msg.src, msg.name, str(msg.data.get("severity")),
                             str(msg.data.get("message")), args_json(msg.data.get("args"))))

    @property
    def held(self) -> int:
        """Rows recorded and not yet written."""
        return len(self._tm) + len(self._ev)

    def flush(self) -> bool:
        """Write what is held in one transaction; whether everything is written. On a storage
        error nothing of it is written: the rows stay held (see the class) for the next flush."""
        if not (self._tm or self._ev):
            return True
        try:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO tm VALUES (?,?,?,?,?)", self._tm)
            self.db.executemany("INSERT INTO ev VALUES (?,?,?,?,?,?,?)", self._ev)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self.failing = str(exc) or type(exc).__name__
            excess = min(len(self._tm), self.held - MAX_HELD_ROWS)
            if excess > 0:
                del self._tm[:excess]
                self.rows_dropped += excess
            return False
        self._tm, self._ev = [], []
        self.failing = ""
        return True

    def telemetry_sha256(self, last_tick: int) -> str:
        """SHA-256 over ``tick|src|name|body`` of this run's ticks 1..``last_tick`` in simulation order."""
        self.flush()
        h = hashlib.sha256()
        rows = self.db.execute(
            f"SELECT tick, src, name, body FROM tm WHERE tick BETWEEN 1 AND ? AND rowid > ? "
            f"AND src NOT IN ({','.join('?' * len(UNHASHED_SOURCES))}) ORDER BY tick, src, name, rowid",
            (last_tick, self.rows_before, *UNHASHED_SOURCES),
        )
        for tick, src, name, body in rows:
            h.update(f"{tick}|{src}|{name}|".encode())
            h.update(body)
        return h.hexdigest()

    def close(self) -> None:
        """Write what is held (what cannot be is counted dropped) and close the file."""
        if not self.flush():
            self.rows_dropped += self.held
            self._tm, self._ev = [], []
        self.db.close()


def args_json(args: object) -> str | None:
    """An event's ``args`` as the JSON text of the ``args`` column; None when they are not a map
    of JSON-able values (a malformed message is recorded by its text alone, never fatal).
    Non-finite floats become null (strict JSON, so SQLite's JSON functions read every row)."""
    if not isinstance(args, dict):
        return None
    try:
        return json.dumps({str(k): None if isinstance(v, float) and not math.isfinite(v) else v
                           for k, v in args.items()}, allow_nan=False, default=repr)
    except ValueError:  # a non-finite float nested in a list or map
        return None


def event_args(db: sqlite3.Connection, *names: str) -> list[tuple[float, str, dict]]:
    """``(time_s, name, args)`` of every recorded event called one of ``names`` (qualified:
    ``hal.fault_injected``), in simulation order; ``args`` is {} for a row recorded without
    arguments (by a version before they were fields).

    Raises:
        sqlite3.DatabaseError: ``db`` is not a run database (no ``ev`` table).
    """
    rows = db.execute(f"SELECT time_s, name, args FROM ev WHERE name IN ({','.join('?' * len(names))}) "
                      "ORDER BY tick, rowid", names).fetchall()
    return [(float(t), name, json.loads(a) if a else {}) for t, name, a in rows]


class Cumulative:
    """Sums a per-process cumulative counter across process restarts (a restart resets it)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self.total = 0.0

    def feed(self, src: str, value: float) -> None:
        last = self._last.get(src, 0.0)
        self.total += value - last if value >= last else value
        self._last[src] = value


@dataclass
class RunStats:
    """What the run summary reports, from the telemetry and events of ticks 1..``last_tick``.

    The physical statistics come from ``hal.hk``, which the HAL bridge accumulates over every
    frame; the sums are restart-aware (:class:`Cumulative`), extremes combine by min/max.
    ``energy_balance_error`` is the simulator's latest ledger residual (relative, cumulative
    over the whole run); None with an external rig, which reports NaN.
    ``battery_soc_floor`` is the lowest SOC floor the power manager held (``power.hk``; it is
    commandable), the line ``battery_soc_min`` is judged against; ``mode_time_s`` the
    simulated seconds in each mode, from the power manager's per-mode clocks.
    ``gpu_work_done_s`` counts all GPU work as it was done, ``gpu_work_useful_s`` what of it
    the job store kept over the run (completed jobs and checkpointed progress, ``jobs.hk``
    ``work_useful_gpu_s``, from its first to its last value), ``gpu_work_lost_s`` the rest
    less what was still unsaved at the end: work thrown away by rollbacks, crashes,
    cancellations and failures. ``event_arg_errors`` counts the problems of events emitted with
    arguments that do not match their declaration (a software fault; 0 in a healthy run).

    Onboard time: ``sim_time_s`` is the time flown by this run (a reboot resumes the mission
    clock, :mod:`flight.hal.onboard_clock`); ``utc_start``/``utc_end`` the onboard UTC at the
    start (the resumed time of ``hal.rebooted``, else the first ``hal.hk`` less its ticks of
    ``tick_s``) and at the last ``hal.hk``; ``mission_time_s`` the onboard time since the run
    epoch at the end."""

    last_tick: int
    tick_s: float = 1.0
    sim_time_s: float = 0.0
    time_start_s: float | None = None
    utc_start_s: float | None = None
    utc_end_s: float | None = None
    mission_time_s: float = 0.0
    battery_soc_min: float = math.inf
    gpu_temp_max_c: float = -math.inf
    energy_balance_error: float = math.nan
    events: Counter = field(default_factory=Counter)
    eclipse: Cumulative = field(default_factory=Cumulative)
    harvested: Cumulative = field(default_factory=Cumulative)
    work_done: Cumulative = field(default_factory=Cumulative)
    gpu_shutdowns: Cumulative = field(default_factory=Cumulative)
    slips: Cumulative = field(default_factory=Cumulative)
    battery_soc_floor: float = math.inf
    mode_time: dict[str, Cumulative] = field(default_factory=lambda: {m: Cumulative() for m in MODES})
    work_useful_first: float | None = None
    work_useful: float = 0.0
    work_unsaved: float = 0.0
    event_arg_errors: int = 0

    def observe(self, msg: Message) -> None:
        if msg.tick > self.last_tick:
            return
        if msg.kind == "ev" and isinstance(msg.data, dict):
            self.events[msg.data.get("severity", "INFO")] += 1
            if isinstance(n := msg.data.get("arg_errors"), int):
                self.event_arg_errors += n
            if msg.name == "hal.rebooted" and isinstance(args := msg.data.get("args"), dict):
                self.time_start_s, self.utc_start_s = args.get("time_s"), args.get("utc_unix_s")
        if msg.kind != "tm" or not isinstance(msg.data, dict):
            return
        d = msg.data
        if "cycle_slips" in d:
            self.slips.feed(msg.src, d["cycle_slips"])
        if msg.name == "hal.hk":
            if self.time_start_s is None:
                self.time_start_s = d["time_s"] - msg.tick * self.tick_s
            if isinstance(utc := d.get("utc_unix_s"), float):
                if self.utc_start_s is None:
                    self.utc_start_s = utc - msg.tick * self.tick_s
                self.utc_end_s = utc
            self.mission_time_s = d["time_s"]
            self.sim_time_s = d["time_s"] - self.time_start_s
            self.eclipse.feed(msg.src, d["eclipse_time_s"])
            self.harvested.feed(msg.src, d["energy_harvested_j"])
            self.battery_soc_min = min(self.battery_soc_min, d["battery_soc_low"])
            self.gpu_temp_max_c = max(self.gpu_temp_max_c, d["gpu_temp_peak_c"])
            self.gpu_shutdowns.feed(msg.src, d.get("gpu_shutdowns", 0))
            self.energy_balance_error = d.get("energy_balance_error", math.nan)
        elif msg.name == "jobs.hk" and "work_done_gpu_s" in d:
            self.work_done.feed(msg.src, d["work_done_gpu_s"])
            if "work_useful_gpu_s" in d:
                if self.work_useful_first is None:
                    self.work_useful_first = d["work_useful_gpu_s"]
                self.work_useful, self.work_unsaved = d["work_useful_gpu_s"], d["work_unsaved_gpu_s"]
        elif msg.name == "power.hk" and "mode_time_s" in d:
            self.battery_soc_floor = min(self.battery_soc_floor, d["soc_floor"])
            for mode, seconds in zip(MODES, d["mode_time_s"]):
                self.mode_time[mode].feed(msg.src, float(seconds))

    @property
    def onboard_time_s(self) -> float:
        """The latest onboard time since the run epoch recorded (s): where this run started (a
        reboot resumes the mission) plus what it has flown; 0 before anything says."""
        return (self.time_start_s or 0.0) + self.sim_time_s

    def summary(self) -> dict:
        return {
            "sim_time_s": self.sim_time_s,
            "eclipse_time_s": self.eclipse.total,
            "battery_soc_min": self.battery_soc_min if math.isfinite(self.battery_soc_min) else None,
            "battery_soc_floor": self.battery_soc_floor if math.isfinite(self.battery_soc_floor) else None,
            "mode_time_s": {mode: clock.total for mode, clock in self.mode_time.items()},
            "gpu_temp_max_c": self.gpu_temp_max_c if math.isfinite(self.gpu_temp_max_c) else None,
            "gpu_work_done_s": self.work_done.total,
            "gpu_work_useful_s": self.work_useful - (self.work_useful_first or 0.0),
            "gpu_work_lost_s": max(0.0, self.work_done.total - (self.work_useful - (self.work_useful_first or 0.0))
                                   - self.work_unsaved),
            "energy_harvested_j": self.harvested.total,
            "energy_balance_error": self.energy_balance_error if math.isfinite(self.energy_balance_error) else None,
            "gpu_shutdowns": int(self.gpu_shutdowns.total),
            "events": {sev: self.events.get(sev, 0) for sev in SEVERITIES},
            "event_arg_errors": self.event_arg_errors,
            "cycle_slips": int(self.slips.total),
            "utc_start": None if self.utc_start_s is None else iso_utc(self.utc_start_s),
            "utc_end": None if self.utc_end_s is None else iso_utc(self.utc_end_s),
            "mission_time_s": self.mission_time_s,
        }
