"""Onboard time never goes backwards (flight/hal/onboard_clock.py): the mission record of a data
directory, and the HAL bridge refusing a frame from before what the mission has flown."""

import json

import pytest

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.tle import load_tle
from flight.hal import onboard_clock as oc
from flight.hal.bridge import HalBridge
from sim_hw.local import SimRig
from sim_hw.satellite import Satellite

TLE = load_tle("flight/data/tle-real.txt")[1]
OTHER_TLE = load_tle("flight/data/tle-beta0.txt")[1]


def test_the_mission_record_round_trips_and_says_why_another_mission_differs(tmp_path):
    assert oc.read_mission(tmp_path) is None
    oc.write_mission(tmp_path, oc.Mission(TLE, "", "2026-01-01T00:00:00+00:00"))
    mission = oc.read_mission(tmp_path)
    assert mission.tle == TLE and mission.utc_floor_s is None
    assert mission.differs(TLE, "") == ""
    assert "another element set" in mission.differs(OTHER_TLE, "")
    assert "scenario '(none)'" in mission.differs(TLE, "dead-gpu")
    (tmp_path / oc.MISSION_FILE).write_text("{not json")
    with pytest.raises(oc.MissionError, match="mission.json"):
        oc.read_mission(tmp_path)


def test_the_clock_refuses_time_before_the_floor_and_saves_the_floor_each_minute(tmp_path):
    oc.write_mission(tmp_path, oc.Mission(TLE, utc_floor_s=1000.0))
    clock = oc.OnboardClock(tmp_path)
    assert clock.went_back(999.0)
    assert not clock.went_back(1000.0) and not clock.went_back(1030.0)
    assert clock.went_back(1029.0)  # backwards within the run too
    assert oc.read_mission(tmp_path).utc_floor_s == 1000.0
    assert not clock.went_back(1060.0)
    clock.close()  # the record is written on the clock's own thread
    assert oc.read_mission(tmp_path).utc_floor_s == 1060.0
    clock.save(900.0)  # never lowered
    clock.close()
    assert oc.read_mission(tmp_path).utc_floor_s == 1060.0
    unsaved = oc.OnboardClock(tmp_path, autosave=False)
    assert not unsaved.went_back(2000.0)
    unsaved.close()
    assert oc.read_mission(tmp_path).utc_floor_s == 1060.0


def test_the_bridge_refuses_a_frame_from_before_the_mission_floor_with_an_event(tmp_path):
    rig = SimRig(Satellite(TLE), 1.0, None)  # a rig restarted at the TLE epoch
    oc.write_mission(tmp_path, oc.Mission(TLE, utc_floor_s=rig.sat.utc_unix_s + 3600.0))
    out = []
    bridge = HalBridge(RunConfig(bus=BusAddress("inproc://a", "inproc://b", "inproc://c"), data_dir=str(tmp_path)),
                       lambda kind, name, data: out.append((kind, name, data)), lambda *_: None)
    bridge.clock = oc.OnboardClock(tmp_path)
    published = []
    tick, time_s, frame = rig.step()
    bridge.on_rig_frame(tick, time_s, frame, lambda: published.append(tick), trusted=True)
    assert bridge.refused and published == []
    (kind, name, data), = [m for m in out if m[0] == "ev"]
    assert name == "hal.clock_backwards" and data["severity"] == "HIGH"
    assert "went backwards" in data["message"] and "--fresh" in data["message"]
    assert json.loads((tmp_path / oc.MISSION_FILE).read_text())["utc_floor_s"] == rig.sat.utc_unix_s + 3599.0
