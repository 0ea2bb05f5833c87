"""The scheduler's plan (:func:`flight.subsystems.jobs.scheduler.plan`): preemption by priority, the GPU
cap, the modes, replicas, and placement on the GPUs with the most thermal headroom."""

import numpy as np

from flight.hal.protocol import N_GPUS
from flight.subsystems.jobs.model import Job
from flight.subsystems.jobs.scheduler import HIGH_PRIORITY, Limits, plan


def job(job_id, priority=5, gpus=8, **kw):
    return Job(job_id, priority, gpus, gpus, 1000.0, 60.0, 2.0, **kw)


def running(j, gpus):
    j.start(list(gpus))
    return j


def all_usable():
    return np.ones(N_GPUS, dtype=bool)


def test_a_higher_priority_job_preempts_the_lowest_jobs_it_needs_and_nothing_backfills_their_gpus():
    low = running(job(1, priority=1, gpus=36), range(36))
    mid = running(job(2, priority=4, gpus=36), range(36, 72))
    high = job(3, priority=8, gpus=30)
    filler = job(4, priority=0, gpus=1)
    out = plan([low, mid, high, filler], Limits(all_usable(), N_GPUS))
    assert [(j.job_id, why) for j, why in out.preempt] == [(1, "preempted by job 3 (priority 8)")]
    assert out.start == [], "the victim still holds its GPUs until its checkpoint completes"
    low.yield_after_checkpoint = True
    again = plan([low, mid, high, filler], Limits(all_usable(), N_GPUS))
    assert again.preempt == [] and again.start == [], "a leaving job is not preempted twice; nothing takes its GPUs"
    low.stop("queued")
    placed = plan([low, mid, high, filler], Limits(all_usable(), N_GPUS)).start
    assert [(j.job_id, len(g)) for j, g in placed] == [(3, 30), (4, 1)], "the GPUs freed go to the job that asked"


def test_equal_priority_never_preempts_and_a_job_that_cannot_be_made_to_fit_preempts_nobody():
    a = running(job(1, priority=5, gpus=72), range(72))
    assert plan([a, job(2, priority=5)], Limits(all_usable(), N_GPUS)).preempt == []
    small = running(job(3, priority=1, gpus=4), range(4))
    usable = np.zeros(N_GPUS, dtype=bool)
    usable[:4] = True
    assert plan([small, job(4, priority=9, gpus=8)], Limits(usable, N_GPUS)).preempt == [], "4 GPUs cannot make 8"


def test_only_an_urgent_job_preempts_a_batch_job_waits_for_gpus_to_come_free():
    low = running(job(1, priority=1, gpus=72), range(72))
    assert plan([low, job(2, priority=6)], Limits(all_usable(), N_GPUS)).preempt == [], "batch waits, even at 6"
    for urgent in (job(3, priority=6, deadline_s=5000.0), job(4, priority=HIGH_PRIORITY)):
        out = plan([low, urgent], Limits(all_usable(), N_GPUS))
        assert [(j.job_id, why) for j, why in out.preempt] == [
            (1, f"preempted by job {urgent.job_id} (priority {urgent.priority})")]


def test_a_victim_the_others_make_unnecessary_is_spared():
    small = running(job(1, priority=1, gpus=4), range(4))
    big = running(job(2, priority=2, gpus=16), range(4, 20))
    rest = running(job(3, priority=9, gpus=52), range(20, 72))
    out = plan([small, big, rest, job(4, priority=8, gpus=8)], Limits(all_usable(), N_GPUS))
    assert [j.job_id for j, _ in out.preempt] == [2], "4 GPUs of job 1 could not make 8; job 2's 16 do alone"


def test_earliest_deadline_first_within_a_priority():
    later, sooner = job(1, deadline_s=5000.0, gpus=40), job(2, deadline_s=900.0, gpus=40)
    placed = plan([later, sooner], Limits(all_usable(), N_GPUS)).start
    assert [j.job_id for j, _ in placed] == [2]


def test_the_cap_preempts_the_last_jobs_in_order_and_limits_new_placement():
    a = running(job(1, priority=9, gpus=30), range(30))
    b = running(job(2, priority=2, gpus=30), range(30, 60))
    out = plan([a, b, job(3, priority=9, gpus=4)], Limits(all_usable(), 40))
    assert [j.job_id for j, _ in out.preempt] == [2] and out.start[0][0].job_id == 3
    assert sum(len(g) for _, g in out.start) <= 40 - 30


def test_safe_stops_everything_and_power_save_keeps_critical_and_high_priority_jobs():
    jobs = [running(job(1, priority=2, gpus=8), range(8)), running(job(2, priority=8, gpus=8), range(8, 16)),
            running(job(3, priority=0, gpus=8, critical=True), range(16, 32)), job(4, priority=1), job(5, priority=9)]
    safe = plan(jobs, Limits(all_usable(), N_GPUS, "SAFE"))
    assert sorted(j.job_id for j, _ in safe.preempt) == [1, 2, 3] and safe.start == []
    save = plan(jobs, Limits(all_usable(), N_GPUS, "POWER_SAVE"))
    assert [(j.job_id, why) for j, why in save.preempt] == [(1, "POWER_SAVE mode")]
    assert [j.job_id for j, _ in save.start] == [5]


def test_a_critical_job_takes_two_replicas_worth_of_gpus_coolest_first():
    crit = job(1, gpus=4, critical=True)
    headroom = np.linspace(400.0, 1000.0, N_GPUS)  # the last GPUs have the most headroom
    (placed, gpus), = plan([crit], Limits(all_usable(), N_GPUS, preference=headroom)).start
    assert gpus == list(range(64, 72)) and crit.replicas == 2
    placed.start(gpus)
    assert placed.replica_gpus(0) == [64, 65, 66, 67] and placed.replica_gpus(1) == [68, 69, 70, 71]


def test_no_new_work_lands_on_an_unusable_gpu():
    usable = all_usable()
    usable[[0, 5, 9]] = False
    placed = plan([job(i, gpus=1) for i in range(1, 80)], Limits(usable, N_GPUS)).start
    taken = [g for _, gpus in placed for g in gpus]
    assert len(taken) == N_GPUS - 3 and not {0, 5, 9} & set(taken)


def test_the_fifo_baseline_runs_in_submission_order_without_backfill_or_preemption():
    low = running(job(1, priority=0, gpus=60), range(60))
    head, small, urgent = job(2, priority=1, gpus=16), job(3, priority=1, gpus=4), job(4, priority=9, gpus=8)
    out = plan([low, head, small, urgent], Limits(all_usable(), N_GPUS), fifo=True)
    assert out.start == [] and out.preempt == [], "the head waits for 16 GPUs; nothing passes it or preempts"
    low.stop("queued")
    assert [j.job_id for j, _ in plan([low, head, small, urgent], Limits(all_usable(), N_GPUS), fifo=True).start] == [1]
