"""Onboard time never goes backwards: the mission record of a data directory.

A data directory is one mission: its job store, schedule, packet stores and parameters all
speak of onboard time. A reboot of the flight computer (a new ``flight run`` on the same
directory) must find the clock where it was or later; a rig whose clock went back (a
simulator restarted at the TLE epoch, a test rig reset) would make stored deadlines and
time-tagged commands look like the future.

``<data dir>/mission.json`` (:data:`MISSION_FILE`, replaced atomically): ``tle`` (the two
lines the mission flies), ``scenario`` (its name, empty for none), ``started_utc`` (ISO 8601,
when the mission was first flown) and ``utc_floor_s``: the latest onboard UTC (Unix s) known
to be durable. With the simulator that is the UTC of the simulator's last saved state
(:mod:`sim_hw.persist`), which the satellite resumes from; with an external rig (``--hal``),
whose clock keeps counting on its own, the latest UTC the bridge saw, saved every
:data:`SAVE_PERIOD_S` and at the end.

:class:`OnboardClock` is the HAL bridge's check: a frame whose UTC is before the floor or
before the previous frame is refused (event ``hal.clock_backwards``) and the bridge process
ends with :data:`REFUSED_EXIT`, which ends the run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from flight.core.storage import WriteBehind, write_atomic

MISSION_FILE = "mission.json"
SAVE_PERIOD_S = 60.0
"""Onboard seconds between two saves of the floor when the bridge keeps it itself (external rig)."""
REFUSED_EXIT = 3
"""Exit status of a bridge process that refused to run on because onboard time went backwards;
the executive ends the run on it rather than restarting the bridge into the same refusal."""


class MissionError(Exception):
    """``mission.json`` exists but cannot be read or is malformed; the message names the file."""


def iso_utc(utc_unix_s: float) -> str:
    """ISO 8601 (``2026-12-04T05:06:07.123456+00:00``) of a Unix time."""
    return datetime.fromtimestamp(utc_unix_s, timezone.utc).isoformat()


@dataclass
class Mission:
    """What :data:`MISSION_FILE` holds (see the module docstring)."""

    tle: tuple[str, str]
    scenario: str = ""
    started_utc: str = ""
    utc_floor_s: float | None = None

    def differs(self, tle: tuple[str, str], scenario: str) -> str:
        """Why flying ``tle``/``scenario`` on this mission's directory would be another mission
        (empty when it is the same one)."""
        if [line.strip() for line in self.tle] != [line.strip() for line in tle]:
            return (f"it flies another element set (saved line 1: {self.tle[0].strip()!r}, "
                    f"given: {tle[0].strip()!r})")
        if self.scenario != scenario:
            return f"it flies scenario {self.scenario or '(none)'!r}, not {scenario or '(none)'!r}"
        return ""


def read_mission(data_dir: Path) -> Mission | None:
    """The mission of ``data_dir``, or ``None`` for a directory that has none yet.

    Raises:
        MissionError: the file is unreadable or malformed.
    """
    path = data_dir / MISSION_FILE
    try:
        raw = json.loads(path.read_text())
        mission = Mission(tuple(raw["tle"]), str(raw.get("scenario", "")), str(raw.get("started_utc", "")),
                          None if raw.get("utc_floor_s") is None else float(raw["utc_floor_s"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MissionError(f"{path}: {type(exc).__name__}: {exc}") from None
    if len(mission.tle) != 2:
        raise MissionError(f"{path}: 'tle' must hold two lines")
    return mission


def write_mission(data_dir: Path, mission: Mission) -> None:
    """Replace the mission record of ``data_dir`` atomically.

    Raises:
        OSError: not written (the previous record stays).
    """
    write_atomic(data_dir / MISSION_FILE, _text(mission))


def _text(mission: Mission) -> str:
    return json.dumps(asdict(mission), indent=1)


class OnboardClock:
    """The bridge's clock check over one data directory (``None``: checks within the run only,
    saves nothing — a bridge in a unit test).

    ``autosave``: keep the floor from the frames themselves (an external rig); otherwise the
    transport calls :meth:`save` with the UTC its in-process simulator has saved.

    Raises:
        MissionError: the mission record is malformed.
    """

    def __init__(self, data_dir: Path | None, autosave: bool = True) -> None:
        self.data_dir = data_dir
        self.mission = read_mission(data_dir) if data_dir is not None else None
        floor = self.mission.utc_floor_s if self.mission is not None else None
        self.latest_s = -math.inf if floor is None else floor
        """The latest onboard UTC seen or recorded (Unix s); a frame before it went backwards."""
        self.autosave = autosave and self.mission is not None
        self.saved_s = self.latest_s
        self.save_failures = 0
        self.writer = WriteBehind("mission record")
        """Writes the record off the lockstep loop; :meth:`close` waits for it."""

    def went_back(self, utc_unix_s: float) -> bool:
        """Whether a frame at ``utc_unix_s`` is before the latest onboard time (refuse it);
        otherwise take it as the latest, saving it every :data:`SAVE_PERIOD_S` if ``autosave``."""
        if utc_unix_s < self.latest_s:
            return True
        self.latest_s = utc_unix_s
        if self.autosave and utc_unix_s >= self.saved_s + SAVE_PERIOD_S:
            self.save(utc_unix_s)
        return False

    def save(self, utc_unix_s: float) -> None:
        """Record ``utc_unix_s`` as the floor (never lowering it), written in the background
        (:class:`flight.core.storage.WriteBehind`); a failed write is counted and retried at
        the next save."""
        self._count(self.writer.done())
        if self.mission is None or utc_unix_s <= (self.mission.utc_floor_s or -math.inf):
            return
        self.saved_s = utc_unix_s
        self.mission.utc_floor_s = utc_unix_s
        self.writer.write(self.data_dir / MISSION_FILE, _text(self.mission))

    def close(self) -> None:
        """Wait until the floor last saved is on disk (the end of the run)."""
        self._count(self.writer.drain())

    def _count(self, done: list) -> None:
        self.save_failures += sum(error is not None for _, error in done)
