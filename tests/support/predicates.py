"""Test helpers that read like operations: start a run, wait for telemetry and events, with
composable predicates (in the manner of fprime-gds ``predicates.py``)::

    with FlightRun(tmp_path, "--speed", "realtime", "--contact", "always") as run:
        run.await_telemetry("power.battery_soc", within(0.3, 1.0))
        run.await_telemetry("power.mode", "SAFE")                      # a plain value: equals
        run.await_events("exec.process_restarted", count=2)
        run.await_events(event_named("jobs.job_completed", message=r"job 7 completed\\b"))
        wait_until(lambda: not alive(pid), "the process is gone", timeout_s=10)

A predicate is a test on one value that says what it tests (``str(within(0.3, 1.0))`` is
``within [0.3, 1]``, which is what a timeout reports); ``&``, ``|`` and ``~`` combine them.

Telemetry and events are read from the run's own recorder database (SQLite in WAL mode,
so reading while the run writes is safe).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from flight.core.messages import decode


DEFAULT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.2
PACED = ("--speed", "5")
"""Paced like ``--speed realtime``, wall-clock driven and not lockstep, but housekeeping comes
every 2 s instead of 10, so a test does not sit out whole 10-second periods."""


class Predicate:
    """``test(value) -> bool`` with the words that say what it tests; combine with ``&``, ``|``, ``~``."""

    def __init__(self, test: Callable[[Any], bool], text: str) -> None:
        self.test, self.text = test, text

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __and__(self, other: "Predicate") -> "Predicate":
        return Predicate(lambda v: self(v) and other(v), f"{self} and {other}")

    def __or__(self, other: "Predicate") -> "Predicate":
        return Predicate(lambda v: self(v) or other(v), f"({self} or {other})")

    def __invert__(self) -> "Predicate":
        return Predicate(lambda v: not self(v), f"not {self}")


def as_predicate(expected: Any) -> Predicate:
    """``expected`` if it is a predicate, else ``equals(expected)``."""
    return expected if isinstance(expected, Predicate) else equals(expected)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real)


def equals(expected: Any) -> Predicate:
    return Predicate(lambda v: v == expected, f"equals {expected!r}")


def within(lo: float, hi: float) -> Predicate:
    """``lo <= value <= hi`` (inclusive); never true of a missing value (None)."""
    return Predicate(lambda v: v is not None and _number(v) and lo <= v <= hi, f"within [{lo:g}, {hi:g}]")


def greater_than(bound: float) -> Predicate:
    return Predicate(lambda v: v is not None and _number(v) and v > bound, f"greater than {bound:g}")


def at_least(bound: float) -> Predicate:
    return Predicate(lambda v: v is not None and _number(v) and v >= bound, f"at least {bound:g}")


def less_than(bound: float) -> Predicate:
    return Predicate(lambda v: v is not None and _number(v) and v < bound, f"less than {bound:g}")


def satisfies(test: Callable[[Any], bool], text: str) -> Predicate:
    """Any other test, with the words that say what it checks."""
    return Predicate(test, text)


@dataclass(frozen=True)
class Event:
    """One recorded event: ``name`` is ``component.event``, ``severity`` e.g. ``"MEDIUM"``,
    ``args`` its typed arguments where the recorder keeps them (else empty)."""
    name: str
    severity: str
    message: str
    tick: int = 0
    time_s: float = 0.0
    args: dict = field(default_factory=dict)


def event_named(name: str, severity: str | None = None, message: str | None = None, **args: Any) -> Predicate:
    """An event called ``name``; if given, of ``severity``, with a message that ``message``
    (a regular expression) matches from its start, and with each named argument satisfying
    its predicate (or equal to its plain value)."""
    arg_tests = {key: as_predicate(value) for key, value in args.items()}
    pattern = re.compile(message) if message is not None else None

    def test(ev: Event) -> bool:
        return (ev.name == name and (severity is None or ev.severity == severity)
                and (pattern is None or pattern.match(ev.message) is not None)
                and all(key in ev.args and t(ev.args[key]) for key, t in arg_tests.items()))

    words = [f"event {name}"] + ([f"severity {severity}"] if severity else []) + \
        ([f"message ~ {message!r}"] if message is not None else []) + [f"{k} {t}" for k, t in arg_tests.items()]
    return Predicate(test, ", ".join(words))


def as_event_predicate(event: str | Predicate) -> Predicate:
    """A predicate on events: ``event`` itself, or ``event_named(event)`` for a plain name."""
    return event if isinstance(event, Predicate) else event_named(event)


def count(n: int | Predicate, item: Predicate | None = None) -> Predicate:
    """A predicate on a sequence: the number of its items satisfying ``item`` (all items if
    None) is at least ``n``, or satisfies ``n`` if that is a predicate."""
    wanted = at_least(n) if isinstance(n, int) else n
    return Predicate(lambda seq: wanted(sum(1 for x in seq if item is None or item(x))),
                     f"count {wanted}" + (f" of {item}" if item is not None else ""))


def wait_until(condition: Callable[[], Any], what: str | Callable[[], str], timeout_s: float = DEFAULT_TIMEOUT_S,
               interval_s: float = POLL_INTERVAL_S) -> Any:
    """Call ``condition`` every ``interval_s`` until it returns something truthy and return
    that; AssertionError naming ``what`` (or what ``what()`` says then) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s awaiting {what() if callable(what) else what}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> dict[str, int]:
    """``{process name: pid}`` of the direct children of ``pid`` (Linux /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out[name] = int(entry.name)
    return out


@contextlib.contextmanager
def running(argv: list[str]):
    """A process for the length of a ``with`` block; then SIGTERM, and SIGKILL if it lingers."""
    proc = subprocess.Popen(argv)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class FlightRun:
    """``flight run`` as a subprocess with its data in ``tmp_path`` and a free link port; stopped (SIGINT, then
    SIGKILL of the whole process group) on exit, so no test leaves a process behind. Its
    ground-station keys are in ``tmp_path / "keys"`` (``RACKFLIGHT_KEYS_DIR``, also set in
    ``self.env`` for ground tools), never in the user's own key directory."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.data = tmp_path / "run"
        self.keys = tmp_path / "keys"
        self.env = {**os.environ, "RACKFLIGHT_KEYS_DIR": str(self.keys)}
        self.summary_path = tmp_path / "summary.json"
        # a port of its own unless the test names one: runs side by side must not collide
        if "--link" in args:
            self.link = args[args.index("--link") + 1]
            link = ()
        else:
            self.link = f"127.0.0.1:{free_port()}"
            link = ("--link", self.link)
        self.argv = [sys.executable, "-m", "flight.cli", "run", "--data", str(self.data), "--no-progress",
                     "--summary-json", str(self.summary_path), *link, *args]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "FlightRun":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.interrupt()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.output = self.proc.stdout.read().decode(errors="replace")
        self.proc.stdout.close()

    def interrupt(self) -> None:
        """Ctrl-C, as a terminal delivers it."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout_s: float = 120.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        return code

    @property
    def tm_keys(self) -> dict:
        """The run's telemetry keys by SPI (created by ``flight run`` with its station key), for a LinkClient."""
        from flight.spacelink import tm_sdls

        return tm_sdls.verifying_keys(self.keys)

    def ground(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
        """``flight ground ARGS`` as an operator types it, with this run's keys; output captured."""
        return subprocess.run([sys.executable, "-m", "flight.cli", "ground", *args], capture_output=True, text=True,
                              timeout=timeout_s, env=self.env)

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    def processes(self) -> dict[str, int]:
        return children_of(self.proc.pid)

    def power_loss(self) -> None:
        """SIGKILL the executive and every child at once, stopped ones too (each child leads
        its own process group, so one killpg would not reach them); wait until none is left."""
        pids = [self.proc.pid, *self.processes().values()]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        self.wait(timeout_s=10)
        wait_until(lambda: not any(alive(pid) for pid in pids[1:]), "every flight process gone after SIGKILL", 10, 0.05)

    def _db(self) -> sqlite3.Connection | None:
        path = self.data / "telemetry.sqlite"
        if not path.exists():
            return None
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        """The rows of one query of the recorded telemetry ([] before the recorder's file exists)."""
        db = self._db()
        if db is None:
            return []
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def _poll(self, what: str, probe, timeout_s: float):
        """``probe(db) -> (found, last_seen)`` until ``found`` is not None; fails at once if the
        run exits, and after ``timeout_s`` with the last thing seen."""
        last = [None]

        def attempt():
            if self.proc.poll() is not None:
                raise AssertionError(f"flight run exited ({self.proc.returncode}) while awaiting {what}")
            db = self._db()
            if db is None:
                return None
            try:
                found, last[0] = probe(db)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):  # only the recorder's first instant
                    raise
                return None
            finally:
                db.close()
            return None if found is None else (found,)

        return wait_until(attempt, lambda: f"{what}; last seen {last[0]!r}", timeout_s)[0]

    def latest(self, channel: str) -> Any:
        """Latest recorded value of ``component.channel`` (None before the first packet)."""
        comp, _, name = channel.partition(".")
        rows = self._rows("SELECT body FROM tm WHERE name = ? ORDER BY rowid DESC LIMIT 1", (f"{comp}.hk",))
        return decode(rows[0][0]).data.get(name) if rows else None

    def await_telemetry(self, channel: str, expected: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """Wait until one of the latest 20 housekeeping values of ``component.channel``
        satisfies ``expected`` (a predicate, or a plain value it must equal); return that value."""
        comp, _, name = channel.partition(".")
        wanted = as_predicate(expected)

        def probe(db):
            rows = db.execute("SELECT body FROM tm WHERE name = ? ORDER BY rowid DESC LIMIT 20",
                              (f"{comp}.hk",)).fetchall()
            values = [decode(r[0]).data.get(name) for r in rows]
            return next((v for v in values if wanted(v)), None), values[:1]

        return self._poll(f"telemetry {channel} {wanted}", probe, timeout_s)

    def await_next_housekeeping(self, component: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        """Wait for a housekeeping packet of ``component`` recorded after this call; return its
        channels (what the component reported once everything sent before the call was in)."""
        seen = max([row for (row,) in self._rows("SELECT rowid FROM tm WHERE name = ? ORDER BY rowid DESC LIMIT 1",
                                                  (f"{component}.hk",))], default=0)

        def probe(db):
            row = db.execute("SELECT body FROM tm WHERE name = ? AND rowid > ? ORDER BY rowid LIMIT 1",
                             (f"{component}.hk", seen)).fetchone()
            return (decode(row[0]).data if row else None), seen

        return self._poll(f"housekeeping from {component} after row {seen}", probe, timeout_s)

    def await_steady(self, component: str, channels: list[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        """Wait until two successive housekeeping packets of ``component``, both recorded after
        this call, agree on every one of ``channels`` (the counters have settled); return them."""
        previous = {key: self.await_next_housekeeping(component, timeout_s).get(key) for key in channels}

        def settled():
            nonlocal previous
            now = {key: self.await_next_housekeeping(component, timeout_s).get(key) for key in channels}
            previous, same = now, now == previous
            return now if same else None

        return wait_until(settled, lambda: f"{component} {channels} steady; last {previous!r}", timeout_s, 0)

    def recorded_events(self, event: str | Predicate) -> list[Event]:
        """Every recorded event satisfying ``event`` (a predicate, or a plain name), in order."""
        wanted = as_event_predicate(event)
        db = self._db()
        if db is None:
            return []
        try:
            cursor = db.execute("SELECT * FROM ev ORDER BY rowid")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):  # only the recorder's first instant
                raise
            rows = []
        finally:
            db.close()
        events = [Event(r["name"], r["severity"], r["message"], r["tick"], r["time_s"], _event_args(r.get("args")))
                  for r in rows]
        return [ev for ev in events if wanted(ev)]

    def await_events(self, event: str | Predicate, count: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Event]:
        """Wait until at least ``count`` recorded events satisfy ``event`` (a predicate, or a
        plain name); return all of them."""
        wanted = as_event_predicate(event)
        last: list[Event] = []

        def enough():
            nonlocal last
            if self.proc.poll() is not None:
                raise AssertionError(f"flight run exited ({self.proc.returncode}) while awaiting {wanted}")
            last = self.recorded_events(wanted)
            return last if len(last) >= count else None

        return wait_until(enough, lambda: f"{count} x {wanted}; {len(last)} seen", timeout_s)

    def await_event(self, event: str | Predicate, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
        """Wait for an event satisfying ``event`` (a predicate, or a plain name); return its message."""
        return self.await_events(event, 1, timeout_s)[0].message

    def events(self, event: str | Predicate) -> list[str]:
        """The messages of every recorded event satisfying ``event`` (a predicate, or a plain name)."""
        return [ev.message for ev in self.recorded_events(event)]

    def event_fields(self, event: str | Predicate) -> list[dict]:
        """The typed arguments of every recorded event satisfying ``event``, in order."""
        return [ev.args for ev in self.recorded_events(event)]

    def await_event_fields(self, event: str | Predicate, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
        """Wait for an event satisfying ``event``; return its typed arguments."""
        return self.await_events(event, 1, timeout_s)[0].args


def _event_args(stored: str | None) -> dict:
    """An event's typed arguments as the recorder stores them beside the text (a JSON object,
    column ``ev.args``); {} where it stores none."""
    return json.loads(stored) if stored else {}
