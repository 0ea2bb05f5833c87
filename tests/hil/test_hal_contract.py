"""The HAL contract, checked against any rig: ``pytest tests/hil --hal ENDPOINT`` (default:
a simulator started by the fixture). Only the documented protocol (flight.hal.protocol) is used."""

import time

import numpy as np
import pytest

from flight.hal import protocol as hal
from tests.support.hal_client import HalTimeout

N_FRAMES = 120


def test_welcome_describes_the_rig(rig):
    w = rig.welcome
    assert w["version"] == hal.HAL_VERSION
    assert w["n_gpus"] == hal.N_GPUS and w["n_zones"] == hal.N_ZONES
    assert w["tick_s"] > 0 and isinstance(w["lockstep"], bool)


def test_frames_arrive_at_the_tick_rate_with_every_field_in_range(rig):
    tick_s = rig.welcome["tick_s"]
    frames, arrivals = [], []
    for _ in range(N_FRAMES):
        frames.append(rig.next_frame())
        arrivals.append(time.monotonic())
    ticks = [f.tick for f in frames]
    assert ticks == list(range(ticks[0], ticks[0] + N_FRAMES)), "ticks must be consecutive"
    times = np.array([f.data["time_s"] for f in frames])
    np.testing.assert_allclose(np.diff(times), tick_s, rtol=1e-9)
    if not rig.welcome["lockstep"]:
        wall = np.diff(arrivals)
        assert abs(np.mean(wall) - tick_s / rig.welcome.get("speed", 1.0)) < 0.2 * tick_s
    for f in frames:
        assert hal.check_frame(f.data) == [], f"tick {f.tick}"


def settle(rig, seconds):
    frame = None
    for _ in range(int(seconds / rig.welcome["tick_s"]) + 1):
        frame = rig.next_frame()
    return frame.data


def test_actuator_settings_take_effect(rig):
    limits = np.full(hal.N_GPUS, 500.0)
    rig.send("hal.actuate", {"gpu_power_limit_w": limits, "gpu_load_frac": np.ones(hal.N_GPUS),
                             "pump_speed_frac": 0.9, "radiator_valve_frac": np.full(hal.N_ZONES, 0.8),
                             "transmitter_on": True})
    f = settle(rig, 60)
    np.testing.assert_allclose(f["gpu_power_limit_w"], limits)
    assert np.all(f["gpu_power_w"] <= limits + 1.0)
    assert f["pump_speed_frac"] == pytest.approx(0.9, abs=0.02)
    np.testing.assert_allclose(f["radiator_valve_frac"], 0.8, atol=0.02)
    assert f["transmitter_on"] is True or f["transmitter_on"] == np.True_
    rig.send("hal.actuate", {"gpu_power_limit_w": np.zeros(hal.N_GPUS), "transmitter_on": False})
    f = settle(rig, 10)
    assert np.all(f["gpu_power_w"] <= 150.0 + 1.0), "a limit of 0 parks the GPU at idle"
    assert not f["transmitter_on"]


BAD_ACTUATIONS = [
    {"pump_speed_frac": float("nan")},
    {"pump_speed_frac": 1.5},
    {"gpu_power_limit_w": np.full(3, 500.0)},
    {"gpu_power_limit_w": np.full(hal.N_GPUS, 5000.0)},
    {"self_destruct": True},
    {"transmitter_on": "yes"},
    {},
    "not a map",
]


def test_malformed_actuations_are_rejected_counted_and_change_nothing(rig):
    rig.send("hal.actuate", {"pump_speed_frac": 0.7})
    before = settle(rig, 20)
    count0 = before["hal_rejected_count"]
    rig.rejects.clear()
    for bad in BAD_ACTUATIONS:
        rig.send("hal.actuate", bad)
    rig.sock.send(b"\xff\x00 garbage that is not an envelope")
    after = settle(rig, 5)
    sent = len(BAD_ACTUATIONS) + 1
    assert after["hal_rejected_count"] == count0 + sent
    assert len(rig.rejects) == sent and all(r.get("reason") for r in rig.rejects)
    assert after["pump_speed_frac"] == pytest.approx(0.7, abs=0.02), "nothing bad was applied"
    rig.next_frame()  # and the rig is still serving


def fault_answer(rig, fault_id: str) -> dict | None:
    """The rig's ``hal.fault_ack`` for ``fault_id``, or ``None`` if it rejected the message
    (a rig that predates fault injection)."""
    rejects = len(rig.rejects)
    try:
        ack = rig.recv("hal.fault_ack").data
    except HalTimeout:  # no ack, so it must have said no
        assert len(rig.rejects) > rejects, "the rig neither acknowledged nor rejected hal.fault"
        return None
    assert ack["id"] == fault_id and isinstance(ack["ok"], bool) and isinstance(ack["reason"], str)
    return ack


def test_a_fault_is_applied_and_cleared_or_refused_and_refusal_changes_nothing(rig):
    """Fault injection is optional for a rig: it applies a valid hal.fault and answers ok, or
    says no; an invalid one is always refused and changes nothing."""
    rig.next_frame()
    rig.send("hal.fault", {"id": "hil-bad", "action": "inject", "fault": "pump_degraded", "value": 5.0,
                           "target": "", "duration_s": 0.0})
    bad = fault_answer(rig, "hil-bad")
    assert bad is None or (bad["ok"] is False and bad["reason"])
    rig.send("hal.fault", {"id": "hil-dead", "action": "inject", "fault": "gpu_dead", "value": 0.0, "target": "3",
                           "duration_s": 0.0})
    dead = fault_answer(rig, "hil-dead")
    frames = [rig.next_frame().data for _ in range(3)]
    if dead is None or not dead["ok"]:
        assert all(f["gpu_online"][3] for f in frames)
        return
    assert not frames[-1]["gpu_online"][3] and frames[-1]["gpu_power_w"][3] == 0.0
    rig.send("hal.fault", {"id": "hil-clear", "action": "clear", "fault": "gpu_dead", "target": "3"})
    assert fault_answer(rig, "hil-clear")["ok"]
    assert [rig.next_frame().data for _ in range(3)][-1]["gpu_online"][3]
