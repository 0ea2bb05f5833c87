"""When the next eclipse starts and ends, from the onboard element set.

The power manager and the job runner plan against the coming eclipse, not the worst one: the
battery must enter the shadow holding enough energy to carry the planned load to sunrise,
and a job that the battery will not carry through is checkpointed before the shadow comes.
The forecast propagates the run's TLE with :mod:`flight.core.orbit` (SGP4, low-precision Sun,
conical shadow: the same models the simulator uses, so in simulation the forecast and the
truth agree to the bisection tolerance; against a rig they agree as well as its orbit does).

An eclipse here is any part of the Sun's disc hidden (``sun_fraction < 1``, penumbra
included): the array's output already falls in the penumbra, so planning from first contact
to last contact is the conservative choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flight.core.orbit import WGS84, Orbit

SCAN_STEP_S = 30.0
"""Coarse step of the search, s. The shortest eclipse a 550 km orbit can have (grazing, near
β = 67°) lasts minutes, so a 30 s step cannot step over one."""
EDGE_TOLERANCE_S = 0.5
"""Bisection stops when an edge is known to this, s."""
HORIZON_ORBITS = 1.5
"""How far ahead to look, in orbital periods: any orbit with an eclipse has one within this."""


@dataclass(frozen=True, slots=True)
class Eclipse:
    """One shadow passage, seconds since the run epoch: ``start_s`` (first contact) to
    ``end_s`` (last contact)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EclipseForecast:
    """Predicts eclipses along one orbit (build it with :meth:`from_tle`).

    Args:
        orbit: the propagator, time 0 at the run epoch.

    Results are cached: asking again before the forecast eclipse has ended costs nothing,
    so the power manager may call :meth:`next_eclipse` every tick.
    """

    def __init__(self, orbit: Orbit) -> None:
        self.orbit = orbit
        self.period_s = orbit.period_s
        self._cached: Eclipse | None = None
        self._none_until_s = -1.0

    @classmethod
    def from_tle(cls, tle_lines: tuple[str, ...], epoch_utc: datetime | None = None) -> EclipseForecast:
        """Forecast for the onboard TLE (two lines); ``epoch_utc`` is the run epoch, ``None``
        for the element-set epoch (what the simulator uses by default).

        Raises:
            ValueError: the lines are not two lines of a valid TLE.
        """
        if len(tle_lines) != 2:
            raise ValueError(f"a TLE has two lines, got {len(tle_lines)}")
        return cls(Orbit.from_tle(tle_lines[0], tle_lines[1], WGS84(), epoch_utc))

    def in_shadow(self, t_s: float) -> bool:
        """Whether any of the Sun's disc is hidden at ``t_s``."""
        return self.orbit.at(t_s).sun_fraction < 1.0

    def next_eclipse(self, t_s: float) -> Eclipse | None:
        """The eclipse under way at ``t_s`` (then ``start_s <= t_s``) or the next one to start.

        Returns ``None`` when no eclipse starts within :data:`HORIZON_ORBITS` periods (high
        beta angle: the orbit is in continuous sunlight for now).

        Raises:
            flight.core.orbit.OrbitError: SGP4 cannot propagate (decayed element set).
        """
        if self._cached is not None and t_s < self._cached.end_s:
            return self._cached
        if t_s < self._none_until_s:
            return None
        horizon_s = t_s + HORIZON_ORBITS * self.period_s
        start = t_s if self.in_shadow(t_s) else self._scan(t_s, horizon_s, shadow=True)
        if start is None:
            self._cached = None
            self._none_until_s = t_s + SCAN_STEP_S * 10
            return None
        if start > t_s:
            start = self._edge(start - SCAN_STEP_S, start)
        else:
            # Already in shadow: find where this passage began, for the record.
            back = self._scan_back(t_s)
            start = self._edge(back, back + SCAN_STEP_S) if back is not None else t_s
        end = self._scan(start, start + self.period_s, shadow=False)
        end = self._edge(end - SCAN_STEP_S, end) if end is not None else start + self.period_s
        self._cached = Eclipse(start, end)
        return self._cached

    def _scan(self, t0: float, t1: float, shadow: bool) -> float | None:
        """First sample time after ``t0`` (step :data:`SCAN_STEP_S`) whose shadow state is
        ``shadow``, or ``None`` before ``t1``."""
        t = t0 + SCAN_STEP_S
        while t <= t1:
            if self.in_shadow(t) == shadow:
                return t
            t += SCAN_STEP_S
        return None

    def _scan_back(self, t_s: float) -> float | None:
        """Last sunlit sample before ``t_s`` (which is in shadow), within one period."""
        t = t_s - SCAN_STEP_S
        while t > t_s - self.period_s:
            if not self.in_shadow(t):
                return t
            t -= SCAN_STEP_S
        return None

    def _edge(self, a: float, b: float) -> float:
        """The shadow edge between ``a`` and ``b`` (opposite states), by bisection; returns
        the time on ``b``'s side, within :data:`EDGE_TOLERANCE_S`."""
        state_b = self.in_shadow(b)
        while b - a > EDGE_TOLERANCE_S:
            mid = 0.5 * (a + b)
            if self.in_shadow(mid) == state_b:
                b = mid
            else:
                a = mid
        return b
