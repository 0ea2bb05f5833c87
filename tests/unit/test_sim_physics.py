"""sim_hw physics parts in isolation: GPUs, coolant loop and radiators, battery, radiation."""

from dataclasses import replace

import numpy as np
import pytest

from flight.hal import protocol as hal
from sim_hw.gpus import GpuRack
from sim_hw.params import SimParams, defaults_table
from sim_hw.power import Battery, PowerSystem
from sim_hw.radiation import RadiationEnvironment, in_saa
from sim_hw.thermal import KELVIN, SIGMA, CoolantLoop, earth_view_factor_vertical_plate

P = SimParams()
N = hal.N_GPUS


def rack(limit_w, load=1.0, temp_c=50.0):
    g = GpuRack(P)
    g.set_limits(np.full(N, float(limit_w)))
    g.set_load(np.full(N, float(load)))
    total = g.operate(np.full(N, float(temp_c)))
    return g, total


def bits(g, flag):
    return (g.throttle.astype(int) & flag) != 0


def test_every_parameter_has_a_unit_and_a_source():
    table = defaults_table()
    assert table.count("\n") >= 60 and "| `solar_constant_w_m2` | 1361.0 | W/m² |" in table


def test_full_limit_runs_at_max_clock_and_1000_w():
    g, total = rack(1000)
    np.testing.assert_allclose(g.power_w, 1000.0)
    np.testing.assert_allclose(g.clock_mhz, P.gpu_max_clock_mhz)
    assert total == pytest.approx(72_000.0) and not bits(g, hal.THROTTLE_SW_POWER_CAP).any()


@pytest.mark.parametrize("limit", [400.0, 575.0, 800.0, 999.0])
def test_power_limit_is_honoured_with_the_power_cap_bit(limit):
    g, _ = rack(limit)
    assert np.all(g.power_w <= limit + 1e-9) and g.power_w == pytest.approx(limit)
    assert bits(g, hal.THROTTLE_SW_POWER_CAP).all()
    # P - P_idle ∝ clock³ above the voltage floor.
    x = g.clock_mhz[0] / P.gpu_max_clock_mhz
    assert limit - P.gpu_idle_w == pytest.approx((1000 - P.gpu_idle_w) * x**3)


def test_limit_zero_parks_at_idle_and_low_limits_clamp_to_the_minimum():
    g, _ = rack(0.0)
    np.testing.assert_allclose(g.power_w, P.gpu_idle_w)
    assert bits(g, hal.THROTTLE_GPU_IDLE).all() and np.all(g.util == 0) and np.all(g.limit_w == 0)
    g, _ = rack(100.0)
    np.testing.assert_allclose(g.limit_w, P.gpu_min_limit_w)
    assert np.all(g.power_w <= P.gpu_min_limit_w + 1e-9)


def test_partial_load_draws_less_and_idle_gpu_reports_idle():
    g, _ = rack(1000, load=0.5)
    np.testing.assert_allclose(g.power_w, P.gpu_idle_w + 0.5 * (1000 - P.gpu_idle_w))
    np.testing.assert_allclose(g.util, 0.5)
    g, _ = rack(1000, load=0.0)
    np.testing.assert_allclose(g.power_w, P.gpu_idle_w)
    assert bits(g, hal.THROTTLE_GPU_IDLE).all()


def test_sw_thermal_slowdown_above_87_c():
    g, _ = rack(1000, temp_c=88.0)
    assert bits(g, hal.THROTTLE_SW_THERMAL).all() and np.all(g.clock_mhz < P.gpu_max_clock_mhz)
    g, _ = rack(1000, temp_c=86.0)
    assert not bits(g, hal.THROTTLE_SW_THERMAL).any()


def test_hw_slowdown_at_89_halves_the_clock_and_releases_below_88():
    g, _ = rack(1000, temp_c=88.9)
    g.protect(np.full(N, 88.9), True)
    assert not g.slowdown.any()
    unlatched, _ = rack(1000, temp_c=89.0)
    temps = np.full(N, 88.9)
    temps[:5] = 89.0
    g.protect(temps, True)
    assert g.slowdown[:5].all() and not g.slowdown[5:].any()
    np.testing.assert_allclose(g.clock_mhz[:5], 0.5 * unlatched.clock_mhz[:5])
    assert (bits(g, hal.THROTTLE_HW_SLOWDOWN) & bits(g, hal.THROTTLE_HW_THERMAL))[:5].all()
    assert g.power_w[:5].max() < g.power_w[5:].min()
    g.protect(np.full(N, 88.5), True)
    assert g.slowdown[:5].all(), "1 K hysteresis"
    g.protect(np.full(N, 87.9), True)
    assert not g.slowdown.any()


def test_shutdown_at_92_goes_offline_and_recovers_below_80():
    g, _ = rack(1000)
    temps = np.full(N, 70.0)
    temps[7] = 92.0
    g.protect(temps, True)
    assert not g.online[7] and g.power_w[7] == 0 and g.clock_mhz[7] == 0 and g.online.sum() == N - 1
    g.operate(np.full(N, 85.0))
    assert not g.online[7] and g.power_w[7] == 0
    g.protect(np.full(N, 80.5), True)
    assert not g.online[7], "still too hot to come back"
    g.protect(np.full(N, 79.0), True)
    assert g.online.all() and g.power_w[7] == pytest.approx(1000.0)


def test_rest_of_rack_makes_120_kw_at_full_load_and_25_kw_idle():
    g, gpu = rack(1000)
    assert gpu + g.other_it_w() == pytest.approx(120e3)
    g, gpu = rack(0.0)
    assert gpu + g.other_it_w() == pytest.approx(25e3)


def test_view_factor_of_a_vertical_plate():
    assert earth_view_factor_vertical_plate(0.0, 6378.0) == pytest.approx(0.5, abs=1e-3)
    assert earth_view_factor_vertical_plate(550.0, 6378.0) == pytest.approx(0.258, abs=2e-3)


def test_radiator_steady_state_is_the_closed_form():
    # One isothermal segment per zone, fluid leaving at the panel temperature, light panels.
    p = replace(P, radiator_segments=1, radiator_zone_ua_w_k=1e9, radiator_heat_capacity_j_m2k=300.0,
                initial_pump_speed_frac=1.0, initial_valve_frac=1.0)
    loop = CoolantLoop(p)
    q = 80e3
    sink_k4 = 200.0**4
    zeros = np.zeros(N)
    for _ in range(3000):
        loop.step(1.0, zeros, 0.0, q, 0.0, 1.0, np.ones(4), sink_k4)
    area = p.radiator_area_m2 * p.radiator_sides * p.radiator_fin_efficiency
    t_closed = (q / (p.radiator_emittance * SIGMA * area) + sink_k4) ** 0.25 - KELVIN
    np.testing.assert_allclose(loop.t_panel, t_closed, atol=1e-3)
    assert loop.radiated_w == pytest.approx(q, rel=1e-4)
    # The loop is a heat exchanger chain: outlet = panel, return = supply + Q/(ṁc).
    mc = p.coolant_max_flow_kg_s * p.coolant_cp_j_kgk
    assert loop.t_return - loop.t_supply == pytest.approx(q / mc, rel=1e-3)


def test_loop_energy_balance_with_gpus_and_segmented_panels():
    loop = CoolantLoop(P)
    gpu_w = np.linspace(200, 1000, N)
    zeros_before = (P.gpu_die_heat_capacity_j_k * loop.t_die.sum() + P.cold_plate_heat_capacity_j_k * loop.t_plate.sum()
                    + loop._c_sup * loop.t_supply + loop._c_ret * loop.t_return + loop._c_seg * loop.t_panel.sum())
    heat_in = radiated = 0.0
    for _ in range(500):
        loop.step(1.0, gpu_w, float(gpu_w.sum()), 20e3, 1e3, 0.7, np.array([1.0, 0.6, 0.3, 0.0]), 190.0**4)
        heat_in += gpu_w.sum() + 21e3
        radiated += loop.radiated_w
    after = (P.gpu_die_heat_capacity_j_k * loop.t_die.sum() + P.cold_plate_heat_capacity_j_k * loop.t_plate.sum()
             + loop._c_sup * loop.t_supply + loop._c_ret * loop.t_return + loop._c_seg * loop.t_panel.sum())
    assert after - zeros_before == pytest.approx(heat_in - radiated, rel=1e-9)


def test_gpu_steady_state_matches_the_series_resistances():
    p = replace(P, initial_pump_speed_frac=1.0)
    loop = CoolantLoop(p)
    gpu_w = np.full(N, 1000.0)
    for _ in range(200):
        loop.t_supply = 25.0  # hold the supply: a perfect controller
        loop.step(1.0, gpu_w, 72e3, 0.0, 0.0, 1.0, np.ones(4), 0.0)
    k = loop.plate_conductance_w_k()
    expected = 25.0 + 1000.0 / k + 1000.0 / p.die_to_plate_w_k
    np.testing.assert_allclose(loop.t_die, expected, atol=0.05)
    assert 55.0 < expected < 75.0


def test_pump_lag_and_valve_slew():
    loop = CoolantLoop(P)
    loop.step(1.0, np.zeros(N), 0.0, 0.0, 0.0, 1.0, np.ones(4), 0.0)
    assert loop.pump_speed == pytest.approx(1 - 0.5 * np.exp(-1.0 / P.pump_time_constant_s))
    np.testing.assert_allclose(loop.valve, P.initial_valve_frac + P.valve_slew_per_s)


def test_no_charging_below_5_c_or_above_45_c():
    for temp, accepts in [(4.9, False), (5.0, True), (25.0, True), (45.1, False)]:
        ps = PowerSystem(replace(P, battery_initial_soc=0.5, battery_initial_temp_c=temp), 0.26)
        e0 = ps.battery.energy_j
        ps.dispatch(1.0, 100e3, 8e3, 20e3, 10e3)
        assert (ps.battery.energy_j > e0) == accepts
        assert ps.ledger.residual_j() == pytest.approx(0.0, abs=1e-6)
        if not accepts:
            assert ps.shunt_w == pytest.approx(62e3) and ps.battery.current_a == 0.0


def test_battery_limits_taper_and_voltage():
    b = Battery(replace(P, battery_initial_soc=0.5))
    assert b.charge_limit_w(1.0) == pytest.approx(P.battery_max_charge_c * P.battery_capacity_j / 3600)
    assert b.discharge_limit_w(1.0) == pytest.approx(P.battery_max_discharge_c * P.battery_capacity_j / 3600)
    assert b.ocv_v() == pytest.approx(3.76 * P.battery_series_cells)
    b.apply(-100e3, 1.0)
    assert b.current_a < 0 and b.voltage_v < b.ocv_v() and b.voltage_v * b.current_a == pytest.approx(-100e3)
    full = Battery(replace(P, battery_initial_soc=0.99))
    assert full.charge_limit_w(1.0) == pytest.approx(0.1 * P.battery_max_charge_c * P.battery_capacity_j / 3600)
    cold = Battery(replace(P, battery_initial_temp_c=-25.0))
    assert cold.discharge_limit_w(1.0) == 0.0


def test_deficit_beyond_the_battery_cuts_the_it_load_then_the_bus():
    ps = PowerSystem(replace(P, battery_initial_soc=20e3 / P.battery_capacity_j), 0.26)
    ps.dispatch(1.0, 0.0, 8e3, 72e3, 48e3)
    assert not ps.it_powered and ps.bus_powered
    assert ps.ledger.gpu == 0.0 and ps.ledger.bus == pytest.approx(8e3)
    for _ in range(100):
        ps.dispatch(1.0, 0.0, 8e3, 72e3, 48e3)
    assert not ps.bus_powered and ps.battery.soc >= 0.0
    ps.dispatch(1.0, 150e3, 8e3, 72e3, 48e3)
    assert ps.bus_powered and ps.it_powered, "the array alone carries everything again"
    assert abs(ps.ledger.residual_j()) < 1e-6 * ps.ledger.harvested


def test_saa_box_and_upset_rates():
    assert in_saa(-25.0, -45.0, P) and not in_saa(40.0, -45.0, P) and not in_saa(-25.0, 100.0, P)
    online = np.ones(N, bool)
    inside = RadiationEnvironment(P, np.random.default_rng(1))
    outside = RadiationEnvironment(P, np.random.default_rng(2))
    for _ in range(200):
        inside.step(100.0, -25.0, -45.0, online)
        outside.step(100.0, 40.0, 0.0, online)
    expected_out = P.seu_rate_per_gpu_s * N * 200 * 100
    total_out = outside.corrected.sum() + outside.uncorrected.sum()
    total_in = inside.corrected.sum() + inside.uncorrected.sum()
    assert total_out == pytest.approx(expected_out, rel=0.15)
    assert total_in / total_out == pytest.approx(P.saa_rate_factor, rel=0.2)
    assert 0 < inside.uncorrected.sum() < 0.01 * total_in
    assert np.all(inside.corrected > 0), "upsets spread over every GPU"


def test_offline_gpus_count_no_upsets():
    env = RadiationEnvironment(P, np.random.default_rng(0))
    online = np.zeros(N, bool)
    online[:3] = True
    for _ in range(50):
        env.step(100.0, -25.0, -45.0, online)
    assert env.corrected[3:].sum() == 0 and env.corrected[:3].sum() > 0
