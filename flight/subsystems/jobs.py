"""Job runner: turns GPU time into finished synthetic jobs.

A job asks for a number of GPUs and an amount of work in GPU-seconds at full clock. Each
tick every running job advances by ``sum(clock_i / max_clock * dt)`` over its GPUs, so
throughput follows the clocks the power limits and thermal protection actually allow
(throughput proportional to clock: DESIGN.md, GPU model). The job runner offers load on
exactly the GPUs it uses (``gpu_load_frac``) and publishes per-GPU priority weights that the
power manager's allocator uses (data product ``jobs.demand``, whenever they change).

With ``params["jobs"]["workload"] == "saturate"`` (the default) the queue is kept topped up
with seeded synthetic jobs so every GPU has work: the "maximum demand" case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flight.dictionary import Arg, Channel, Command, CommandError, Component, Event
from flight.hal import N_GPUS
from flight.subsystem import Subsystem

GPU_MAX_CLOCK_MHZ = 1965.0
"""Full-speed graphics clock of a B200-class GPU (NVIDIA B200 boost clock; estimate)."""
MAX_QUEUE = 256


@dataclass
class Job:
    job_id: int
    gpus_wanted: int
    work_gpu_s: float
    priority: int
    done_gpu_s: float = 0.0
    gpus: list[int] = field(default_factory=list)


class JobRunner(Subsystem):
    COMPONENT = Component(
        "jobs", 6, doc="Runs GPU jobs under the power limits and thermal headroom flight allows.",
        commands=(
            Command("submit", 1, (
                Arg("gpus", "int", "count", 1, N_GPUS, doc="GPUs the job runs on."),
                Arg("work_gpu_s", "float", "GPU-s", 1.0, 1e9, doc="Work at full clock."),
                Arg("priority", "int", "", 0, 9, doc="0 lowest .. 9 highest."),
            ), doc="Queue a synthetic job."),
            Command("cancel", 2, (Arg("job_id", "int", "", 1, 2**31 - 1, doc="Job to cancel."),),
                    doc="Cancel a queued or running job."),
        ),
        telemetry=(
            Channel("queue_depth", "int", "count", "Jobs waiting for GPUs."),
            Channel("running", "int", "count", "Jobs running."),
            Channel("gpus_busy", "int", "count", "GPUs assigned to a job."),
            Channel("jobs_completed", "int", "count", "Jobs finished since start."),
            Channel("work_done_gpu_s", "float", "GPU-s", "Work finished since start (full-clock GPU-seconds)."),
            Channel("throughput_gpu_s_per_s", "float", "GPU-s/s", "Work rate over the last tick."),
            Channel("gpu_weight", "float", "", "Per-GPU priority weight for the power allocator.", size=N_GPUS),
        ),
        events=(
            Event("job_submitted", 1, "INFO", "job {job_id} queued: {gpus} GPUs, {work_gpu_s:.0f} GPU-s, priority {priority}"),
            Event("job_completed", 2, "INFO", "job {job_id} completed: {work_gpu_s:.0f} GPU-s"),
            Event("job_cancelled", 3, "LOW", "job {job_id} cancelled after {done_gpu_s:.0f} GPU-s"),
        ),
    )
    RATE_GROUPS = ((1, "run"),)

    def __init__(self, config, emit, send_command=None, **ports) -> None:
        super().__init__(config, emit, send_command, **ports)
        params = config.params.get("jobs", {})
        self.saturate = params.get("workload", "saturate") == "saturate"
        self.rng = np.random.default_rng(config.seed)
        self.queue: list[Job] = []
        self.running: list[Job] = []
        self.next_id = 1
        self.completed = 0
        self.work_done_gpu_s = 0.0
        self.load = np.zeros(N_GPUS)
        self.weight = np.zeros(N_GPUS)
        self.throughput = 0.0
        self.announced = False
        """Whether this process has set the GPUs' load yet (a restart must, even to idle)."""

    def _add(self, gpus: int, work_gpu_s: float, priority: int) -> Job:
        if len(self.queue) >= MAX_QUEUE:
            raise CommandError("BUSY", f"queue full ({MAX_QUEUE} jobs)")
        job = Job(self.next_id, gpus, work_gpu_s, priority)
        self.next_id += 1
        self.queue.append(job)
        return job

    def cmd_submit(self, gpus: int, work_gpu_s: float, priority: int) -> str:
        job = self._add(gpus, work_gpu_s, priority)
        self.event("job_submitted", job_id=job.job_id, gpus=gpus, work_gpu_s=work_gpu_s, priority=priority)
        return f"job {job.job_id} queued"

    def cmd_cancel(self, job_id: int) -> str:
        for jobs in (self.queue, self.running):
            for job in jobs:
                if job.job_id == job_id:
                    jobs.remove(job)
                    self.event("job_cancelled", job_id=job_id, done_gpu_s=job.done_gpu_s)
                    return f"job {job_id} cancelled"
        raise CommandError("EXECUTION_ERROR", f"no job {job_id}")

    def _top_up(self, free_gpus: int) -> None:
        """Keep enough synthetic work queued to fill every free GPU (saturating workload)."""
        queued = sum(j.gpus_wanted for j in self.queue)
        while queued < free_gpus and len(self.queue) < MAX_QUEUE:
            gpus = int(self.rng.choice((4, 8, 8, 16)))
            job = self._add(gpus, float(gpus * self.rng.uniform(600.0, 3600.0)), int(self.rng.integers(0, 10)))
            queued += job.gpus_wanted

    def _schedule(self, online: np.ndarray) -> None:
        busy = {g for j in self.running for g in j.gpus}
        free = [g for g in range(N_GPUS) if online[g] and g not in busy]
        if self.saturate:
            self._top_up(len(free))
        # highest priority first, then oldest: a stable order keeps runs deterministic
        for job in sorted(self.queue, key=lambda j: (-j.priority, j.job_id)):
            if job.gpus_wanted <= len(free):
                job.gpus, free = free[: job.gpus_wanted], free[job.gpus_wanted:]
                self.queue.remove(job)
                self.running.append(job)

    def run(self, frame: dict) -> None:
        dt_s = self.config.tick_s
        speed = np.clip(frame["gpu_clock_mhz"] / GPU_MAX_CLOCK_MHZ, 0.0, 1.0) * frame["gpu_util"]
        done_now = 0.0
        for job in list(self.running):
            step = float(np.sum(speed[job.gpus])) * dt_s
            step = min(step, job.work_gpu_s - job.done_gpu_s)
            job.done_gpu_s += step
            done_now += step
            if job.done_gpu_s >= job.work_gpu_s - 1e-9:
                self.running.remove(job)
                self.completed += 1
                self.event("job_completed", job_id=job.job_id, work_gpu_s=job.work_gpu_s)
        self.work_done_gpu_s += done_now
        self._schedule(frame["gpu_online"])
        self.throughput = done_now / dt_s
        weight = np.zeros(N_GPUS)
        for job in self.running:
            weight[job.gpus] = 1.0 + job.priority
        if not np.array_equal(weight, self.weight) or not self.announced:
            self.weight = weight
            self.load = (weight > 0).astype(float)
            self.actuate(gpu_load_frac=self.load)
            self.publish_data("demand", gpu_weight=self.weight)
            self.announced = True

    def housekeeping(self) -> None:
        self.publish_data("demand", gpu_weight=self.weight)  # a restarted power manager catches up here
        self.telemetry(
            queue_depth=len(self.queue), running=len(self.running),
            gpus_busy=int(np.count_nonzero(self.load)), jobs_completed=self.completed,
            work_done_gpu_s=self.work_done_gpu_s, throughput_gpu_s_per_s=self.throughput,
            gpu_weight=self.weight,
        )
