"""The one table of simulator defaults: every physical constant, with its unit and source.

:class:`SimParams` is a frozen dataclass; each field carries ``unit`` and ``source`` metadata
and :func:`defaults_table` renders the whole table as Markdown. Values marked *estimate* are
engineering judgement for a ~120 kW NVL72-class rack in a 550 km orbit, not measured data.
Derive a variant with :func:`dataclasses.replace`, e.g.
``replace(SimParams(), battery_initial_soc=0.5)``.

Sources cited by short name:

* *AA*: The Astronomical Almanac, low-precision formulas for the Sun (section C), as given in
  Vallado, *Fundamentals of Astrodynamics and Applications*, 4th ed. (2013), Algorithm 29.
* *M&G*: Montenbruck & Gill, *Satellite Orbits* (2000), section 3.4.2 (conical shadow).
* *Gilmore*: Gilmore (ed.), *Spacecraft Thermal Control Handbook*, vol. 1, 2nd ed. (2002),
  chapter 2 (orbital environment) and appendix on view factors.
* *WGS-84*: NIMA TR8350.2, World Geodetic System 1984.
* *IAU*: IAU 2012 Resolution B2 (au) and IAU 2015 Resolution B3 (nominal solar radius).
* *Kopp & Lean*: Kopp & Lean, GRL 38 (2011), total solar irradiance 1360.8 W/m².
* *3G30C*: AZUR SPACE 3G30C-Advanced triple-junction cell datasheet (30 % BOL, AM0, 28 °C).
* *DESIGN*: the project's DESIGN.md sizing figures.
* *SMAD*: Wertz & Larson (eds.), *Space Mission Analysis and Design*, 3rd ed. (1999), §11.4.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from flight.hal.faults import ARRAY_STRINGS


def _p(default: Any, unit: str, source: str) -> Any:
    return field(default=default, metadata={"unit": unit, "source": source})


@dataclass(frozen=True)
class SimParams:
    """Physical parameters of the simulated rack-satellite (see the module docstring)."""

    # --- environment -------------------------------------------------------------------
    solar_constant_w_m2: float = _p(1361.0, "W/m²", "Kopp & Lean; DESIGN")
    au_km: float = _p(149_597_870.7, "km", "IAU 2012 B2")
    sun_radius_km: float = _p(695_700.0, "km", "IAU 2015 B3 nominal solar radius")
    earth_radius_km: float = _p(6378.137, "km", "WGS-84 equatorial radius (shadow and geodesy)")
    earth_flattening: float = _p(1 / 298.257223563, "1", "WGS-84")
    earth_ir_w_m2: float = _p(237.0, "W/m²", "Gilmore, orbit-average outgoing long-wave radiation")
    earth_albedo: float = _p(0.30, "1", "Gilmore, orbit-average albedo")
    saa_lat_deg: tuple[float, float] = _p(
        (-50.0, 0.0), "deg", "estimate: box around the AP-8 >10 MeV proton contour at ~500 km"
    )
    saa_lon_deg: tuple[float, float] = _p(
        (-90.0, 40.0), "deg", "estimate: box around the AP-8 >10 MeV proton contour at ~500 km"
    )

    # --- ground link -------------------------------------------------------------------
    elevation_mask_deg: float = _p(10.0, "deg", "DESIGN")
    downlink_rate_bps: float = _p(2e9, "bit/s", "DESIGN (Ka-band)")

    # --- solar array -------------------------------------------------------------------
    array_area_m2: float = _p(640.0, "m²", "DESIGN")
    cell_efficiency: float = _p(0.30, "1", "3G30C, BOL at AM0 and 28 °C")
    cell_ref_temp_c: float = _p(28.0, "°C", "3G30C reference temperature")
    cell_temp_coeff_per_k: float = _p(-0.0023, "1/K", "estimate: relative power coefficient of 3J GaAs cells")
    array_packing_factor: float = _p(0.85, "1", "estimate: cell area / panel area")
    array_conditioning_efficiency: float = _p(0.93, "1", "estimate: MPPT converters and harness")
    array_degradation: float = _p(1.0, "1", "fixed derating beyond ageing (mismatch, strings lost); 1 = none")
    array_degradation_per_year: float = _p(
        0.0075, "1/yr", "estimate: 0.5-1 %/yr power loss of 3J GaAs arrays below ~600 km (radiation, cover-glass "
        "UV darkening, thermal cycling); SMAD: life factor (1 - d)^years, 2.75 %/yr for 1990s GaAs",
    )
    array_age_years: float = _p(0.0, "yr", "time in orbit at the run epoch (0 = beginning of life)")
    array_tracking: str = _p(
        "single_axis", "-",
        "pointing model: 'single_axis' = one drive about the orbit normal (the ISS SARJ 'alpha' joint alone; "
        "SMAD §11.4), which tracks the Sun's motion in the orbit plane but not the beta angle, so "
        "cos(incidence) = cos(beta); 'two_axis' = a second gimbal takes out beta too (incidence 0)",
    )
    array_strings: int = _p(
        ARRAY_STRINGS, "1", "independently switched strings, as the fault catalogue's (flight.hal.faults."
        "ARRAY_STRINGS); a lost string is one open circuit",
    )
    array_absorptance: float = _p(0.91, "1", "estimate: cells under cover glass")
    array_emittance_front: float = _p(0.85, "1", "estimate: cover glass")
    array_emittance_back: float = _p(0.80, "1", "estimate: painted substrate")
    array_heat_capacity_j_m2k: float = _p(1500.0, "J/(m²·K)", "estimate: ~1.7 kg/m² rigid panel")
    array_initial_temp_c: float = _p(20.0, "°C", "estimate")

    # --- battery -----------------------------------------------------------------------
    battery_capacity_j: float = _p(160e3 * 3600, "J", "DESIGN (160 kWh)")
    battery_initial_soc: float = _p(0.95, "1", "estimate")
    battery_series_cells: int = _p(192, "1", "estimate: ~710 V nominal NMC string")
    battery_ocv_soc: tuple[float, ...] = _p(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), "1", "breakpoints of the OCV curve"
    )
    battery_ocv_cell_v: tuple[float, ...] = _p(
        (3.00, 3.45, 3.58, 3.65, 3.70, 3.76, 3.83, 3.91, 3.99, 4.08, 4.20),
        "V", "estimate: typical NMC cell open-circuit voltage",
    )
    battery_resistance_ohm: float = _p(0.10, "Ω", "estimate: pack DC internal resistance")
    battery_charge_efficiency: float = _p(0.97, "1", "estimate: Li-ion energy efficiency per direction")
    battery_discharge_efficiency: float = _p(0.97, "1", "estimate: Li-ion energy efficiency per direction")
    battery_max_charge_c: float = _p(0.5, "1/h", "estimate: typical high-energy NMC cell limit")
    battery_max_discharge_c: float = _p(1.0, "1/h", "estimate: typical high-energy NMC cell limit")
    battery_taper_soc: float = _p(0.90, "1", "estimate: CC/CV charge acceptance tapers to 0 at full")
    battery_charge_temp_c: tuple[float, float] = _p((5.0, 45.0), "°C", "estimate: cell datasheets + 5 K margin")
    battery_discharge_temp_c: tuple[float, float] = _p((-20.0, 60.0), "°C", "estimate: cell datasheets")
    battery_heat_capacity_j_k: float = _p(9.0e5, "J/K", "estimate: ~900 kg pack at 1 kJ/(kg·K)")
    battery_coolant_w_k: float = _p(
        300.0, "W/K", "estimate: pack cold plate on the supply manifold (~10 K over coolant at 3 kW loss)"
    )
    battery_heater_w: float = _p(1000.0, "W", "estimate")
    battery_initial_temp_c: float = _p(20.0, "°C", "estimate")
    it_disconnect_soc: float = _p(
        0.05, "1", "estimate: low-voltage disconnect of the IT feed when running on the battery"
    )
    load_restore_soc: float = _p(0.10, "1", "estimate: SOC at which a shed load is switched back")

    # --- platform bus loads ------------------------------------------------------------
    avionics_w: float = _p(5300.0, "W", "estimate: C&DH, ADCS actuators, power conversion losses")
    pump_max_w: float = _p(2000.0, "W", "estimate: ~4 L/s at ~300 kPa, 50 % wire-to-water")
    transmitter_w: float = _p(300.0, "W", "estimate: Ka-band 2 Gbit/s transmitter")
    laser_terminal_w: float = _p(400.0, "W", "estimate: optical inter-satellite terminals")

    # --- GPUs and the rest of the IT load ----------------------------------------------
    gpu_idle_w: float = _p(150.0, "W", "DESIGN (B200 class, estimate)")
    gpu_min_limit_w: float = _p(400.0, "W", "DESIGN; nvidia-smi -q 'Min Power Limit' class value")
    gpu_max_limit_w: float = _p(1000.0, "W", "DESIGN; B200 TDP")
    gpu_max_clock_mhz: float = _p(1965.0, "MHz", "estimate: B200-class maximum boost clock")
    gpu_idle_clock_mhz: float = _p(345.0, "MHz", "estimate: idle P-state graphics clock")
    gpu_voltage_floor_frac: float = _p(
        0.6, "1", "estimate: clock fraction below which voltage stops scaling (P ∝ f, not f³)"
    )
    gpu_sw_thermal_c: float = _p(87.0, "°C", "estimate: driver max operating temperature")
    gpu_sw_thermal_slope_per_k: float = _p(0.15, "1/K", "estimate: clock cap lost per kelvin over it")
    gpu_slowdown_c: float = _p(89.0, "°C", "DESIGN; nvidia-smi 'GPU Slowdown Temp' class value")
    gpu_slowdown_release_c: float = _p(88.0, "°C", "estimate: 1 K hysteresis")
    gpu_shutdown_c: float = _p(92.0, "°C", "DESIGN; nvidia-smi 'GPU Shutdown Temp' class value")
    gpu_recover_c: float = _p(80.0, "°C", "estimate: board power-cycled by the BMC once cooled")
    rack_trip_return_c: float = _p(
        70.0, "°C", "estimate: rack manager opens the IT feed above this coolant return temperature"
    )
    rack_trip_reset_c: float = _p(45.0, "°C", "estimate: IT feed allowed again below this return temperature")
    other_it_idle_w: float = _p(14_200.0, "W", "estimate: 25 kW idle rack - 72 × 150 W (DESIGN)")
    other_it_max_w: float = _p(48_000.0, "W", "estimate: 120 kW rack - 72 × 1000 W (DESIGN)")

    # --- coolant loop ------------------------------------------------------------------
    coolant_cp_j_kgk: float = _p(3600.0, "J/(kg·K)", "estimate: ~40 % propylene glycol / water")
    coolant_max_flow_kg_s: float = _p(4.0, "kg/s", "estimate: ~9 K rise at 120 kW")
    gpu_flow_fraction: float = _p(0.6, "1", "estimate: share of the flow through GPU cold plates")
    supply_fluid_kg: float = _p(40.0, "kg", "estimate: supply manifold inventory")
    return_fluid_kg: float = _p(40.0, "kg", "estimate: return manifold and cold-plate inventory")
    gpu_die_heat_capacity_j_k: float = _p(400.0, "J/K", "estimate: die, HBM stacks and substrate")
    cold_plate_heat_capacity_j_k: float = _p(600.0, "J/K", "estimate: ~1 kg copper plate with water")
    die_to_plate_w_k: float = _p(40.0, "W/K", "estimate: TIM and spreading, 25 K at 1 kW")
    plate_to_coolant_w_k: float = _p(105.0, "W/K", "estimate: hA at full flow (~14 K at 1 kW)")
    plate_flow_exponent: float = _p(0.8, "1", "Dittus–Boelter turbulent h ∝ Re^0.8")
    stagnant_conductance_w_k: float = _p(1.0, "W/K", "estimate: conduction with the pump stopped")
    pump_time_constant_s: float = _p(2.0, "s", "estimate: pump spin-up")
    valve_slew_per_s: float = _p(0.05, "1/s", "estimate: 20 s full stroke of a motorised valve")
    initial_pump_speed_frac: float = _p(0.5, "1", "estimate: state before the first command")
    initial_valve_frac: float = _p(0.5, "1", "estimate: state before the first command")
    initial_coolant_temp_c: float = _p(20.0, "°C", "estimate: every loop node at start")

    # --- radiators ---------------------------------------------------------------------
    radiator_area_m2: float = _p(200.0, "m²", "DESIGN: planform area, radiating from both sides")
    radiator_sides: int = _p(2, "1", "DESIGN (two-sided)")
    radiator_emittance: float = _p(0.90, "1", "DESIGN")
    radiator_absorptance: float = _p(0.15, "1", "DESIGN")
    radiator_fin_efficiency: float = _p(0.90, "1", "estimate: panel not isothermal between tubes")
    radiator_sun_cos: float = _p(0.0, "1", "estimate: panels kept edge-on to the Sun (as ISS does)")
    radiator_heat_capacity_j_m2k: float = _p(4500.0, "J/(m²·K)", "estimate: ~4 kg/m² panel with fluid")
    radiator_zone_ua_w_k: float = _p(5000.0, "W/K", "estimate: tube-to-panel conductance per zone")
    radiator_segments: int = _p(4, "1", "model resolution along each zone's flow path")

    # --- radiation ---------------------------------------------------------------------
    seu_rate_per_gpu_s: float = _p(
        1.9e-4, "1/s", "estimate: 1e-11 upsets/bit/day × 192 GB HBM, outside the SAA"
    )
    saa_rate_factor: float = _p(50.0, "1", "estimate: DESIGN (~50× in the SAA)")
    seu_uncorrectable_fraction: float = _p(2e-3, "1", "estimate: multi-bit upsets beyond SECDED")

    # --- integration -------------------------------------------------------------------
    max_substep_s: float = _p(1.0, "s", "largest explicit thermal sub-step")


def defaults_table(params: SimParams | None = None) -> str:
    """Every parameter as a Markdown table: name, value, unit, source."""
    params = params or SimParams()
    rows = ["| parameter | value | unit | source |", "|---|---|---|---|"]
    for f in fields(params):
        rows.append(f"| `{f.name}` | {getattr(params, f.name)!r} | {f.metadata['unit']} | {f.metadata['source']} |")
    return "\n".join(rows)
