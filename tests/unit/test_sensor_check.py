"""The thermal sensor cross-check: healthy sensors through load steps and eclipses are never
declared failed; a stuck GPU or coolant sensor is, after the persistence time, once, and a
conservative estimate replaces it in the thermal controller."""

import numpy as np
import pytest

from flight.subsystems.thermal.sensor_check import (
    COOLANT_RESIDUAL_LIMIT_K,
    PACKAGE_TAU_S,
    PERSISTENCE_S,
    SUBSTITUTE_MARGIN_K,
    SensorCheck,
)
from flight.core.tle import load_tle
from sim_hw import faults
from flight.hal.inprocess import InProcessRack
from sim_hw.local import SimRig

R_K_PER_W = 0.035
POWER_W = np.where(np.arange(72) % 2 == 0, 400.0, 1000.0)


def frame(power_w=POWER_W, temps=None, supply_c=25.0, outlets=(25.0, 25.0, 25.0, 25.0), online=None):
    """A sensor frame at thermal steady state: die = supply + 2 K + R·P unless ``temps`` is given."""
    return {"gpu_power_w": np.asarray(power_w, dtype=float),
            "gpu_temp_c": supply_c + 2.0 + R_K_PER_W * np.asarray(power_w) if temps is None else np.asarray(temps),
            "gpu_online": np.ones(72, dtype=bool) if online is None else online,
            "coolant_supply_temp_c": supply_c, "radiator_outlet_temp_c": np.array(outlets, dtype=float)}


def run(check: SensorCheck, frames) -> list[tuple[int, str]]:
    return [(i, name) for i, f in enumerate(frames) for name in check.update(f)]


def test_steady_healthy_sensors_are_never_failed():
    check = SensorCheck(72, 4, R_K_PER_W, 1.0)
    assert run(check, [frame()] * 600) == [] and check.failed_count == 0


def test_a_gpu_reading_off_its_neighbours_fails_after_the_persistence_time_once():
    check = SensorCheck(72, 4, R_K_PER_W, 1.0)
    run(check, [frame()] * 100)
    wrong = frame()["gpu_temp_c"].copy()
    wrong[3] -= 15.0  # reads cold: the dangerous way
    failed = run(check, [frame(temps=wrong)] * 200)
    assert failed == [(int(PERSISTENCE_S) - 1, "gpu_temp_c[3]")]
    assert check.failed_count == 1 and check.gpu_failed[3]
    used = check.gpu_temps_c(frame(temps=wrong))
    truth = frame()["gpu_temp_c"]
    assert used[3] == pytest.approx(truth[3] + SUBSTITUTE_MARGIN_K, abs=0.1)
    np.testing.assert_array_equal(np.delete(used, 3), np.delete(wrong, 3))


def test_a_load_step_following_the_package_lag_is_not_a_failure():
    check = SensorCheck(72, 4, R_K_PER_W, 1.0)
    run(check, [frame()] * 100)
    stepped = POWER_W.copy()
    stepped[:10] = 150.0  # ten GPUs go idle; their dies cool with the package's time constant
    temps = frame()["gpu_temp_c"].copy()
    target = frame(power_w=stepped)["gpu_temp_c"]
    frames = []
    for _ in range(400):
        temps = temps + (target - temps) * (1.0 - np.exp(-1.0 / PACKAGE_TAU_S))
        frames.append(frame(power_w=stepped, temps=temps))
    assert run(check, frames) == []


def test_offline_gpus_are_not_judged():
    check = SensorCheck(72, 4, R_K_PER_W, 1.0)
    online = np.ones(72, dtype=bool)
    online[5] = False
    temps = frame()["gpu_temp_c"].copy()
    temps[5] = 25.0  # a dead board cools to the coolant while its power reads 0
    assert run(check, [frame(temps=temps, online=online)] * 200) == []


def test_a_stuck_supply_sensor_fails_and_the_outlets_stand_in_for_it():
    check = SensorCheck(72, 4, R_K_PER_W, 1.0)
    run(check, [frame()] * 100)
    failed = run(check, [frame(supply_c=25.0 + COOLANT_RESIDUAL_LIMIT_K + 3.0)] * 100)
    assert failed == [(int(PERSISTENCE_S) - 1, "coolant_supply_temp_c")] and check.supply_failed
    assert check.supply_c(frame(supply_c=40.0)) == pytest.approx(25.0 + SUBSTITUTE_MARGIN_K)


def test_a_zone_outlet_off_the_other_three_fails():
    check = SensorCheck(72, 4, R_K_PER_W, 1.0)
    failed = run(check, [frame(outlets=(25.0, 25.5, 10.0, 24.8))] * 100)
    assert failed == [(int(PERSISTENCE_S) - 1, "radiator_outlet_temp_c[2]")]
    assert check.outlet_failed.tolist() == [False, False, True, False]


def test_a_bad_tick_is_refused():
    with pytest.raises(ValueError):
        SensorCheck(72, 4, R_K_PER_W, 0.0)


# --- closed loop: the thermal controller flying the simulated satellite --------------------------


@pytest.fixture
def rack(tmp_path):
    tle = load_tle("flight/data/tle-real.txt")[1]
    r = InProcessRack(tmp_path, SimRig.lockstep(tle), tle)
    yield r
    r.close()


def sensor_events(rack):
    return [(t, d["args"]["sensor"]) for t, name, d in rack.events if name == "thermal.sensor_failed"]


def test_one_orbit_at_full_load_with_half_pump_flow_fails_no_healthy_sensor(rack):
    rack.fly(300)
    rack.rig.sat.inject_fault(faults.validate("pump_degraded", 0.5))
    rack.fly(5739 - 300)
    assert sensor_events(rack) == []
    assert rack.series("thermal.hk", "sensors_failed")[1].max() == 0


def test_a_stuck_gpu_sensor_is_found_and_replaced_in_closed_loop(rack):
    rack.fly(60)
    rack.rig.sat.inject_fault(faults.validate("sensor_stuck", 0, "gpu_temp_c[7]"))
    rack.fly(60)
    thermal = rack.subsystem("thermal")
    thermal.execute("set_setpoint", {"setpoint_c": 35.0})  # the physics moves: every die warms by ~10 K
    rack.fly(480)
    assert [s for _, s in sensor_events(rack)] == ["gpu_temp_c[7]"]
    assert sensor_events(rack)[0][0] < 120 + 120
    assert rack.series("thermal.hk", "sensors_failed")[1][-1] == 1
    truth = rack.rig.sat.thermal.t_die[7]
    assert thermal.sensors.gpu_temps_c(rack.rig.sat.frame())[7] == pytest.approx(truth + SUBSTITUTE_MARGIN_K, abs=3.0)
    assert rack.rig.sat.gpus.shutdown.sum() == 0


def test_a_stuck_supply_sensor_does_not_run_the_coolant_away(rack):
    rack.fly(300)
    rack.rig.sat.inject_fault(faults.validate("sensor_stuck", 0, "coolant_supply_temp_c"))
    rack.fly(1500)
    assert [s for _, s in sensor_events(rack)] == ["coolant_supply_temp_c"]
    setpoint = rack.subsystem("thermal").setpoint_c
    assert abs(rack.rig.sat.thermal.t_supply - setpoint) < 6.0
    assert rack.rig.sat.gpus.online.all()
