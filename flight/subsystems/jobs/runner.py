"""Job runner: turns the GPU time flight allows into finished jobs, through upsets and crashes.

Each tick (rate group ``run``):

1. ECC (:mod:`flight.subsystems.jobs.radiation`): corrected errors are counted per GPU; a new
   uncorrectable error rolls the job on that GPU back to its last checkpoint; a GPU with 3
   within an hour is fenced (durably) and its job requeued. A GPU that goes offline rolls
   its job back and requeues it too.
2. Every running synthetic job advances by its GPUs' actual throughput
   (:mod:`flight.subsystems.jobs.model`); a command job's program (a real process,
   :mod:`flight.subsystems.jobs.programs`) reports its own progress. Both checkpoint every
   ``checkpoint_interval_s``; a pause stops a program, which checkpoints and exits, and a
   finished program's output is kept under ``<data dir>/results/``. Completed checkpoints
   and completions are written to ``<data dir>/jobs.sqlite`` (:mod:`flight.subsystems.jobs.store`),
   completions in the transaction that records the result, so each is announced once. A
   job past its deadline fails.
   A critical job's two replicas are compared at every checkpoint and at the end; on
   disagreement (silent data corruption; ``jobs.inject_sdc`` injects one for tests) it
   rolls back to its last checkpoint, the last state both agreed on, and computes again.
   A critical command job runs its program twice, one process per replica, and their
   result digests are compared at the end: the replicas checkpoint each at its own step,
   so no checkpoint was ever compared, and on disagreement both start again from nothing.
3. The scheduler (:mod:`flight.subsystems.jobs.scheduler`) places queued jobs by priority and deadline
   and preempts (checkpoint, then requeue) under the limits of the moment
   (:meth:`JobRunner._limits`): new work lands only on online, unfenced GPUs that the power
   manager powers (``gpu_power_limit_w`` > 0 in the frame) and whose thermal headroom
   (``data/thermal.headroom``) admits the lowest power limit; the GPUs held are capped by a
   persistent load shed, by the eclipse look-ahead (:meth:`JobRunner._eclipse_hold`: jobs the
   battery will not carry through the coming eclipse checkpoint before it and resume after;
   how many it carries is the power manager's word, data product ``power.energy_plan``)
   and by the mode (``ctl/mode`` from the power manager, the mode manager: ``SAFE``
   checkpoints and stops everything, ``POWER_SAVE`` keeps only critical and high-priority
   jobs, ``THERMAL_LIMIT`` halves the GPUs held: the lowest jobs yield). New work lands on the GPUs with the most headroom first.
4. The runner offers load on exactly the GPUs it uses (``gpu_load_frac``) and publishes
   per-GPU priority weights for the power manager's allocator (data product
   ``jobs.demand``, whenever they change, and with every housekeeping packet).

Each finished job's result is published as data product ``jobs.result``
(:class:`~flight.subsystems.jobs.store.JobResult`) once its transaction has committed, and
again with every housekeeping packet (at most :data:`RESULTS_PER_HOUSEKEEPING`, oldest first)
until the link acknowledges it with data product ``link.result_ack`` (``job_ids``), recorded
durably: the link downlinks it, exactly once, even when it was down or restarting meanwhile.

Nothing is written to the database on an ordinary tick: only on submit, cancel, pause,
resume, checkpoint, completion or failure, and on the rare uncorrectable error or fence.

A restarted runner reloads the queue: every job it was running resumes from its last
checkpoint (event ``job_restored``); finished jobs are never announced again.

With ``params["jobs"]["workload"] == "saturate"`` (the default) the queue is kept topped up
with seeded synthetic jobs so every GPU has work: the "maximum demand" case; any other
value runs only the jobs submitted by command. A synthetic job's parameters follow from
the seed and its id alone, so a restart does not change them; its checkpoint interval and
cost are ``params["jobs"]["checkpoint_interval_s"]`` and ``["checkpoint_cost_s"]``.

Counters in housekeeping marked "this process" restart from zero with the process (the
run summary sums ``work_done_gpu_s`` across restarts, :class:`flight.executive.recorder.Cumulative`);
``work_done_gpu_s`` counts work as it is done, including work a rollback or crash later
throws away; ``work_useful_gpu_s`` is durable (completed jobs plus the checkpointed progress
of unfinished ones, from the store), so the work lost over a run is done − useful − unsaved;
``goodput_gpu_s_per_s`` counts only completed jobs, from the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from flight.core.component import Arg, Channel, Command, CommandError, Component, DataProduct, Event, EventArg, ProductField
from flight.hal.protocol import N_GPUS
from flight.subsystems.jobs.programs import PROGRAMS, ProgramRun
from flight.subsystems.jobs.model import Job, gpu_speed
from flight.subsystems.jobs.radiation import FENCE_COUNT, FENCE_WINDOW_S, EccMonitor
from flight.subsystems.jobs.scheduler import Limits, plan
from flight.subsystems.power.modes import MODES
from flight.subsystems.jobs.store import JobResult, JobStore
from flight.core.messages import Message
from flight.core.subsystem import Subsystem
from flight.platform import GPU_MIN_W

MAX_ACTIVE = 256
"""Jobs not yet finished (queued, running or paused) the runner holds; more is BUSY."""
RESULTS_PER_HOUSEKEEPING = 64
"""Most unacknowledged results offered to the link again with one housekeeping packet."""
LIST_MAX = 40
"""Jobs named in one ``jobs.list`` answer (the rest are counted)."""
SYNTHETIC_CHECKPOINT_INTERVAL_S = 300.0
SYNTHETIC_CHECKPOINT_COST_S = 5.0
PROGRAM_STOP_WAIT_S = 2.0
"""How long a stopping job runner waits for its programs' last checkpoints."""
JOB_ID = Arg("job_id", "int", "", 1, 2**31 - 1, doc="Job id from jobs.submit.")
ECLIPSE_LEAD_S = 120.0
"""How long before a forecast eclipse the runner decides who runs through it: enough for the
jobs that will not be carried to complete a checkpoint (checkpoint costs are tens of
seconds)."""
SHED_PERSIST_TICKS = 10
"""Ticks the power manager must keep busy GPUs parked before the runner gives up GPUs to
match (a passing shed does not cost a checkpoint)."""
PLAN_FIELDS = frozenset({"forecast", "eclipse_start_s", "eclipse_end_s", "eclipse_gpus"})
"""Fields of ``power.energy_plan`` the eclipse look-ahead reads."""
THERMAL_LIMIT_GPU_FRACTION = 0.5
"""In ``THERMAL_LIMIT`` jobs hold at most this fraction of the usable GPUs (the lowest-priority
jobs yield the rest): the rack's heat falls by the busy-minus-idle power of the GPUs let go
while the radiators recover (a rule of this project, not a standard)."""


class JobRunner(Subsystem):
    COMPONENT = Component(
        "jobs", 6, doc="Runs GPU jobs under the power limits and thermal headroom flight allows.",
        commands=(
            Command("submit", 1, (
                Arg("gpus_min", "int", "count", 1, N_GPUS, doc="Fewest GPUs the job can start on."),
                Arg("gpus_max", "int", "count", 1, N_GPUS, doc="Most GPUs the job uses (>= gpus_min)."),
                Arg("work_gpu_s", "float", "GPU-s", 1.0, 1e9, doc="Work at full clock."),
                Arg("priority", "int", "", 0, 9, doc="0 lowest .. 9 highest."),
                Arg("checkpoint_interval_s", "float", "s", 10.0, 86400.0,
                    doc="Compute time between checkpoints: the most work a crash can lose."),
                Arg("checkpoint_cost_s", "float", "s", 0.0, 3600.0,
                    doc="Full-clock seconds each of the job's GPUs spends writing one checkpoint "
                        "(<= checkpoint_interval_s)."),
                Arg("deadline_s", "float", "s", 0.0, 1e12,
                    doc="Simulated time by which the job must finish, else it fails; 0 for none."),
                Arg("critical", "bool", doc="Job whose results matter most (recorded with the job)."),
                Arg("kind", "str", choices=("synthetic", *PROGRAMS),
                    doc="synthetic (progress follows the GPU clocks) or a program run as a real process "
                        "(flight.subsystems.jobs.programs), work_gpu_s being its number of steps."),
            ), doc="Queue a job; durable before the command completes."),
            Command("cancel", 2, (JOB_ID,), doc="Cancel a queued, paused or running job."),
            Command("pause", 3, (JOB_ID,),
                    doc="Hold a job; a running one first completes a checkpoint, then leaves its GPUs."),
            Command("resume", 4, (JOB_ID,), doc="Queue a paused job again."),
            Command("list", 5, doc="List the unfinished jobs (also as event jobs.queue).", idempotent=True),
            Command("unfence", 6, (Arg("gpu", "int", "", 0, N_GPUS - 1, doc="GPU index."),),
                    doc="Let work land on a fenced GPU again; its error window starts afresh."),
            Command("inject_sdc", 7, (JOB_ID, Arg("replica", "int", "", 0, 1, doc="Replica to corrupt.")),
                    doc="TEST / FAULT INJECTION ONLY: flip one bit of a running critical job's replica "
                        "state, as an undetected upset in GPU memory would (silent data corruption); the "
                        "replica comparison at its next checkpoint (a command job's: at its end) must "
                        "catch it. A command job's program flips it on SIGUSR2 (flight.subsystems.jobs.programs)."),
        ),
        telemetry=(
            Channel("queue_depth", "int", "count", "Jobs waiting for GPUs."),
            Channel("running", "int", "count", "Jobs running."),
            Channel("paused", "int", "count", "Jobs held by command."),
            Channel("gpus_busy", "int", "count", "GPUs assigned to a job."),
            Channel("gpus_fenced", "int", "count", "GPUs fenced for uncorrectable ECC errors.", yellow=(0, 0)),
            Channel("jobs_completed", "int", "count", "Jobs finished this process."),
            Channel("jobs_failed", "int", "count", "Jobs that missed their deadline this process."),
            Channel("jobs_rolled_back", "int", "count", "Rollbacks to a checkpoint this process."),
            Channel("work_done_gpu_s", "float", "GPU-s", "Work done this process (full-clock GPU-seconds)."),
            Channel("work_lost_gpu_s", "float", "GPU-s", "Work thrown away by rollbacks this process."),
            Channel("work_useful_gpu_s", "float", "GPU-s",
                    "Work kept (durable): completed jobs plus the checkpointed progress of unfinished ones."),
            Channel("work_unsaved_gpu_s", "float", "GPU-s", "Work of running jobs since their last checkpoint."),
            Channel("jobs_preempted", "int", "count", "Jobs sent back to the queue to free GPUs this process."),
            Channel("sdc_detected", "int", "count",
                    "Replica disagreements of critical jobs (silent data corruption) this process.", yellow=(0, 0)),
            Channel("gpu_cap", "int", "count", "GPUs jobs may hold now (power, eclipse, mode)."),
            Channel("throughput_gpu_s_per_s", "float", "GPU-s/s", "Work rate over the last tick."),
            Channel("goodput_gpu_s_per_s", "float", "GPU-s/s",
                    "Work of completed jobs per second since the first job was submitted (durable)."),
            Channel("ecc_corrected_total", "int", "count", "Corrected ECC errors this process, all GPUs."),
            Channel("gpu_ecc_corrected", "int", "count", "Per-GPU corrected ECC errors this process.", size=N_GPUS),
            Channel("gpu_fenced", "bool", "", "Per-GPU fence.", size=N_GPUS),
            Channel("gpu_weight", "float", "", "Per-GPU priority weight for the power allocator.", size=N_GPUS),
            Channel("gpu_job_id", "int", "", "Per-GPU id of the job running on it (0 idle).", size=N_GPUS),
            Channel("gpu_unsaved_gpu_s", "float", "GPU-s",
                    "Per-GPU work of the job on it since its last checkpoint: what a crash now would lose.",
                    size=N_GPUS),
        ),
        events=(
            Event("job_submitted", 1, "INFO",
                  "job {job_id} queued: {gpus_min}-{gpus_max} GPUs, {work_gpu_s:.0f} GPU-s, priority {priority}",
                  args=(EventArg("job_id", "int"), EventArg("gpus_min", "int", "count"),
                        EventArg("gpus_max", "int", "count"), EventArg("work_gpu_s", "float", "GPU-s"),
                        EventArg("priority", "int"))),
            Event("job_completed", 2, "INFO", "job {job_id} completed: {work_gpu_s:.0f} GPU-s",
                  args=(EventArg("job_id", "int"), EventArg("work_gpu_s", "float", "GPU-s"))),
            Event("job_cancelled", 3, "LOW", "job {job_id} cancelled after {done_gpu_s:.0f} GPU-s",
                  args=(EventArg("job_id", "int"), EventArg("done_gpu_s", "float", "GPU-s"))),
            Event("job_failed", 4, "MEDIUM", "job {job_id} failed: {why}",
                  args=(EventArg("job_id", "int"), EventArg("why", "str"))),
            Event("job_rolled_back", 5, "LOW",
                  "job {job_id} rolled back to {checkpoint_gpu_s:.1f} GPU-s, {lost_gpu_s:.1f} GPU-s lost: {why}",
                  args=(EventArg("job_id", "int"), EventArg("checkpoint_gpu_s", "float", "GPU-s"),
                        EventArg("lost_gpu_s", "float", "GPU-s"), EventArg("why", "str"))),
            Event("gpu_fenced", 6, "MEDIUM",
                  "GPU {gpu} fenced: {count} uncorrectable ECC errors within {window_s:.0f} s; no new work lands on it",
                  args=(EventArg("gpu", "int"), EventArg("count", "int", "count"),
                        EventArg("window_s", "float", "s"))),
            Event("gpu_unfenced", 7, "INFO", "GPU {gpu} unfenced",
                  args=(EventArg("gpu", "int"),)),
            Event("job_restored", 8, "INFO",
                  "job {job_id} restored after restart: checkpoint t={checkpoint_s:.1f} s, "
                  "{checkpoint_gpu_s:.1f} of {work_gpu_s:.0f} GPU-s",
                  args=(EventArg("job_id", "int"), EventArg("checkpoint_s", "float", "s"),
                        EventArg("checkpoint_gpu_s", "float", "GPU-s"), EventArg("work_gpu_s", "float", "GPU-s"))),
            Event("job_paused", 9, "INFO", "job {job_id} paused at {checkpoint_gpu_s:.0f} GPU-s",
                  args=(EventArg("job_id", "int"), EventArg("checkpoint_gpu_s", "float", "GPU-s"))),
            Event("job_resumed", 10, "INFO", "job {job_id} queued again",
                  args=(EventArg("job_id", "int"),)),
            Event("queue", 11, "INFO", "{listing}",
                  args=(EventArg("listing", "str"),)),
            Event("job_started", 12, "INFO",
                  "job {job_id} started on {gpus} GPU(s) from {checkpoint_gpu_s:.1f} of {work_gpu_s:.0f} GPU-s",
                  args=(EventArg("job_id", "int"), EventArg("gpus", "int", "count"),
                        EventArg("checkpoint_gpu_s", "float", "GPU-s"), EventArg("work_gpu_s", "float", "GPU-s"))),
            Event("job_preempted", 13, "INFO", "job {job_id} checkpoints and yields its GPUs: {why}",
                  args=(EventArg("job_id", "int"), EventArg("why", "str"))),
            Event("replica_mismatch", 14, "HIGH",
                  "job {job_id} replicas disagree at {done_gpu_s:.1f} GPU-s (silent data corruption): "
                  "re-running from {checkpoint_gpu_s:.1f} GPU-s",
                  args=(EventArg("job_id", "int"), EventArg("done_gpu_s", "float", "GPU-s"),
                        EventArg("checkpoint_gpu_s", "float", "GPU-s"))),
            Event("eclipse_hold", 15, "INFO",
                  "eclipse in {lead_s:.0f} s for {duration_s:.0f} s: battery carries {gpus} GPU(s)",
                  args=(EventArg("lead_s", "float", "s"), EventArg("duration_s", "float", "s"),
                        EventArg("gpus", "int", "count"))),
            Event("sdc_injected", 16, "MEDIUM", "FAULT INJECTION: replica {replica} of job {job_id} corrupted",
                  args=(EventArg("replica", "int"), EventArg("job_id", "int"))),
        ),
        publishes=(DataProduct("demand", (
            ProductField("gpu_weight", "float64", "", (N_GPUS,),
                         "Per-GPU priority weight for the power allocator (0 idle, 1 + job priority)."),
        ), doc="Per-GPU demand, whenever it changes and with every housekeeping packet."),
            DataProduct("result", (
                ProductField("job_id", "int64", "", (), "The finished job."),
                ProductField("outcome", "str", "", (), "completed, failed or cancelled."),
                ProductField("time_s", "float64", "s", (), "Onboard time it finished."),
                ProductField("work_gpu_s", "float64", "GPU-s", (), "Work asked."),
                ProductField("done_gpu_s", "float64", "GPU-s", (), "Work done."),
                ProductField("detail", "str", "", (), "Result digest and path, or why it failed."),
            ), doc="A committed job result (flight.subsystems.jobs.store.JobResult), offered again with "
                   "every housekeeping packet until link.result_ack names it."),
        ),
        consumes=("thermal.headroom", "power.energy_plan", "link.result_ack"),
        actuates=("gpu_load_frac",),
    )
    RATE_GROUPS = ((1, "run"),)
    SUBSCRIBE = (b"ctl/mode",)

    def __init__(self, config, emit, send_command=None, **ports) -> None:
        super().__init__(config, emit, send_command, **ports)
        params = config.params.get("jobs", {})
        self.saturate = params.get("workload", "saturate") == "saturate"
        self.fifo = params.get("policy", "priority") == "fifo"
        """The naive baseline of ``tools/bench_goodput.py``: FIFO, no preemption, no backfill,
        no eclipse look-ahead (``params["jobs"]["policy"] == "fifo"``)."""
        self.synthetic_interval_s = float(params.get("checkpoint_interval_s", SYNTHETIC_CHECKPOINT_INTERVAL_S))
        self.synthetic_cost_s = float(params.get("checkpoint_cost_s", SYNTHETIC_CHECKPOINT_COST_S))
        self.store: JobStore | None = None
        self.jobs: dict[int, Job] = {}
        """Unfinished jobs by id (ids ascend, so insertion order is submission order)."""
        self.next_id = 1
        self.fenced = np.zeros(N_GPUS, dtype=bool)
        self.ecc = EccMonitor(N_GPUS)
        self.completed = self.failed = self.rolled_back = 0
        self.work_done_gpu_s = self.work_lost_gpu_s = 0.0
        self.finished_gpu_s = 0.0
        self.first_submitted_s: float | None = None
        self.load = np.zeros(N_GPUS)
        self.weight = np.zeros(N_GPUS)
        self.throughput = 0.0
        self.announced = False
        """Whether this process has set the GPUs' load yet (a restart must, even to idle)."""
        self.to_restore: list[Job] = []
        """Reloaded jobs with a checkpoint, announced on the first frame (which gives the
        events the time of the restart)."""
        self.placed: list[Job] = []
        self.n_slots = 0
        self.owner = np.zeros(N_GPUS, dtype=np.int64)
        self.busy = np.zeros(N_GPUS, dtype=bool)
        self.placed_weight = np.zeros(N_GPUS)
        self.moved = False
        """A job started or stopped since :meth:`_placement` last ran."""
        self.programs: dict[int, list[ProgramRun]] = {}
        """The running programs of command jobs, by job id: one run per replica."""
        self.mode = "NOMINAL"
        self.headroom_w = np.full(N_GPUS, np.inf)
        """Per-GPU thermal headroom, W, from ``data/thermal.headroom`` (none heard: no cap)."""
        self.energy_plan: dict | None = None
        """The power manager's latest ``power.energy_plan`` (none heard yet: no look-ahead)."""
        self.eclipse_cap: tuple[float, int] | None = None
        """``(end_s, GPUs)`` while an eclipse hold is in force."""
        self.eclipse_decided_s: float | None = None
        """Start of the eclipse the hold was decided for (decided once per eclipse)."""
        self.shed_ticks = 0
        self.cap = N_GPUS
        self.dirty = True
        """Something the plan depends on changed (submit, resume, mode, cap, a job left)."""
        self.preempted = self.sdc_detected = 0

    # -- life cycle ----------------------------------------------------------------------
    def on_start(self) -> None:
        """Open the store and take up where the last process left off."""
        self.config.data_path.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.config.data_path / "jobs.sqlite")
        self.next_id = self.store.next_job_id()
        self.finished_gpu_s = self.store.finished_work_gpu_s()
        self.first_submitted_s = self.store.first_submitted_s()
        for gpu in self.store.fenced():
            self.fenced[gpu] = True
        # the window is judged against frame time, which a fresh process learns only from
        # its first frame: hand over the whole history and let the monitor prune it
        self.ecc = EccMonitor(N_GPUS, self.store.uncorrectable())
        for job in self.store.load_active():
            self.jobs[job.job_id] = job
        self.to_restore = [j for j in self.jobs.values() if j.checkpoint_s is not None]

    def on_stop(self) -> None:
        """Let every program write a last checkpoint (briefly), then close the store."""
        runs = [run for replicas in self.programs.values() for run in replicas]
        for run in runs:
            run.stop()
        for run in runs:
            try:
                run.proc.wait(PROGRAM_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                run.kill()
        if self.store is not None:
            self.store.close()

    # -- commands ------------------------------------------------------------------------
    def _job(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise CommandError("EXECUTION_ERROR", f"no unfinished job {job_id}")
        return job

    def _add(self, job: Job) -> None:
        """Store ``job`` (committed on return) and queue it."""
        if len(self.jobs) >= MAX_ACTIVE:
            raise CommandError("BUSY", f"{MAX_ACTIVE} unfinished jobs already")
        self.store.add(job)
        self.jobs[job.job_id] = job
        self.next_id = job.job_id + 1
        self.dirty = True
        if self.first_submitted_s is None:
            self.first_submitted_s = job.submitted_s

    def cmd_submit(self, gpus_min: int, gpus_max: int, work_gpu_s: float, priority: int,
                   checkpoint_interval_s: float, checkpoint_cost_s: float, deadline_s: float,
                   critical: bool, kind: str) -> str:
        if gpus_min > gpus_max:
            raise CommandError("VALIDATION_ERROR", f"gpus_min {gpus_min} > gpus_max {gpus_max}")
        if checkpoint_cost_s > checkpoint_interval_s:
            raise CommandError("VALIDATION_ERROR",
                               f"checkpoint_cost_s {checkpoint_cost_s:g} > checkpoint_interval_s {checkpoint_interval_s:g}")
        if deadline_s and deadline_s <= self.time_s:
            raise CommandError("VALIDATION_ERROR", f"deadline_s {deadline_s:g} is not after now ({self.time_s:g} s)")
        job = Job(self.next_id, priority, gpus_min, gpus_max, work_gpu_s, checkpoint_interval_s, checkpoint_cost_s,
                  deadline_s or None, critical, kind, submitted_s=self.time_s)
        self._add(job)
        self.event("job_submitted", job_id=job.job_id, gpus_min=gpus_min, gpus_max=gpus_max,
                   work_gpu_s=work_gpu_s, priority=priority)
        return f"job {job.job_id} queued"

    def cmd_cancel(self, job_id: int) -> str:
        job = self._job(job_id)
        done = job.done_gpu_s
        self._finish(job, "cancelled")
        self.event("job_cancelled", job_id=job_id, done_gpu_s=done)
        return f"job {job_id} cancelled"

    def cmd_pause(self, job_id: int) -> str:
        job = self._job(job_id)
        if job.state == "paused":
            return f"job {job_id} already paused"
        self.store.set_state(job_id, "paused")
        if job.state == "queued":
            job.state = "paused"
            self.event("job_paused", job_id=job_id, checkpoint_gpu_s=job.checkpoint_gpu_s)
            return f"job {job_id} paused"
        job.park_after_checkpoint = True
        self._checkpoint_and_leave(job)
        return f"job {job_id} pausing after its checkpoint"

    def cmd_resume(self, job_id: int) -> str:
        job = self._job(job_id)
        if job.state == "running" and job.park_after_checkpoint:
            self.store.set_state(job_id, "queued")
            job.park_after_checkpoint = False
            return f"job {job_id} keeps running"
        if job.state != "paused":
            raise CommandError("EXECUTION_ERROR", f"job {job_id} is {job.state}, not paused")
        self.store.set_state(job_id, "queued")
        job.state = "queued"
        self.dirty = True
        self.event("job_resumed", job_id=job_id)
        return f"job {job_id} queued again"

    def cmd_list(self) -> str:
        """One entry per unfinished job, ``id:state priority:GPUs:progress %`` (state Q, R, P)."""
        entries = [f"{j.job_id}:{j.state[0].upper()}{j.priority}:{len(j.gpus) or j.gpus_min}g:"
                   f"{100.0 * j.done_gpu_s / j.work_gpu_s:.0f}%" for j in list(self.jobs.values())[:LIST_MAX]]
        more = f" +{len(self.jobs) - LIST_MAX} more" if len(self.jobs) > LIST_MAX else ""
        listing = f"{len(self.jobs)} unfinished: {' '.join(entries)}{more}"
        self.event("queue", listing=listing)
        return listing

    def cmd_unfence(self, gpu: int) -> str:
        if not self.store.unfence(gpu):
            raise CommandError("EXECUTION_ERROR", f"GPU {gpu} is not fenced")
        self.fenced[gpu] = False
        self.ecc.clear(gpu)
        self.event("gpu_unfenced", gpu=gpu)
        return f"GPU {gpu} unfenced"

    def cmd_inject_sdc(self, job_id: int, replica: int) -> str:
        job = self._job(job_id)
        if job.state != "running" or job.replicas < 2:
            raise CommandError("EXECUTION_ERROR", f"job {job_id} is not a running critical (replicated) job")
        if job.kind == "synthetic":
            job.corrupt[replica] = True
        elif not self.programs[job_id][replica].inject_upset():
            raise CommandError("EXECUTION_ERROR", f"job {job_id} replica {replica} cannot take it now (not "
                                                  "ready, stopping or finished)")
        self.event("sdc_injected", job_id=job_id, replica=replica)
        return f"job {job_id} replica {replica} corrupted"

    def on_message(self, msg: Message) -> None:
        """Thermal headroom (``gpu_headroom_w``, W, shape ``(N_GPUS,)``), the power manager's
        energy plan (its declared fields), the link's acknowledgement of stored results
        (``{"job_ids": [int, ...]}``) and the mode (``{"mode": one of MODES}``); anything else on
        those topics is counted and reported as a decode error and changes nothing."""
        data = msg.data if isinstance(msg.data, dict) else {}
        if msg.name == "power.energy_plan":
            if not PLAN_FIELDS <= data.keys():
                self._bad_message(msg, f"energy plan without {sorted(PLAN_FIELDS - data.keys())}")
            else:
                self.energy_plan = data
            return
        if msg.name == "thermal.headroom":
            raw = data.get("gpu_headroom_w")
            headroom = np.asarray(raw) if isinstance(raw, (list, np.ndarray)) else None
            if headroom is None or headroom.shape != (N_GPUS,) or headroom.dtype.kind not in "fiu":
                self._bad_message(msg, f"gpu_headroom_w is not {N_GPUS} numbers")
                return
            self.headroom_w[:] = headroom
            self.dirty = True
        elif msg.name == "link.result_ack":
            ids = data.get("job_ids")
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                self._bad_message(msg, "job_ids is not a list of job ids")
                return
            self.store.acknowledge_results(ids)
        elif msg.name == "mode":
            if data.get("mode") not in MODES:
                self._bad_message(msg, f"unknown mode {str(data.get('mode'))[:20]!r}")
            elif data["mode"] != self.mode:
                self.mode = data["mode"]
                self.dirty = True

    def _bad_message(self, msg: Message, why: str) -> None:
        self.decode_errors += 1
        self.event("decode_error", topic=msg.topic.decode(errors="replace")[:40], why=why)

    # -- the tick ------------------------------------------------------------------------
    def _stop(self, job: Job, state: str) -> None:
        self.moved = self.moved or job.state == "running"
        self.dirty = True
        for run in self.programs.pop(job.job_id, ()):
            run.kill()
        job.stop(state)

    def _jobdir(self, job: Job) -> Path:
        return self.config.data_path / "jobs" / str(job.job_id)

    def _launch(self, job: Job) -> None:
        """Start (or restart, from their checkpoint files) a command job's program: one run
        per replica, each in its own working directory, all with the same arguments."""
        jobdir = self._jobdir(job)
        self.programs[job.job_id] = [
            ProgramRun(PROGRAMS[job.kind], jobdir if job.replicas == 1 else jobdir / f"replica-{replica}",
                       int(np.ceil(job.work_gpu_s)), job.job_id) for replica in range(job.replicas)]

    def _checkpoint_and_leave(self, job: Job) -> None:
        """Have a running ``job`` checkpoint; it leaves its GPUs once that completes (as
        ``park_after_checkpoint`` or ``yield_after_checkpoint`` say)."""
        if job.job_id in self.programs:
            for run in self.programs[job.job_id]:
                run.stop()
        elif job.phase == "compute":
            job.begin_checkpoint()

    def _finish(self, job: Job, outcome: str, detail: str = "") -> bool:
        """Finish ``job`` durably; True if this call finished it (announce it then)."""
        done = self.store.finish(job, outcome, self.time_s, detail)
        self._stop(job, outcome)
        del self.jobs[job.job_id]
        if done:
            self._publish_result(self.store.result(job.job_id))
        return done

    def _publish_result(self, result: JobResult) -> None:
        self.publish_data("result", **result.as_product())

    def _rollback(self, job: Job, why: str, requeue: bool) -> None:
        lost = job.rollback()
        self.rolled_back += 1
        self.work_lost_gpu_s += lost
        self.event("job_rolled_back", job_id=job.job_id, checkpoint_gpu_s=job.checkpoint_gpu_s, lost_gpu_s=lost,
                   why=why)
        if job.park_after_checkpoint:  # the pause it waited for lands on the checkpoint it rolled back to
            self._stop(job, "paused")
            self.event("job_paused", job_id=job.job_id, checkpoint_gpu_s=job.checkpoint_gpu_s)
        elif requeue or job.yield_after_checkpoint:
            self._stop(job, "queued")
        elif job.job_id in self.programs:  # the program starts again from its checkpoint files
            for run in self.programs.pop(job.job_id):
                run.kill()
            self._launch(job)

    def _replicas_disagree(self, job: Job) -> None:
        """Silent data corruption: count it, tell the ground, roll back and compute again."""
        self.sdc_detected += 1
        self.event("replica_mismatch", job_id=job.job_id, done_gpu_s=job.done_gpu_s,
                   checkpoint_gpu_s=job.checkpoint_gpu_s)
        self._rollback(job, "replica digests disagree", requeue=False)

    def _radiation(self, frame: dict) -> None:
        for gpu, count, window_full in self.ecc.observe(frame["gpu_ecc_corrected"], frame["gpu_ecc_uncorrected"],
                                                        self.time_s):
            self.store.record_uncorrectable(gpu, self.time_s)
            fence = window_full and not self.fenced[gpu]
            if fence:
                self.store.fence(gpu, self.time_s, f"{FENCE_COUNT} uncorrectable ECC errors in {FENCE_WINDOW_S:g} s")
                self.fenced[gpu] = True
                self.event("gpu_fenced", gpu=gpu, count=FENCE_COUNT, window_s=FENCE_WINDOW_S)
            for job in self._running():
                if gpu in job.gpus:
                    self._rollback(job, f"{count} uncorrectable ECC error(s) on GPU {gpu}", requeue=fence)

    def _running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == "running"]

    def _placement(self) -> None:
        """Rebuild the per-GPU view of the running jobs after any start or stop: one slot per
        replica of each job in :attr:`placed` (``owner[g]`` the GPU's slot, the slot count for
        an idle GPU), ``busy``, and the priority weights the power allocator is to get."""
        self.placed = self._running()
        n_slots = sum(j.replicas for j in self.placed)
        self.owner = np.full(N_GPUS, n_slots)
        self.placed_weight = np.zeros(N_GPUS)
        slot = 0
        for job in self.placed:
            for replica in range(job.replicas):
                self.owner[job.replica_gpus(replica)] = slot
                slot += 1
            self.placed_weight[job.gpus] = 1.0 + job.priority
        self.n_slots = n_slots
        self.busy = self.owner < n_slots
        self.moved = False

    def _advance(self, frame: dict, dt_s: float) -> float:
        # One bincount steps every job's replicas; a replicated job advances at its slower
        # replica's pace. A job stopped earlier this tick (rollback, command) is skipped by
        # its state. Jobs start only after this, in _schedule.
        slot_steps = (np.bincount(self.owner, weights=gpu_speed(frame), minlength=self.n_slots + 1) * dt_s).tolist()
        online = frame["gpu_online"]
        all_online = bool(online[self.busy].all())
        done_now = 0.0
        slot = 0
        for job in self.placed:
            step = min(slot_steps[slot:slot + job.replicas])
            slot += job.replicas
            if job.state != "running":
                continue
            if not all_online and not online[job.gpus].all():
                self._rollback(job, "GPU offline", requeue=True)
                continue
            if job.kind != "synthetic":
                done_now += self._drive(job, dt_s)
                continue
            useful, what = job.advance(step, dt_s)
            done_now += useful
            if what == "completed":
                self._complete(job, f"{job.replicas} replicas agree: sha256 {job.replica_digest(0)}"
                                    if job.replicas > 1 else "")
            elif what == "diverged":
                self._replicas_disagree(job)
            elif what == "checkpointed":
                self._checkpointed(job)
                if job.park_after_checkpoint:
                    self._stop(job, "paused")
                    self.event("job_paused", job_id=job.job_id, checkpoint_gpu_s=job.checkpoint_gpu_s)
                elif job.yield_after_checkpoint:
                    self._stop(job, "queued")
        for job in [j for j in self.jobs.values() if j.deadline_s is not None and j.deadline_s < self.time_s]:
            if self._finish(job, "failed", "missed its deadline"):
                self.failed += 1
                self.event("job_failed", job_id=job.job_id, why=f"missed its deadline {job.deadline_s:g} s")
        return done_now

    def _complete(self, job: Job, detail: str = "") -> None:
        if self._finish(job, "completed", detail):
            self.completed += 1
            self.finished_gpu_s += job.work_gpu_s
            self.event("job_completed", job_id=job.job_id, work_gpu_s=job.work_gpu_s)

    def _checkpointed(self, job: Job) -> None:
        self.store.checkpoint(job.job_id, self.time_s, job.checkpoint_gpu_s)
        job.checkpoint_s = self.time_s

    def _drive(self, job: Job, dt_s: float) -> float:
        """One tick of a command job: read what its program's replicas said, ask them for a
        checkpoint every ``checkpoint_interval_s``, settle the job once they have all exited
        or one has failed. Its progress and its checkpoint are its slower replica's. Returns
        the steps it reported done this tick."""
        runs = self.programs[job.job_id]
        before = job.done_gpu_s
        for run in runs:
            for word, value in run.poll():
                if word == "bad":
                    run.stop()
                    run.digest = None
                    run.problem = f"unreadable output {value!r}"
        if all(run.heard for run in runs):  # until then each is where its checkpoint file left it
            job.done_gpu_s = min(min(run.done_steps for run in runs), job.work_gpu_s)
            saved = min(min(run.saved_steps for run in runs), job.work_gpu_s)
            if saved > job.checkpoint_gpu_s:
                job.checkpoint_gpu_s = saved
                self._checkpointed(job)
        done = job.done_gpu_s - before
        if all(run.exited for run in runs) or any(run.failure for run in runs):
            self._exited(job, runs)
            return done
        job.since_checkpoint_s += dt_s
        if job.since_checkpoint_s >= job.checkpoint_interval_s and all([run.request_checkpoint() for run in runs]):
            job.since_checkpoint_s = 0.0
        return done

    def _exited(self, job: Job, runs: list[ProgramRun]) -> None:
        """Settle a command job whose replicas have all exited, or one of which failed:
        failed (the others are killed), completed when every replica gave the same digest
        (its output kept for downlink), computed again from nothing when they disagree, or
        stopped for a pause or requeue."""
        why = next((run.failure for run in runs if run.failure), None)
        output = runs[0].workdir / "output.npy"
        digests = {run.digest for run in runs}
        finished = None not in digests
        if why is None and finished and not output.exists():
            why = "program said done without writing output.npy"
        if why is not None:
            if self._finish(job, "failed", why):
                self.failed += 1
                self.event("job_failed", job_id=job.job_id, why=why)
        elif finished and len(digests) > 1:
            # the replicas checkpointed at their own steps, so no checkpoint is known good
            shutil.rmtree(self._jobdir(job), ignore_errors=True)
            job.checkpoint_gpu_s = 0.0
            self._checkpointed(job)
            self._replicas_disagree(job)
        elif finished:
            results = self.config.data_path / "results"
            results.mkdir(exist_ok=True)
            os.replace(output, results / f"job-{job.job_id}.npy")
            agree = f"{job.replicas} replicas agree: " if job.replicas > 1 else ""
            self._complete(job, f"{agree}sha256 {runs[0].digest} results/job-{job.job_id}.npy")
            shutil.rmtree(self._jobdir(job), ignore_errors=True)
        else:
            state = "paused" if job.park_after_checkpoint else "queued"
            self._stop(job, state)
            if state == "paused":
                self.event("job_paused", job_id=job.job_id, checkpoint_gpu_s=job.checkpoint_gpu_s)

    def _top_up(self, free_gpus: int) -> None:
        """Keep enough synthetic work queued to fill every free GPU (saturating workload)."""
        queued = sum(j.gpus_min for j in self.jobs.values() if j.state == "queued")
        if queued >= free_gpus:
            return
        with self.store.batch():  # one commit for the whole top-up
            while queued < free_gpus and len(self.jobs) < MAX_ACTIVE:
                rng = np.random.default_rng([self.config.seed, self.next_id])
                gpus = int(rng.choice((4, 8, 8, 16)))
                job = Job(self.next_id, int(rng.integers(0, 10)), gpus, gpus, float(gpus * rng.uniform(600.0, 3600.0)),
                          self.synthetic_interval_s, self.synthetic_cost_s, submitted_s=self.time_s)
                self._add(job)
                queued += gpus

    def _eclipse_hold(self) -> int:
        """GPUs the battery can carry through the coming or present eclipse (all of them
        when no eclipse is near or the battery suffices).

        Decided once per eclipse, :data:`ECLIPSE_LEAD_S` before it starts, on the power
        manager's energy plan of the tick before (``power.energy_plan``: its floor, its
        eclipse from the onboard TLE, and ``eclipse_gpus``, the running GPUs the battery
        carries to sunrise). Jobs beyond that are checkpointed before the shadow and resume
        after it, instead of being parked mid-interval by the power manager's load shedding.
        No look-ahead before the first plan, on an eclipse the plan only assumes (no TLE), or
        in the FIFO baseline.
        """
        if self.eclipse_cap is not None and self.time_s >= self.eclipse_cap[0]:
            self.eclipse_cap = None
            self.dirty = True
        held = self.eclipse_cap[1] if self.eclipse_cap is not None else N_GPUS
        plan = self.energy_plan
        if plan is None or self.fifo or plan["forecast"] != "tle" or not np.isfinite(plan["eclipse_start_s"]):
            return held
        start_s, end_s = float(plan["eclipse_start_s"]), float(plan["eclipse_end_s"])
        if start_s - self.time_s > ECLIPSE_LEAD_S or start_s == self.eclipse_decided_s:
            return held
        self.eclipse_decided_s = start_s
        gpus = int(np.clip(plan["eclipse_gpus"], 0, N_GPUS))
        if gpus < N_GPUS:
            self.eclipse_cap = (end_s, gpus)
            self.dirty = True
            self.event("eclipse_hold", lead_s=max(0.0, start_s - self.time_s), duration_s=end_s - start_s, gpus=gpus)
        return gpus

    def _limits(self, frame: dict) -> Limits:
        """The GPUs new work may land on and the cap on GPUs held, from the frame (online,
        power limits), the fences, the thermal headroom, the mode and the eclipse look-ahead.

        A GPU the power manager parks (limit 0) or whose thermal headroom is below its lowest
        limit takes no new work. When it keeps busy GPUs parked for
        :data:`SHED_PERSIST_TICKS`, the cap falls to the GPUs it powers, so the lowest jobs
        checkpoint and yield rather than stall on parked GPUs."""
        online = frame["gpu_online"]
        allowed = online & ~self.fenced & (self.headroom_w >= GPU_MIN_W)
        powered = allowed & (frame["gpu_power_limit_w"] > 0)
        self.shed_ticks = self.shed_ticks + 1 if np.any(self.busy & allowed & ~powered) else 0
        cap = self._eclipse_hold()
        if self.shed_ticks >= SHED_PERSIST_TICKS and not self.fifo:
            cap = min(cap, int(np.count_nonzero(powered)))
        if self.mode == "THERMAL_LIMIT":
            cap = min(cap, int(np.ceil(THERMAL_LIMIT_GPU_FRACTION * np.count_nonzero(allowed))))
        if cap != self.cap:
            self.cap, self.dirty = cap, True
        return Limits(powered, cap, self.mode, self.headroom_w)

    def _schedule(self, frame: dict) -> None:
        if self.moved:
            self._placement()
        limits = self._limits(frame)
        free = int(np.count_nonzero(limits.usable & ~self.busy))
        if not self.dirty and (free == 0 or self.busy.sum() >= limits.max_gpus):
            return
        self.dirty = False
        if self.saturate and free:
            self._top_up(min(free, max(0, limits.max_gpus - int(self.busy.sum()))))
        decided = plan(self.jobs.values(), limits, self.fifo)
        for job, why in decided.preempt:
            self._yield(job, why)
        for job, gpus in decided.start:
            job.start(gpus)
            if job.kind != "synthetic":
                self._launch(job)
            self.moved = True
            self.event("job_started", job_id=job.job_id, gpus=len(gpus), checkpoint_gpu_s=job.checkpoint_gpu_s,
                       work_gpu_s=job.work_gpu_s)

    def _yield(self, job: Job, why: str) -> None:
        """Checkpoint ``job`` and send it back to the queue (its GPUs free when the checkpoint
        completes; a program checkpoints and exits under its contract)."""
        self.preempted += 1
        self.event("job_preempted", job_id=job.job_id, why=why)
        job.yield_after_checkpoint = True
        self._checkpoint_and_leave(job)

    def run(self, frame: dict) -> None:
        dt_s = self.config.tick_s
        for job in self.to_restore:
            self.event("job_restored", job_id=job.job_id, checkpoint_s=job.checkpoint_s,
                       checkpoint_gpu_s=job.checkpoint_gpu_s, work_gpu_s=job.work_gpu_s)
        self.to_restore = []
        self._radiation(frame)
        done_now = self._advance(frame, dt_s)
        self.work_done_gpu_s += done_now
        self.throughput = done_now / dt_s
        self._schedule(frame)
        if self.moved:
            self._placement()
        if not self.announced or not np.array_equal(self.placed_weight, self.weight):
            self.weight = self.placed_weight
            self.load = self.busy.astype(float)
            self.actuate(gpu_load_frac=self.load)
            self.publish_data("demand", gpu_weight=self.weight)
            self.announced = True

    def housekeeping(self) -> None:
        self.publish_data("demand", gpu_weight=self.weight)  # a restarted power manager catches up here
        for result in self.store.unacknowledged_results(RESULTS_PER_HOUSEKEEPING):
            self._publish_result(result)  # until the link says it has it: it may have been down
        states = [j.state for j in self.jobs.values()]
        job_id, unsaved = np.zeros(N_GPUS, dtype=np.int64), np.zeros(N_GPUS)
        unsaved_total = 0.0
        for job in self._running():
            job_id[job.gpus] = job.job_id
            unsaved[job.gpus] = job.done_gpu_s - job.checkpoint_gpu_s
            unsaved_total += job.done_gpu_s - job.checkpoint_gpu_s
        useful = self.finished_gpu_s + sum(j.checkpoint_gpu_s for j in self.jobs.values())
        elapsed_s = self.time_s - self.first_submitted_s if self.first_submitted_s is not None else 0.0
        self.telemetry(
            queue_depth=states.count("queued"), running=states.count("running"), paused=states.count("paused"),
            gpus_busy=int(np.count_nonzero(self.load)), gpus_fenced=int(np.count_nonzero(self.fenced)),
            jobs_completed=self.completed, jobs_failed=self.failed, jobs_rolled_back=self.rolled_back,
            work_done_gpu_s=self.work_done_gpu_s, work_lost_gpu_s=self.work_lost_gpu_s,
            work_useful_gpu_s=useful, work_unsaved_gpu_s=unsaved_total, jobs_preempted=self.preempted,
            sdc_detected=self.sdc_detected, gpu_cap=self.cap,
            throughput_gpu_s_per_s=self.throughput,
            goodput_gpu_s_per_s=self.finished_gpu_s / elapsed_s if elapsed_s > 0 else 0.0,
            ecc_corrected_total=int(self.ecc.corrected.sum()), gpu_ecc_corrected=self.ecc.corrected,
            gpu_fenced=self.fenced, gpu_weight=self.weight, gpu_job_id=job_id, gpu_unsaved_gpu_s=unsaved,
        )
