"""The thermal headroom of a GPU whose job has just ended (issue 3/4): the die is still hot
when its power drops, so a headroom extrapolated from the instantaneous power fell below the
GPU's lowest limit and the freed GPU was parked and took no work for about a minute. Read
against the power the die temperature reflects (``GPU_THERMAL_TAU_S``), it stays near its
steady value: real simulator, power, thermal and job code in lockstep
(:class:`flight.hal.inprocess.InProcessRack`), β≈0 orbit in sunlight, every GPU at full demand."""

import numpy as np
import pytest

from flight.hal.protocol import N_GPUS
from flight.platform import GPU_MIN_W
from flight.core.tle import load_tle
from flight.hal.inprocess import InProcessRack
from sim_hw.local import SimRig

pytestmark = pytest.mark.slow
JOBS = 9


def test_a_gpu_freed_from_a_hot_job_keeps_its_headroom_and_takes_new_work_at_once(tmp_path):
    _, tle = load_tle("flight/data/tle-beta0.txt", "RACKSAT-BETA0")
    rack = InProcessRack(tmp_path, SimRig.lockstep(tle), tle, params={"jobs": {"workload": "none"}})
    runner, thermal = rack.subsystem("jobs"), rack.subsystem("thermal")
    ids = [rack.submit(N_GPUS // JOBS, 1e7) for _ in range(JOBS)]
    rack.fly(600.0)  # warm: the dies near their target at full power
    assert rack.rig.sat.orbit.at(rack.subsystems[0].time_s).sun_fraction == 1.0
    freed = list(runner.jobs[ids[0]].gpus)
    before_w = thermal.headroom_w[freed].copy()
    assert np.all(before_w > GPU_MIN_W)
    runner.execute("cancel", {"job_id": ids[0]})
    seen_w = []
    rack.fly(60.0, lambda frame: seen_w.append(thermal.headroom_w[freed].copy()))
    seen_w = np.array(seen_w)
    # an idle GPU sits cooler, so its steady headroom is higher: the estimate may only rise
    assert np.all(seen_w >= 0.99 * before_w), f"a freed GPU's headroom fell to {seen_w.min():.0f} W"
    rack.submit(len(freed), 1e6)
    rack.fly(3.0)
    assert runner.busy[freed].all(), "the new job landed on the freed GPUs at once"
    rack.close()
