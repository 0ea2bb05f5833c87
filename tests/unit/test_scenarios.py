"""Scenario files: the bundled ones parse and say what they test, malformed ones are refused
with the key (or line) named and nothing run, and [expect] passes and fails as it should."""

import subprocess
import sys

import pytest

from flight import cli
from flight.core.orbit import Orbit
from flight import scenario
from sim_hw.params import SimParams
from tests.support.orbits import eclipse_minutes

BUNDLED = ("worst-eclipse", "pump-half-flow", "radiator-quarter-lost", "battery-fifth-lost", "solar-string-lost",
           "sensor-stuck", "seu-storm", "dead-gpu")

GOOD = """
name = "my-test"
description = "a pump fault and a setpoint change"

[run]
duration_s = 600
seed = 9

[start]
battery_initial_soc = 0.7

[load]
workload = "none"

[[fault]]
at_s = 300
fault = "pump_degraded"
value = 0.5

[[fault]]
at_s = 10
fault = "link_outage"
duration_s = 60

[[command]]
at_s = 100
name = "thermal.set_setpoint"
args = { setpoint_c = 30.0 }

[expect]
mode = "NOMINAL"
events = ["hal.fault_injected"]
no_events = ["exec.mode_changed"]
battery_soc_floor = 0.4
gpu_temp_max_c = 89.0
gpu_shutdowns_max = 0
"""


def write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_every_bundled_scenario_loads_and_checks_the_rack_survives():
    names = {s.name: s for s in scenario.bundled()}
    assert set(BUNDLED) <= set(names)
    for s in names.values():
        assert s.description and s.run_duration_s() > 0
        assert s.expect.battery_soc_floor >= 0.40 and s.expect.gpu_shutdowns_max == 0  # the contingency floor
    faulted = {c.args["fault"] for s in names.values() for c in s.commands if c.command == "hal.inject_fault"}
    assert faulted == {"pump_degraded", "radiator_area_lost", "battery_capacity_lost", "solar_string_lost",
                       "sensor_stuck", "seu_storm", "gpu_dead"}
    assert "thermal.sensor_failed" in names["sensor-stuck"].expect.events


def test_worst_eclipse_flies_a_beta_zero_orbit_with_the_longest_eclipse():
    s = scenario.load("worst-eclipse")
    orbit = Orbit.from_tle(*s.tle_lines, SimParams())
    dark_min, mean_beta = eclipse_minutes(orbit)
    assert abs(mean_beta) < 2.5 and dark_min == pytest.approx(35.6, rel=0.02)
    assert abs(orbit.at(86400.0).beta_angle_deg) < 2.5  # still β≈0 a day later (the 24 h test)
    assert s.load == {"workload": "saturate"}


def test_a_good_file_parses_into_a_timeline_of_telecommands(tmp_path):
    s = scenario.load(write(tmp_path, GOOD))
    assert (s.name, s.seed, s.run_duration_s()) == ("my-test", 9, 600.0)
    assert SimParams(**s.start).battery_initial_soc == 0.7 and s.load == {"workload": "none"}
    assert [(c.at_s, c.command) for c in s.commands] == [
        (10.0, "hal.inject_fault"), (100.0, "thermal.set_setpoint"), (300.0, "hal.inject_fault")]
    assert s.schedule()[0] == {"at_s": 10.0, "command": "hal.inject_fault",
                               "args": {"fault": "link_outage", "value": 0.0, "target": "", "duration_s": 60.0}}
    assert s.expect.mode == ("NOMINAL",) and s.expect.no_events == ("exec.mode_changed",)


def test_a_file_is_found_by_bundled_name_or_path(tmp_path):
    assert scenario.resolve("dead-gpu") == scenario.SCENARIO_DIR / "dead-gpu.toml"
    with pytest.raises(scenario.ScenarioError, match="bundled: battery-fifth-lost"):
        scenario.load("no-such-scenario")


@pytest.mark.parametrize("text, where", [
    ("[run\nseed = 1\n", "line 1"),
    ("colour = 'red'\n", "colour: unknown key"),
    ("[run]\nduration_s = -5\n", "run.duration_s"),
    ("[run]\nduration_s = 60\norbits = 1\n", "run.orbits"),
    ("[run]\nseed = 1.5\n", "run.seed: must be an integer"),
    ("[run]\ntle = 'nowhere.txt'\n", "run.tle: cannot use"),
    ("[run]\ntle_name = 'NOT-A-SAT'\n", "run.tle: cannot use"),
    ("[start]\nbattery_initial_sock = 0.5\n", "start.battery_initial_sock: unknown key"),
    ("[start]\nbattery_initial_soc = 'full'\n", "start.battery_initial_soc: must be a finite number"),
    ("[start]\narray_tracking = 3\n", "start.array_tracking: must be a string"),
    ("[start]\narray_tracking = 'gimbal'\n", "start: the simulator refuses these start conditions: array_tracking"),
    ("[start]\nbattery_ocv_soc = [0.0, 1.0]\n", "start.battery_ocv_soc: cannot be set"),
    ("[load]\nworkload = 'lots'\n", "load.workload"),
    ("[[fault]]\nfault = 'gpu_dead'\ntarget = '3'\n", "fault[0].at_s: missing"),
    ("[[fault]]\nat_s = 5\nfault = 'meteor'\n", "fault[0].fault: unknown fault 'meteor'"),
    ("[[fault]]\nat_s = 5\nfault = 'pump_degraded'\nvalue = 3\n", "fault[0].fault: pump_degraded: value 3"),
    ("[[fault]]\nat_s = 5\nfault = 'pump_degraded'\nvalue = 0.5\nwhen = 3\n", "fault[0].when: unknown key"),
    ("[[fault]]\nat_s = -1\nfault = 'pump_degraded'\nvalue = 0.5\n", "fault[0].at_s"),
    ("fault = 3\n", "fault: must be an array of tables"),
    ("[[command]]\nat_s = 5\nname = 'thermal.warp'\n", "command[0].name: INVALID_OPCODE"),
    ("[[command]]\nat_s = 5\nname = 'thermal.set_setpoint'\nargs = { setpoint_c = 99.0 }\n",
     "command[0].args: VALIDATION_ERROR"),
    ("[[command]]\nat_s = 5\nname = 'thermal.set_setpoint'\n", "command[0].args: FORMAT_ERROR"),
    ("[expect]\nmode = 'PANIC'\n", "expect.mode: 'PANIC' is not a mode"),
    ("[expect]\nmodes_entered = ['CALM']\n", "expect.modes_entered: 'CALM' is not a mode"),
    ("[expect]\nevents = ['hal.fault_injectd']\n", "expect.events: 'hal.fault_injectd'"),
    ("[expect]\nno_events = 5\n", "expect.no_events: must be a string or a list"),
    ("[expect]\nbattery_soc_floor = 1.4\n", "expect.battery_soc_floor"),
    ("[expect]\ngpu_shutdowns_max = -1\n", "expect.gpu_shutdowns_max"),
])
def test_malformed_files_are_refused_naming_the_key_or_line(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_flight_run_with_a_malformed_scenario_exits_2_and_runs_nothing(tmp_path):
    path = write(tmp_path, "[[fault]]\nat_s = 5\nfault = 'meteor'\n")
    data = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flight.cli", "run", "--scenario", str(path), "--data", str(data),
                           "--no-progress"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "fault[0].fault" in proc.stderr and "meteor" in proc.stderr
    assert not data.exists()


def test_flight_scenarios_lists_each_bundled_scenario_on_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["scenarios"])
    assert exited.value.code == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(p.stem for p in scenario.SCENARIO_DIR.glob("*.toml"))
    assert any("pump_degraded" in line for line in lines)


SUMMARY = {"end": "completed", "mode": "NOMINAL", "battery_soc_min": 0.55, "gpu_temp_max_c": 80.0,
           "gpu_shutdowns": 0}


def test_expectations_pass_on_a_run_that_meets_them(tmp_path):
    s = scenario.load(write(tmp_path, GOOD))
    checks = s.check(SUMMARY, {"hal.fault_injected", "jobs.job_started"})
    assert all(c.ok for c in checks) and len(checks) == 7


@pytest.mark.parametrize("change, events, failing", [
    ({"end": "interrupted"}, {"hal.fault_injected"}, "run completed"),
    ({"mode": "SAFE"}, {"hal.fault_injected"}, "end mode"),
    ({}, set(), "event hal.fault_injected occurred"),
    ({}, {"hal.fault_injected", "exec.mode_changed"}, "event exec.mode_changed did not occur"),
    ({"battery_soc_min": 0.39}, {"hal.fault_injected"}, "battery_soc_min > 0.4"),
    ({"battery_soc_min": None}, {"hal.fault_injected"}, "battery_soc_min > 0.4"),
    ({"gpu_temp_max_c": 90.5}, {"hal.fault_injected"}, "gpu_temp_max_c < 89"),
    ({"gpu_shutdowns": 1}, {"hal.fault_injected"}, "gpu_shutdowns <= 0"),
])
def test_expectations_fail_on_a_run_that_misses_one(tmp_path, change, events, failing):
    s = scenario.load(write(tmp_path, GOOD))
    checks = s.check({**SUMMARY, **change}, events)
    assert [c.name[:len(failing)] for c in checks if not c.ok] == [failing]


def test_a_mode_that_must_be_entered_is_checked_against_the_time_flown_in_it(tmp_path):
    s = scenario.load(write(tmp_path, GOOD.replace('mode = "NOMINAL"', 'modes_entered = ["THERMAL_LIMIT"]')))
    entered = {**SUMMARY, "mode_time_s": {"NOMINAL": 500.0, "THERMAL_LIMIT": 100.0}}
    never = {**SUMMARY, "mode_time_s": {"NOMINAL": 600.0}}
    assert all(c.ok for c in s.check(entered, {"hal.fault_injected"}))
    assert [c.name for c in s.check(never, {"hal.fault_injected"}) if not c.ok] == ["mode THERMAL_LIMIT entered"]


def test_timed_commands_go_out_at_their_time_and_a_failure_is_reported_once():
    from flight.hal.timed_commands import TimedCommands

    timed = TimedCommands([{"at_s": 20, "command": "thermal.set_setpoint", "args": {"setpoint_c": 30.0}},
                           {"at_s": 10, "command": "hal.inject_fault", "args": {"fault": "link_outage"}}])
    sent = []
    send = lambda *c: sent.append(c)  # noqa: E731
    assert not timed.issue_due(9.0, send) and sent == []
    assert timed.issue_due(10.0, send) and sent == [("scenario-0", "hal.inject_fault", {"fault": "link_outage"})]
    assert timed.on_response({"id": "scenario-0", "stage": "started"}) is None and timed.pending
    assert timed.on_response({"id": "scenario-0", "stage": "failed", "code": "X"}) == (10.0, "hal.inject_fault")
    assert timed.on_response({"id": "scenario-0", "stage": "failed"}) is None, "reported once"
    assert timed.issue_due(25.0, send) and sent[-1][:2] == ("scenario-1", "thermal.set_setpoint")
    assert timed.on_response({"id": "scenario-1", "stage": "completed"}) is None and not timed.pending
