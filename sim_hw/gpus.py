"""The rack's 72 GPUs (B200 class) and the rest of its IT load, vectorised over GPUs.

Per GPU, with x = clock / max clock and u = offered load (``gpu_load_frac``, the fraction of
time busy)::

    P(x, u) = P_idle + u · (P_max − P_idle) · g(x),   g(x) = x³            for x ≥ x_v
                                                       g(x) = x · x_v²      below x_v

i.e. dynamic power ∝ f·V² with V ∝ f down to the voltage floor x_v, and ∝ f below it;
throughput ∝ clock. The driver picks the highest clock whose power fits the enforced
limit (NVML ``SW_POWER_CAP``), then the protections of the real part apply:

* software thermal slowdown above ``gpu_sw_thermal_c`` (87 °C): the clock cap falls by
  ``gpu_sw_thermal_slope_per_k`` per kelvin, down to half (``SW_THERMAL``);
* hardware slowdown at ``gpu_slowdown_c`` (89 °C): the clock halves (``HW_SLOWDOWN`` and
  ``HW_THERMAL``), released below ``gpu_slowdown_release_c``;
* shutdown at ``gpu_shutdown_c`` (92 °C): the GPU drops off the bus (``gpu_online`` False,
  0 W). A real board then needs a power cycle; here the BMC is assumed to power-cycle it
  automatically once it has cooled below ``gpu_recover_c`` (80 °C), so it comes back
  online without a command. (estimate of rack management behaviour)

Power limit semantics (``gpu_power_limit_w`` actuator): 0 parks the GPU at idle power with
no work; any other value is clamped into [``gpu_min_limit_w``, ``gpu_max_limit_w``]
like ``nvidia-smi -pl`` bounds. The frame reports the enforced limit (0 when parked).

The rest of the rack (Grace CPUs, NVLink switch trays, NICs) draws ``other_it_idle_w`` plus
``other_it_max_w − other_it_idle_w`` scaled by the rack's mean GPU throughput (estimate:
host and fabric activity follow the GPUs' work).
"""

from __future__ import annotations

import numpy as np

from flight.hal import protocol as hal
from sim_hw.params import SimParams


class GpuRack:
    """72 GPUs' operating points and protection state (all arrays shape ``(n,)``).

    Attributes:
        limit_w: enforced power limit, W (0 = parked).
        load: offered load, [0, 1].
        power_w, clock_mhz, util, throttle: readings of the present operating point.
        throughput: fraction of the full-clock work rate actually delivered, [0, 1].
        online: powered, not in thermal shutdown and not dead.
        shutdown: thermal-shutdown latch; slowdown: hardware-slowdown latch.
    """

    STATE_ATTRS = ("limit_w", "load", "power_w", "clock_mhz", "util", "throttle", "throughput", "online",
                   "shutdown", "slowdown", "dead", "_total_w", "_mean_throughput", "_cool_valid")
    """What a reboot keeps (:mod:`sim_hw.persist`)."""

    def __init__(self, params: SimParams, n: int = hal.N_GPUS) -> None:
        p = self._p = params
        self.n = n
        self.limit_w = np.full(n, p.gpu_max_limit_w)
        self.load = np.zeros(n)
        self.power_w = np.full(n, p.gpu_idle_w)
        self.clock_mhz = np.full(n, p.gpu_idle_clock_mhz)
        self.util = np.zeros(n)
        self.throttle = np.full(n, float(hal.THROTTLE_GPU_IDLE))
        self.throughput = np.zeros(n)
        self.online = np.ones(n, dtype=bool)
        self.shutdown = np.zeros(n, dtype=bool)
        self.slowdown = np.zeros(n, dtype=bool)
        self.dead = np.zeros(n, dtype=bool)
        """Failed boards (fault injection): no power, no work, offline, until cleared."""
        self._dyn_w = p.gpu_max_limit_w - p.gpu_idle_w
        self._xv = p.gpu_voltage_floor_frac
        self._gv = self._xv**3
        self._total_w = float(self.power_w.sum())
        self._mean_throughput = 0.0
        # The operating point only changes with commands, latches or a hot die; while none of
        # those changed since it was computed "cool" (no thermal cap), it is reused as is.
        self._cool_valid = False

    def set_dead(self, gpu: int, dead: bool) -> None:
        """Fault injection: GPU ``gpu`` (0..n-1) fails (``dead``) or is power-cycled back."""
        self.dead[gpu] = dead
        self._cool_valid = False

    def set_limits(self, cmd_w: np.ndarray) -> None:
        """Apply a ``gpu_power_limit_w`` command (shape ``(n,)``, W)."""
        p = self._p
        cmd = np.asarray(cmd_w, dtype=np.float64)
        limit = np.where(cmd <= 0.0, 0.0, np.clip(cmd, p.gpu_min_limit_w, p.gpu_max_limit_w))
        if not np.array_equal(limit, self.limit_w):
            self.limit_w = limit
            self._cool_valid = False

    def set_load(self, load: np.ndarray) -> None:
        """Apply a ``gpu_load_frac`` command (shape ``(n,)``, [0, 1])."""
        load = np.clip(np.asarray(load, dtype=np.float64), 0.0, 1.0)
        if not np.array_equal(load, self.load):
            self.load = load
            self._cool_valid = False

    def operate(self, temp_c: np.ndarray) -> float:
        """Set each GPU's clock, power and throttle reasons for the coming step, feed on.

        Args:
            temp_c: die temperatures, °C, shape ``(n,)``.

        Returns:
            Total GPU power, W.
        """
        p = self._p
        hot = bool(self.slowdown.any()) or float(temp_c.max()) > p.gpu_sw_thermal_c
        if self._cool_valid and not hot:
            return self._total_w
        self.online = ~(self.shutdown | self.dead)
        busy = (self.load > 0.0) & (self.limit_w > 0.0) & self.online
        u = np.where(busy, self.load, 0.0)
        # Highest clock the limit allows: invert g() on each branch.
        h = (self.limit_w - p.gpu_idle_w) / np.maximum(u * self._dyn_w, 1e-9)
        x_pl = np.minimum(1.0, np.where(h >= self._gv, np.cbrt(h), h / (self._xv * self._xv)))
        x_sw = np.clip(1.0 - p.gpu_sw_thermal_slope_per_k * (temp_c - p.gpu_sw_thermal_c), 0.5, 1.0)
        x = np.minimum(x_pl, x_sw)
        x = np.where(self.slowdown, 0.5 * x, x)
        g = np.where(x >= self._xv, x**3, x * self._gv / self._xv)
        power = np.minimum(p.gpu_idle_w + u * self._dyn_w * g, np.maximum(self.limit_w, p.gpu_idle_w))
        self.power_w = np.where(self.online, power, 0.0)
        self.clock_mhz = np.where(busy, x * p.gpu_max_clock_mhz, np.where(self.online, p.gpu_idle_clock_mhz, 0.0))
        self.util = u
        self.throughput = u * np.where(busy, x, 0.0)
        bits = np.where(busy, 0.0, hal.THROTTLE_GPU_IDLE)
        bits = bits + np.where(busy & (x_pl < 1.0) & (x_pl <= x_sw), hal.THROTTLE_SW_POWER_CAP, 0.0)
        bits = bits + np.where(busy & (x_sw < x_pl), hal.THROTTLE_SW_THERMAL, 0.0)
        bits = bits + np.where(self.slowdown, hal.THROTTLE_HW_SLOWDOWN + hal.THROTTLE_HW_THERMAL, 0.0)
        self.throttle = np.where(self.online, bits, 0.0)
        self._total_w = float(self.power_w.sum())
        self._mean_throughput = float(self.throughput.sum()) / self.n
        self._cool_valid = not hot
        return self._total_w

    @property
    def total_w(self) -> float:
        """Total power of the present operating point, W."""
        return self._total_w

    def switch_off(self) -> None:
        """The rack feed is open: every GPU is off the bus and reads 0."""
        self.online = np.zeros(self.n, dtype=bool)
        for arr in (self.power_w, self.clock_mhz, self.util, self.throttle, self.throughput):
            arr.fill(0.0)
        self._total_w = self._mean_throughput = 0.0
        self._cool_valid = False

    def other_it_w(self) -> float:
        """Power of the rest of the IT load for the present GPU throughput, W."""
        p = self._p
        return p.other_it_idle_w + (p.other_it_max_w - p.other_it_idle_w) * self._mean_throughput

    def protect(self, temp_c: np.ndarray, powered: bool) -> None:
        """Update the hardware slowdown and shutdown latches from end-of-step temperatures.

        When a latch changes, the readings are re-derived at once (a GPU that has just shut
        down reads 0 W and is offline; one that has just started slowing down reports the
        halved clock), so that a frame never shows a latched state without its effect.

        Args:
            temp_c: die temperatures, °C, shape ``(n,)``.
            powered: whether the rack feed is on (if not, every GPU already reads 0).
        """
        p = self._p
        if float(temp_c.max()) < p.gpu_slowdown_c and not (self.slowdown.any() or self.shutdown.any()):
            return
        slowdown = np.where(self.slowdown, temp_c >= p.gpu_slowdown_release_c, temp_c >= p.gpu_slowdown_c)
        shutdown = np.where(self.shutdown, temp_c >= p.gpu_recover_c, temp_c >= p.gpu_shutdown_c)
        if np.array_equal(slowdown, self.slowdown) and np.array_equal(shutdown, self.shutdown):
            return
        self.slowdown, self.shutdown = slowdown, shutdown
        self._cool_valid = False
        if powered:
            self.operate(temp_c)
