"""Single-event upsets in GPU memory and the ECC counters they drive.

Upsets in each online GPU's HBM arrive as a Poisson process with rate
``seu_rate_per_gpu_s``, multiplied by ``saa_rate_factor`` inside the South Atlantic Anomaly
(trapped protons; modelled as a latitude/longitude box around the AP-8 >10 MeV contour at
~500 km, see the parameters). A fraction ``seu_uncorrectable_fraction`` of upsets are
multi-bit errors that SECDED ECC detects but cannot correct; the rest are corrected. The two
kinds are independent Poisson processes (thinning), so each step draws two rack-wide counts
and spreads them over the online GPUs uniformly — cheaper than 72 draws and exactly
equivalent for equal per-GPU rates. Powered-off GPUs count nothing (NVML counters need a
running GPU; their memory content is lost anyway).
"""

from __future__ import annotations

import numpy as np

from flight.hal import protocol as hal
from sim_hw.params import SimParams


def in_saa(latitude_deg: float, longitude_deg: float, params: SimParams) -> bool:
    """Whether the sub-satellite point lies in the South Atlantic Anomaly box."""
    lat0, lat1 = params.saa_lat_deg
    lon0, lon1 = params.saa_lon_deg
    return lat0 <= latitude_deg <= lat1 and lon0 <= longitude_deg <= lon1


class RadiationEnvironment:
    """Seeded upset generator and the per-GPU ECC counters.

    Args:
        params: rates.
        rng: the simulation's seeded generator (the only randomness source).

    Attributes:
        corrected, uncorrected: cumulative per-GPU counts (float64, shape ``(n,)``).
        rate_factor: multiplier on the nominal upset rate (1 normally; fault injection may
            raise it to model a solar particle event).
    """

    STATE_ATTRS = ("corrected", "uncorrected", "rate_factor", "rng_state")
    """What a reboot keeps (:mod:`sim_hw.persist`)."""

    def __init__(self, params: SimParams, rng: np.random.Generator, n: int = hal.N_GPUS) -> None:
        self._p = params
        self._rng = rng
        self.n = n
        self.corrected = np.zeros(n)
        self.uncorrected = np.zeros(n)
        self.rate_factor = 1.0

    @property
    def rng_state(self) -> dict:
        """The upset generator's bit-generator state (a JSON-ready dict)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def step(self, dt: float, latitude_deg: float, longitude_deg: float, online: np.ndarray) -> None:
        """Draw the upsets of ``dt`` seconds and add them to the online GPUs' counters."""
        p = self._p
        idx = np.flatnonzero(online)
        if idx.size == 0:
            return
        rate = p.seu_rate_per_gpu_s * self.rate_factor * idx.size * dt
        if in_saa(latitude_deg, longitude_deg, p):
            rate *= p.saa_rate_factor
        n_unc = self._rng.poisson(rate * p.seu_uncorrectable_fraction)
        n_cor = self._rng.poisson(rate * (1.0 - p.seu_uncorrectable_fraction))
        if n_cor:
            np.add.at(self.corrected, idx[self._rng.integers(0, idx.size, n_cor)], 1.0)
        if n_unc:
            np.add.at(self.uncorrected, idx[self._rng.integers(0, idx.size, n_unc)], 1.0)
