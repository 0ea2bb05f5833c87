"""The assembled Satellite: frames, determinism, energy ledger, protections, speed."""

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from flight.hal import protocol as hal
from flight.core.tle import load_tle
from sim_hw.params import SimParams
from sim_hw.satellite import Satellite

TLE = load_tle("flight/data/tle-real.txt")[1]
N, Z = hal.N_GPUS, hal.N_ZONES
FULL = {"gpu_power_limit_w": np.full(N, 1000.0), "gpu_load_frac": np.ones(N), "pump_speed_frac": 0.8,
        "radiator_valve_frac": np.ones(Z)}


def typical_actuation(tick: int, frame: dict) -> dict:
    """What a simple flight stack might send: varied limits and load, a P valve loop, switches."""
    limits = np.where(np.arange(N) % 9 == 0, 0.0, 600.0 + 400.0 * ((np.arange(N) + tick // 60) % 5) / 4)
    valves = np.clip(0.5 + 0.08 * (frame["radiator_outlet_temp_c"] - 25.0), 0.0, 1.0)
    return {"gpu_power_limit_w": limits, "gpu_load_frac": np.full(N, 0.5 + 0.5 * ((tick // 300) % 2)),
            "pump_speed_frac": 0.8, "radiator_valve_frac": valves,
            "battery_heater_on": frame["battery_temp_c"] < 10.0,
            "transmitter_on": frame["ground_contact"], "laser_terminal_on": tick % 1000 < 500}


def sunlit(sat: Satellite) -> None:
    while sat.frame()["sun_fraction"] < 1.0:
        sat.step(10.0)


def test_frame_has_every_field_with_the_declared_types():
    f = Satellite(TLE).frame()
    assert set(f) == {fld.name for fld in hal.SENSOR_FIELDS}
    for fld in hal.SENSOR_FIELDS:
        v = f[fld.name]
        if fld.shape:
            assert isinstance(v, np.ndarray) and v.shape == fld.shape
            assert v.dtype == (np.bool_ if fld.dtype == "bool" else np.float64)
        else:
            assert type(v) is (bool if fld.dtype == "bool" else float), fld.name
    assert hal.check_frame(f) == []


def test_every_field_in_range_over_an_orbit_with_typical_actuation():
    sat = Satellite(TLE, seed=3)
    frame = sat.frame()
    seen_eclipse, seen_sun = False, False
    for tick in range(int(sat.orbit_period_s)):
        sat.actuate(typical_actuation(tick, frame))
        sat.step(1.0)
        frame = sat.frame()
        problems = hal.check_frame(frame)
        assert not problems, f"tick {tick}: {problems}"
        seen_eclipse |= frame["eclipse"]
        seen_sun |= not frame["eclipse"]
    assert seen_eclipse and seen_sun
    assert frame["time_s"] == pytest.approx(int(sat.orbit_period_s))


def test_same_seed_and_commands_give_identical_frames():
    a, b = Satellite(TLE, seed=7), Satellite(TLE, seed=7)
    c = Satellite(TLE, seed=8)
    fa = a.frame()
    for tick in range(600):
        cmd = typical_actuation(tick, fa)
        for s in (a, b, c):
            s.actuate(cmd)
            s.step(1.0)
        fa, fb = a.frame(), b.frame()
        for k in fa:
            assert np.array_equal(fa[k], fb[k]), (tick, k)
    assert fa["gpu_ecc_corrected"].sum() > 0
    assert not np.array_equal(fa["gpu_ecc_corrected"], c.frame()["gpu_ecc_corrected"])


def test_actuation_applies_from_the_next_step():
    sat = Satellite(TLE)
    sat.actuate({"gpu_power_limit_w": np.full(N, 500.0), "gpu_load_frac": np.ones(N)})
    assert np.all(sat.frame()["gpu_power_limit_w"] == 1000.0)
    sat.step(1.0)
    f = sat.frame()
    assert np.all(f["gpu_power_limit_w"] == 500.0) and np.all(f["gpu_power_w"] <= 500.0)


def test_energy_ledger_closes_through_eclipse_and_sunlight():
    sat = Satellite(TLE, seed=1)
    frame = sat.frame()
    for tick in range(2400):  # starts in eclipse, ends in sunlight
        sat.actuate(typical_actuation(tick, frame))
        sat.step(1.0)
        frame = sat.frame()
    led = sat.ledger
    flow = led.gpu + led.it_other + led.bus + led.battery_loss + led.shunted + abs(led.stored)
    assert led.harvested > 0 and led.stored != 0
    assert abs(led.residual_j()) <= 0.005 * flow
    assert abs(led.residual_j()) <= 1e-9 * flow, "the accounting is exact, not merely close"


def test_cold_battery_is_not_charged_in_sunlight():
    sat = Satellite(TLE, params=replace(SimParams(), battery_initial_soc=0.5, battery_initial_temp_c=0.0))
    sunlit(sat)
    sat.power.battery.temp_c = 0.0
    soc0 = sat.frame()["battery_soc"]
    for _ in range(100):
        sat.step(1.0)
        f = sat.frame()
        assert f["battery_temp_c"] < 5.0 and f["battery_current_a"] <= 0.0
    assert f["battery_soc"] <= soc0 and sat.power.shunt_w > 0
    sat.power.battery.temp_c = 20.0
    sat.step(1.0)
    assert sat.frame()["battery_current_a"] > 0.0


def test_gpus_slow_down_then_shut_down_without_coolant_flow():
    sat = Satellite(TLE)
    sat.actuate({**FULL, "pump_speed_frac": 0.0})
    first_slow = first_off = None
    for _ in range(600):
        sat.step(1.0)
        f = sat.frame()
        reasons = f["gpu_throttle_reasons"].astype(int)
        if first_slow is None and (reasons & hal.THROTTLE_HW_SLOWDOWN).any():
            first_slow = f["gpu_temp_c"].max()
            hot = f["gpu_temp_c"] >= 89.0
            assert np.all(reasons[hot] & hal.THROTTLE_HW_THERMAL)
            assert np.all(f["gpu_clock_mhz"][hot] <= 0.5 * SimParams().gpu_max_clock_mhz)
        if first_off is None and not f["gpu_online"].all():
            first_off = f["gpu_temp_c"].max()
            assert np.all(f["gpu_power_w"][~f["gpu_online"]] == 0.0)
            break
    assert first_slow is not None and 89.0 <= first_slow < 92.0
    assert first_off is not None and first_off >= 92.0


def test_low_battery_in_eclipse_sheds_the_rack_but_keeps_the_bus():
    sat = Satellite(TLE, params=replace(SimParams(), battery_initial_soc=0.06))
    sat.actuate(FULL)
    assert sat.frame()["eclipse"]
    for _ in range(200):
        sat.step(1.0)
    f = sat.frame()
    assert not f["gpu_online"].any() and np.all(f["gpu_power_w"] == 0) and f["bus_load_w"] > 0
    assert 0.04 < f["battery_soc"] < SimParams().it_disconnect_soc
    assert abs(sat.ledger.residual_j()) < 1e-9 * sat.ledger.bus


def test_full_load_thermal_state_is_in_the_design_band():
    sat = Satellite(TLE)
    sat.actuate(FULL)
    for _ in range(1800):
        sat.step(1.0)
    f = sat.frame()
    assert 55.0 < f["gpu_temp_c"].max() < 80.0
    assert 15.0 < f["coolant_supply_temp_c"] < 35.0
    it_heat = f["gpu_power_w"].sum() + sat.gpus.other_it_w()
    rise = f["coolant_return_temp_c"] - f["coolant_supply_temp_c"]
    assert rise == pytest.approx(it_heat / (f["coolant_flow_kg_s"] * SimParams().coolant_cp_j_kgk), rel=0.1)


def test_start_time_and_bad_arguments():
    start = datetime(2020, 5, 8, tzinfo=timezone.utc)
    sat = Satellite(TLE, start_utc=start)
    assert sat.frame()["utc_unix_s"] == pytest.approx(start.timestamp())
    with pytest.raises(ValueError):
        sat.step(0.0)
    with pytest.raises(ValueError):
        sat.step(float("nan"))
    geo = ("1 26038U 00001A   20128.50000000 -.00000100  00000-0  00000+0 0  9990",
           "2 26038   0.0300 100.0000 0002000 100.0000 260.0000  1.00270000 75000")
    with pytest.raises(ValueError):
        Satellite(geo)
