"""Scenarios: a run's orbit, start conditions, load, timed faults and telecommands, and what
must hold at its end, in one TOML file (read with ``tomllib``).

``flight run --scenario NAME|FILE`` flies one; ``flight scenarios`` lists the bundled ones
(``flight/scenarios/*.toml``). Format (every table but ``[run]`` optional)::

    name = "pump-half-flow"                 # defaults to the file's stem
    description = "one line"

    [run]
    duration_s = 11478                      # or: orbits = 2 (of the element set)
    seed = 3
    tle = "tle-beta0.txt"                   # flight/data/ or relative to this file
    tle_name = "RACKSAT-BETA0"              # default: the first set in the file

    [start]                                 # simulator parameters (sim_hw.params.SimParams)
    battery_initial_soc = 0.8

    [load]                                  # job runner parameters (flight.subsystems.jobs.runner)
    workload = "saturate"                   # "saturate" (every GPU busy) or "none"

    [[fault]]                               # the fault catalogue (flight.hal.faults)
    at_s = 600
    fault = "pump_degraded"
    value = 0.5                             # target = "...", duration_s = ... where the fault has them

    [[command]]                             # any telecommand of the dictionary (flight dict)
    at_s = 0
    name = "thermal.set_setpoint"
    args = { setpoint_c = 25.0 }

    [expect]                                # checked at the end by flight run: PASS / FAIL
    mode = ["NOMINAL", "POWER_SAVE"]        # the mode at the end: one of these
    modes_entered = ["THERMAL_LIMIT"]       # each must have been flown for some time
    events = ["hal.fault_injected"]         # each must occur at least once
    no_events = ["exec.mode_changed"]       # none of these may occur
    battery_soc_floor = 0.40                # lowest SOC of the run must stay above
    gpu_temp_max_c = 89.0                   # hottest GPU of the run must stay below
    gpu_shutdowns_max = 0                   # GPU hardware shutdowns at most

Timed faults become ``hal.inject_fault`` telecommands; faults and commands both go through
the normal command path at their ``at_s`` of simulated time (:mod:`flight.hal.bridge`).
Every key is checked when the file is read: an unknown key, a value of the wrong type or
out of range, an unknown fault, command or event raises :class:`ScenarioError` naming the
file and the key (TOML syntax errors: the line and column), and nothing runs.

Flown again on the data directory of the same scenario, a run resumes that mission (a
reboot, :mod:`flight.hal.onboard_clock`): the simulator's saved state rules over ``[start]``,
commands timed before the moment it resumed are not sent again, and ``[expect]`` judges this
run's summary. Another scenario on that directory is refused (``flight run --fresh``).

The ``[start]`` table is the simulator's: it checks it itself (``sim_hw.start``), reached by
module name (:data:`SIMULATOR_START`) as the executive starts the simulator, so flight does
not import the simulator's code. Everything else here is about the run (its element set,
length, telecommands and expectations), which flight owns.
"""

from __future__ import annotations

import importlib
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from flight.core.component import CommandError
from flight.core.tle import DEFAULT_TLE_PATH, load_tle, orbit_period_s
from flight.core.dictionary import full_dictionary
from flight.hal import faults
from flight.subsystems.power.modes import MODES

SCENARIO_DIR = Path(__file__).with_name("scenarios")
MAX_DURATION_S = 30 * 86400.0
WORKLOADS = ("saturate", "none")

_TOP = {"name", "description", "run", "start", "load", "fault", "command", "expect"}
_RUN = {"duration_s", "orbits", "seed", "tle", "tle_name"}
_FAULT = {"at_s", "fault", "value", "target", "duration_s"}
_COMMAND = {"at_s", "name", "args"}
_EXPECT = {"mode", "modes_entered", "events", "no_events", "battery_soc_floor", "gpu_temp_max_c", "gpu_shutdowns_max"}
SIMULATOR_START = "sim_hw.start"
"""The simulator's module that checks a ``[start]`` table: ``check(table, tle_lines)`` returns
the overrides or raises ``StartError`` (``key``, ``why``)."""


class ScenarioError(ValueError):
    """A scenario file that cannot be flown; the message names the file and the key."""


@dataclass(frozen=True)
class TimedCommand:
    """A telecommand sent at ``at_s`` seconds of simulated time (qualified name, checked args)."""

    at_s: float
    command: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Expect:
    """What must hold at the end of the run (``None`` / empty: not checked)."""

    mode: tuple[str, ...] = ()
    modes_entered: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    no_events: tuple[str, ...] = ()
    battery_soc_floor: float | None = None
    gpu_temp_max_c: float | None = None
    gpu_shutdowns_max: int | None = None


@dataclass(frozen=True)
class Check:
    """One checked expectation: what, whether it held, and the measured value."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Scenario:
    """A parsed, checked scenario file (see the module docstring for the format).

    Attributes:
        tle_path, tle_name: the element set (the run epoch is its epoch).
        tle_lines: its two lines.
        start: the simulator's parameter overrides (start conditions), as it checked them.
        load: job-runner parameters (``config.params["jobs"]``).
        commands: timed telecommands, faults as ``hal.inject_fault``, by time.
    """

    name: str
    description: str
    path: Path
    tle_path: Path
    tle_name: str
    tle_lines: tuple[str, str]
    seed: int = 0
    duration_s: float | None = None
    orbits: float | None = None
    start: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    commands: tuple[TimedCommand, ...] = ()
    expect: Expect = Expect()

    def run_duration_s(self) -> float:
        """The run's length: ``duration_s``, else ``orbits`` (default 1) orbit periods, s."""
        if self.duration_s is not None:
            return self.duration_s
        return (self.orbits or 1.0) * orbit_period_s(*self.tle_lines)

    def schedule(self) -> list[dict[str, Any]]:
        """The timed telecommands as ``config.params["hal"]["schedule"]`` entries."""
        return [{"at_s": c.at_s, "command": c.command, "args": c.args} for c in self.commands]

    def run_params(self) -> dict[str, Any]:
        """The run's ``config.params``: the simulator's start conditions, the job runner's
        load and the timed telecommands (the HAL bridge's schedule)."""
        return {"sim": self.start, "jobs": self.load, "hal": {"schedule": self.schedule()}}

    def check(self, summary: dict[str, Any], events: set[str]) -> list[Check]:
        """Check ``[expect]`` against a finished run: its summary (``flight run``'s keys) and
        the names of the events that occurred. The run must also have completed."""
        e = self.expect
        out = [Check("run completed", summary.get("end") == "completed", str(summary.get("end")))]
        if e.mode:
            out.append(Check(f"end mode in {list(e.mode)}", summary.get("mode") in e.mode, str(summary.get("mode"))))
        spent = summary.get("mode_time_s") or {}
        out += [Check(f"mode {m} entered", spent.get(m, 0.0) > 0.0, f"{spent.get(m, 0.0):g} s")
                for m in e.modes_entered]
        out += [Check(f"event {name} occurred", name in events, "yes" if name in events else "no")
                for name in e.events]
        out += [Check(f"event {name} did not occur", name not in events, "no" if name not in events else "yes")
                for name in e.no_events]
        for key, limit, above in (("battery_soc_min", e.battery_soc_floor, True),
                                  ("gpu_temp_max_c", e.gpu_temp_max_c, False)):
            if limit is not None:
                value = summary.get(key)
                ok = isinstance(value, (int, float)) and (value > limit if above else value < limit)
                out.append(Check(f"{key} {'>' if above else '<'} {limit:g}", ok, format_value(value)))
        if e.gpu_shutdowns_max is not None:
            value = summary.get("gpu_shutdowns")
            ok = isinstance(value, int) and value <= e.gpu_shutdowns_max
            out.append(Check(f"gpu_shutdowns <= {e.gpu_shutdowns_max}", ok, format_value(value)))
        return out


def format_value(value: Any) -> str:
    """A measured value as a check shows it: 4 significant digits for a float."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- reading -----------------------------------------------------------------------------------


class TableReader:
    """Typed access to one table of a TOML file, with errors (``error``, default
    :class:`ScenarioError`) that name the file and the key."""

    def __init__(self, path: Path, where: str, table: Any, allowed: set[str],
                 error: type[ValueError] = ScenarioError) -> None:
        self.path, self.where, self.error = path, where, error
        if not isinstance(table, dict):
            self.fail("", "must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")
        self.table = table

    def fail(self, key: str, why: str) -> None:
        dotted = ".".join(k for k in (self.where, key) if k)
        raise self.error(f"{self.path}: {dotted or 'file'}: {why}")

    def number(self, key: str, default: float | None = None, lo: float = -math.inf, hi: float = math.inf,
               integer: bool = False) -> float | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            self.fail(key, f"must be {'an integer' if integer else 'a finite number'}, not {value!r}")
        if not lo <= value <= hi:
            self.fail(key, f"{value!r} outside [{lo:g}, {hi:g}]")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is not None and not isinstance(value, str):
            self.fail(key, f"must be a string, not {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a string or a list of strings")
        return tuple(value)

    def required(self, key: str) -> None:
        if key not in self.table:
            self.fail(key, "missing")

    def array_of_tables(self, key: str, allowed: set[str], required: tuple[str, ...]) -> list[TableReader]:
        """Readers of the ``[[key]]`` tables, each checked for unknown and missing keys."""
        tables = self.table.get(key, [])
        if not isinstance(tables, list):
            self.fail(key, f"must be an array of tables ([[{key}]])")
        readers = [TableReader(self.path, f"{key}[{i}]", t, allowed, self.error) for i, t in enumerate(tables)]
        for r in readers:
            for k in required:
                r.required(k)
        return readers


def read_toml(path: Path, error: type[ValueError] = ScenarioError) -> dict[str, Any]:
    """The TOML document in ``path``.

    Raises:
        error: the file cannot be read or is not valid TOML (the line and column given).
    """
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None


def resolve(name_or_path: str | Path) -> Path:
    """The file of a bundled scenario name (``worst-eclipse``) or a path.

    Raises:
        ScenarioError: neither a bundled name nor an existing file.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = SCENARIO_DIR / f"{name_or_path}.toml"
    if bundled.is_file():
        return bundled
    names = ", ".join(p.stem for p in sorted(SCENARIO_DIR.glob("*.toml")))
    raise ScenarioError(f"no scenario file or bundled scenario {str(name_or_path)!r} (bundled: {names})")


def load(name_or_path: str | Path) -> Scenario:
    """Read and check a scenario (bundled name or file path).

    Raises:
        ScenarioError: the file is missing, is not valid TOML (line and column given), or a
            key is unknown, mistyped, out of range or names an unknown fault, command, event
            or mode (the key is given); also when the element set cannot be used.
    """
    path = resolve(name_or_path)
    raw = read_toml(path)
    dictionary = full_dictionary()
    top = TableReader(path, "", raw, _TOP)
    run = TableReader(path, "run", raw.get("run", {}), _RUN)
    if "duration_s" in run.table and "orbits" in run.table:
        run.fail("orbits", "give duration_s or orbits, not both")
    tle_text = run.text("tle", "tle-real.txt")
    tle_path = path.parent / tle_text if (path.parent / tle_text).is_file() else DEFAULT_TLE_PATH.parent / tle_text
    try:
        tle_name, tle_lines = load_tle(tle_path, run.text("tle_name"))
    except (OSError, ValueError) as exc:
        run.fail("tle", f"cannot use the element set: {exc}")

    start = _check_start(path, raw.get("start", {}), tle_lines)

    load_ = TableReader(path, "load", raw.get("load", {}), {"workload"})
    workload = load_.text("workload", "saturate")
    if workload not in WORKLOADS:
        load_.fail("workload", f"{workload!r} is not one of {list(WORKLOADS)}")

    commands: list[TimedCommand] = []
    for r in top.array_of_tables("fault", _FAULT, ("at_s", "fault")):
        at_s = r.number("at_s", lo=0.0, hi=MAX_DURATION_S)
        try:
            f = faults.validate(r.text("fault"), r.number("value", 0.0), r.text("target", ""),
                                r.number("duration_s", 0.0))
        except faults.FaultError as exc:
            r.fail("fault", str(exc))
        commands.append(TimedCommand(at_s, "hal.inject_fault", f.as_dict()))
    for r in top.array_of_tables("command", _COMMAND, ("at_s", "name")):
        at_s = r.number("at_s", lo=0.0, hi=MAX_DURATION_S)
        name, args = r.text("name"), r.table.get("args", {})
        try:
            checked = dictionary.validate_command(name, args)
        except CommandError as exc:
            r.fail("name" if name not in dictionary.commands else "args", str(exc))
        commands.append(TimedCommand(at_s, name, checked))
    commands.sort(key=lambda c: c.at_s)

    ex = TableReader(path, "expect", raw.get("expect", {}), _EXPECT)
    for key in ("mode", "modes_entered"):
        for m in ex.strings(key):
            if m not in MODES:
                ex.fail(key, f"{m!r} is not a mode ({', '.join(MODES)})")
    for key in ("events", "no_events"):
        for ev in ex.strings(key):
            if ev not in dictionary.events:
                ex.fail(key, f"{ev!r} is not a declared event (flight dict lists them)")
    shutdowns = ex.number("gpu_shutdowns_max", integer=True, lo=0)
    expect = Expect(ex.strings("mode"), ex.strings("modes_entered"), ex.strings("events"), ex.strings("no_events"),
                    ex.number("battery_soc_floor", lo=0.0, hi=1.0), ex.number("gpu_temp_max_c", lo=-60.0, hi=150.0),
                    None if shutdowns is None else int(shutdowns))

    return Scenario(
        name=top.text("name", path.stem), description=top.text("description", ""), path=path,
        tle_path=tle_path, tle_name=tle_name, tle_lines=tle_lines,
        seed=int(run.number("seed", 0, integer=True)),
        duration_s=run.number("duration_s", lo=1.0, hi=MAX_DURATION_S),
        orbits=run.number("orbits", lo=0.01, hi=500.0),
        start=start, load={"workload": workload}, commands=tuple(commands), expect=expect,
    )


def _check_start(path: Path, table: Any, tle_lines: tuple[str, str]) -> dict[str, Any]:
    """The ``[start]`` overrides as the simulator checked them (:data:`SIMULATOR_START`)."""
    simulator = importlib.import_module(SIMULATOR_START)
    try:
        return simulator.check(table, tle_lines)
    except simulator.StartError as exc:
        raise ScenarioError(f"{path}: {'.'.join(k for k in ('start', exc.key) if k)}: {exc.why}") from None


def recorded_events(db_path: Path) -> set[str]:
    """Names of the events recorded in a run's ``telemetry.sqlite`` (:mod:`flight.executive.recorder`)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT DISTINCT name FROM ev")}
    finally:
        db.close()


def bundled() -> list[Scenario]:
    """Every scenario in ``flight/scenarios/``, by name."""
    return [load(p) for p in sorted(SCENARIO_DIR.glob("*.toml"))]
