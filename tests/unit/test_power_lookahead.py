"""The power manager's energy plan looks ahead to the forecast eclipse (issue 3): in shadow
it spends exactly the energy above the planning floor by sunrise, in sunlight it charges
toward its target by the shadow's start, within the battery's C-rate and temperature limits;
without a TLE it plans for the worst eclipse and says so."""

import numpy as np
import pytest

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.subsystems.power.eclipse_forecast import EDGE_TOLERANCE_S, Eclipse, EclipseForecast
from flight.platform import BATTERY_CHARGE_EFFICIENCY, BATTERY_DISCHARGE_EFFICIENCY
from flight.subsystems.power.manager import (
    CHARGE_WINDOW_MIN_S,
    ECLIPSE_MAX_S,
    PLAN_MARGIN_SOC,
    SOC_TARGET,
    battery_limits_w,
    plan_energy,
    PowerManager,
    plan_reactive,
)
from flight.core.tle import load_tle
from flight.hal.inprocess import InProcessRack
from sim_hw.local import SimRig
from tests.support.power import power_manager, sunlit_frame

CAPACITY_J = 160 * 3.6e6
"""160 kWh (DESIGN.md)."""
FLOOR = 0.70
LOAD_W = 50e3


def shadow_plan(soc: float, remaining_s: float, temp_c: float = 20.0):
    return plan_energy(1000.0, soc, CAPACITY_J, temp_c, FLOOR, Eclipse(0.0, 1000.0 + remaining_s), True, LOAD_W)


@pytest.mark.parametrize("soc, remaining_s", [(0.95, 2136.0), (0.85, 1200.0), (0.73, 300.0)])
def test_in_shadow_the_energy_above_the_floor_lasts_exactly_to_sunrise(soc, remaining_s):
    plan = shadow_plan(soc, remaining_s)
    above_j = (soc - FLOOR - PLAN_MARGIN_SOC) * CAPACITY_J * BATTERY_DISCHARGE_EFFICIENCY
    assert plan.in_eclipse and plan.allowance_w * remaining_s == pytest.approx(above_j)
    assert plan.available_j == pytest.approx(above_j) and plan.needed_j == pytest.approx(LOAD_W * remaining_s)


def test_a_shorter_night_allows_more_power_than_the_worst_case():
    """The look-ahead's gain: the same battery, a 20-minute eclipse instead of the 35.6-minute one."""
    assert shadow_plan(0.9, 1200.0).allowance_w > 1.7 * shadow_plan(0.9, ECLIPSE_MAX_S).allowance_w


def test_allowance_is_bounded_by_the_c_rate_and_the_cell_temperature():
    discharge_max_w, charge_max_w = battery_limits_w(CAPACITY_J, 20.0)
    assert discharge_max_w == pytest.approx(160e3) and charge_max_w == pytest.approx(80e3)
    assert shadow_plan(0.95, 2.0).allowance_w == pytest.approx(discharge_max_w)
    assert shadow_plan(0.95, 1000.0, temp_c=-25.0).allowance_w == 0.0
    cold = plan_energy(0.0, 0.8, CAPACITY_J, 2.0, FLOOR, Eclipse(3000.0, 5000.0), False, LOAD_W)
    assert cold.reserve_w == 0.0  # no charging below 5 °C: holding power back would only waste it


def test_below_the_floor_nothing_is_allowed():
    assert shadow_plan(FLOOR, 1000.0).allowance_w == 0.0
    assert shadow_plan(FLOOR - 0.1, 1000.0).margin_j < 0


def test_in_sunlight_the_reserve_reaches_the_target_by_the_shadow():
    soc, time_to_s = 0.80, 3000.0
    plan = plan_energy(0.0, soc, CAPACITY_J, 20.0, FLOOR, Eclipse(time_to_s, time_to_s + 2000.0), False, LOAD_W)
    assert plan.reserve_w * time_to_s * BATTERY_CHARGE_EFFICIENCY == pytest.approx((SOC_TARGET - soc) * CAPACITY_J)
    assert plan.needed_j == pytest.approx(LOAD_W * 2000.0)
    entry_j = (SOC_TARGET - FLOOR - PLAN_MARGIN_SOC) * CAPACITY_J * BATTERY_DISCHARGE_EFFICIENCY
    assert plan.available_j == pytest.approx(entry_j)
    soon = plan_energy(0.0, soc, CAPACITY_J, 20.0, FLOOR, Eclipse(60.0, 2060.0), False, LOAD_W)
    assert soon.reserve_w == pytest.approx(plan.reserve_w * time_to_s / CHARGE_WINDOW_MIN_S)
    full = plan_energy(0.0, 0.97, CAPACITY_J, 20.0, FLOOR, Eclipse(3000.0, 5000.0), False, LOAD_W)
    assert full.reserve_w == 0.0


def test_a_load_the_target_cannot_carry_raises_the_goal_and_shows_a_negative_margin():
    heavy_w = 120e3
    plan = plan_energy(0.0, 0.80, CAPACITY_J, 20.0, FLOOR, Eclipse(3000.0, 5136.0), False, heavy_w)
    assert plan.margin_j < 0
    goal_soc = 0.80 + plan.reserve_w * 3000.0 * BATTERY_CHARGE_EFFICIENCY / CAPACITY_J
    assert goal_soc > SOC_TARGET


def test_without_a_tle_the_plan_is_the_worst_case_and_an_event_says_so(tmp_path):
    pm, out = power_manager(tmp_path)
    for tick in (1, 2, 3):
        pm.on_frame(tick, float(tick), sunlit_frame())
    assert [name for _, name, _ in out if name == "power.forecast_unavailable"] == ["power.forecast_unavailable"]
    assert pm.plan.time_to_eclipse_s == pytest.approx(3600.0)
    pm.on_frame(4, 4.0, sunlit_frame(sun_fraction=0.0))
    assert pm.plan.in_eclipse and pm.plan.eclipse.duration_s == ECLIPSE_MAX_S
    pm.housekeeping()
    assert out[-1][2]["forecast"] == "worst_case"
    pm.on_stop()


def test_one_orbit_uses_the_battery_down_to_the_floor_and_not_below(tmp_path):
    """The plan in closed loop: the real power, thermal and job code flying sim_hw through
    a β≈0 eclipse at full demand reach sunrise just above the floor, and the forecast the
    power manager reports is the orbit's."""
    _, tle = load_tle("flight/data/tle-beta0.txt", "RACKSAT-BETA0")
    rack = InProcessRack(tmp_path, SimRig.lockstep(tle), tle)
    socs: list[float] = []
    rack.fly(4200.0, on_frame=lambda frame: socs.append(frame["battery_soc"]))
    rack.close()
    expected = EclipseForecast.from_tle(tle).next_eclipse(0.0)
    _, start = rack.series("power.hk", "eclipse_start_s")
    assert start[0] == pytest.approx(expected.start_s, abs=2 * EDGE_TOLERANCE_S)
    _, forecast = rack.series("power.hk", "forecast")
    assert set(forecast) == {"tle"}
    floor = rack.subsystem("power").soc_floor
    lowest = min(socs)
    assert floor <= lowest <= floor + PLAN_MARGIN_SOC + 0.01
    assert int(np.argmin(socs)) + 1 == pytest.approx(expected.end_s, abs=120)


def test_the_sun_sensor_overrules_a_forecast_of_sunlight(tmp_path):
    """A stale element set: the forecast says sunlit, the Sun is hidden. The battery still
    carries the load, planned as the worst eclipse."""
    _, tle = load_tle("flight/data/tle-beta0.txt", "RACKSAT-BETA0")
    pm, out = power_manager(tmp_path, tle_lines=tle)
    pm.on_frame(1, 100.0, sunlit_frame())
    assert not pm.plan.in_eclipse and pm.plan.eclipse.start_s == pytest.approx(1770.0, abs=1.0)
    pm.on_frame(2, 101.0, sunlit_frame(sun_fraction=0.0, solar_array_power_w=0.0, shunt_power_w=0.0))
    assert pm.plan.in_eclipse and pm.plan.eclipse.duration_s == ECLIPSE_MAX_S and pm.plan.allowance_w > 0
    assert not [name for _, name, _ in out if name == "power.forecast_unavailable"]
    pm.on_stop()


def test_the_reactive_policy_spends_at_the_c_rate_until_the_floor_and_holds_nothing_back():
    discharge_max_w, _ = battery_limits_w(CAPACITY_J, 20.0)
    assert plan_reactive(0.71, CAPACITY_J, 20.0, FLOOR, True).allowance_w == discharge_max_w
    assert plan_reactive(FLOOR, CAPACITY_J, 20.0, FLOOR, True).allowance_w == 0.0
    assert plan_reactive(0.5, CAPACITY_J, 20.0, FLOOR, False).reserve_w == 0.0
    assert plan_reactive(0.9, CAPACITY_J, -30.0, FLOOR, True).allowance_w == 0.0  # outside the discharge window
    plan = plan_reactive(0.9, CAPACITY_J, 20.0, FLOOR, True)
    assert plan.eclipse is None and plan.needed_j == 0.0 and plan.margin_j > 0


def test_an_unknown_energy_plan_is_refused(tmp_path):
    config = RunConfig(bus=BusAddress("inproc://a", "inproc://b", "inproc://c"), data_dir=str(tmp_path),
                       params={"power": {"energy_plan": "hopeful"}})
    with pytest.raises(ValueError, match="energy_plan"):
        PowerManager(config, lambda *a: None)


def test_without_look_ahead_the_rack_runs_flat_out_into_the_floor_before_sunrise(tmp_path):
    """The naive baseline in closed loop, the same orbit as above: the battery reaches the
    floor long before sunrise, the idle rack then drains it below, and the mode machine's
    POWER_SAVE takes over; the look-ahead plan (above) reaches sunrise just above the floor."""
    _, tle = load_tle("flight/data/tle-beta0.txt", "RACKSAT-BETA0")
    rack = InProcessRack(tmp_path, SimRig.lockstep(tle), tle, params={"power": {"energy_plan": "reactive"}})
    socs: list[float] = []
    rack.fly(4200.0, on_frame=lambda frame: socs.append(frame["battery_soc"]))
    rack.close()
    eclipse = EclipseForecast.from_tle(tle).next_eclipse(0.0)
    floor = rack.subsystem("power").soc_floor
    reached_s = next(t for t, soc in enumerate(socs, start=1) if soc <= floor)
    assert eclipse.start_s < reached_s < eclipse.end_s - 300.0
    assert min(socs) < floor - 0.01
    _, modes = rack.series("power.hk", "mode")
    assert "POWER_SAVE" in set(modes)
    _, plans = rack.series("power.hk", "energy_plan")
    assert set(plans) == {"reactive"}
