"""Declared ports: data products, their consumers and the actuator fields each component owns,
checked where they are used (publish, subscribe, the HAL bridge) and once for the whole stack."""

import numpy as np
import pytest

from flight.core.bus import BusAddress
from flight.core.component import Component, DataProduct, Dictionary, ProductField
from flight.core.config import RunConfig
from flight.core.messages import Message
from flight.core.dictionary import full_dictionary
from flight.hal.bridge import HalBridge
from flight.hal.protocol import N_GPUS
from flight.subsystems.jobs.runner import JobRunner
from flight.subsystems.link.manager import LinkManager
from flight.subsystems.power.manager import PowerManager
from flight.subsystems.thermal.controller import ThermalController

BUS = BusAddress("inproc://a", "inproc://b", "inproc://c")


def test_the_bridge_refuses_and_counts_an_actuator_field_set_by_a_component_that_does_not_own_it(tmp_path):
    sent, out = [], []
    bridge = HalBridge(RunConfig(bus=BUS, data_dir=str(tmp_path)), lambda kind, name, data: out.append((kind, name, data)),
                       lambda name, data: sent.append((name, data)))
    bridge.tick, bridge.present, bridge.waiting = 1, {"jobs", "power"}, {"jobs", "power"}  # tick 1 open
    limits = np.full(N_GPUS, 700.0)
    # the job runner tries to set the power limits (the power manager's) beside its own load
    bridge.on_message(Message("jobs", 1, 1, 1.0, "hw", "hal.done", {
        "tick": 1, "actuate": {"gpu_load_frac": np.ones(N_GPUS), "gpu_power_limit_w": np.zeros(N_GPUS)}}))
    bridge.on_message(Message("power", 1, 1, 1.0, "hw", "hal.done", {
        "tick": 1, "actuate": {"gpu_power_limit_w": limits}}))
    (actuate,) = [d for name, d in sent if name == "hal.actuate"]
    assert set(actuate) == {"gpu_load_frac", "gpu_power_limit_w"}, "the owner's fields and the rest of jobs' apply"
    assert actuate["gpu_power_limit_w"] is limits
    assert bridge.actuations_refused == 1
    (event,) = [d for kind, name, d in out if name == "hal.actuation_refused"]
    assert event["args"] == {"component": "jobs", "field": "gpu_power_limit_w"}
    # counted every time, announced once per component and field
    bridge.merge_actuation("jobs", {"gpu_power_limit_w": np.zeros(N_GPUS), "warp_drive_on": True})
    assert bridge.actuations_refused == 3
    assert [d["args"]["field"] for _, name, d in out if name == "hal.actuation_refused"] == [
        "gpu_power_limit_w", "(not an actuator)"]
    assert "actuations_refused" in {c.name for c in HalBridge.COMPONENT.telemetry}


def test_publishing_an_undeclared_product_or_undeclared_fields_raises(tmp_path):
    thermal = ThermalController(RunConfig(bus=BUS, data_dir=str(tmp_path)), lambda *a: None)
    with pytest.raises(KeyError, match="thermal.gossip is not a declared data product"):
        thermal.publish_data("gossip", gpu_headroom_w=np.zeros(N_GPUS))
    with pytest.raises(KeyError, match="not the declared"):
        thermal.publish_data("headroom", gpu_headroom_w=np.zeros(N_GPUS))


def test_subscriptions_follow_the_declared_consumers():
    assert PowerManager.SUBSCRIBE == (b"data/thermal.headroom", b"data/jobs.demand")
    assert JobRunner.SUBSCRIBE == (b"data/thermal.headroom", b"data/power.energy_plan", b"data/link.result_ack",
                                   b"ctl/mode")
    assert LinkManager.SUBSCRIBE == (b"data/jobs.result", b"tm/", b"ev/")
    assert ThermalController.SUBSCRIBE == ()


def test_the_full_dictionary_knows_who_feeds_whom():
    d = full_dictionary()
    assert d.publisher == {"power.energy_plan": "power", "thermal.headroom": "thermal", "jobs.demand": "jobs",
                           "jobs.result": "jobs", "link.result_ack": "link"}
    assert d.readers == {"power.energy_plan": ["jobs"], "thermal.headroom": ["power", "jobs"],
                         "jobs.demand": ["power"], "jobs.result": ["link"], "link.result_ack": ["jobs"]}
    assert d.owners == {"gpu_power_limit_w": "power", "battery_heater_on": "power", "radiator_valve_frac": "thermal",
                        "pump_speed_frac": "thermal", "gpu_load_frac": "jobs", "transmitter_on": "link"}
    headroom = d.products["thermal.headroom"].fields[0]
    assert (headroom.type, headroom.units, headroom.shape) == ("float64", "W", (N_GPUS,))


def test_bad_wiring_is_an_error_when_the_dictionary_is_built():
    plan = DataProduct("plan", (ProductField("x", "float64"),))
    with pytest.raises(ValueError, match="b consumes a.nothing, which no component publishes"):
        Dictionary([Component("a", 1, publishes=(plan,)), Component("b", 2, consumes=("a.nothing",))])
    with pytest.raises(ValueError, match="pump_speed_frac is owned by both a and b"):
        Dictionary([Component("a", 1, actuates=("pump_speed_frac",)), Component("b", 2, actuates=("pump_speed_frac",))])
    with pytest.raises(ValueError, match="not a HAL actuator"):
        Dictionary([Component("a", 1, actuates=("warp_drive_on",))])
    with pytest.raises(ValueError, match="type 'float' is not one of"):
        ProductField("x", "float")
    partial = Dictionary([Component("b", 2, consumes=("a.plan",))], partial=True)
    assert partial.readers == {}


class _LateThermal(ThermalController):
    """A thermal controller whose ``after_done`` does what ``late`` says."""

    late = "telemetry"

    def after_done(self) -> None:
        if self.late == "telemetry":
            self.event("setpoint_changed", old_c=20.0, new_c=21.0)
        elif self.late == "actuate":
            self.actuate(pump_speed_frac=0.5)
        elif self.late == "data":
            self.publish_data("headroom", gpu_headroom_w=np.zeros(N_GPUS), setpoint_c=25.0)
        elif self.late == "ctl":
            self._emit("ctl", "mode", {"mode": "SAFE"})  # as the power manager announces a mode


@pytest.mark.parametrize("late, why", [
    ("actuate", r"thermal.after_done set actuators \['pump_speed_frac'\]: do it in a rate group"),
    ("data", "thermal.after_done published data/thermal.headroom: do it in a rate group"),
    ("ctl", "thermal.after_done published ctl/mode: do it in a rate group"),
])
def test_after_done_may_not_actuate_nor_publish_what_the_others_would_get_a_tick_late(tmp_path, late, why):
    """Work after the ``hal.done`` reaches nobody on board this tick, so actuating there or
    publishing a data product or a ``ctl`` message there is a programming error: it raises,
    and the publish port is the subsystem's own again afterwards."""
    out = []
    thermal = _LateThermal(RunConfig(bus=BUS, data_dir=str(tmp_path)), lambda *m: out.append(m))
    thermal.late = late
    with pytest.raises(RuntimeError, match=why):
        thermal.run_after_done()
    assert not any(kind in ("data", "ctl") for kind, _, _ in out), "nothing refused went out"
    thermal.actuation = {}
    thermal.publish_data("headroom", gpu_headroom_w=np.zeros(N_GPUS), setpoint_c=25.0)  # in a rate group: fine
    assert out[-1][:2] == ("data", "thermal.headroom")


def test_after_done_may_send_telemetry_and_events_and_a_component_without_one_does_nothing(tmp_path):
    out = []
    thermal = _LateThermal(RunConfig(bus=BUS, data_dir=str(tmp_path)), lambda *m: out.append(m))
    thermal.run_after_done()
    assert [name for _, name, _ in out] == ["thermal.setpoint_changed"]
    plain = ThermalController(RunConfig(bus=BUS, data_dir=str(tmp_path)), lambda *m: out.append(m))
    plain.run_after_done()
    assert len(out) == 1
