"""Orbits for tests: a circular SGP4 orbit at a chosen beta angle (``circular_orbit``), the
March 2021 equinox to fly it at (``EQUINOX``), and an orbit's eclipse time
(``eclipse_minutes``)."""

import math
from datetime import datetime, timezone

import numpy as np
from sgp4.api import WGS72, Satrec, jday

from flight.core.orbit import Orbit, sun_position_km
from sim_hw.params import SimParams

P = SimParams()
MU_WGS72 = 398600.8  # km³/s², the gravity model sgp4init uses
SGP4_EPOCH0 = datetime(1949, 12, 31, tzinfo=timezone.utc)
EQUINOX = datetime(2021, 3, 20, 9, 37, tzinfo=timezone.utc)


def circular_orbit(altitude_km: float, beta_deg: float, when: datetime, incl_deg: float = 90.0) -> Satrec:
    """A circular orbit whose plane makes ``beta_deg`` with the Sun direction at ``when``.

    With orbit normal h = (sin i sin Ω, −sin i cos Ω, cos i) and the Sun at right ascension
    α and declination δ: sin β = sin i cos δ sin(Ω − α) + cos i sin δ.
    """
    jd, fr = jday(when.year, when.month, when.day, when.hour, when.minute, when.second)
    (x, y, z), _ = sun_position_km(jd, fr, P.au_km)
    alpha, delta = math.atan2(y, x), math.asin(z / math.sqrt(x * x + y * y + z * z))
    i = math.radians(incl_deg)
    s = (math.sin(math.radians(beta_deg)) - math.cos(i) * math.sin(delta)) / (math.sin(i) * math.cos(delta))
    raan = (alpha + math.asin(s)) % (2 * math.pi)
    a = P.earth_radius_km + altitude_km
    n_rad_min = math.sqrt(MU_WGS72 / a**3) * 60.0
    sat = Satrec()
    epoch_days = (when - SGP4_EPOCH0).total_seconds() / 86400.0
    sat.sgp4init(WGS72, "i", 99999, epoch_days, 0.0, 0.0, 0.0, 1e-7, 0.0, i, 0.0, n_rad_min, raan)
    return sat


def eclipse_minutes(orbit: Orbit) -> tuple[float, float]:
    """Time with sun_fraction < 0.5 over one period (1 s steps), and the mean beta angle."""
    n = int(orbit.period_s)
    dark, betas = 0, []
    for t in range(n):
        st = orbit.at(float(t))
        dark += st.sun_fraction < 0.5
        betas.append(st.beta_angle_deg)
    return dark / 60.0, float(np.mean(betas))
