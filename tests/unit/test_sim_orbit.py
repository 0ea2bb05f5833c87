"""Orbit (flight.core.orbit), Sun, shadow, geodesy and ground visibility against published values."""

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from sgp4.api import jday

from sim_hw.ground import GroundNetwork, Station, load_stations
from flight.core.tle import load_tle
from flight.core.orbit import Orbit, geodetic, gmst_rad, shadow_fraction, sun_position_km
from sim_hw.params import SimParams
from tests.support.orbits import EQUINOX, circular_orbit, eclipse_minutes

P = SimParams()


@pytest.mark.parametrize("beta, minutes", [(0.0, 35.6), (30.0, 33.6), (45.0, 30.0), (60.0, 20.5), (65.0, 12.0)])
def test_eclipse_duration_at_550_km_matches_the_textbook_values(beta, minutes):
    orbit = Orbit(circular_orbit(550.0, beta, EQUINOX), P)
    dark, mean_beta = eclipse_minutes(orbit)
    assert mean_beta == pytest.approx(beta, abs=0.5)
    assert dark == pytest.approx(minutes, rel=0.02)


def test_no_eclipse_at_high_beta():
    orbit = Orbit(circular_orbit(550.0, 70.0, EQUINOX), P)
    dark, mean_beta = eclipse_minutes(orbit)
    assert mean_beta == pytest.approx(70.0, abs=0.5)
    assert dark == 0.0


def test_sgp4_reproduces_the_vallado_verification_vectors():
    # SGP4-VER.TLE satellite 00005 and tcppver.out (Vallado et al., AIAA 2006-6753).
    l1 = "1 00005U 58002B   00179.78495062  .00000023  00000-0  28098-4 0  4753"
    l2 = "2 00005  34.2682 348.7242 1859667 331.7664  19.3264 10.82419157413667"
    orbit = Orbit.from_tle(l1, l2, P)
    np.testing.assert_allclose(orbit.at(0.0).r_teme_km, [7022.46529266, -1400.08296755, 0.03995155], atol=1e-6)
    np.testing.assert_allclose(orbit.at(360 * 60.0).r_teme_km, [-7154.03120202, -3783.17682504, -3536.19412294],
                               atol=1e-5)


def test_default_tle_is_the_550_km_design_orbit():
    name, tle = load_tle(P_TLE)
    orbit = Orbit.from_tle(*tle, P)
    assert orbit.period_s == pytest.approx(5739, abs=2)
    alts = [orbit.at(t).altitude_km for t in range(0, 5739, 60)]
    assert 530 < min(alts) and max(alts) < 580


P_TLE = "flight/data/tle-real.txt"


def test_load_tle_by_name_and_errors(tmp_path):
    name, (l1, l2) = load_tle(P_TLE, "ISS (ZARYA)")
    assert name == "ISS (ZARYA)" and l1.startswith("1 25544")
    with pytest.raises(ValueError):
        load_tle(P_TLE, "NO SUCH SAT")
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    with pytest.raises(ValueError):
        load_tle(bad)
    with pytest.raises(ValueError):
        Orbit.from_tle("1 garbage", "2 garbage", P)


@pytest.mark.parametrize("when, ra_deg, dec_deg", [
    (datetime(2021, 3, 20, 9, 37, tzinfo=timezone.utc), 0.0, 0.0),     # March equinox (USNO)
    (datetime(2020, 6, 20, 21, 44, tzinfo=timezone.utc), 90.0, 23.44),  # June solstice (USNO)
])
def test_sun_direction_at_equinox_and_solstice(when, ra_deg, dec_deg):
    jd, fr = jday(when.year, when.month, when.day, when.hour, when.minute, 0)
    (x, y, z), _ = sun_position_km(jd, fr, P.au_km)
    ra = math.degrees(math.atan2(y, x)) % 360
    dec = math.degrees(math.asin(z / math.sqrt(x * x + y * y + z * z)))
    assert min(abs(ra - ra_deg), 360 - abs(ra - ra_deg)) < 0.05 and abs(dec - dec_deg) < 0.05


def test_sun_distance_at_perihelion_and_aphelion():
    for (y, m, d, h), au in [((2020, 1, 5, 8), 0.98324), ((2020, 7, 4, 12), 1.01669)]:
        _, r_au = sun_position_km(*jday(y, m, d, h, 0, 0), P.au_km)
        assert r_au == pytest.approx(au, abs=2e-4)


def test_gmst_matches_vallado_example_3_5():
    assert math.degrees(gmst_rad(*jday(1992, 8, 20, 12, 14, 0))) == pytest.approx(152.578787886, abs=1e-6)


def test_shadow_fraction_full_partial_and_umbra():
    r_sun = (P.au_km, 0.0, 0.0)
    assert shadow_fraction((0.0, 7000.0, 0.0), r_sun, P.earth_radius_km, P.sun_radius_km) == 1.0
    assert shadow_fraction((-7000.0, 0.0, 0.0), r_sun, P.earth_radius_km, P.sun_radius_km) == 0.0
    # Across the penumbra the fraction rises monotonically from 0 to 1.
    ys = np.linspace(6300, 6450, 200)
    fr = [shadow_fraction((-7000.0, y, 0.0), r_sun, P.earth_radius_km, P.sun_radius_km) for y in ys]
    assert fr[0] == 0.0 and fr[-1] == 1.0 and np.all(np.diff(fr) >= 0) and 0 < fr[100] < 1


def test_geodetic_equator_and_pole():
    lat, lon, alt = geodetic((P.earth_radius_km + 550.0, 0.0, 0.0), P.earth_radius_km, P.earth_flattening)
    assert (lat, lon, alt) == pytest.approx((0.0, 0.0, 550.0), abs=1e-9)
    b = P.earth_radius_km * (1 - P.earth_flattening)
    lat, _, alt = geodetic((0.0, 1e-9, b + 550.0), P.earth_radius_km, P.earth_flattening)
    assert lat == pytest.approx(90.0, abs=1e-6) and alt == pytest.approx(550.0, abs=1e-6)


def test_elevation_is_90_overhead_and_contact_follows_the_mask():
    st = Station("x", 45.0, 10.0, 0.0)
    net = GroundNetwork([st], P)
    up = net._up[0]
    overhead = tuple(net._pos[0] + 550.0 * up)
    sid, el, contact = net.best(overhead)
    assert (sid, contact) == (0, True) and el == pytest.approx(90.0, abs=1e-5)
    far = tuple(-np.asarray(overhead))
    sid, el, contact = net.best(far)
    assert (sid, contact) == (-1, False) and el < 0


def test_the_default_orbit_has_ground_passes():
    stations = load_stations()
    assert len(stations) >= 4
    net = GroundNetwork(stations, P)
    orbit = Orbit.from_tle(*load_tle(P_TLE)[1], P)
    contacts = sum(net.best(orbit.at(float(t)).r_ecef_km)[2] for t in range(0, 86400, 30))
    assert 0 < contacts < 86400 / 30 / 2
