"""Ground stations and the Ka-band downlink: elevation angles, contact, data rate.

Stations are read from ``sim_hw/data/ground-stations.csv`` (``name,latitude_deg,
longitude_deg,altitude_m``, public locations). Station positions are WGS-84 geodetic
coordinates converted to Earth-fixed vectors (Vallado 2013, Algorithm 51); the elevation
is the angle between the station → satellite line and the station's local horizontal plane
(the plane normal to the ellipsoid normal). Refraction is neglected (< 0.1° above 10°).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_hw.params import SimParams

DEFAULT_STATIONS = Path(__file__).with_name("data") / "ground-stations.csv"


@dataclass(frozen=True)
class Station:
    """One ground station: name, geodetic latitude/longitude (deg) and height (m)."""

    name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float


def load_stations(path: str | Path = DEFAULT_STATIONS) -> list[Station]:
    """Stations from a CSV file; ``#`` lines are comments.

    Raises:
        ValueError: a row does not have four fields or its numbers are out of range.
    """
    stations = []
    with open(path, newline="") as fh:
        for row in csv.reader(ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")):
            if len(row) != 4:
                raise ValueError(f"{path}: expected name,lat,lon,alt_m, got {row!r}")
            st = Station(row[0].strip(), float(row[1]), float(row[2]), float(row[3]))
            if not (-90 <= st.latitude_deg <= 90 and -180 <= st.longitude_deg <= 360):
                raise ValueError(f"{path}: station {st.name} has an invalid position")
            stations.append(st)
    return stations


class GroundNetwork:
    """Visibility of the satellite from a set of stations.

    Args:
        stations: the network (index in this list is the HAL ``ground_station_id``).
        params: ellipsoid, elevation mask and downlink rate.

    Raises:
        ValueError: more than 256 stations (the HAL id is 0..255) or none.
    """

    def __init__(self, stations: list[Station], params: SimParams) -> None:
        if not 0 < len(stations) <= 256:
            raise ValueError("between 1 and 256 ground stations are supported")
        self.stations = list(stations)
        self.mask_deg = params.elevation_mask_deg
        self.rate_bps = params.downlink_rate_bps
        a, f = params.earth_radius_km, params.earth_flattening
        e2 = f * (2.0 - f)
        lat = np.radians([s.latitude_deg for s in stations])
        lon = np.radians([s.longitude_deg for s in stations])
        h = np.array([s.altitude_m for s in stations]) / 1000.0
        n = a / np.sqrt(1.0 - e2 * np.sin(lat) ** 2)
        self._pos = np.stack([
            (n + h) * np.cos(lat) * np.cos(lon),
            (n + h) * np.cos(lat) * np.sin(lon),
            (n * (1.0 - e2) + h) * np.sin(lat),
        ], axis=1)
        self._up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)

    def elevations_deg(self, r_ecef_km: tuple[float, float, float]) -> np.ndarray:
        """Elevation of the satellite at each station, degrees, shape ``(n_stations,)``."""
        d = np.asarray(r_ecef_km) - self._pos
        rng = np.sqrt(np.einsum("ij,ij->i", d, d))
        return np.degrees(np.arcsin(np.einsum("ij,ij->i", d, self._up) / rng))

    def best(self, r_ecef_km: tuple[float, float, float]) -> tuple[int, float, bool]:
        """The station that sees the satellite highest.

        Returns:
            ``(station_id, elevation_deg, in_contact)``: ``station_id`` is -1 and
            ``elevation_deg`` that of the highest station when none is above the mask.
        """
        el = self.elevations_deg(r_ecef_km)
        i = int(el.argmax())
        e = float(el[i])
        contact = e >= self.mask_deg
        return (i if contact else -1), e, contact
