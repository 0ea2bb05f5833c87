"""Pumped coolant loop: GPU packages → cold plates → manifolds → radiator zones → space.

Nodes (temperatures in °C):

* per GPU: die/package (heat capacity C_d) and cold plate (C_p), joined by G_dp. The cold
  plate gives heat to the coolant with effectiveness-NTU: K = ε·ṁ_g·c, ε = 1 − exp(−hA/ṁ_g·c),
  hA ∝ flow^0.8 (Dittus–Boelter), plus a small stagnant-fluid conductance. With the supply
  temperature held over a sub-step this two-node chain is linear and identical for every GPU,
  so it is advanced exactly with one 2×2 matrix exponential shared by all 72 GPUs.
* return manifold: receives the cold-plate flow, the GPUs' heat, the rest of the IT heat and
  the pump's dissipation.
* radiator zones (4): a three-way valve sends a fraction ``valve`` of the zone's quarter of
  the flow through the panel, the rest bypasses it; each panel is split into segments along
  the flow; the fluid passing a segment approaches the segment temperature exponentially
  (exact for a fluid stream over an isothermal wall); each segment radiates
  ε·σ·A·η_fin·(T⁴ − T_sink⁴) from both faces, where T_sink⁴ = q_abs/(ε·σ) carries the absorbed
  Earth IR, albedo and (if the panels are not edge-on) sunlight. The zone outlet reading is
  the mixed temperature after the panel stream and the bypass rejoin.
* supply manifold: mixes the four zone outlets, takes the heat of the battery pack's cold
  plate, and feeds the cold plates.

Manifolds and panels are advanced with explicit Euler in sub-steps short against their time
constants (≥ ~10 s at full flow); heat is exchanged as fluxes computed once per sub-step, so
the loop's energy balance is exact. The pump speed follows its command with a first-order
lag, and valves move at a limited slew rate. Freezing of the coolant is not modelled: the
panel temperatures are reported so a controller can keep them above the fluid's limit.
"""

from __future__ import annotations

import math

import numpy as np

from flight.hal import protocol as hal
from sim_hw.params import SimParams

SIGMA = 5.670374419e-8
"""Stefan–Boltzmann constant, W/(m²·K⁴) (CODATA 2018)."""
KELVIN = 273.15


def earth_view_factor_vertical_plate(altitude_km: float, earth_radius_km: float) -> float:
    """View factor from one face of a plate perpendicular to the local horizontal to Earth.

    F = (1/π) [atan(1/√(H²−1)) − √(H²−1)/H²], H = (R + h)/R — the standard differential
    plate/sphere result for a plate normal perpendicular to the nadir (Gilmore, appendix on
    view factors; Howell's catalogue). 0.26 at 550 km.
    """
    hh = (earth_radius_km + altitude_km) / earth_radius_km
    s = math.sqrt(hh * hh - 1.0)
    return (math.atan2(1.0, s) - s / (hh * hh)) / math.pi


def absorbed_environment_w_m2(params: SimParams, view_factor: float, absorptance: float, emittance: float,
                              sun_fraction: float, cos_sun_zenith: float, solar_w_m2: float,
                              sun_cos: float) -> float:
    """Environmental flux absorbed per m² of one face: Earth IR, albedo and direct sunlight.

    ``emittance`` doubles as the infrared absorptance (Kirchhoff), ``absorptance`` is the
    solar one; ``sun_cos`` is the cosine of the Sun's incidence on the face.

    Albedo uses the usual approximation albedo · S · F · max(0, cos ζ) with ζ the solar zenith
    angle at the sub-satellite point (Gilmore ch. 2).
    """
    ir = emittance * view_factor * params.earth_ir_w_m2
    albedo = absorptance * view_factor * params.earth_albedo * solar_w_m2 * max(0.0, cos_sun_zenith)
    return ir + albedo + absorptance * solar_w_m2 * sun_cos * sun_fraction


class CoolantLoop:
    """State and dynamics of the liquid loop and its radiators.

    Attributes:
        t_die, t_plate: per-GPU die and cold-plate temperatures, °C, shape ``(n_gpus,)``.
        t_supply, t_return: manifold temperatures, °C.
        t_panel: radiator segment temperatures, °C, shape ``(segments, n_zones)``, inlet first.
        t_zone_out: mixed outlet temperature of each zone, °C, shape ``(n_zones,)``.
        pump_speed: actual pump speed, [0, 1]; valve: actual valve positions, [0, 1].
        radiated_w: net heat the panels radiated in the last step, W.
    """

    STATE_ATTRS = ("t_die", "t_plate", "t_supply", "t_return", "t_panel", "t_zone_out", "pump_speed", "valve",
                   "radiated_w", "flow_capacity_frac", "radiating_frac", "_eps_sigma_a")
    """What a reboot keeps (:mod:`sim_hw.persist`); cached coefficients are recomputed."""

    def __init__(self, params: SimParams, n_gpus: int = hal.N_GPUS, n_zones: int = hal.N_ZONES) -> None:
        p = self._p = params
        t0 = p.initial_coolant_temp_c
        self.n_gpus, self.n_zones, self.n_seg = n_gpus, n_zones, p.radiator_segments
        self.t_die = np.full(n_gpus, t0)
        self.t_plate = np.full(n_gpus, t0)
        self.t_supply = t0
        self.t_return = t0
        self.t_panel = np.full((self.n_seg, n_zones), t0)
        self.t_zone_out = np.full(n_zones, t0)
        self.pump_speed = p.initial_pump_speed_frac
        self.valve = np.full(n_zones, p.initial_valve_frac)
        self.radiated_w = 0.0
        self.flow_capacity_frac = 1.0
        """Flow delivered over the flow at the commanded speed (1; less with a degraded pump)."""
        self.radiating_frac = 1.0
        """Share of the radiator area that rejects heat (1; less with panels lost)."""

        panel_area = p.radiator_area_m2 / (n_zones * self.n_seg)
        self._emit_area = panel_area * p.radiator_sides * p.radiator_fin_efficiency
        self._eps_sigma_a = p.radiator_emittance * SIGMA * self._emit_area
        self._c_seg = p.radiator_heat_capacity_j_m2k * panel_area
        self._ua_seg = p.radiator_zone_ua_w_k / self.n_seg
        self._c_sup = p.supply_fluid_kg * p.coolant_cp_j_kgk
        self._c_ret = p.return_fluid_kg * p.coolant_cp_j_kgk
        self._t_in = np.empty((self.n_seg + 1, n_zones))
        self._coef_key: tuple[float, float] | None = None
        self._coef: tuple[float, ...] = ()
        self._sub_key: float | None = None
        self._sub = p.max_substep_s

    @property
    def flow_kg_s(self) -> float:
        """Coolant mass flow, kg/s (∝ pump speed: affinity law for a fixed loop; times the
        flow capacity left by a degraded pump)."""
        return self._p.coolant_max_flow_kg_s * self.pump_speed * self.flow_capacity_frac

    def set_flow_capacity(self, frac: float) -> None:
        """Fault injection: the pump delivers ``frac`` (in [0, 1]) of its nominal flow at any speed."""
        self.flow_capacity_frac = min(1.0, max(0.0, frac))
        self._sub_key = None

    def set_radiating_fraction(self, frac: float) -> None:
        """Fault injection: only ``frac`` (in [0, 1]) of every zone's emitting area radiates."""
        self.radiating_frac = min(1.0, max(0.0, frac))
        self._eps_sigma_a = self._p.radiator_emittance * SIGMA * self._emit_area * self.radiating_frac
        self._sub_key = None

    def plate_conductance_w_k(self) -> float:
        """Effective cold plate → coolant conductance per GPU at the present flow, W/K."""
        p = self._p
        frac = self.pump_speed * self.flow_capacity_frac
        mc = p.coolant_max_flow_kg_s * frac * p.gpu_flow_fraction / self.n_gpus * p.coolant_cp_j_kgk
        if mc <= 0.0:
            return p.stagnant_conductance_w_k
        ha = p.plate_to_coolant_w_k * frac**p.plate_flow_exponent
        return mc * (1.0 - math.exp(-ha / mc)) + p.stagnant_conductance_w_k

    def _gpu_coefficients(self, k: float, h: float) -> tuple[float, ...]:
        """Exact sub-step update of the die/plate chain for plate conductance ``k`` (cached).

        Returns ``(dd, dp, ds, dq, pd, pp, ps, pq)`` with
        ``die' = dd·die + dp·plate + ds·T_supply + dq·P`` and likewise ``plate'``.
        """
        if self._coef_key == (k, h):
            return self._coef
        p = self._p
        g = p.die_to_plate_w_k
        a = g / p.gpu_die_heat_capacity_j_k
        b = g / p.cold_plate_heat_capacity_j_k
        kk = k / p.cold_plate_heat_capacity_j_k
        m00, m01, m10, m11 = -a, a, b, -(b + kk)
        tr, det = m00 + m11, m00 * m11 - m01 * m10
        disc = math.sqrt(tr * tr / 4.0 - det)
        l1, l2 = tr / 2.0 + disc, tr / 2.0 - disc
        x1, x2 = math.exp(l1 * h), math.exp(l2 * h)
        # Sylvester: exp(Ah) = [x1 (A − l2 I) − x2 (A − l1 I)] / (l1 − l2); eigenvalues distinct.
        d = l1 - l2
        e00 = (x1 * (m00 - l2) - x2 * (m00 - l1)) / d
        e01 = (x1 - x2) * m01 / d
        e10 = (x1 - x2) * m10 / d
        e11 = (x1 * (m11 - l2) - x2 * (m11 - l1)) / d
        # x' = x* + E (x − x*), with the steady state plate* = T_s + P/k, die* = plate* + P/g.
        self._coef = (
            e00, e01, 1.0 - e00 - e01, (1.0 - e00) * (1.0 / k + 1.0 / g) - e01 / k,
            e10, e11, 1.0 - e10 - e11, (1.0 - e11) / k - e10 * (1.0 / k + 1.0 / g),
        )
        self._coef_key = (k, h)
        return self._coef

    def _max_substep_s(self) -> float:
        """Longest accurate explicit sub-step at the present flow, s (cached per pump speed)."""
        if self._sub_key == self.pump_speed:
            return self._sub
        p = self._p
        mc = self.flow_kg_s * p.coolant_cp_j_kgk
        # A segment exchanges at most min(UA, ṁc) with the stream; its radiative conductance is
        # bounded at 400 K so that the bound does not depend on the state.
        g_panel = min(self._ua_seg, mc / self.n_zones) + 4.0 * self._eps_sigma_a * 400.0**3
        tau = self._c_seg / g_panel
        if mc > 0.0:
            tau = min(tau, self._c_sup / mc, self._c_ret / mc)
        self._sub = min(p.max_substep_s, 0.2 * tau)
        self._sub_key = self.pump_speed
        return self._sub

    def step(self, dt: float, gpu_w: np.ndarray, gpu_total_w: float, return_w: float, supply_w: float,
             pump_cmd: float, valve_cmd: np.ndarray, sink_k4: float) -> None:
        """Advance the loop by ``dt`` seconds.

        Args:
            dt: step, s (> 0).
            gpu_w: per-GPU power dissipated in the dies, W, shape ``(n_gpus,)``.
            gpu_total_w: ``gpu_w.sum()``.
            return_w: heat into the return manifold (rest of the IT load, pump), W.
            supply_w: heat into the supply manifold (battery cold plate), W.
            pump_cmd: commanded pump speed, [0, 1].
            valve_cmd: commanded valve positions, [0, 1], shape ``(n_zones,)``.
            sink_k4: effective radiative sink temperature to the fourth power, K⁴.
        """
        n = max(1, math.ceil(dt / self._max_substep_s() - 1e-9))
        h = dt / n
        radiated = 0.0
        for _ in range(n):
            radiated += self._substep(h, gpu_w, gpu_total_w, return_w, supply_w, sink_k4)
            self._actuators(h, pump_cmd, valve_cmd)
        self.radiated_w = radiated / dt

    def _actuators(self, h: float, pump_cmd: float, valve_cmd: np.ndarray) -> None:
        p = self._p
        if pump_cmd != self.pump_speed:
            self.pump_speed += (pump_cmd - self.pump_speed) * (1.0 - math.exp(-h / p.pump_time_constant_s))
            if abs(pump_cmd - self.pump_speed) < 1e-9:
                self.pump_speed = pump_cmd
        move = p.valve_slew_per_s * h
        self.valve = self.valve + np.clip(valve_cmd - self.valve, -move, move)

    def _substep(self, h: float, gpu_w: np.ndarray, gpu_total_w: float, return_w: float, supply_w: float,
                 sink_k4: float) -> float:
        """One sub-step; returns the net heat radiated, J."""
        p = self._p
        t_ret, t_sup = self.t_return, self.t_supply
        dd, dp, ds, dq, pd, pp, ps, pq = self._gpu_coefficients(self.plate_conductance_w_k(), h)
        td, tp = self.t_die, self.t_plate
        sum_d, sum_p = float(td.sum()), float(tp.sum())
        self.t_die = dd * td + dp * tp + (dq * gpu_w + ds * t_sup)
        self.t_plate = pd * td + pp * tp + (pq * gpu_w + ps * t_sup)
        n = self.n_gpus
        # Heat given to the coolant = energy in − energy stored, from the same linear update.
        d_sum_d = (dd - 1.0) * sum_d + dp * sum_p + n * ds * t_sup + dq * gpu_total_w
        d_sum_p = pd * sum_d + (pp - 1.0) * sum_p + n * ps * t_sup + pq * gpu_total_w
        q_gpu = gpu_total_w * h - p.gpu_die_heat_capacity_j_k * d_sum_d - p.cold_plate_heat_capacity_j_k * d_sum_p

        mc = self.flow_kg_s * p.coolant_cp_j_kgk
        valve = self.valve
        mz = (mc / self.n_zones) * valve
        # exp(-UA/ṁc) → 0 as the valve closes: the stream leaves at the wall temperature.
        a = np.exp(-self._ua_seg / np.maximum(mz, 1e-12))
        oma = 1.0 - a
        panel = self.t_panel
        t_in = self._t_in
        t_in[0] = t_ret
        for s in range(self.n_seg):
            t_in[s + 1] = panel[s] * oma + t_in[s] * a
        q_fluid = mz * (t_in[:-1] - t_in[1:])
        self.t_zone_out = valve * t_in[-1] + (1.0 - valve) * t_ret
        q_rad = self._eps_sigma_a * ((panel + KELVIN) ** 4 - sink_k4)
        self.t_panel = panel + (h / self._c_seg) * (q_fluid - q_rad)
        mix = float(self.t_zone_out.sum()) / self.n_zones
        self.t_return = t_ret + (h * (mc * (t_sup - t_ret) + return_w) + q_gpu) / self._c_ret
        self.t_supply = t_sup + h * (mc * (mix - t_sup) + supply_w) / self._c_sup
        return float(q_rad.sum()) * h
