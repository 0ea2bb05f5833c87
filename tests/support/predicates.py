"""Test helpers that read like operations: start a run, wait for telemetry and events.

    with FlightRun(tmp_path, "--speed", "realtime", "--contact", "always") as run:
        run.await_telemetry("thermal.setpoint_c", within=(29.9, 30.1))
        run.await_event("exec.process_restarted")

Telemetry and events are read from the run's own recorder database (SQLite in WAL mode,
so reading while the run writes is safe).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flight.core.messages import decode


DEFAULT_TIMEOUT_S = 60.0


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
        link = () if "--link" in args else ("--link", f"127.0.0.1:{free_port()}")
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

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    def processes(self) -> dict[str, int]:
        return children_of(self.proc.pid)

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
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flight run exited ({self.proc.returncode}) while awaiting {what}")
            db = self._db()
            if db is not None:
                try:
                    found, last = probe(db)
                except sqlite3.OperationalError as exc:
                    if "no such table" not in str(exc):  # only the recorder's first instant
                        raise
                    found = None
                finally:
                    db.close()
                if found is not None:
                    return found
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s:g} s awaiting {what}; last seen {last!r}")

    def latest(self, channel: str) -> Any:
        """Latest recorded value of ``component.channel`` (None before the first packet)."""
        comp, _, name = channel.partition(".")
        rows = self._rows("SELECT body FROM tm WHERE name = ? ORDER BY rowid DESC LIMIT 1", (f"{comp}.hk",))
        return decode(rows[0][0]).data.get(name) if rows else None

    def await_telemetry(self, channel: str, within: tuple[float, float] | None = None, equals: Any = None,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """Wait until ``component.channel`` has a value in ``within`` (or equal to ``equals``)."""
        comp, _, name = channel.partition(".")

        def probe(db):
            rows = db.execute("SELECT body FROM tm WHERE name = ? ORDER BY rowid DESC LIMIT 20",
                              (f"{comp}.hk",)).fetchall()
            values = [decode(r[0]).data.get(name) for r in rows]
            for v in values:
                if (within is not None and v is not None and within[0] <= v <= within[1]) or \
                   (within is None and v == equals):
                    return v, values[:1]
            return None, values[:1]

        return self._poll(f"telemetry {channel} {within or equals}", probe, timeout_s)

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

    def await_event(self, name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
        """Wait for an event called ``name``; return its message."""
        def probe(db):
            row = db.execute("SELECT message FROM ev WHERE name = ? LIMIT 1", (name,)).fetchone()
            return (row[0] if row else None), None

        return self._poll(f"event {name}", probe, timeout_s)

    def events(self, name: str) -> list[str]:
        return [message for (message,) in self._rows("SELECT message FROM ev WHERE name = ?", (name,))]
