"""Cross-checks of the thermal sensors: a reading that disagrees with the physically related
readings for long enough is declared failed and replaced by a conservative substitute.

Two checks, each tick, on the sensor frame (:mod:`flight.hal.protocol`):

* **GPU die temperature against its power and its neighbours.** All GPUs sit on the same
  coolant supply, so at quasi-steady state ``T_k ≈ T_supply + a + R · P̃_k``, with ``P̃_k``
  the GPU's power passed through a first-order lag of the package's thermal time constant
  (:data:`PACKAGE_TAU_S`) and ``a``, ``R`` fitted across the trusted online GPUs every tick
  (least squares, then refitted without the GPUs that sit off the line): the fit follows
  the flow, the setpoint and the load, so what is left is one GPU disagreeing with its
  72 neighbours. ``R`` is fitted only when the powers spread over more than
  :data:`SLOPE_FIT_SPREAD_W`, else it is the nominal ``R_TH_C_PER_W``.
  Substitute: the fitted temperature plus :data:`SUBSTITUTE_MARGIN_K` (conservative: the
  controller sees the GPU warmer than its healthy neighbours at its power would be). Only a
  GPU whose power has settled (:data:`SETTLED_W`) is judged: right after a load step the
  one-lag model is too crude.
* **Coolant supply against the radiator outlets.** The supply manifold is fed by the mixed
  radiator outlet flow (``τ = m c / ṁ c`` of ~10 s at full flow), so the supply reading must
  follow the lagged mean of the trusted zone outlets; each zone outlet must agree with the
  median of the others. Supply substitute: the lagged outlet mean plus the margin.

A residual beyond its limit for :data:`PERSISTENCE_S` seconds without a break declares the
sensor failed, once (the owner raises an event); it stays failed for the rest of the run.
A stuck sensor shows when the physics moves (load, eclipse, setpoint); a constant state
cannot reveal it, and does not need to: the frozen value is then still right.

Limits are estimates chosen against the simulator (sim_hw): healthy residuals stay within
~2 K through eclipse entry and exit, load steps and a pump at half flow.
"""

from __future__ import annotations

import math

import numpy as np

GPU_RESIDUAL_LIMIT_K = 6.0
"""A GPU reading this far from the fit is suspect (estimate: 3× the healthy spread)."""
COOLANT_RESIDUAL_LIMIT_K = 5.0
"""A supply or zone outlet reading this far from its related readings is suspect (estimate)."""
PERSISTENCE_S = 30.0
"""How long a residual must stay beyond its limit before the sensor is declared failed: longer
than the package and manifold time constants, so a transient is not a failure (estimate)."""
PACKAGE_TAU_S = 40.0
"""Thermal time constant of a GPU package on its cold plate: ~1 kJ/K (die, HBM, plate, water)
over ~25 W/K to the coolant (estimate, B200 class; slower at reduced flow)."""
SETTLED_W = 100.0
"""A GPU whose power is within this of its lagged power has settled: only then is its residual
evidence (the one-lag model is too crude for the seconds after a load step; estimate)."""
SUPPLY_TAU_S = 10.0
"""Supply manifold residence time at full flow: ~40 kg × 3.6 kJ/(kg·K) over 4 kg/s × 3.6
kJ/(kg·K) (estimate)."""
SLOPE_FIT_SPREAD_W = 100.0
"""Least power spread across GPUs for which the thermal resistance is fitted rather than nominal."""
SUBSTITUTE_MARGIN_K = 3.0
"""Added to a failed sensor's estimate, so that control errs on the hot side."""
MIN_TRUSTED_GPUS = 8
"""Fewer trusted online GPUs than this and the GPU check is not made (no neighbours to ask)."""


class SensorCheck:
    """Cross-checks for ``n_gpus`` die temperatures, the coolant supply and ``n_zones``
    radiator outlet temperatures.

    Args:
        n_gpus, n_zones: array sizes of the frame.
        r_th_c_per_w: nominal die-to-coolant thermal resistance, K/W (used when the powers
            are too alike to fit one).
        tick_s: seconds between :meth:`update` calls, > 0.

    Attributes:
        gpu_failed: per-GPU failed flags, bool, shape ``(n_gpus,)``.
        outlet_failed: per-zone failed flags, bool, shape ``(n_zones,)``.
        supply_failed: the coolant supply sensor has failed.
    """

    def __init__(self, n_gpus: int, n_zones: int, r_th_c_per_w: float, tick_s: float) -> None:
        if not tick_s > 0:
            raise ValueError("tick_s must be positive")
        self.r_nominal = r_th_c_per_w
        self.tick_s = tick_s
        self.gpu_failed = np.zeros(n_gpus, dtype=bool)
        self.outlet_failed = np.zeros(n_zones, dtype=bool)
        self.supply_failed = False
        self._gpu_suspect_s = np.zeros(n_gpus)
        self._outlet_suspect_s = np.zeros(n_zones)
        self._supply_suspect_s = 0.0
        self._k_pkg = 1.0 - math.exp(-tick_s / PACKAGE_TAU_S)
        self._k_sup = 1.0 - math.exp(-tick_s / SUPPLY_TAU_S)
        self._power_lag_w: np.ndarray | None = None
        self._outlet_lag_c = math.nan
        self.gpu_estimate_c = np.zeros(n_gpus)
        """Fitted die temperature of every GPU at the last update, °C."""

    @property
    def failed_count(self) -> int:
        """Sensors declared failed so far."""
        return int(self.gpu_failed.sum() + self.outlet_failed.sum() + self.supply_failed)

    def update(self, frame: dict) -> list[str]:
        """Fold in one frame; return the sensors newly declared failed (``gpu_temp_c[k]``,
        ``coolant_supply_temp_c``, ``radiator_outlet_temp_c[z]``)."""
        newly: list[str] = []
        newly += self._check_outlets(frame["radiator_outlet_temp_c"])
        newly += self._check_supply(frame["coolant_supply_temp_c"])
        newly += self._check_gpus(frame["gpu_temp_c"], frame["gpu_power_w"], frame["gpu_online"])
        return newly

    def supply_c(self, frame: dict) -> float:
        """The coolant supply temperature to control on: the reading, or the substitute."""
        if self.supply_failed and math.isfinite(self._outlet_lag_c):
            return self._outlet_lag_c + SUBSTITUTE_MARGIN_K
        return float(frame["coolant_supply_temp_c"])

    def gpu_temps_c(self, frame: dict) -> np.ndarray:
        """The GPU temperatures to control on: the readings, failed ones substituted (a fresh array)."""
        temps = np.array(frame["gpu_temp_c"], dtype=np.float64)
        if self.gpu_failed.any():
            temps[self.gpu_failed] = self.gpu_estimate_c[self.gpu_failed] + SUBSTITUTE_MARGIN_K
        return temps

    def _persist(self, suspect_s: np.ndarray, bad: np.ndarray, failed: np.ndarray) -> np.ndarray:
        """Advance the suspicion timers; return the indices that just became failed."""
        if not bad.any() and not suspect_s.any():
            return np.empty(0, dtype=np.intp)
        suspect_s[:] = np.where(bad & ~failed, suspect_s + self.tick_s, 0.0)
        newly = np.flatnonzero(suspect_s >= PERSISTENCE_S - 1e-9)
        failed[newly] = True
        suspect_s[newly] = 0.0
        return newly

    def _check_outlets(self, outlets: np.ndarray) -> list[str]:
        # A handful of zones: plain Python is cheaper than numpy calls here.
        readings = outlets.tolist()
        trusted = [z for z in range(len(readings)) if not self.outlet_failed[z]]
        newly: list[int] = []
        if len(trusted) >= 3:
            bad = np.zeros(len(readings), dtype=bool)
            for z in trusted:
                others = sorted(readings[o] for o in trusted if o != z)
                mid = len(others) // 2
                ref = others[mid] if len(others) % 2 else 0.5 * (others[mid - 1] + others[mid])
                bad[z] = abs(readings[z] - ref) > COOLANT_RESIDUAL_LIMIT_K
            newly = self._persist(self._outlet_suspect_s, bad, self.outlet_failed).tolist()
            trusted = [z for z in trusted if z not in newly]
        if trusted:
            mean = sum(readings[z] for z in trusted) / len(trusted)
            lag = self._outlet_lag_c
            self._outlet_lag_c = mean if math.isnan(lag) else lag + self._k_sup * (mean - lag)
        return [f"radiator_outlet_temp_c[{z}]" for z in newly]

    def _check_supply(self, supply_c: float) -> list[str]:
        if self.supply_failed or math.isnan(self._outlet_lag_c):
            return []
        bad = abs(supply_c - self._outlet_lag_c) > COOLANT_RESIDUAL_LIMIT_K
        self._supply_suspect_s = self._supply_suspect_s + self.tick_s if bad else 0.0
        if self._supply_suspect_s >= PERSISTENCE_S - 1e-9:
            self.supply_failed = True
            return ["coolant_supply_temp_c"]
        return []

    def _check_gpus(self, temps: np.ndarray, power_w: np.ndarray, online: np.ndarray) -> list[str]:
        lag = self._power_lag_w
        self._power_lag_w = lag = power_w.copy() if lag is None else lag + self._k_pkg * (power_w - lag)
        trusted = online & ~self.gpu_failed
        if trusted.sum() < MIN_TRUSTED_GPUS:
            return []
        # The supply term is common to all GPUs: it goes into the fitted intercept.
        a, r = self._fit(lag[trusted], temps[trusted])
        residual = temps - (a + r * lag)
        keep = trusted & (np.abs(residual) <= GPU_RESIDUAL_LIMIT_K)
        if keep.sum() >= MIN_TRUSTED_GPUS and keep.sum() < trusted.sum():
            a, r = self._fit(lag[keep], temps[keep])
            residual = temps - (a + r * lag)
        self.gpu_estimate_c = a + r * lag
        settled = np.abs(power_w - lag) < SETTLED_W
        bad = online & settled & (np.abs(residual) > GPU_RESIDUAL_LIMIT_K)
        newly = self._persist(self._gpu_suspect_s, bad, self.gpu_failed)
        return [f"gpu_temp_c[{k}]" for k in newly]

    def _fit(self, power_w: np.ndarray, temps: np.ndarray) -> tuple[float, float]:
        """``(a, R)`` of ``T = a + R · P`` over the given GPUs: least squares when the powers
        spread enough, else the nominal ``R`` and the median intercept."""
        if float(power_w.max() - power_w.min()) > SLOPE_FIT_SPREAD_W:
            n = power_w.size
            mean_p, mean_t = float(power_w.sum()) / n, float(temps.sum()) / n
            dx = power_w - mean_p
            r = float(dx @ (temps - mean_t)) / float(dx @ dx)
            return mean_t - r * mean_p, r
        return float(np.median(temps - self.r_nominal * power_w)), self.r_nominal
