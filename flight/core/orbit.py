"""Orbit and illumination: SGP4 position, Sun position, Earth shadow, beta angle, geodesy.

All vectors are in kilometres in the TEME frame that SGP4 produces (treated as the ECI frame
of the HAL; the low-precision Sun is in the mean-of-date frame, which differs from TEME by
the equation of the equinoxes, < 0.005°). UTC is used in place of UT1 and TT (< 70 s, far
below the accuracy of the low-precision solar ephemeris).

Models and sources:

* propagation: the ``sgp4`` library (Vallado, Crawford, Hujsak & Kelso, AIAA 2006-6753);
* Sun: Astronomical Almanac low-precision formulas, Vallado (2013) Algorithm 29, ~0.01°;
* shadow: conical umbra/penumbra with a spherical Earth, Montenbruck & Gill (2000) §3.4.2;
* Earth rotation: GMST of IAU-82, Vallado (2013) Eq. 3-47 (TEME → pseudo Earth-fixed);
* geodetic latitude and height: WGS-84, iterative method of Vallado (2013) Algorithm 12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from typing import Protocol

from sgp4.api import SGP4_ERRORS, Satrec

_DEG = math.pi / 180.0
_J2000 = 2451545.0
_UNIX_EPOCH_JD = 2440587.5
_GEODETIC_ITERATIONS = 4
"""Four iterations converge the latitude to < 1e-12 rad for LEO altitudes."""


class EarthSunConstants(Protocol):
    """The constants the orbit geometry needs (``sim_hw.params.SimParams`` has them all)."""

    au_km: float
    sun_radius_km: float
    earth_radius_km: float
    earth_flattening: float


@dataclass(frozen=True, slots=True)
class WGS84:
    """Default :class:`EarthSunConstants` for the flight software's own propagation."""

    au_km: float = 149_597_870.7
    """IAU 2012 Resolution B2."""
    sun_radius_km: float = 695_700.0
    """IAU 2015 Resolution B3, nominal solar radius."""
    earth_radius_km: float = 6378.137
    """WGS-84 equatorial radius."""
    earth_flattening: float = 1 / 298.257223563
    """WGS-84."""


class OrbitError(RuntimeError):
    """SGP4 could not propagate (decayed orbit, eccentricity out of range, ...)."""


@dataclass(frozen=True, slots=True)
class OrbitState:
    """Position and illumination at one instant.

    Attributes:
        t_s: seconds since the run epoch.
        utc_unix_s: UTC as Unix seconds.
        r_teme_km: satellite position (x, y, z), km, TEME.
        r_ecef_km: satellite position, km, pseudo Earth-fixed (polar motion neglected).
        latitude_deg: geodetic latitude, [-90, 90].
        longitude_deg: longitude, [-180, 180).
        altitude_km: height above the WGS-84 ellipsoid.
        sun_unit: unit vector satellite → Sun, TEME.
        sun_distance_au: Earth–Sun distance, au.
        sun_fraction: visible fraction of the solar disc, [0, 1].
        beta_angle_deg: angle between the orbit plane and the Earth → Sun line, [-90, 90].
        cos_sun_zenith: cosine of the Sun's zenith angle at the sub-satellite point (drives
            the albedo flux), [-1, 1].
    """

    t_s: float
    utc_unix_s: float
    r_teme_km: tuple[float, float, float]
    r_ecef_km: tuple[float, float, float]
    latitude_deg: float
    longitude_deg: float
    altitude_km: float
    sun_unit: tuple[float, float, float]
    sun_distance_au: float
    sun_fraction: float
    beta_angle_deg: float
    cos_sun_zenith: float


def sun_position_km(jd: float, fr: float, au_km: float) -> tuple[tuple[float, float, float], float]:
    """Geocentric Sun position, mean equator and equinox of date (AA low precision).

    Args:
        jd, fr: Julian date split into two parts (UTC, used for UT1 and TDB).
        au_km: astronomical unit in km.

    Returns:
        ``((x, y, z) km, distance au)``.
    """
    t = ((jd - _J2000) + fr) / 36525.0
    lam_m = (280.460 + 36000.771 * t) * _DEG
    m = (357.5291092 + 35999.05034 * t) * _DEG
    lam = lam_m + (1.914666471 * math.sin(m) + 0.019994643 * math.sin(2 * m)) * _DEG
    r_au = 1.000140612 - 0.016708617 * math.cos(m) - 0.000139589 * math.cos(2 * m)
    eps = (23.439291 - 0.0130042 * t) * _DEG
    r = r_au * au_km
    sl = math.sin(lam)
    return (r * math.cos(lam), r * math.cos(eps) * sl, r * math.sin(eps) * sl), r_au


def gmst_rad(jd: float, fr: float) -> float:
    """Greenwich mean sidereal time (IAU-82), radians in [0, 2π)."""
    t = ((jd - _J2000) + fr) / 36525.0
    sec = 67310.54841 + (876600.0 * 3600.0 + 8640184.812866) * t + 0.093104 * t * t - 6.2e-6 * t**3
    return (sec % 86400.0) / 240.0 * _DEG


def shadow_fraction(r: tuple[float, float, float], r_sun: tuple[float, float, float],
                    earth_radius_km: float, sun_radius_km: float) -> float:
    """Visible fraction of the solar disc seen from ``r`` (conical model, M&G §3.4.2).

    Args:
        r: satellite position, km (geocentric).
        r_sun: Sun position, km (geocentric, same frame).

    Returns:
        1 in full sunlight, 0 in umbra, the unobstructed disc fraction in penumbra.
    """
    sx, sy, sz = r_sun[0] - r[0], r_sun[1] - r[1], r_sun[2] - r[2]
    d_sun = math.sqrt(sx * sx + sy * sy + sz * sz)
    d_sat = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
    a = math.asin(sun_radius_km / d_sun)
    b = math.asin(min(1.0, earth_radius_km / d_sat))
    cos_c = -(r[0] * sx + r[1] * sy + r[2] * sz) / (d_sat * d_sun)
    c = math.acos(max(-1.0, min(1.0, cos_c)))
    if c >= a + b:
        return 1.0
    if c <= b - a:
        return 0.0
    # Partial overlap of the two discs (b > a always holds below GEO).
    x = (c * c + a * a - b * b) / (2.0 * c)
    y = math.sqrt(max(0.0, a * a - x * x))
    area = a * a * math.acos(max(-1.0, min(1.0, x / a))) + b * b * math.acos(max(-1.0, min(1.0, (c - x) / b))) - c * y
    return min(1.0, max(0.0, 1.0 - area / (math.pi * a * a)))


def geodetic(r_ecef: tuple[float, float, float], a_km: float, flattening: float) -> tuple[float, float, float]:
    """Geodetic latitude (deg), longitude (deg, [-180, 180)) and height (km) on an ellipsoid."""
    x, y, z = r_ecef
    e2 = flattening * (2.0 - flattening)
    rho = math.hypot(x, y)
    lon = math.atan2(y, x)
    lat = math.atan2(z, rho)
    c = a_km
    for _ in range(_GEODETIC_ITERATIONS):
        s = math.sin(lat)
        c = a_km / math.sqrt(1.0 - e2 * s * s)
        lat = math.atan2(z + c * e2 * s, rho)
    s, co = math.sin(lat), math.cos(lat)
    # Use the better-conditioned expression away from the poles / the equator.
    alt = rho / co - c if abs(co) > 0.1 else z / s - c * (1.0 - e2)
    lon_deg = lon / _DEG
    if lon_deg >= 180.0:
        lon_deg -= 360.0
    return lat / _DEG, lon_deg, alt


class Orbit:
    """One satellite's trajectory from a ``Satrec``, with illumination and geodesy.

    Args:
        satrec: an initialised ``sgp4.api.Satrec`` (from a TLE or ``sgp4init``).
        params: physical constants (Earth and Sun radii, au, ellipsoid), e.g. :class:`WGS84`
            or the simulator's ``SimParams``.
        start_utc: run epoch (``time_s = 0``); defaults to the element-set epoch. A naive
            datetime is taken as UTC.

    Attributes:
        epoch_utc: the run epoch (aware datetime, UTC).
        period_s: anomalistic period from the SGP4 mean motion, s.
    """

    def __init__(self, satrec: Satrec, params: EarthSunConstants, start_utc: datetime | None = None) -> None:
        self._sat = satrec
        self._p = params
        if start_utc is None:
            jd, fr = satrec.jdsatepoch, satrec.jdsatepochF
            unix = ((jd - _UNIX_EPOCH_JD) + fr) * 86400.0
            self.epoch_utc = datetime.fromtimestamp(unix, tz=timezone.utc)
        else:
            if start_utc.tzinfo is None:
                start_utc = start_utc.replace(tzinfo=timezone.utc)
            self.epoch_utc = start_utc.astimezone(timezone.utc)
            unix = self.epoch_utc.timestamp()
            days = unix / 86400.0
            jd, fr = _UNIX_EPOCH_JD + math.floor(days), days - math.floor(days)
        self._jd, self._fr = float(jd), float(fr)
        self._unix0 = unix
        self.period_s = 2.0 * math.pi / satrec.no_kozai * 60.0

    @classmethod
    def from_tle(cls, line1: str, line2: str, params: EarthSunConstants, start_utc: datetime | None = None) -> Orbit:
        """Build from two TLE lines.

        Raises:
            ValueError: the lines do not parse as a TLE.
        """
        try:
            sat = Satrec.twoline2rv(line1, line2)
        except Exception as exc:
            raise ValueError(f"bad TLE: {exc}") from None
        if sat.error:
            raise ValueError(f"bad TLE: {SGP4_ERRORS.get(sat.error, sat.error)}")
        return cls(sat, params, start_utc)

    def at(self, t_s: float) -> OrbitState:
        """State at ``t_s`` seconds after the run epoch.

        Raises:
            OrbitError: SGP4 reports an error (e.g. the orbit has decayed).
        """
        p = self._p
        fr = self._fr + t_s / 86400.0
        err, r, v = self._sat.sgp4(self._jd, fr)
        if err:
            raise OrbitError(f"SGP4 error {err} at t={t_s:.1f} s: {SGP4_ERRORS.get(err, '?')}")
        r_sun, r_au = sun_position_km(self._jd, fr, p.au_km)
        frac = shadow_fraction(r, r_sun, p.earth_radius_km, p.sun_radius_km)

        d_es = r_au * p.au_km
        ex, ey, ez = r_sun[0] / d_es, r_sun[1] / d_es, r_sun[2] / d_es
        sx, sy, sz = r_sun[0] - r[0], r_sun[1] - r[1], r_sun[2] - r[2]
        d_s = math.sqrt(sx * sx + sy * sy + sz * sz)
        hx, hy, hz = r[1] * v[2] - r[2] * v[1], r[2] * v[0] - r[0] * v[2], r[0] * v[1] - r[1] * v[0]
        h = math.sqrt(hx * hx + hy * hy + hz * hz)
        beta = math.asin(max(-1.0, min(1.0, (hx * ex + hy * ey + hz * ez) / h))) / _DEG
        d_sat = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
        cos_zen = (r[0] * ex + r[1] * ey + r[2] * ez) / d_sat

        th = gmst_rad(self._jd, fr)
        c, s = math.cos(th), math.sin(th)
        r_ecef = (c * r[0] + s * r[1], -s * r[0] + c * r[1], r[2])
        lat, lon, alt = geodetic(r_ecef, p.earth_radius_km, p.earth_flattening)
        return OrbitState(
            t_s=t_s,
            utc_unix_s=self._unix0 + t_s,
            r_teme_km=r,
            r_ecef_km=r_ecef,
            latitude_deg=lat,
            longitude_deg=lon,
            altitude_km=alt,
            sun_unit=(sx / d_s, sy / d_s, sz / d_s),
            sun_distance_au=r_au,
            sun_fraction=frac,
            beta_angle_deg=beta,
            cos_sun_zenith=cos_zen,
        )
