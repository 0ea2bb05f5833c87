"""The whole stack as a user runs it: `flight run` as a subprocess, its processes, its
summary, its recorded telemetry. Each test bounds its own time and leaves no process."""

import os
import signal

import pytest

from flight.core.tle import DEFAULT_TLE_NAME, DEFAULT_TLE_PATH, load_tle, orbit_period_s
from tests.support.predicates import FlightRun, alive, at_least

pytestmark = pytest.mark.slow
SUBSYSTEMS = ["thermal", "power", "jobs", "link"]
FLIGHT_PROCESSES = {"sim", *SUBSYSTEMS}


def test_one_orbit_at_max_speed(tmp_path):
    with FlightRun(tmp_path, "--orbits", "1", "--speed", "max") as run:
        assert run.wait(timeout_s=240) == 0
    s = run.summary()
    period_s = orbit_period_s(*load_tle(DEFAULT_TLE_PATH, DEFAULT_TLE_NAME)[1])
    assert s["end"] == "completed"
    assert s["sim_time_s"] >= period_s - 1.0
    assert 0 < s["eclipse_time_s"] < s["sim_time_s"]
    assert 0 < s["battery_soc_min"] <= 1
    assert s["gpu_temp_max_c"] < 92
    assert s["gpu_work_done_s"] > 0
    assert s["energy_harvested_j"] > 0
    assert set(s["events"]) == {"INFO", "LOW", "MEDIUM", "HIGH"} and s["events"]["INFO"] > 0
    assert s["restarts"] == 0 and s["cycle_slips"] == 0 and s["bus_gaps"] == 0
    assert len(s["telemetry_sha256"]) == 64
    assert "run summary" in run.output


def test_same_seed_gives_the_same_telemetry_and_another_seed_does_not(tmp_path):
    hashes = []
    for i, seed in enumerate(("3", "3", "4")):
        with FlightRun(tmp_path / str(i), "--duration", "600", "--seed", seed) as run:
            assert run.wait(timeout_s=120) == 0
        hashes.append(run.summary()["telemetry_sha256"])
    assert hashes[0] == hashes[1]
    assert hashes[2] != hashes[0]


def kill_each_and_await_restarts(run, victims):
    for n, name in enumerate(victims, 1):
        os.kill(run.processes()[name], signal.SIGKILL)
        run.await_events("exec.process_restarted", count=n, timeout_s=30)


def test_every_subsystem_killed_with_sigkill_is_restarted_and_the_run_completes(tmp_path):
    victims = SUBSYSTEMS
    with FlightRun(tmp_path, "--duration", "4000") as run:
        run.await_telemetry("hal.time_s", at_least(100))
        assert FLIGHT_PROCESSES <= set(run.processes()), "ps names every subsystem"
        kill_each_and_await_restarts(run, victims)
        assert run.wait(timeout_s=180) == 0
    s = run.summary()
    assert s["end"] == "completed" and s["restarts"] == len(victims)
    died = {f["name"] for f in run.event_fields("exec.process_died")}
    assert set(victims) <= died
    assert s["gpu_work_done_s"] > 0


def test_ctrl_c_stops_every_process_of_the_run(tmp_path):
    with FlightRun(tmp_path, "--duration", "100000") as run:
        run.await_telemetry("hal.time_s", at_least(50))
        pids = run.processes()
        assert FLIGHT_PROCESSES <= set(pids)
        run.interrupt()
        assert run.wait(timeout_s=30) == 130
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert run.summary()["end"] == "interrupted"


def test_the_stack_flies_against_an_external_hal_and_survives_losing_its_bridge(tmp_path, standalone_sim):
    with FlightRun(tmp_path, "--hal", standalone_sim, "--duration", "1500") as run:
        run.await_telemetry("hal.time_s", at_least(100))
        assert {"hal", *SUBSYSTEMS} <= set(run.processes()) and "sim" not in run.processes()
        kill_each_and_await_restarts(run, ["hal"])
        assert run.wait(timeout_s=120) == 0
    s = run.summary()
    assert s["end"] == "completed" and s["restarts"] == 1 and s["gpu_work_done_s"] > 0
    assert run.events("hal.rig_connected"), "the bridge greeted the rig (again after its restart)"
