"""Fault injection: the catalogue's validation, each fault's physical effect on the simulated
satellite, clearing, timed faults, the hal.inject_fault telecommand on the bridge, and the
solar array's pointing model (output against the beta angle)."""

import math
from dataclasses import replace

import numpy as np
import pytest
from sgp4.exporter import export_tle

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.component import CommandError
from flight.hal.bridge import HalBridge
from flight.core.orbit import Orbit
from flight.core.tle import load_tle
from flight.hal import faults
from sim_hw.local import SimRig
from sim_hw.params import SimParams
from sim_hw.power import SolarArray
from sim_hw.satellite import Satellite
from tests.support.orbits import EQUINOX, circular_orbit

TLE = load_tle("flight/data/tle-real.txt")[1]
BETA0 = load_tle("flight/data/tle-beta0.txt", "RACKSAT-BETA0")[1]
P = SimParams()


def sunlit_satellite(**params) -> Satellite:
    """The β≈0 satellite at its epoch, which is in sunlight (its first eclipse starts at 1770 s)."""
    sat = Satellite(BETA0, seed=1, params=replace(P, **params))
    sat.step(1.0)
    assert sat.frame()["sun_fraction"] == 1.0
    return sat


def busy(sat: Satellite, limit_w: float = 1000.0) -> None:
    """Offer full load to every GPU at ``limit_w``."""
    sat.actuate({"gpu_load_frac": np.ones(72), "gpu_power_limit_w": np.full(72, limit_w)})


def fly(sat: Satellite, seconds: int) -> None:
    for _ in range(seconds):
        sat.step(1.0)


def inject(sat: Satellite, fault: str, value: float = 0.0, target: str = "", duration_s: float = 0.0) -> None:
    sat.inject_fault(faults.validate(fault, value, target, duration_s))


def ledger_closes(sat: Satellite) -> bool:
    led = sat.ledger
    return abs(led.residual_j()) < 1e-9 * max(led.harvested, 1.0)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("request_, why", [
    (("no_such_fault",), "unknown fault"),
    (("pump_degraded", 1.5), "flow fraction"),
    (("pump_degraded", -0.1), "flow fraction"),
    (("pump_degraded", math.nan), "finite"),
    (("pump_degraded", True), "finite"),
    (("radiator_area_lost", 0.3, "gpu_temp_c[1]"), "takes no target"),
    (("battery_capacity_lost", 0.95), "capacity fraction"),
    (("solar_string_lost", 2.5), "integer"),
    (("solar_string_lost", 0), "strings lost"),
    (("solar_string_lost", P.array_strings + 1), "strings lost"),
    (("sensor_stuck", 0, "gpu_temp_c"), "needs an index"),
    (("sensor_stuck", 0, "gpu_temp_c[72]"), "needs an index"),
    (("sensor_stuck", 0, "coolant_supply_temp_c[0]"), "scalar"),
    (("sensor_stuck", 0, "gpu_online[3]"), "numeric HAL sensor"),
    (("sensor_stuck", 0, "no_such_sensor"), "numeric HAL sensor"),
    (("sensor_stuck", 1.0, "coolant_supply_temp_c"), "takes no value"),
    (("sensor_noisy", 200.0, "battery_temp_c"), "noise standard deviation"),
    (("seu_storm", 100.0), "needs duration_s"),
    (("seu_storm", 0.5, "", 60.0), "rate multiplier"),
    (("gpu_dead", 0, "72"), "GPU index"),
    (("gpu_dead", 0, "-1"), "GPU index"),
    (("gpu_dead", 0, ""), "GPU index"),
    (("link_outage", 0, "", 0.0), "needs duration_s"),
    (("link_outage", 0, "", -5.0), "duration_s"),
    (("link_outage", 0, "", faults.MAX_DURATION_S * 2), "duration_s"),
])
def test_invalid_faults_are_refused_with_the_reason_and_change_nothing(request_, why):
    sat = Satellite(TLE, seed=1)
    before = sat.frame()
    with pytest.raises(faults.FaultError, match=why):
        faults.validate(*request_)
    with pytest.raises(faults.FaultError, match=why):
        sat.faults.apply(dict(zip(("fault", "value", "target", "duration_s"), request_), action="inject"))
    assert sat.faults.active == {}
    after = sat.frame()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_the_catalogue_names_every_fault_of_the_brief_and_describes_each():
    assert set(faults.CATALOGUE) == {"pump_degraded", "radiator_area_lost", "battery_capacity_lost",
                                     "solar_string_lost", "sensor_stuck", "sensor_noisy", "seu_storm",
                                     "gpu_dead", "link_outage"}
    for kind in faults.CATALOGUE.values():
        assert kind.name in kind.describe() and kind.doc


def test_targets_are_normalised():
    assert faults.validate("gpu_dead", 0, "07").target == "7"
    assert faults.validate("sensor_stuck", 0, "radiator_outlet_temp_c[2]").target == "radiator_outlet_temp_c[2]"


def test_a_clear_of_an_inactive_fault_or_a_bad_action_is_refused():
    sat = Satellite(TLE, seed=1)
    with pytest.raises(faults.FaultError, match="no active fault"):
        sat.faults.apply({"action": "clear", "fault": "pump_degraded", "target": ""})
    with pytest.raises(faults.FaultError, match="action"):
        sat.faults.apply({"action": "explode", "fault": "pump_degraded"})
    with pytest.raises(faults.FaultError, match="action"):
        sat.faults.apply(["inject"])


# --- physical effects ---------------------------------------------------------------------------


def test_pump_degraded_halves_the_flow_and_the_cold_plate_conductance_falls():
    sat = sunlit_satellite()
    fly(sat, 30)
    flow, conductance = sat.frame()["coolant_flow_kg_s"], sat.thermal.plate_conductance_w_k()
    inject(sat, "pump_degraded", 0.5)
    sat.step(1.0)
    assert sat.frame()["coolant_flow_kg_s"] == pytest.approx(0.5 * flow)
    assert sat.thermal.plate_conductance_w_k() < 0.75 * conductance
    assert sat.frame()["pump_speed_frac"] == pytest.approx(P.initial_pump_speed_frac)  # the motor still turns
    assert sat.clear_fault("pump_degraded")
    sat.step(1.0)
    assert sat.frame()["coolant_flow_kg_s"] == pytest.approx(flow)


def test_pump_degraded_at_full_load_runs_the_gpus_hotter():
    hot, cool = sunlit_satellite(), sunlit_satellite()
    inject(hot, "pump_degraded", 0.5)
    for sat in (hot, cool):
        busy(sat)
        sat.actuate({"pump_speed_frac": 1.0})
        fly(sat, 300)
    rise_hot = hot.frame()["gpu_temp_c"].mean() - hot.frame()["coolant_supply_temp_c"]
    rise_cool = cool.frame()["gpu_temp_c"].mean() - cool.frame()["coolant_supply_temp_c"]
    assert rise_hot > rise_cool + 5.0


def test_radiator_area_lost_radiates_a_quarter_less_from_the_same_panels():
    lost, whole = sunlit_satellite(), sunlit_satellite()
    for sat in (lost, whole):
        sat.thermal.t_panel[:] = 40.0  # a warm panel, so radiation dominates the sink
    inject(lost, "radiator_area_lost", 0.25)
    lost.step(1.0)
    whole.step(1.0)
    assert lost.thermal.radiated_w == pytest.approx(0.75 * whole.thermal.radiated_w, rel=0.01)
    assert lost.clear_fault("radiator_area_lost")
    assert lost.thermal.radiating_frac == 1.0


def test_battery_capacity_lost_keeps_soc_and_the_energy_ledger_closed():
    sat = sunlit_satellite()
    busy(sat)
    fly(sat, 20)
    soc, capacity = sat.frame()["battery_soc"], sat.frame()["battery_capacity_j"]
    inject(sat, "battery_capacity_lost", 0.2)
    sat.step(1.0)
    frame = sat.frame()
    assert frame["battery_capacity_j"] == pytest.approx(0.8 * capacity)
    assert frame["battery_soc"] == pytest.approx(soc, abs=1e-3)
    fly(sat, 200)
    assert ledger_closes(sat)
    sat.clear_fault("battery_capacity_lost")
    assert sat.frame()["battery_capacity_j"] == pytest.approx(capacity)
    fly(sat, 10)
    assert ledger_closes(sat)


def test_solar_strings_lost_take_their_share_of_the_output():
    lost, whole = sunlit_satellite(), sunlit_satellite()
    inject(lost, "solar_string_lost", 3)
    lost.step(1.0)
    whole.step(1.0)
    share = (P.array_strings - 3) / P.array_strings
    assert lost.frame()["solar_array_power_w"] == pytest.approx(share * whole.frame()["solar_array_power_w"],
                                                                rel=1e-6)
    fly(lost, 100)
    assert lost.power.array.temp_c > whole.power.array.temp_c  # the lost strings' sunlight heats the panel
    assert ledger_closes(lost)


def test_a_stuck_sensor_freezes_while_the_physics_moves_on():
    sat = sunlit_satellite()
    fly(sat, 10)
    stuck = sat.frame()["gpu_temp_c"][5]
    inject(sat, "sensor_stuck", target="gpu_temp_c[5]")
    busy(sat)
    fly(sat, 120)
    frame = sat.frame()
    assert frame["gpu_temp_c"][5] == stuck
    assert sat.thermal.t_die[5] > stuck + 20.0 and frame["gpu_temp_c"][4] > stuck + 20.0
    sat.clear_fault("sensor_stuck", "gpu_temp_c[5]")
    assert sat.frame()["gpu_temp_c"][5] == pytest.approx(sat.thermal.t_die[5])


def test_a_stuck_scalar_sensor():
    sat = sunlit_satellite()
    inject(sat, "sensor_stuck", target="coolant_supply_temp_c")
    stuck = sat.frame()["coolant_supply_temp_c"]
    busy(sat)
    fly(sat, 200)
    assert sat.frame()["coolant_supply_temp_c"] == stuck != pytest.approx(sat.thermal.t_supply, abs=0.5)


def test_a_noisy_sensor_scatters_around_the_truth_by_its_sigma():
    sat = sunlit_satellite()
    inject(sat, "sensor_noisy", 2.0, "battery_temp_c")
    errors = []
    for _ in range(400):
        sat.step(1.0)
        errors.append(sat.frame()["battery_temp_c"] - sat.power.battery.temp_c)
    assert abs(np.mean(errors)) < 0.4 and np.std(errors) == pytest.approx(2.0, rel=0.15)


def test_seu_storm_multiplies_the_upsets_and_ends_after_its_duration():
    quiet, storm = sunlit_satellite(), sunlit_satellite()
    inject(storm, "seu_storm", 1000.0, duration_s=100.0)
    for sat in (quiet, storm):
        fly(sat, 100)
    upsets = {k: s.frame()["gpu_ecc_corrected"].sum() for k, s in (("quiet", quiet), ("storm", storm))}
    # ~1.9e-4/s × 72 GPUs × 100 s ≈ 1.4 upsets quiet; ×1000 ≈ 1400 in the storm (Poisson)
    assert upsets["storm"] > 1000 and upsets["quiet"] < 20
    assert storm.faults.active == {} and storm.radiation.rate_factor == 1.0
    assert SimRig(storm, 1.0, None).take_ended_faults() == [("seu_storm", "")]


def test_a_dead_gpu_draws_nothing_does_no_work_and_reports_offline():
    sat = sunlit_satellite()
    busy(sat)
    fly(sat, 5)
    inject(sat, "gpu_dead", target="9")
    fly(sat, 60)
    frame = sat.frame()
    assert not frame["gpu_online"][9] and frame["gpu_online"].sum() == 71
    assert frame["gpu_power_w"][9] == 0.0 and frame["gpu_clock_mhz"][9] == 0.0 and sat.gpus.throughput[9] == 0.0
    assert frame["gpu_temp_c"][9] < frame["gpu_temp_c"][8] - 20.0  # it cools to the coolant
    sat.clear_fault("gpu_dead", "9")
    sat.step(1.0)
    assert sat.frame()["gpu_online"][9] and sat.frame()["gpu_power_w"][9] > 0.0


def test_link_outage_takes_the_ground_contact_away_for_its_duration():
    sat = Satellite(TLE, seed=1)
    for _ in range(86400):
        sat.step(10.0)
        if sat.frame()["ground_contact"]:
            break
    assert sat.frame()["ground_contact"]
    inject(sat, "link_outage", duration_s=20.0)
    frame = sat.frame()
    assert not frame["ground_contact"] and frame["ground_station_id"] == -1.0 and frame["downlink_rate_bps"] == 0.0
    sat.step(20.0)
    assert sat.frame()["ground_contact"] and not sat.link_outage


def test_injecting_the_same_fault_again_replaces_it():
    sat = sunlit_satellite()
    inject(sat, "pump_degraded", 0.5)
    inject(sat, "pump_degraded", 0.8)
    assert len(sat.faults.active) == 1 and sat.thermal.flow_capacity_frac == 0.8
    assert sat.clear_fault("pump_degraded") and not sat.clear_fault("pump_degraded")
    assert sat.thermal.flow_capacity_frac == 1.0


# --- the telecommand on the bridge ---------------------------------------------------------------


def bridge_with_rig(tmp_path):
    events = []
    config = RunConfig(bus=BusAddress("inproc://a", "inproc://b", "inproc://c"), data_dir=str(tmp_path))
    bridge = HalBridge(config, lambda kind, name, data: events.append((name, data)), lambda *_: None)
    rig = SimRig(Satellite(TLE, seed=1), 1.0, None)
    bridge.send_fault = rig.fault
    return bridge, rig, events


def test_hal_inject_fault_applies_the_fault_and_announces_it(tmp_path):
    bridge, rig, events = bridge_with_rig(tmp_path)
    args = {"fault": "gpu_dead", "value": 0.0, "target": "3", "duration_s": 0.0}
    assert bridge.execute("inject_fault", args) == "gpu_dead injected"
    assert ("gpu_dead", "3") in rig.sat.faults.active and bridge.faults_active == {("gpu_dead", "3")}
    assert events[-1][0] == "hal.fault_injected" and events[-1][1]["severity"] == "MEDIUM"
    bridge.execute("clear_fault", {"fault": "gpu_dead", "target": "3"})
    assert rig.sat.faults.active == {} and events[-1][0] == "hal.fault_cleared"


def test_a_dead_gpu_is_announced_by_the_bridge_and_its_return_too(tmp_path):
    bridge, rig, events = bridge_with_rig(tmp_path)
    bridge.accumulate(rig.step()[2])
    bridge.execute("inject_fault", {"fault": "gpu_dead", "value": 0.0, "target": "3", "duration_s": 0.0})
    bridge.accumulate(rig.step()[2])
    bridge.accumulate(rig.step()[2])
    offline = [d for name, d in events if name == "hal.gpus_offline"]
    assert len(offline) == 1 and offline[0]["args"]["gpus"] == "3" and offline[0]["args"]["shutdowns"] == 0
    assert offline[0]["args"]["online"] == 71 and bridge.gpu_shutdowns == 0
    bridge.execute("clear_fault", {"fault": "gpu_dead", "target": "3"})
    bridge.accumulate(rig.step()[2])
    back = [d for name, d in events if name == "hal.gpus_back"]
    assert len(back) == 1 and back[0]["args"] == {"gpus": "3", "online": 72}


@pytest.mark.parametrize("args, code", [
    ({"fault": "pump_degraded", "value": 2.0, "target": "", "duration_s": 0.0}, "VALIDATION_ERROR"),
    ({"fault": "gpu_dead", "value": 0.0, "target": "99", "duration_s": 0.0}, "VALIDATION_ERROR"),
    ({"fault": "meteor", "value": 0.0, "target": "", "duration_s": 0.0}, "VALIDATION_ERROR"),
    ({"fault": "pump_degraded", "value": 0.5, "target": ""}, "FORMAT_ERROR"),
])
def test_hal_inject_fault_with_bad_arguments_fails_and_changes_nothing(tmp_path, args, code):
    bridge, rig, events = bridge_with_rig(tmp_path)
    with pytest.raises(CommandError) as err:
        bridge.execute("inject_fault", args)
    assert err.value.code == code
    assert rig.sat.faults.active == {} and bridge.faults_active == set() and events == []


def test_hal_clear_fault_of_an_inactive_fault_is_a_validation_error(tmp_path):
    bridge, _, _ = bridge_with_rig(tmp_path)
    with pytest.raises(CommandError) as err:
        bridge.execute("clear_fault", {"fault": "pump_degraded", "target": ""})
    assert err.value.code == "VALIDATION_ERROR"


# --- solar array pointing -------------------------------------------------------------------------


@pytest.mark.parametrize("beta_deg", [0.0, 20.0, 45.0, 60.0, -30.0])
def test_single_axis_array_output_falls_as_cos_beta_and_two_axis_does_not(beta_deg):
    single = SolarArray(P, 0.26)
    double = SolarArray(replace(P, array_tracking="two_axis"), 0.26)
    full = double.output_w(1.0, 1361.0, double.cos_incidence(beta_deg))
    assert single.output_w(1.0, 1361.0, single.cos_incidence(beta_deg)) == pytest.approx(
        full * math.cos(math.radians(beta_deg)), rel=1e-12)
    assert full == pytest.approx(SolarArray(P, 0.26).output_w(1.0, 1361.0), rel=1e-12)


def test_the_simulated_array_sees_the_orbit_beta_angle():
    """A β = 60° orbit at the equinox: the array delivers cos 60° = half of what a two-axis
    array would, from the same start."""
    tle = export_tle(circular_orbit(550.0, 60.0, EQUINOX))
    assert Orbit.from_tle(*tle, P).at(0.0).beta_angle_deg == pytest.approx(60.0, abs=0.5)
    single, double = Satellite(tle, seed=1), Satellite(tle, seed=1, params=replace(P, array_tracking="two_axis"))
    for sat in (single, double):
        sat.step(1.0)
    assert single.frame()["sun_fraction"] == 1.0
    beta = math.radians(single.orbit.at(0.0).beta_angle_deg)
    assert single.frame()["solar_array_power_w"] == pytest.approx(
        math.cos(beta) * double.frame()["solar_array_power_w"], rel=1e-9)


def test_an_unknown_pointing_model_is_refused():
    with pytest.raises(ValueError, match="array_tracking"):
        SolarArray(replace(P, array_tracking="gimballed"), 0.26)
