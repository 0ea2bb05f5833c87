"""Which jobs run on which GPUs: priorities, deadlines, limits, preemption.

:func:`plan` is a pure function of the jobs and the :class:`Limits` of the moment; the job
runner (:mod:`flight.subsystems.jobs.runner`) applies its answer. The rules, in order:

1. **Eligibility by mode** (``ctl/mode`` from the mode manager, the power manager): ``SAFE`` runs nothing;
   ``POWER_SAVE`` runs only critical jobs and jobs of priority >= :data:`HIGH_PRIORITY`;
   ``NOMINAL`` and ``THERMAL_LIMIT`` run everything. A running job that is no longer
   eligible is preempted.
2. **GPU cap** (:attr:`Limits.max_gpus`): the most GPUs all jobs together may hold (the
   power limits, the eclipse look-ahead and ``THERMAL_LIMIT``'s rule set it, see the runner).
   While running jobs hold more, the last ones in scheduling order are preempted.
3. **Placement**, in :meth:`flight.subsystems.jobs.model.Job.order_key` order (priority, then earliest
   deadline first, then age): a queued job starts when ``gpus_min`` GPUs per replica are
   usable and free within the cap, and takes up to ``gpus_max`` per replica, GPUs with the
   most thermal headroom first (ties: lowest index). A job that does not fit does not block
   smaller jobs behind it (backfill) unless it is waiting on a preemption.
4. **Preemption**: a queued :func:`urgent` job (one with a deadline, or of priority >=
   :data:`HIGH_PRIORITY`) that does not fit takes GPUs from running jobs of strictly lower
   priority (lowest priority first, then latest deadline, then newest, sparing any the
   others make unnecessary) if that makes it fit. A batch job (neither) waits for GPUs to
   come free instead: a preemption costs the victim a checkpoint and leaves its progress
   waiting in the queue, where under a queue that never runs dry it can wait for hours,
   work done and not yet delivered (the rule "preemption only across urgency" is
   Kubernetes' ``preemptionPolicy: Never`` for batch priority classes; in
   ``tools/bench_goodput.py``'s day it took goodput from 0.83 to 0.86). Victims checkpoint
   first and then return to the queue (their GPUs come free when the checkpoint completes):
   a checkpoint costs ``checkpoint_cost_s`` (at most the interval) while stopping without
   one would throw away up to a whole interval of work.
   While a preemption is under way nothing of lower order is placed, so the GPUs it frees
   are not taken by backfill.

The order is total, so the same jobs and limits always give the same plan (lockstep runs
stay reproducible).

``fifo=True`` is the naive baseline ``tools/bench_goodput.py`` compares against: submission
order, no preemption, no backfill (the head of the queue waits until it fits), the cap and
modes still honoured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from flight.subsystems.jobs.model import Job

HIGH_PRIORITY = 7
"""Lowest priority that still runs in ``POWER_SAVE`` (critical jobs always do)."""


@dataclass
class Limits:
    """What the GPUs may take now.

    Attributes:
        usable: per-GPU bool, shape ``(n_gpus,)``: online, unfenced and allowed power by the
            power manager and the thermal controller; new work lands only on these.
        max_gpus: GPUs all running jobs together may hold (0..n_gpus).
        mode: the executive's mode, one of :data:`flight.subsystems.power.modes.MODES`.
        preference: per-GPU placement preference, shape ``(n_gpus,)`` (thermal headroom, W):
            higher first.
    """

    usable: np.ndarray
    max_gpus: int
    mode: str = "NOMINAL"
    preference: np.ndarray | None = None


@dataclass
class Plan:
    """What to change: ``start`` is ``(job, gpus)`` for each job to start (each GPU at most
    once); ``preempt`` is ``(job, why)`` for each running job to checkpoint and requeue."""

    start: list[tuple[Job, list[int]]] = field(default_factory=list)
    preempt: list[tuple[Job, str]] = field(default_factory=list)


def eligible(job: Job, mode: str) -> bool:
    """Whether ``job`` may run in ``mode``."""
    if mode == "SAFE":
        return False
    if mode == "POWER_SAVE":
        return job.critical or job.priority >= HIGH_PRIORITY
    return True


def urgent(job: Job) -> bool:
    """Whether ``job`` may preempt lower-priority jobs: it has a deadline, or its priority is
    at least :data:`HIGH_PRIORITY`."""
    return job.deadline_s is not None or job.priority >= HIGH_PRIORITY


def _victim_key(job: Job) -> tuple:
    return (job.priority, -job.urgency_s, -job.job_id)


def _victims(need: int, candidates: list[Job], free: int, budget: int, usable: np.ndarray) -> list[Job]:
    """The running jobs to preempt so that ``need`` GPUs are free and within the cap
    (``free`` usable GPUs free now, ``budget`` GPUs left under the cap), or none if the
    ``candidates`` cannot make it: taken lowest first (:func:`_victim_key`) until they
    suffice, then each one the others make unnecessary is spared, the last taken (the
    highest) first, so a big victim taken last does not leave smaller ones before it
    preempted for nothing."""
    def enough(jobs: list[Job]) -> bool:
        gain_free = sum(int(np.count_nonzero(usable[v.gpus])) for v in jobs)
        return need <= min(free + gain_free, budget + sum(len(v.gpus) for v in jobs))

    victims: list[Job] = []
    for victim in sorted(candidates, key=_victim_key):
        if enough(victims):
            break
        victims.append(victim)
    if not enough(victims):
        return []
    for victim in reversed(list(victims)):
        rest = [v for v in victims if v is not victim]
        if enough(rest):
            victims = rest
    return victims


def plan(jobs: Iterable[Job], limits: Limits, fifo: bool = False) -> Plan:
    """Decide starts and preemptions for ``jobs`` (any states; only ``queued`` and
    ``running`` ones are considered) under ``limits``; ``fifo`` for the naive baseline.

    A running job already leaving (``yield_after_checkpoint`` or ``park_after_checkpoint``)
    still holds its GPUs but is not preempted again.
    """
    out = Plan()
    jobs = list(jobs)
    running = sorted((j for j in jobs if j.state == "running"), key=Job.order_key)
    staying = []
    for job in running:
        if job.yield_after_checkpoint or job.park_after_checkpoint:
            continue
        if not eligible(job, limits.mode):
            out.preempt.append((job, f"{limits.mode} mode"))
        else:
            staying.append(job)
    held = sum(len(j.gpus) for j in staying)
    while staying and held > limits.max_gpus:
        job = staying.pop()
        held -= len(job.gpus)
        out.preempt.append((job, f"GPU cap {limits.max_gpus}"))
    busy = np.zeros(limits.usable.shape, dtype=bool)
    for job in running:
        busy[job.gpus] = True
    free = np.flatnonzero(limits.usable & ~busy)
    if limits.preference is not None and free.size:
        free = free[np.argsort(-limits.preference[free], kind="stable")]
    free = free.tolist()
    leaving = sum(len(j.gpus) for j in running) - held  # held now, free once their checkpoints complete
    budget = limits.max_gpus - held
    order = (lambda j: j.job_id) if fifo else Job.order_key
    for job in sorted((j for j in jobs if j.state == "queued" and eligible(j, limits.mode)), key=order):
        r = job.replicas
        room = min(len(free), budget)
        if job.gpus_min * r <= room:
            take = min(job.gpus_max * r, room) // r * r
            out.start.append((job, sorted(free[:take])))
            free, budget = free[take:], budget - take
            continue
        if fifo:
            break
        if leaving and job.gpus_min * r <= room + leaving:
            break  # GPUs are on their way to this job: nothing behind it takes them
        if not urgent(job):
            continue
        victims = _victims(job.gpus_min * r, [v for v in staying if v.priority < job.priority], len(free), budget,
                           limits.usable)
        if victims:
            for victim in victims:
                staying.remove(victim)
                out.preempt.append((victim, f"preempted by job {job.job_id} (priority {job.priority})"))
            break
    return out
