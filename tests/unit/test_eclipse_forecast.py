"""The flight software's eclipse forecast against the simulator's own shadow."""

import pytest

from flight.subsystems.power.eclipse_forecast import EclipseForecast
from flight.core.orbit import Orbit
from flight.core.tle import DEFAULT_TLE_NAME, DEFAULT_TLE_PATH, load_tle
from sim_hw.params import SimParams
from tests.support.orbits import EQUINOX, circular_orbit

_, TLE = load_tle(DEFAULT_TLE_PATH, DEFAULT_TLE_NAME)


def shadow_intervals(orbit: Orbit, until_s: int) -> list[tuple[int, int]]:
    """Shadow passages (sun_fraction < 1) sampled every second: [(first dark s, first lit s)]."""
    out, start = [], None
    for t in range(until_s):
        dark = orbit.at(float(t)).sun_fraction < 1.0
        if dark and start is None:
            start = t
        elif not dark and start is not None:
            out.append((start, t))
            start = None
    return out


def test_forecast_matches_the_simulated_shadow_edges_within_a_second():
    truth = shadow_intervals(Orbit.from_tle(*TLE, SimParams()), 3 * 5739)
    forecast = EclipseForecast.from_tle(TLE)
    assert len(truth) >= 2
    t = 0.0
    for start, end in truth:
        if start == 0:  # the run began in shadow: the passage under way at t=0
            assert forecast.next_eclipse(0.0).end_s == pytest.approx(end, abs=1.0)
            t = end + 1.0
            continue
        ecl = forecast.next_eclipse(t)
        assert ecl.start_s == pytest.approx(start, abs=1.0)
        assert ecl.end_s == pytest.approx(end, abs=1.0)
        # Inside the passage it is still the one reported (start in the past).
        assert forecast.next_eclipse(start + 60.0) == ecl
        t = end + 1.0


def test_a_forecast_asked_mid_eclipse_finds_where_it_began():
    truth = shadow_intervals(Orbit.from_tle(*TLE, SimParams()), 2 * 5739)
    start, end = next((s, e) for s, e in truth if s > 0)
    ecl = EclipseForecast.from_tle(TLE).next_eclipse(start + 300.0)
    assert ecl.start_s == pytest.approx(start, abs=1.0)
    assert ecl.end_s == pytest.approx(end, abs=1.0)


def test_no_eclipse_at_a_high_beta_angle():
    forecast = EclipseForecast(Orbit(circular_orbit(550.0, 75.0, EQUINOX), SimParams()))
    assert forecast.next_eclipse(0.0) is None
    assert forecast.next_eclipse(1000.0) is None


def test_a_tle_needs_two_lines():
    with pytest.raises(ValueError):
        EclipseForecast.from_tle(TLE[:1])
