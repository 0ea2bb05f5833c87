"""Run configuration shared by the executive and every process it starts.

The executive builds one :class:`RunConfig` and hands it to each child as JSON on its
command line, so every process of a run agrees on endpoints, tick and mode.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flight.core.bus import BusAddress

SUBSYSTEMS = ("power", "thermal", "jobs", "link")
"""The flight subsystems, one OS process each, in start order."""


@dataclass
class RunConfig:
    """Everything a flight process needs to join a run.

    ``speed`` is ``None`` for lockstep (as fast as the slowest participant) or a factor of
    real time (1.0 = real time) for wall-clock-paced ticks.
    """

    bus: BusAddress
    data_dir: str
    tick_s: float = 1.0
    speed: float | None = None
    seed: int = 0
    contact: str = "passes"
    link_endpoint: str = "127.0.0.1:52001"
    hal_endpoint: str = ""
    heartbeat_s: float = 0.5
    parent_pid: int = 0
    participants: tuple[str, ...] = SUBSYSTEMS
    hk_period_ticks: int = 10
    last_tick: int = 0
    """The run's final tick (0: open-ended); housekeeping is also published on it."""
    params: dict = field(default_factory=dict)
    keys_dir: str = ""
    """Directory of the ground-station keys the link authenticates telecommands with
    (:mod:`flight.spacelink.keys`)."""
    unauthenticated_lab: bool = False
    """Lab mode: the link takes telecommands without authentication (loopback only)."""
    tle_lines: tuple[str, ...] = ()
    """The onboard element set (two TLE lines) the flight software forecasts eclipses from
    (:mod:`flight.subsystems.power.eclipse_forecast`); empty when none was uploaded. The run epoch is the
    element-set epoch, as in the simulator."""

    def housekeeping_due(self, tick: int) -> bool:
        """Whether housekeeping is published on ``tick``: every ``hk_period_ticks`` and on the last."""
        return tick % self.hk_period_ticks == 0 or tick == self.last_tick

    @property
    def lockstep(self) -> bool:
        return self.speed is None

    @property
    def tick_wall_s(self) -> float | None:
        """Wall seconds per tick when paced, ``None`` in lockstep."""
        return None if self.speed is None else self.tick_s / self.speed

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        raw = json.loads(text)
        raw["bus"] = BusAddress(**raw["bus"])
        raw["participants"] = tuple(raw["participants"])
        raw["tle_lines"] = tuple(raw.get("tle_lines", ()))
        return cls(**raw)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)
