"""The job runner's scheduling, driven frame by frame: preemption with a checkpoint first,
the executive's modes, the power manager's load shed, the eclipse look-ahead, redundant
critical jobs catching injected silent data corruption, and fenced GPUs taking no work."""

import re

import numpy as np
import pytest

from flight.core.component import CommandError
from flight.subsystems.power.eclipse_forecast import EclipseForecast
from flight.subsystems.power.manager import gpus_carried
from flight.hal.protocol import N_GPUS
from flight.core.messages import Message
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from tests.support.jobs import GOOD, STEPS, Harness, rows, tick_until

BETA0_TLE = load_tle(DEFAULT_TLE_PATH.parent / "tle-beta0.txt")[1]


def submit(h, **kw):
    return int(h.runner.execute("submit", {**GOOD, **kw}).split()[1])


def gpus_of(h, job_id):
    job = h.runner.jobs.get(job_id)
    return list(job.gpus) if job else []


def mode(h, name):
    h.runner.on_message(Message("executive", 0, h.runner.tick, h.runner.time_s, "ctl", "mode", {"mode": name}))


def test_a_high_priority_job_preempts_a_low_one_which_checkpoints_first_and_resumes_later(tmp_path):
    h = Harness(tmp_path)
    low = submit(h, gpus_min=72, gpus_max=72, work_gpu_s=72 * 200.0, priority=1, checkpoint_interval_s=100.0,
                 checkpoint_cost_s=3.0)
    h.tick(50)
    assert len(gpus_of(h, low)) == 72
    high = submit(h, gpus_min=40, gpus_max=40, work_gpu_s=40 * 30.0, priority=9)
    h.tick(1)
    assert h.events("job_preempted")[0]["args"]["job_id"] == low
    h.tick(3)  # the 3 s checkpoint
    assert h.runner.jobs[low].state == "queued" and h.runner.jobs[low].checkpoint_gpu_s == pytest.approx(72 * 50.0)
    assert not h.events("job_rolled_back"), "preemption saved the work instead of throwing it away"
    h.tick(1)
    assert len(gpus_of(h, high)) == 40 and gpus_of(h, low) == [], "low needs all 72 and waits"
    h.tick(40)
    assert high not in h.runner.jobs and len(gpus_of(h, low)) == 72, "low resumed once high completed"
    started = [e["args"] for e in h.events("job_started") if e["args"]["job_id"] == low]
    assert started[-1]["checkpoint_gpu_s"] == pytest.approx(72 * 50.0)


def test_safe_mode_checkpoints_and_stops_everything_power_save_keeps_the_high_priority_job(tmp_path):
    h = Harness(tmp_path)
    low = submit(h, gpus_min=8, gpus_max=8, priority=2, checkpoint_cost_s=2.0)
    high = submit(h, gpus_min=8, gpus_max=8, priority=8, checkpoint_cost_s=2.0)
    h.tick(5)
    mode(h, "SAFE")
    h.tick(3)
    assert {h.runner.jobs[j].state for j in (low, high)} == {"queued"}
    h.tick(10)
    assert h.hk()["gpus_busy"] == 0 and h.hk()["running"] == 0
    assert h.runner.jobs[low].checkpoint_gpu_s == pytest.approx(8 * 5.0), "stopped on a checkpoint, nothing lost"
    mode(h, "POWER_SAVE")
    h.tick(10)
    assert h.runner.jobs[high].state == "running" and h.runner.jobs[low].state == "queued"
    mode(h, "NOMINAL")
    h.tick(1)
    assert h.runner.jobs[low].state == "running"


def test_thermal_limit_halves_the_gpus_held(tmp_path):
    h = Harness(tmp_path)
    jobs = [submit(h, gpus_min=8, gpus_max=8, priority=p) for p in range(9)]
    h.tick(2)
    assert h.runner.busy.sum() == 72
    mode(h, "THERMAL_LIMIT")
    h.tick(10)
    assert h.runner.busy.sum() <= 36 and h.hk()["gpu_cap"] == 36
    kept = [j for j in jobs if h.runner.jobs[j].state == "running"]
    assert kept == jobs[-4:], "the highest priorities keep their GPUs"


def test_a_persistent_load_shed_sends_the_lowest_job_back_to_the_queue(tmp_path):
    h = Harness(tmp_path)
    low = submit(h, gpus_min=36, gpus_max=36, priority=1, checkpoint_cost_s=0.0)
    submit(h, gpus_min=36, gpus_max=36, priority=6)
    h.tick(2)
    h.limit_w[60:] = 0.0  # the power manager parks 12 GPUs
    h.tick(5)
    assert h.runner.jobs[low].state == "running", "a passing shed costs no checkpoint"
    h.tick(10)
    assert h.runner.jobs[low].state == "queued" and h.runner.jobs[low].checkpoint_gpu_s > 0
    assert not h.runner.busy[60:].any(), "no work waits on a parked GPU"
    h.limit_w[:] = 1000.0
    h.tick(1)
    assert h.runner.jobs[low].state == "running"


def test_injected_silent_corruption_is_caught_by_the_replicas_and_the_job_rerun_from_the_agreed_checkpoint(tmp_path):
    h = Harness(tmp_path)
    crit = submit(h, gpus_min=2, gpus_max=2, work_gpu_s=100.0, critical=True, checkpoint_interval_s=10.0,
                  checkpoint_cost_s=0.0)
    h.tick(12)
    assert len(gpus_of(h, crit)) == 4, "two replicas of 2 GPUs"
    agreed = h.runner.jobs[crit].checkpoint_gpu_s
    assert agreed == pytest.approx(20.0)
    assert h.runner.execute("inject_sdc", {"job_id": crit, "replica": 1}) == f"job {crit} replica 1 corrupted"
    h.tick(10)
    (mismatch,) = h.events("replica_mismatch")
    assert mismatch["args"]["checkpoint_gpu_s"] == pytest.approx(agreed)
    assert h.runner.jobs[crit].checkpoint_gpu_s == pytest.approx(agreed), "the corrupt state was not saved"
    h.tick(60)
    assert [e["args"]["job_id"] for e in h.events("job_completed")] == [crit]
    assert h.hk()["sdc_detected"] == 1
    ((detail,),) = rows(tmp_path / "jobs.sqlite", f"SELECT detail FROM results WHERE job_id = {crit}")
    assert re.fullmatch("2 replicas agree: sha256 [0-9a-f]{64}", detail), "the agreed digest is kept for downlink"
    with pytest.raises(CommandError):
        h.runner.execute("inject_sdc", {"job_id": crit, "replica": 0})  # finished: nothing to corrupt


def test_corruption_at_the_end_is_caught_before_completion(tmp_path):
    h = Harness(tmp_path)
    crit = submit(h, gpus_min=1, gpus_max=1, work_gpu_s=15.0, critical=True, checkpoint_interval_s=10.0,
                  checkpoint_cost_s=0.0)
    h.tick(12)
    h.runner.execute("inject_sdc", {"job_id": crit, "replica": 0})
    h.tick(4)
    assert not h.events("job_completed") and len(h.events("replica_mismatch")) == 1
    h.tick(10)
    assert len(h.events("job_completed")) == 1


def test_a_fenced_gpu_takes_no_new_work(tmp_path):
    h = Harness(tmp_path)
    h.tick(1)
    for _ in range(3):
        h.unc[5] += 1
        h.tick(1)
    assert h.events("gpu_fenced")[0]["args"]["gpu"] == 5
    ids = [submit(h, gpus_min=1, gpus_max=1, work_gpu_s=5.0) for _ in range(100)]
    for _ in range(20):
        h.tick(1)
        assert not h.runner.busy[5]
    assert all(5 not in e for e in [gpus_of(h, j) for j in ids])
    assert len(h.events("job_completed")) > N_GPUS, "the other GPUs kept working"


def fly_with_plans(h, forecast, n, start=None):
    """Tick ``n`` times, each frame preceded by the energy plan the power manager published
    on the tick before (its eclipse from the same TLE, its floor 0.70, gpus_carried)."""
    for _ in range(n):
        t_s = float(start if start is not None else h.runner.tick)
        eclipse = forecast.next_eclipse(t_s)
        h.runner.on_message(Message("power", 0, int(t_s), t_s, "data", "power.energy_plan", {
            "soc_floor": 0.70, "forecast": "tle", "in_eclipse": eclipse.start_s <= t_s,
            "eclipse_start_s": eclipse.start_s, "eclipse_end_s": eclipse.end_s, "eclipse_energy_available_j": 0.0,
            "eclipse_gpus": gpus_carried(h.soc, 160e3 * 3600, 0.70, eclipse.end_s - t_s, 5300.0)}))
        h.tick(1, start=start)
        start = None


def test_jobs_the_battery_will_not_carry_checkpoint_before_the_eclipse_and_resume_after(tmp_path):
    forecast = EclipseForecast.from_tle(BETA0_TLE)
    eclipse = forecast.next_eclipse(0.0)
    h = Harness(tmp_path, tle_lines=BETA0_TLE)
    h.soc = 0.90  # 20 % above the floor: not enough for the whole rack through 35 min of shadow
    jobs = [submit(h, gpus_min=8, gpus_max=8, work_gpu_s=1e6, priority=p, checkpoint_interval_s=600.0,
                   checkpoint_cost_s=5.0) for p in range(9)]
    h.tick(1, start=int(eclipse.start_s) - 201)
    h.tick(79)
    assert not h.events("eclipse_hold") and h.runner.busy.sum() == 72, "no plan heard: no look-ahead"
    fly_with_plans(h, forecast, 30)
    (hold,) = h.events("eclipse_hold")
    carried = hold["args"]["gpus"]
    assert 0 < carried < 72
    fly_with_plans(h, forecast, int(eclipse.start_s) - h.runner.tick)
    running = [j for j in jobs if h.runner.jobs[j].state == "running"]
    assert h.runner.busy.sum() <= carried and running == jobs[len(jobs) - len(running):]
    yielded = [h.runner.jobs[j] for j in jobs if j not in running]
    assert all(j.checkpoint_gpu_s > 0 for j in yielded), "each checkpointed before the shadow"
    fly_with_plans(h, forecast, int(eclipse.end_s) - h.runner.tick + 2)
    assert h.runner.busy.sum() == 72, "all resumed after the eclipse"


def test_a_command_job_is_preempted_through_its_checkpoint_contract_and_finishes_with_its_output(
        tmp_path, reference_digest):
    h = Harness(tmp_path)
    program = submit(h, kind="matmul", gpus_min=70, gpus_max=70, work_gpu_s=float(STEPS), priority=1,
                     checkpoint_interval_s=10.0)
    job = h.runner.jobs[program]
    tick_until(h, lambda: job.state == "running" and job.done_gpu_s > 0)
    urgent = submit(h, gpus_min=72, gpus_max=72, work_gpu_s=72 * 5.0, priority=9, checkpoint_cost_s=0.0)
    tick_until(h, lambda: urgent in h.runner.jobs and h.runner.jobs[urgent].state == "running")
    assert program not in h.runner.programs and job.state == "queued" and job.checkpoint_gpu_s > 0, (
        "the program checkpointed and exited (SIGTERM) before the GPUs changed hands")
    preempted_at = job.checkpoint_gpu_s
    tick_until(h, lambda: program not in h.runner.jobs)
    started = [e["args"] for e in h.events("job_started") if e["args"]["job_id"] == program]
    assert started[-1]["checkpoint_gpu_s"] == pytest.approx(preempted_at), "resumed from its own checkpoint"
    ((detail,),) = rows(tmp_path / "jobs.sqlite", f"SELECT detail FROM results WHERE job_id = {program}")
    assert f"sha256 {reference_digest}" in detail, "the preempted program's result equals an uninterrupted run's"
    assert (tmp_path / "results" / f"job-{program}.npy").exists()


def test_thermal_headroom_steers_placement_and_a_malformed_headroom_or_mode_changes_nothing(tmp_path):
    h = Harness(tmp_path)
    headroom = np.full(N_GPUS, 900.0)
    headroom[:8] = 300.0  # too hot for even the lowest power limit
    h.runner.on_message(Message("thermal", 0, 0, 0.0, "data", "thermal.headroom", {"gpu_headroom_w": headroom}))
    job = submit(h, gpus_min=64, gpus_max=72)
    h.tick(1)
    assert gpus_of(h, job) == list(range(8, 72)), "no new work on a GPU without thermal headroom"
    for bad in ({"gpu_headroom_w": [1.0, 2.0]}, {"gpu_headroom_w": "hot"}, ["not", "a", "map"]):
        h.runner.on_message(Message("thermal", 0, 0, 0.0, "data", "thermal.headroom", bad))
    for bad in ({"mode": "PANIC"}, {}, None):
        h.runner.on_message(Message("executive", 0, 0, 0.0, "ctl", "mode", bad))
    assert h.runner.decode_errors == 6 and len(h.events("decode_error")) == 6
    assert h.runner.mode == "NOMINAL" and (h.runner.headroom_w[:8] == 300.0).all()
