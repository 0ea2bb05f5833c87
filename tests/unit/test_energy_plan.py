"""The power manager's energy plan is the one the job runner's eclipse look-ahead uses:
after an operator moves ``power.soc_floor`` (TC[20,3]), both plan against the new floor."""

import numpy as np
import pytest

from flight.core.tle import load_tle
from flight.hal.inprocess import InProcessRack
from sim_hw.local import SimRig
from flight.subsystems.power.eclipse_forecast import EclipseForecast

_, TLE = load_tle("flight/data/tle-beta0.txt", "RACKSAT-BETA0")
ECLIPSE = EclipseForecast.from_tle(TLE).next_eclipse(0.0)


def holds_until_the_eclipse(data_dir, soc_floor=None) -> tuple[InProcessRack, list[dict]]:
    """Fly the in-process stack to just inside the first eclipse, ``soc_floor`` set first by
    the parameter command (what TC[20,3] becomes on board); the runner's eclipse holds."""
    data_dir.mkdir()
    rack = InProcessRack(data_dir, SimRig.lockstep(TLE), TLE, params={"jobs": {"workload": "none"}})
    if soc_floor is not None:
        assert rack.subsystem("power").execute("set_parameter", {"name": "soc_floor", "value": soc_floor}) == (
            f"power.soc_floor = {soc_floor}")
    rack.fly(ECLIPSE.start_s + 10.0)
    rack.close()
    return rack, [d["args"] for _, name, d in rack.events if name == "jobs.eclipse_hold"]


def test_after_params_set_soc_floor_both_plan_against_the_new_floor(tmp_path):
    """The case of issue 11: the operator lowers the floor to 0.6."""
    rack, _ = holds_until_the_eclipse(tmp_path / "lowered", soc_floor=0.6)
    _, floors = rack.series("power.hk", "soc_floor")
    assert np.all(floors == 0.6), "the power manager plans against 0.6"
    plan = rack.subsystem("jobs").energy_plan
    assert plan["soc_floor"] == 0.6 and plan["forecast"] == "tle", "the job runner's look-ahead reads that plan"
    assert plan["eclipse_start_s"] == pytest.approx(ECLIPSE.start_s, abs=1.0)


def test_a_raised_floor_makes_the_job_runner_hold_gpus_back_before_the_eclipse(tmp_path):
    # at the default floor (0.70) the idle rack's battery (charged to ~0.99) carries every GPU
    # through the 35 min shadow: no hold
    _, holds_default = holds_until_the_eclipse(tmp_path / "default")
    assert holds_default == []
    # at 0.80 it cannot: the power manager says how many it carries, the runner holds the rest back
    rack, holds_raised = holds_until_the_eclipse(tmp_path / "raised", soc_floor=0.8)
    _, floors = rack.series("power.hk", "soc_floor")
    assert np.all(floors == 0.8)
    assert len(holds_raised) == 1 and 0 < holds_raised[0]["gpus"] < 72, "the look-ahead plans against 0.8"
    assert holds_raised[0]["duration_s"] == pytest.approx(ECLIPSE.duration_s, abs=1.0)


def test_no_plan_heard_yet_means_no_look_ahead(tmp_path):
    """Before the first ``power.energy_plan`` arrives the runner holds nothing back."""
    rack = InProcessRack(tmp_path, SimRig.lockstep(TLE), TLE, params={"jobs": {"workload": "none"}})
    runner = rack.subsystem("jobs")
    assert runner.energy_plan is None
    rack.fly(1.0)
    assert runner.energy_plan["eclipse_start_s"] == pytest.approx(ECLIPSE.start_s, abs=1.0)
    assert rack.actuations_refused == 0, "every subsystem sets only the actuators it owns"
    rack.close()


def test_the_plan_goes_out_by_exception_and_with_every_housekeeping(tmp_path):
    rack = InProcessRack(tmp_path, SimRig.lockstep(TLE), TLE, params={"jobs": {"workload": "none"}})
    power, sent = rack.subsystem("power"), []
    publish = power.publish_data
    power.publish_data = lambda product, **values: (sent.append(values), publish(product, **values))
    rack.fly(600.0)
    rack.close()
    hk_ticks = len(rack.series("power.hk", "soc_floor")[0])
    assert hk_ticks <= len(sent) < hk_ticks + 60, "not one message a tick"
    assert all(v["forecast"] == "tle" for v in sent)
