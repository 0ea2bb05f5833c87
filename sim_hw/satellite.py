"""The simulated rack-satellite: orbit, power, GPUs, thermal loop, radiation and links.

:class:`Satellite` ties the physics modules together behind the interface the HAL server
(and tests) use: :meth:`Satellite.step`, :meth:`Satellite.actuate`, :meth:`Satellite.frame`.

Order of one step of ``dt`` seconds (quantities are held over the step, start-of-step state):

1. latch the actuator commands received since the last step;
2. GPU operating points from die temperatures, limits and offered load; rest-of-rack load;
3. electrical dispatch: array output, platform loads, battery, shunt, load cuts, ledger;
4. coolant loop, battery and array temperatures; memory upsets;
5. advance time, propagate the orbit, ground visibility; GPU slowdown/shutdown latches;
6. timed faults whose duration has passed are cleared (:mod:`sim_hw.faults`).

Frame readings of power, clock, utilisation and throttle reasons are those of the step just
finished (zeroed for a GPU that shut down at its end); temperatures, SOC and positions are
at the end of the step.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from flight.hal import protocol as hal
from flight.core.orbit import Orbit, OrbitError
from sim_hw.faults import Fault, FaultInjector
from sim_hw.gpus import GpuRack
from sim_hw.ground import GroundNetwork, load_stations
from sim_hw.params import SimParams
from sim_hw.power import Ledger, PowerSystem
from sim_hw.radiation import RadiationEnvironment
from sim_hw.thermal import (
    SIGMA,
    CoolantLoop,
    absorbed_environment_w_m2,
    earth_view_factor_vertical_plate,
)


def _sensor_range(name: str) -> tuple[float, float]:
    f = hal.SENSORS[name]
    return f.lo, f.hi


# Temperature sensors saturate at the ends of their range (the physics itself may not).
_T_GPU = _sensor_range("gpu_temp_c")
_T_BAT = _sensor_range("battery_temp_c")
_T_COOLANT = _sensor_range("coolant_supply_temp_c")
_T_OUTLET = _sensor_range("radiator_outlet_temp_c")
_T_PANEL = _sensor_range("radiator_temp_c")


def _sat(x: float, rng: tuple[float, float]) -> float:
    return min(rng[1], max(rng[0], x))


class Satellite:
    """One simulated rack-satellite.

    Args:
        tle_lines: the two lines of a TLE (line 1, line 2).
        seed: seed of the one random generator (memory upsets).
        params: physical parameters; :class:`SimParams` defaults if ``None``.
        start_utc: run epoch (``time_s = 0``); defaults to the TLE epoch.

    Raises:
        ValueError: the TLE does not parse, or its orbit is outside the HAL altitude range
            (100–2000 km) at the epoch.

    Attributes:
        time_s: seconds since the run epoch.
        orbit_period_s: orbital period from the TLE mean motion, s.
        epoch_utc: the run epoch.
        ledger: cumulative electrical energy accounting (:class:`sim_hw.power.Ledger`), J.
        hal_rejected_count: rejected HAL messages, counted by the HAL server; reported in
            the frame.
        rack_tripped: the rack manager's over-temperature latch: the IT feed is held open
            while the coolant return is above ``rack_trip_return_c`` until it falls below
            ``rack_trip_reset_c``.
        faults: the active injected faults (:class:`sim_hw.faults.FaultInjector`); inject
            with :meth:`inject_fault`.
        link_outage: no ground contact while True (the ``link_outage`` fault).
        orbit, power, gpus, thermal, radiation, ground, params: the parts (for tests and
            fault injection).
    """

    STATE_ATTRS = ("time_s", "hal_rejected_count", "rack_tripped", "link_outage", "_pump_cmd", "_valve_cmd",
                   "heater_on", "transmitter_on", "laser_on")
    """What a reboot keeps of the satellite itself besides its parts (:mod:`sim_hw.persist`):
    its clock, latches and the actuator commands it holds."""

    def __init__(self, tle_lines: tuple[str, str], seed: int = 0, params: SimParams | None = None,
                 start_utc: datetime | None = None) -> None:
        self.params = p = params or SimParams()
        self.orbit = Orbit.from_tle(tle_lines[0], tle_lines[1], p, start_utc)
        self.epoch_utc = self.orbit.epoch_utc
        self.orbit_period_s = self.orbit.period_s
        self.time_s = 0.0
        self._env = self.orbit.at(0.0)
        if not 100.0 <= self._env.altitude_km <= 2000.0:
            raise ValueError(f"orbit altitude {self._env.altitude_km:.0f} km is outside 100-2000 km")
        view = earth_view_factor_vertical_plate(self._env.altitude_km, p.earth_radius_km)
        self._view_factor = view
        self.power = PowerSystem(p, view)
        self.ledger: Ledger = self.power.ledger
        self.gpus = GpuRack(p)
        self.thermal = CoolantLoop(p)
        self.radiation = RadiationEnvironment(p, np.random.default_rng(seed))
        self.ground = GroundNetwork(load_stations(), p)
        self.hal_rejected_count = 0
        self.rack_tripped = False
        self.link_outage = False
        self.faults = FaultInjector(self, np.random.default_rng([seed, 1]))

        self._pump_cmd = p.initial_pump_speed_frac
        self._valve_cmd = np.full(hal.N_ZONES, p.initial_valve_frac)
        self.heater_on = False
        self.transmitter_on = False
        self.laser_on = False
        self._pending: dict[str, Any] = {}
        self._ground = self.ground.best(self._env.r_ecef_km)
        self._ahead: tuple[float, Any, tuple[int, float, bool]] | None = None
        """``(time_s, orbit state, ground visibility)`` of the next step, from :meth:`look_ahead`."""
        self.gpus.operate(self.thermal.t_die)
        self._bus_w = self._bus_demand_w()

    @property
    def utc_unix_s(self) -> float:
        """Onboard UTC now (Unix seconds): the run epoch plus :attr:`time_s`."""
        return self._env.utc_unix_s

    def resync(self) -> None:
        """Recompute what follows from :attr:`time_s` (orbit position, ground visibility) after
        the state was put back by :func:`sim_hw.persist.restore`.

        Raises:
            flight.core.orbit.OrbitError: SGP4 cannot propagate to that time.
        """
        self._env = self.orbit.at(self.time_s)
        self._ground = self.ground.best(self._env.r_ecef_km)

    # --- commands ------------------------------------------------------------------------

    def actuate(self, fields: dict[str, Any]) -> None:
        """Queue an already-validated ``hal.actuate`` payload; applied from the next step.

        Later calls before the same step override earlier ones field by field.
        """
        self._pending.update(fields)

    def _latch(self) -> None:
        cmd, self._pending = self._pending, {}
        if "gpu_power_limit_w" in cmd:
            self.gpus.set_limits(cmd["gpu_power_limit_w"])
        if "gpu_load_frac" in cmd:
            self.gpus.set_load(cmd["gpu_load_frac"])
        if "pump_speed_frac" in cmd:
            self._pump_cmd = min(1.0, max(0.0, float(cmd["pump_speed_frac"])))
        if "radiator_valve_frac" in cmd:
            self._valve_cmd = np.clip(np.array(cmd["radiator_valve_frac"], dtype=np.float64), 0.0, 1.0)
        if "battery_heater_on" in cmd:
            self.heater_on = bool(cmd["battery_heater_on"])
        if "transmitter_on" in cmd:
            self.transmitter_on = bool(cmd["transmitter_on"])
        if "laser_terminal_on" in cmd:
            self.laser_on = bool(cmd["laser_terminal_on"])

    # --- physics -------------------------------------------------------------------------

    def _bus_demand_w(self) -> float:
        p = self.params
        return (p.avionics_w + p.pump_max_w * self.thermal.pump_speed**3
                + (p.battery_heater_w if self.heater_on else 0.0)
                + (p.transmitter_w if self.transmitter_on else 0.0)
                + (p.laser_terminal_w if self.laser_on else 0.0))

    def step(self, dt_s: float) -> None:
        """Advance the physics by ``dt_s`` seconds.

        Raises:
            ValueError: ``dt_s`` is not a positive finite number.
            flight.core.orbit.OrbitError: SGP4 cannot propagate to the new time.
        """
        if not (dt_s > 0.0 and math.isfinite(dt_s)):
            raise ValueError(f"step must be positive and finite, got {dt_s!r}")
        p = self.params
        env = self._env
        if self._pending:
            self._latch()
        pw = self.power
        solar = p.solar_constant_w_m2 / (env.sun_distance_au * env.sun_distance_au)

        # Demand as if the rack feed were on: a cut feed is restored only if it can be carried.
        gpu_w = self.gpus.operate(self.thermal.t_die)
        other_w = self.gpus.other_it_w()
        bus_w = self._bus_demand_w()
        cos_inc = pw.array.cos_incidence(env.beta_angle_deg)
        array_w = pw.array.output_w(env.sun_fraction, solar, cos_inc)
        t_ret = self.thermal.t_return
        if t_ret > p.rack_trip_return_c:
            self.rack_tripped = True
        elif t_ret < p.rack_trip_reset_c:
            self.rack_tripped = False
        pw.dispatch(dt_s, array_w, bus_w, gpu_w, other_w, it_enabled=not self.rack_tripped)
        if not pw.it_powered:
            self.gpus.switch_off()
            other_w = 0.0
        bus_on = pw.bus_powered
        self._bus_w = bus_w if bus_on else 0.0

        pump_w = p.pump_max_w * self.thermal.pump_speed**3 if bus_on else 0.0
        rad_abs = absorbed_environment_w_m2(p, self._view_factor, p.radiator_absorptance, p.radiator_emittance,
                                            env.sun_fraction, env.cos_sun_zenith, solar,
                                            p.radiator_sun_cos / p.radiator_sides)
        sink_k4 = rad_abs / (p.radiator_emittance * SIGMA)
        bat = pw.battery
        to_coolant_w = bat.coolant_heat_w(self.thermal.t_supply)
        heater_w = p.battery_heater_w if (self.heater_on and bus_on) else 0.0
        bat.step_thermal(dt_s, pw.battery_loss_w + heater_w - to_coolant_w)
        self.thermal.step(dt_s, self.gpus.power_w, self.gpus.total_w, other_w + pump_w, to_coolant_w,
                          self._pump_cmd if bus_on else 0.0, self._valve_cmd, sink_k4)
        pw.array.step_thermal(dt_s, env.sun_fraction, solar, cos_inc)
        self.radiation.step(dt_s, env.latitude_deg, env.longitude_deg, self.gpus.online)

        self.time_s += dt_s
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == self.time_s:
            _, self._env, self._ground = ahead
        else:
            self.resync()
        self.gpus.protect(self.thermal.t_die, powered=pw.it_powered)
        if self.faults.active:
            self.faults.expire()

    def look_ahead(self, dt_s: float) -> None:
        """Work out now the orbit state and ground-station visibility :meth:`step` ``(dt_s)``
        will reach: they depend on time alone, so a rig can do it while flight handles the
        frame (:meth:`sim_hw.local.SimRig.between_ticks`), off the lockstep path. An SGP4
        error is left for :meth:`step` to raise."""
        t_s = self.time_s + dt_s
        try:
            env = self.orbit.at(t_s)
        except OrbitError:
            return
        self._ahead = (t_s, env, self.ground.best(env.r_ecef_km))

    # --- faults --------------------------------------------------------------------------

    def inject_fault(self, fault: Fault) -> None:
        """Apply a fault validated by :func:`sim_hw.faults.validate` from now on."""
        self.faults.inject(fault)

    def clear_fault(self, fault: str, target: str = "") -> bool:
        """Undo an active fault; False if none was active under that name and target."""
        return self.faults.clear(fault, target)

    # --- readings ------------------------------------------------------------------------

    def frame(self, raw: bool = False) -> dict[str, Any]:
        """The HAL sensor frame now: every field of ``flight.hal.protocol.SENSOR_FIELDS``.

        Arrays are fresh float64 (bool for ``gpu_online``) copies of the declared shapes;
        scalars are Python floats/bools. Values are within the declared ranges: temperature
        readings saturate at the ends of their sensor range. Stuck and noisy sensors
        (:mod:`sim_hw.faults`) show in the readings unless ``raw``.
        """
        env, pw, th, g = self._env, self.power, self.thermal, self.gpus
        bat = pw.battery
        bus_on = pw.bus_powered
        station, elevation, contact = self._ground
        if self.link_outage:
            station, contact = -1, False
        tx = self.transmitter_on and bus_on
        frame = {
            "time_s": self.time_s,
            "utc_unix_s": env.utc_unix_s,
            "latitude_deg": env.latitude_deg,
            "longitude_deg": env.longitude_deg,
            "altitude_km": env.altitude_km,
            "sun_vector_eci": np.array(env.sun_unit),
            "sun_fraction": env.sun_fraction,
            "eclipse": env.sun_fraction < 0.5,
            "beta_angle_deg": env.beta_angle_deg,
            "solar_array_power_w": pw.array.power_w,
            "shunt_power_w": pw.shunt_w,
            "solar_array_current_a": pw.array.power_w / bat.voltage_v,
            "battery_voltage_v": bat.voltage_v,
            "battery_current_a": bat.current_a,
            "battery_temp_c": _sat(bat.temp_c, _T_BAT),
            "battery_soc": bat.soc,
            "battery_capacity_j": bat.capacity_j,
            "battery_heater_on": self.heater_on and bus_on,
            "bus_load_w": self._bus_w,
            "gpu_power_w": g.power_w.copy(),
            "gpu_power_limit_w": g.limit_w.copy(),
            "gpu_temp_c": np.clip(th.t_die, *_T_GPU),
            "gpu_clock_mhz": g.clock_mhz.copy(),
            "gpu_util": g.util.copy(),
            "gpu_ecc_corrected": self.radiation.corrected.copy(),
            "gpu_ecc_uncorrected": self.radiation.uncorrected.copy(),
            "gpu_throttle_reasons": g.throttle.copy(),
            "gpu_online": g.online.copy(),
            "coolant_supply_temp_c": _sat(th.t_supply, _T_COOLANT),
            "coolant_return_temp_c": _sat(th.t_return, _T_COOLANT),
            "radiator_outlet_temp_c": np.clip(th.t_zone_out, *_T_OUTLET),
            "radiator_temp_c": np.clip(th.t_panel.mean(axis=0), *_T_PANEL),
            "pump_speed_frac": th.pump_speed,
            "coolant_flow_kg_s": th.flow_kg_s,
            "radiator_valve_frac": th.valve.copy(),
            "ground_contact": contact,
            "ground_station_id": float(station),
            "ground_elevation_deg": elevation,
            "downlink_rate_bps": self.params.downlink_rate_bps if (contact and tx) else 0.0,
            "transmitter_on": tx,
            "laser_terminal_on": self.laser_on and bus_on,
            "hal_rejected_count": float(self.hal_rejected_count),
        }
        if not raw:
            self.faults.apply_to_frame(frame)
        return frame
