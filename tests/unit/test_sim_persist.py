"""The simulated satellite across a reboot (sim_hw/persist.py): saved and restored, it flies on
exactly as if it had never stopped; a state of another mission or a damaged one is refused."""

import json

import numpy as np
import pytest

from flight.core.tle import load_tle
from flight.hal import faults
from flight.hal import protocol as hal
from sim_hw import persist
from sim_hw.local import SimRig
from sim_hw.satellite import Satellite

TLE = load_tle("flight/data/tle-real.txt")[1]
OTHER_TLE = load_tle("flight/data/tle-beta0.txt")[1]
N, Z = hal.N_GPUS, hal.N_ZONES


def actuation(tick: int) -> dict:
    return {"gpu_power_limit_w": np.where(np.arange(N) % 7 == 0, 0.0, 700.0 + tick % 300),
            "gpu_load_frac": np.full(N, 0.9), "pump_speed_frac": 0.7, "radiator_valve_frac": np.full(Z, 0.6),
            "battery_heater_on": tick % 200 < 100, "transmitter_on": True}


def fly(sat: Satellite, first_tick: int, ticks: int) -> list[dict]:
    frames = []
    for tick in range(first_tick, first_tick + ticks):
        sat.actuate(actuation(tick))
        sat.step(1.0)
        frames.append(sat.frame())
    return frames


def busy_faulted_satellite() -> Satellite:
    sat = Satellite(TLE, seed=7)
    for f in (faults.validate("seu_storm", 5000.0, "", 3600.0),
              faults.validate("pump_degraded", 0.5, "", 400.0),
              faults.validate("battery_capacity_lost", 0.2, "", 0.0),
              faults.validate("sensor_noisy", 0.5, "coolant_supply_temp_c", 0.0),
              faults.validate("sensor_stuck", 0.0, "gpu_temp_c[3]", 0.0),
              faults.validate("gpu_dead", 0.0, "5", 0.0)):
        sat.inject_fault(f)
    fly(sat, 0, 300)
    return sat


def assert_frames_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        for name in fa:
            np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)


def test_a_restored_satellite_flies_on_exactly_as_the_one_that_never_stopped(tmp_path):
    sat = busy_faulted_satellite()
    path = tmp_path / persist.STATE_FILE
    assert persist.StateSaver(sat, path, 7, TLE).save()
    state = json.loads(path.read_text())
    assert state["time_s"] == 300.0 and len(state["faults"]["active"]) == 6

    resumed = Satellite(TLE, seed=7)
    persist.restore(resumed, persist.load(path), TLE)
    assert resumed.time_s == 300.0 and resumed.utc_unix_s == sat.utc_unix_s
    assert resumed.power.battery.soc == sat.power.battery.soc
    # 300 s more: the timed pump fault ends at 400 s in both, upsets and noise draw the same numbers
    assert_frames_equal(fly(sat, 300, 300), fly(resumed, 300, 300))
    assert ("pump_degraded", "") not in resumed.faults.active
    assert resumed.ledger.as_dict() == sat.ledger.as_dict()


def test_the_rig_saves_each_simulated_minute_and_at_close_and_its_welcome_says_it_resumed(tmp_path):
    path = tmp_path / persist.STATE_FILE
    sat = Satellite(TLE)
    rig = SimRig(sat, 1.0, None, persist.StateSaver(sat, path, 0, TLE))
    assert rig.welcome["clock"]["resumed"] is False

    def tick() -> None:  # as the bridge does: the frame out, then the work between ticks
        rig.step()
        rig.between_ticks()

    for _ in range(59):
        tick()
    assert not path.exists() and rig.saved_utc_s is None
    rig.step()
    assert not path.exists(), "the save waits until the frame is out"
    rig.between_ticks()
    rig.saver.flush()  # written on the saver's thread
    assert json.loads(path.read_text())["time_s"] == 60.0 and rig.saved_utc_s == sat.utc_unix_s
    for _ in range(15):
        tick()
    rig.close()
    assert json.loads(path.read_text())["time_s"] == 75.0

    again = Satellite(TLE)
    persist.restore(again, persist.load(path), TLE)
    clock = SimRig(again, 1.0, None, persist.StateSaver(again, path, 0, TLE), resumed=True).welcome["clock"]
    assert clock == {"time_s": 75.0, "utc_unix_s": sat.utc_unix_s, "resumed": True,
                     "battery_soc": sat.power.battery.soc}


def test_a_state_of_another_mission_or_a_damaged_one_is_refused_with_the_reason(tmp_path):
    path = tmp_path / persist.STATE_FILE
    sat = Satellite(TLE)
    persist.StateSaver(sat, path, 0, TLE).save()
    with pytest.raises(persist.StateError, match="another element set"):
        persist.restore(Satellite(OTHER_TLE), persist.load(path), OTHER_TLE)
    state = persist.load(path)
    del state["parts"]["battery"]
    with pytest.raises(persist.StateError, match="malformed state"):
        persist.restore(Satellite(TLE), state, TLE)
    path.write_text('{"version": 1, "tle": [')
    with pytest.raises(persist.StateError, match="not valid JSON"):
        persist.load(path)
    assert persist.load(tmp_path / "none.json") is None


def test_a_save_that_cannot_be_written_is_counted_and_leaves_the_previous_state(tmp_path):
    path = tmp_path / persist.STATE_FILE
    sat = Satellite(TLE)
    saver = persist.StateSaver(sat, path, 0, TLE)
    assert saver.save()
    before = path.read_text()
    sat.step(1.0)
    saver.path = tmp_path / "missing-dir" / persist.STATE_FILE
    assert not saver.save() and saver.failures == 1
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [persist.STATE_FILE]  # no temporary file left
    saved = saver.saved_utc_s
    saver.save_behind()  # in the background: counted once taken in, nothing taken as saved
    saver.flush()
    assert saver.failures == 2 and saver.saved_utc_s == saved
    saver.path = path
    saver.save_behind()
    saver.flush()
    assert saver.failures == 2 and saver.saved_utc_s == sat.utc_unix_s and path.read_text() != before
