"""Electrical power system: sun-tracking solar array, Li-ion battery, load dispatch, ledger.

Array output (W)::

    P = S(r) · A · η · packing · degradation · L_age · (1 + k_T (T_cell − T_ref)) · η_cond
        · sun_fraction · cos(incidence) · (1 − strings_lost / strings)

with S(r) = S₀ / r² (r in au), L_age = (1 − d)^age the life degradation factor (SMAD §11.4;
d = ``array_degradation_per_year``, age = ``array_age_years`` at the run epoch; ageing within a
run of days, < 1e-4, is neglected) and the cell temperature from a one-node panel energy
balance (absorbed sunlight not converted to electricity and Earth IR on the back, emitted
from both faces).

Pointing (``array_tracking``): by default a single-axis tracker whose drive axis is normal to
the orbit plane (the ISS solar alpha rotary joint without its beta gimbals; SMAD §11.4). It
turns the array once per orbit to follow the Sun's motion in the orbit plane; the Sun's
elevation above that plane, the beta angle, stays as incidence: cos(incidence) = cos β
(1.5 % less power at β = 10°, 29 % at 45°). ``two_axis`` adds the beta gimbal: incidence 0.
Fine pointing errors (< 1°, cos > 0.9998) are neglected.

Strings: the array is ``array_strings`` equal strings in parallel on the bus; a lost string
(fault injection, :mod:`sim_hw.faults`) removes its share of the output, and its sunlight
heats the panel instead.

The battery is an energy store with a per-direction energy efficiency, C-rate limits, a
CC/CV taper near full, temperature windows for charge and discharge (no charging below
the lower charge limit, 5 °C by default), a one-node thermal model (its losses and heater,
and a cold plate on the coolant loop's supply manifold that carries heat away) and an open-circuit-voltage curve plus series resistance for the
terminal voltage and current readings. It sits directly on the bus (unregulated battery
bus), so the bus voltage is the battery terminal voltage.

Dispatch, each step: the array supplies the loads first; a surplus charges the battery up to
its charge limit and the rest is shunted; a deficit is drawn from the battery up to its
discharge limit (C-rate, temperature window, remaining energy). The IT load (the rack's
feed) is shed when the array and battery together cannot carry it, or when it would drain
the battery below ``it_disconnect_soc`` (the power unit's low-voltage disconnect of
non-essential loads); the platform bus browns out only when even it cannot be supplied.
A shed load stays off until the array alone carries it, or the battery is back above
``load_restore_soc``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, fields

from sim_hw.params import SimParams
from sim_hw.thermal import KELVIN, SIGMA


@dataclass
class Ledger:
    """Cumulative electrical energy accounting, joules.

    Conservation: ``harvested = gpu + it_other + bus + battery_loss + shunted + stored``,
    where ``stored`` is the change of battery energy since the start. :meth:`residual_j`
    returns the left side minus the right side.
    """

    harvested: float = 0.0
    """Array output (what the array could deliver at maximum power point)."""
    gpu: float = 0.0
    """Consumed by the 72 GPUs."""
    it_other: float = 0.0
    """Consumed by the rest of the IT load (CPUs, NVLink switches, NICs)."""
    bus: float = 0.0
    """Consumed by platform loads (avionics, pump, heater, transmitter, laser)."""
    battery_loss: float = 0.0
    """Dissipated in the battery by charging and discharging."""
    shunted: float = 0.0
    """Array output dumped by the shunt regulator."""
    stored: float = 0.0
    """Battery energy now minus at the start."""

    def residual_j(self) -> float:
        """Harvested minus everything it went to (0 up to rounding)."""
        return self.harvested - (self.gpu + self.it_other + self.bus + self.battery_loss + self.shunted + self.stored)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SolarArray:
    """Sun-tracking array (single- or two-axis, ``array_tracking``) with a one-node panel
    temperature.

    Attributes:
        temp_c: cell temperature, °C.
        power_w: output at the last :meth:`output_w` call, W (≥ 0).
        strings_lost: strings open-circuit, in [0, ``array_strings``].
    """

    STATE_ATTRS = ("temp_c", "power_w", "strings_lost")
    """What a reboot keeps (:mod:`sim_hw.persist`)."""

    def __init__(self, params: SimParams, view_factor: float) -> None:
        p = self._p = params
        self.temp_c = p.array_initial_temp_c
        self.power_w = 0.0
        self._peak_w = (p.array_area_m2 * p.cell_efficiency * p.array_packing_factor * p.array_degradation
                        * (1.0 - p.array_degradation_per_year) ** p.array_age_years * p.array_conditioning_efficiency)
        self._f = view_factor
        self._heat_cap = p.array_heat_capacity_j_m2k * p.array_area_m2
        self._eps_sum = p.array_emittance_front + p.array_emittance_back
        if p.array_tracking not in ("single_axis", "two_axis"):
            raise ValueError(f"array_tracking must be 'single_axis' or 'two_axis', not {p.array_tracking!r}")
        if p.array_strings < 1:
            raise ValueError("array_strings must be >= 1")
        self.strings_lost = 0

    def cos_incidence(self, beta_angle_deg: float) -> float:
        """Cosine of the angle between the Sun and the array normal at beta angle
        ``beta_angle_deg`` (degrees, [-90, 90]): cos β single-axis, 1 two-axis."""
        if self._p.array_tracking == "two_axis":
            return 1.0
        return math.cos(math.radians(beta_angle_deg))

    def set_strings_lost(self, n: int) -> None:
        """Fault injection: ``n`` strings (0..``array_strings``) open-circuit.

        Raises:
            ValueError: ``n`` outside that range.
        """
        if not 0 <= n <= self._p.array_strings:
            raise ValueError(f"strings lost {n} outside 0..{self._p.array_strings}")
        self.strings_lost = n

    def output_w(self, sun_fraction: float, solar_w_m2: float, cos_incidence: float = 1.0) -> float:
        """Electrical output at the maximum power point for this illumination, W.

        Args:
            sun_fraction: visible fraction of the solar disc, [0, 1].
            solar_w_m2: solar flux at the satellite, W/m².
            cos_incidence: from :meth:`cos_incidence`, [0, 1].
        """
        p = self._p
        temp_factor = max(0.0, 1.0 + p.cell_temp_coeff_per_k * (self.temp_c - p.cell_ref_temp_c))
        working = 1.0 - self.strings_lost / p.array_strings
        self.power_w = self._peak_w * solar_w_m2 * sun_fraction * cos_incidence * temp_factor * working
        return self.power_w

    def step_thermal(self, dt: float, sun_fraction: float, solar_w_m2: float, cos_incidence: float = 1.0) -> None:
        """Advance the panel temperature by ``dt`` seconds (explicit; τ ≳ 100 s)."""
        p = self._p
        a = p.array_area_m2
        absorbed = (p.array_absorptance * solar_w_m2 * sun_fraction * cos_incidence * a - self.power_w
                    + p.array_emittance_back * self._f * p.earth_ir_w_m2 * a)
        t_k = self.temp_c + KELVIN
        emitted = SIGMA * self._eps_sum * a * t_k**4
        self.temp_c += dt * (absorbed - emitted) / self._heat_cap


class Battery:
    """Li-ion battery: energy, limits, voltage and temperature.

    Attributes:
        energy_j: stored energy, J, in [0, capacity_j].
        capacity_j: usable capacity at the present state of health, J.
        temp_c: cell temperature, °C.
        voltage_v, current_a: terminal voltage and current of the last step (+ charging).
    """

    STATE_ATTRS = ("capacity_j", "energy_j", "temp_c", "voltage_v", "current_a")
    """What a reboot keeps (:mod:`sim_hw.persist`)."""

    def __init__(self, params: SimParams) -> None:
        p = self._p = params
        if len(p.battery_ocv_soc) != len(p.battery_ocv_cell_v) or len(p.battery_ocv_soc) < 2:
            raise ValueError("battery OCV curve needs matching soc/voltage breakpoints")
        self.capacity_j = p.battery_capacity_j
        self.energy_j = p.battery_initial_soc * self.capacity_j
        self.temp_c = p.battery_initial_temp_c
        self._soc = list(p.battery_ocv_soc)
        self._ocv = [v * p.battery_series_cells for v in p.battery_ocv_cell_v]
        self.voltage_v = self.ocv_v()
        self.current_a = 0.0

    @property
    def soc(self) -> float:
        """State of charge, [0, 1]."""
        return min(1.0, max(0.0, self.energy_j / self.capacity_j))

    def ocv_v(self) -> float:
        """Open-circuit pack voltage at the present SOC (piecewise-linear curve), V."""
        s, xs, ys = self.soc, self._soc, self._ocv
        i = min(max(bisect.bisect_right(xs, s), 1), len(xs) - 1)
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (s - xs[i - 1]) / (xs[i] - xs[i - 1])

    def charge_limit_w(self, dt: float) -> float:
        """Most terminal power the battery accepts for ``dt`` seconds, W (0 outside the window)."""
        p = self._p
        lo, hi = p.battery_charge_temp_c
        if not lo <= self.temp_c <= hi:
            return 0.0
        soc = self.soc
        taper = min(1.0, max(0.0, (1.0 - soc) / (1.0 - p.battery_taper_soc)))
        c_rate = p.battery_max_charge_c * self.capacity_j / 3600.0 * taper
        room = (self.capacity_j - self.energy_j) / (p.battery_charge_efficiency * dt)
        return max(0.0, min(c_rate, room))

    def discharge_limit_w(self, dt: float) -> float:
        """Most terminal power the battery delivers for ``dt`` seconds, W (0 outside the window)."""
        p = self._p
        lo, hi = p.battery_discharge_temp_c
        if not lo <= self.temp_c <= hi:
            return 0.0
        c_rate = p.battery_max_discharge_c * self.capacity_j / 3600.0
        return max(0.0, min(c_rate, self.energy_j * p.battery_discharge_efficiency / dt))

    def apply(self, power_w: float, dt: float) -> float:
        """Charge (+) or discharge (−) at terminal ``power_w`` for ``dt`` s; return the loss, J.

        The caller keeps ``power_w`` within the limits above.
        """
        p = self._p
        if power_w >= 0.0:
            gain = p.battery_charge_efficiency * power_w * dt
            loss = power_w * dt - gain
        else:
            gain = power_w / p.battery_discharge_efficiency * dt
            loss = power_w * dt - gain
        self.energy_j = min(self.capacity_j, max(0.0, self.energy_j + gain))
        ocv, r = self.ocv_v(), self._p.battery_resistance_ohm
        # Terminal power P = V·I with V = OCV + I·R  →  R·I² + OCV·I − P = 0.
        self.current_a = 2.0 * power_w / (ocv + math.sqrt(max(0.0, ocv * ocv + 4.0 * r * power_w)))
        self.voltage_v = ocv + self.current_a * r
        return loss

    def coolant_heat_w(self, t_coolant_c: float) -> float:
        """Heat flowing from the cells into the coolant loop through the pack's cold plate, W."""
        return self._p.battery_coolant_w_k * (self.temp_c - t_coolant_c)

    def step_thermal(self, dt: float, heat_w: float) -> None:
        """Advance the cell temperature by ``dt`` s with ``heat_w`` net heat in (explicit; τ ~ 1 h)."""
        self.temp_c += dt * heat_w / self._p.battery_heat_capacity_j_k


class PowerSystem:
    """Array, battery, load switching and the energy ledger.

    Attributes:
        array, battery: the sources.
        ledger: cumulative energy accounting.
        it_powered, bus_powered: whether the IT feed and the platform bus are switched on.
        shunt_w: power shunted in the last step, W.
        battery_loss_w: power dissipated in the battery in the last step, W.
    """

    STATE_ATTRS = ("_e0", "it_powered", "bus_powered", "shunt_w", "battery_loss_w")
    """What a reboot keeps besides its parts (:mod:`sim_hw.persist`); ``_e0`` is the battery energy
    the ledger's stored term counts from."""

    def __init__(self, params: SimParams, view_factor: float) -> None:
        self._p = params
        self.array = SolarArray(params, view_factor)
        self.battery = Battery(params)
        self.ledger = Ledger()
        self._e0 = self.battery.energy_j
        self.it_powered = True
        self.bus_powered = True
        self.shunt_w = 0.0
        self.battery_loss_w = 0.0

    def isolate_cells(self, frac: float) -> float:
        """Fault injection: the battery management system disconnects a fraction ``frac``
        (in [0, 1)) of the cells. Capacity and energy fall by that fraction (SOC unchanged);
        the ledger's stored term keeps following the connected cells. Returns the energy the
        isolated cells hold, J (for :meth:`reconnect_cells`)."""
        bat = self.battery
        isolated_j = bat.energy_j * frac
        bat.capacity_j *= 1.0 - frac
        bat.energy_j -= isolated_j
        self._e0 -= isolated_j
        return isolated_j

    def reconnect_cells(self, isolated_j: float) -> None:
        """Undo :meth:`isolate_cells`: the cells come back with ``isolated_j`` joules and the
        nominal capacity."""
        bat = self.battery
        before_j = bat.energy_j
        bat.capacity_j = self._p.battery_capacity_j
        bat.energy_j = min(bat.capacity_j, bat.energy_j + isolated_j)
        self._e0 += bat.energy_j - before_j

    def dispatch(self, dt: float, array_w: float, bus_w: float, gpu_w: float, it_other_w: float,
                 it_enabled: bool = True) -> None:
        """Decide which loads stay on, run the battery and shunt, and book the step's energy.

        Args:
            dt: step length, s (> 0).
            array_w: array output available this step, W.
            bus_w: platform load demand if the bus is on, W.
            gpu_w, it_other_w: GPU and other IT demand if the rack feed is on, W.
            it_enabled: False while the rack's own protection holds its feed open.

        Updates ``it_powered``, ``bus_powered``, the battery, ``shunt_w`` and the ledger; the
        caller switches the GPUs and the platform loads off when their feed is off.
        """
        bat = self.battery
        it_w = gpu_w + it_other_w
        p = self._p
        supply = array_w + bat.discharge_limit_w(dt)
        soc = bat.soc
        refilled = soc >= p.load_restore_soc
        if self.bus_powered and bus_w > supply:
            self.bus_powered = False
        elif not self.bus_powered and (array_w >= bus_w or (refilled and supply >= bus_w)):
            self.bus_powered = True
        need = bus_w + it_w
        if not (it_enabled and self.bus_powered):
            self.it_powered = False
        elif self.it_powered:
            self.it_powered = array_w >= need or (supply >= need and soc > p.it_disconnect_soc)
        else:
            self.it_powered = array_w >= need or (supply >= need and refilled)
        bus_used = bus_w if self.bus_powered else 0.0
        it_on = 1.0 if self.it_powered else 0.0
        net = array_w - bus_used - it_on * it_w
        if net >= 0.0:
            charge = min(net, bat.charge_limit_w(dt))
            self.shunt_w = net - charge
        else:
            charge = net
            self.shunt_w = 0.0
        loss = bat.apply(charge, dt)
        self.battery_loss_w = loss / dt
        led = self.ledger
        led.harvested += array_w * dt
        led.gpu += it_on * gpu_w * dt
        led.it_other += it_on * it_other_w * dt
        led.bus += bus_used * dt
        led.shunted += self.shunt_w * dt
        led.battery_loss += loss
        led.stored = bat.energy_j - self._e0
