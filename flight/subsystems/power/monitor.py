"""Onboard monitoring in the manner of PUS service 12 (ECSS-E-ST-70-41C §6.12): a table of
watchpoints, each a parameter with low/high limits, a persistence count and an action,
checked every tick on the sensor frame.

A watchpoint whose parameter has been outside ``[low, high]`` for ``persistence`` ticks in a
row *fires* once: the power manager reports it with an event of the watchpoint's severity
and carries out its action (``event``: nothing more; ``mode``: enter ``mode``; ``command``:
send the telecommand ``command`` with ``command_args``). It re-arms when the parameter is back
within limits (reported as ``cleared``). Persistence counts restart with the process.

The table lives in SQLite, ``<data dir>/monitor.sqlite``, so edits by command survive a
restart of the process; a new data directory starts from :data:`DEFAULT_WATCHPOINTS`.
Monitored over the space link through plain telecommands (PUS service 8, function
management), not service 12's own packets.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from flight.core.component import SEVERITIES, CommandError
from flight.core.storage import connect_checked
from flight.hal.protocol import SENSOR_FIELDS
from flight.subsystems.power.modes import MODES

ACTIONS = ("event", "mode", "command")
MAX_WATCHPOINTS = 64
"""Bounds the per-tick cost (a few µs per watchpoint) and the table a command can grow."""


def hottest_online_c(frame: dict) -> float:
    """The hottest online GPU's temperature, °C (every GPU's when none is online)."""
    temps, online = frame["gpu_temp_c"], frame["gpu_online"]
    return float(temps.max() if online.all() or not online.any() else temps[online].max())


PARAMETERS: dict[str, Callable[[dict], float]] = {
    **{f.name: (lambda frame, n=f.name: float(frame[n])) for f in SENSOR_FIELDS if f.shape == ()},
    "gpu_temp_max_c": hottest_online_c,
    "gpu_power_total_w": lambda frame: float(frame["gpu_power_w"].sum()),
    "gpus_online": lambda frame: float(np.count_nonzero(frame["gpu_online"])),
}
"""What a watchpoint may monitor: every scalar field of the sensor frame
(:data:`flight.hal.protocol.SENSOR_FIELDS`, booleans as 0/1) and three rack-wide reductions —
``gpu_temp_max_c`` (hottest online GPU, °C), ``gpu_power_total_w`` (W), ``gpus_online`` (count)."""


@dataclass(frozen=True)
class Watchpoint:
    """One row of the monitoring table.

    ``persistence`` is in ticks (>= 1); ``severity`` is the event's (:data:`SEVERITIES`);
    ``mode`` is used by the ``mode`` action, ``command`` (qualified name) and
    ``command_args`` (JSON object) by the ``command`` action, empty otherwise.
    """

    wp_id: int
    parameter: str
    low: float
    high: float
    persistence: int
    enabled: bool
    action: str
    severity: str
    mode: str = ""
    command: str = ""
    command_args: str = "{}"


DEFAULT_WATCHPOINTS = (
    Watchpoint(1, "battery_soc", 0.60, 1.0, 10, True, "event", "HIGH"),
    Watchpoint(2, "battery_temp_c", 0.0, 45.0, 30, True, "command", "MEDIUM",
               command="thermal.set_setpoint", command_args='{"setpoint_c": 20.0}'),
    Watchpoint(3, "gpu_temp_max_c", -20.0, 88.0, 5, True, "event", "HIGH"),
    Watchpoint(4, "gpu_temp_max_c", -20.0, 90.5, 3, True, "mode", "HIGH", mode="SAFE"),
    Watchpoint(5, "coolant_supply_temp_c", 5.0, 40.0, 30, True, "event", "MEDIUM"),
)
"""The table a new run starts with. Battery SOC 0.60: half way from the 0.70 planning floor
to the 0.40 contingency floor (DESIGN.md). Battery 0..45 °C: the cells' charge window
(sim_hw battery_charge_temp_c, estimate); a hot pack is cooled through the supply manifold
it sits on, hence the lower coolant setpoint. GPU 88 °C: 1 K below the hardware slowdown
(89 °C); 90.5 °C for 3 s: 1.5 K before the 92 °C shutdown, the rack is parked (SAFE).
Coolant supply 5..40 °C: the thermal controller's channel limits."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watchpoints (wp_id INTEGER PRIMARY KEY, parameter TEXT, low REAL, high REAL,
    persistence INTEGER, enabled INTEGER, action TEXT, severity TEXT, mode TEXT, command TEXT, command_args TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class Firing:
    """A watchpoint that has just fired (``cleared`` False) or returned within its limits."""

    wp: Watchpoint
    value: float
    cleared: bool = False


class Monitor:
    """The watchpoint table and its per-tick check.

    Args:
        path: the SQLite database (created with :data:`DEFAULT_WATCHPOINTS` if new);
            ``None`` keeps the table in memory (unit tests).
        validate_command: ``(qualified, args)`` -> checked args, raising
            :class:`CommandError` (:meth:`flight.core.component.Dictionary.validate_command`);
            used when a ``command`` watchpoint is added.
    """

    def __init__(self, path: Path | None,
                 validate_command: Callable[[str, Any], dict] | None = None) -> None:
        self.db = (sqlite3.connect(":memory:", isolation_level=None) if path is None
                   else connect_checked(path, isolation_level=None))
        self.db.executescript(_SCHEMA)
        self.validate_command = validate_command
        if self.db.execute("SELECT value FROM meta WHERE key='seeded'").fetchone() is None:
            with self.db:
                self.db.executemany("INSERT INTO watchpoints VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                    [astuple(wp) for wp in DEFAULT_WATCHPOINTS])
                self.db.execute("INSERT INTO meta VALUES ('seeded', '1')")
        cols = ", ".join(f.name for f in fields(Watchpoint))
        self.table: dict[int, Watchpoint] = {
            row[0]: Watchpoint(row[0], row[1], row[2], row[3], row[4], bool(row[5]), *row[6:])
            for row in self.db.execute(f"SELECT {cols} FROM watchpoints ORDER BY wp_id")
        }
        self.counts: dict[int, int] = {}
        self._active: list[tuple[Watchpoint, Callable[[dict], float]]] = []
        self._refresh()

    # -- the per-tick check ---------------------------------------------------------------
    def check(self, frame: dict, known: dict[str, float] | None = None) -> list[Firing]:
        """Check every enabled watchpoint on ``frame``; return those that fired or cleared.
        ``known`` holds parameters the caller has already computed from this frame."""
        out: list[Firing] = []
        counts = self.counts
        values = dict(known) if known else {}
        for wp, value_of in self._active:
            value = values.get(wp.parameter)
            if value is None:
                value = values[wp.parameter] = value_of(frame)
            if wp.low <= value <= wp.high:
                if counts.get(wp.wp_id, 0) >= wp.persistence:
                    out.append(Firing(wp, value, cleared=True))
                counts[wp.wp_id] = 0
                continue
            n = counts.get(wp.wp_id, 0) + 1
            counts[wp.wp_id] = n
            if n == wp.persistence:
                out.append(Firing(wp, value))
        return out

    # -- editing (each validated first: a refused edit changes nothing) --------------------
    def add(self, wp: Watchpoint) -> Watchpoint:
        """Add ``wp`` (its ``wp_id`` 0: the next free id); return it as stored.

        Raises:
            CommandError: VALIDATION_ERROR for an unknown parameter, limits not finite or
                ``low >= high``, persistence < 1, an unknown action, severity or mode, or a
                table already holding :data:`MAX_WATCHPOINTS`; for a ``command`` action, what
                ``validate_command`` raises for the command and its arguments.
        """
        self._validate(wp)
        if len(self.table) >= MAX_WATCHPOINTS:
            raise CommandError("VALIDATION_ERROR", f"the table is full ({MAX_WATCHPOINTS} watchpoints)")
        wp = replace(wp, wp_id=max(self.table, default=0) + 1) if wp.wp_id == 0 else wp
        if wp.wp_id in self.table:
            raise CommandError("VALIDATION_ERROR", f"watchpoint {wp.wp_id} exists")
        with self.db:
            self.db.execute("INSERT INTO watchpoints VALUES (?,?,?,?,?,?,?,?,?,?,?)", astuple(wp))
        self.table[wp.wp_id] = wp
        self._refresh()
        return wp

    def delete(self, wp_id: int) -> None:
        """Remove watchpoint ``wp_id``. Raises CommandError VALIDATION_ERROR if there is none."""
        self._get(wp_id)
        with self.db:
            self.db.execute("DELETE FROM watchpoints WHERE wp_id=?", (wp_id,))
        del self.table[wp_id]
        self.counts.pop(wp_id, None)
        self._refresh()

    def enable(self, wp_id: int, enabled: bool) -> None:
        """Enable or disable watchpoint ``wp_id`` (its persistence count restarts).
        Raises CommandError VALIDATION_ERROR if there is none."""
        wp = replace(self._get(wp_id), enabled=enabled)
        with self.db:
            self.db.execute("UPDATE watchpoints SET enabled=? WHERE wp_id=?", (int(enabled), wp_id))
        self.table[wp_id] = wp
        self.counts.pop(wp_id, None)
        self._refresh()

    @property
    def enabled_count(self) -> int:
        return len(self._active)

    def close(self) -> None:
        self.db.close()

    def _get(self, wp_id: int) -> Watchpoint:
        wp = self.table.get(wp_id)
        if wp is None:
            raise CommandError("VALIDATION_ERROR", f"no watchpoint {wp_id}; ids are {sorted(self.table)}")
        return wp

    def _refresh(self) -> None:
        self._active = [(wp, PARAMETERS[wp.parameter]) for wp in self.table.values() if wp.enabled]

    def _validate(self, wp: Watchpoint) -> None:
        def bad(why: str) -> CommandError:
            return CommandError("VALIDATION_ERROR", why)

        if wp.parameter not in PARAMETERS:
            raise bad(f"unknown parameter {wp.parameter!r}; known: {', '.join(sorted(PARAMETERS))}")
        if not (math.isfinite(wp.low) and math.isfinite(wp.high)) or wp.low >= wp.high:
            raise bad(f"limits [{wp.low:g}, {wp.high:g}] must be finite with low < high")
        if wp.persistence < 1:
            raise bad(f"persistence {wp.persistence} must be >= 1 tick")
        if wp.action not in ACTIONS:
            raise bad(f"action {wp.action!r} is not one of {ACTIONS}")
        if wp.severity not in SEVERITIES:
            raise bad(f"severity {wp.severity!r} is not one of {SEVERITIES}")
        if wp.action == "mode" and wp.mode not in MODES:
            raise bad(f"mode {wp.mode!r} is not one of {MODES}")
        if wp.action == "command":
            try:
                args = json.loads(wp.command_args)
            except json.JSONDecodeError as exc:
                raise bad(f"command_args is not JSON: {exc}") from None
            if self.validate_command is None:
                raise bad("this monitor cannot check commands")
            try:
                self.validate_command(wp.command, args)
            except CommandError as exc:
                raise bad(f"{wp.command}: {exc.code} {exc.message}") from None
