"""A job and how it advances, one tick at a time.

Work is measured in GPU-seconds at full clock: a GPU running at clock ``c`` and utilisation
``u`` contributes ``min(c / GPU_MAX_CLOCK_MHZ, 1) * u`` GPU-s per second (throughput follows
the clock: DESIGN.md, GPU model). A running job alternates two phases:

* ``compute``: its GPUs' throughput goes into ``done_gpu_s``; before a tick that would take
  its compute time since the last checkpoint past ``checkpoint_interval_s`` it enters
  ``checkpoint`` instead (a tick longer than the interval still computes one tick);
* ``checkpoint``: its GPUs' throughput pays ``checkpoint_cost_s`` seconds of full-clock time
  on each of its GPUs (``checkpoint_cost_s * len(gpus)`` GPU-s) and makes no progress, so the
  state written when the checkpoint completes is the state it started from. Only then is
  ``checkpoint_gpu_s`` (what a crash or rollback returns to) advanced.

So a crash loses at most the work of one checkpoint interval: the compute time since the
last completed checkpoint never exceeds ``checkpoint_interval_s`` (or one tick, if longer).

States (the durable ones are stored, :mod:`flight.subsystems.jobs.store`): ``queued`` (waiting for
GPUs), ``running`` (in memory only: a restart requeues), ``paused`` (held by command),
and the final ``completed``, ``cancelled``, ``failed``.

A ``critical`` job runs as two replicas (:attr:`Job.replicas`): half its GPUs run replica 0,
half replica 1, both computing the same work; its progress is the slower replica's. A
synthetic job's replicas each keep a digest of their state (:meth:`Job.replica_digest`),
compared at every checkpoint and at completion (:mod:`flight.subsystems.jobs.runner`): a
disagreement is silent data corruption, and the job returns to its last checkpoint (the last
state on which the replicas agreed) and computes again. A command job's replicas are two
processes of its program, compared by their results' digests
(:mod:`flight.subsystems.jobs.programs`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

GPU_MAX_CLOCK_MHZ = 1965.0
"""Full-speed graphics clock of a B200-class GPU (NVIDIA B200 boost clock; estimate)."""

FINAL_STATES = frozenset({"completed", "cancelled", "failed"})


def gpu_speed(frame: dict) -> np.ndarray:
    """Per-GPU throughput, shape ``(N_GPUS,)``, in full-clock GPU-s per second (0..1)."""
    return np.clip(frame["gpu_clock_mhz"] / GPU_MAX_CLOCK_MHZ, 0.0, 1.0) * frame["gpu_util"]


@dataclass
class Job:
    """One job. Units: GPU-s at full clock for work, simulated seconds for times.

    ``kind`` is ``synthetic`` (advanced here, by the GPUs' clocks) or the name of a program
    (:data:`flight.subsystems.jobs.programs.PROGRAMS`, whose own reports move ``done_gpu_s``: steps).
    ``deadline_s`` is ``None`` for no deadline. ``gpus_min <= gpus_max``; a running job holds
    between the two (``gpus``). ``done_gpu_s`` is live progress, ``checkpoint_gpu_s`` the
    progress of the last completed checkpoint (0 before the first) taken at ``checkpoint_s``.
    """

    job_id: int
    priority: int
    gpus_min: int
    gpus_max: int
    work_gpu_s: float
    checkpoint_interval_s: float
    checkpoint_cost_s: float
    deadline_s: float | None = None
    critical: bool = False
    kind: str = "synthetic"
    state: str = "queued"
    submitted_s: float = 0.0
    done_gpu_s: float = 0.0
    checkpoint_gpu_s: float = 0.0
    checkpoint_s: float | None = None
    gpus: list[int] = field(default_factory=list)
    phase: str = "compute"
    since_checkpoint_s: float = 0.0
    """Simulated compute time since the last completed checkpoint (or since starting)."""
    cost_left_gpu_s: float = 0.0
    """What the checkpoint in progress still has to pay."""
    park_after_checkpoint: bool = False
    """Leave the GPUs once the checkpoint in progress completes (a pause)."""
    yield_after_checkpoint: bool = False
    """Leave the GPUs for the queue once the checkpoint in progress completes (preemption,
    mode change, eclipse hold)."""
    corrupt: list[bool] = field(default_factory=lambda: [False, False])
    """Per replica: its state was corrupted since the last checkpoint (fault injection)."""

    @property
    def replicas(self) -> int:
        """2 for a critical job (redundant execution; a command job: two processes), else 1."""
        return 2 if self.critical else 1

    @property
    def urgency_s(self) -> float:
        """Slack-based urgency: the deadline (s), or infinity without one."""
        return self.deadline_s if self.deadline_s is not None else np.inf

    def order_key(self) -> tuple:
        """Scheduling order: highest priority first, then earliest deadline (EDF within a
        priority), then oldest."""
        return (-self.priority, self.urgency_s, self.job_id)

    def start(self, gpus: list[int]) -> None:
        """Run on ``gpus`` from the last checkpoint's progress (a fresh job: from 0); for a
        replicated job the first half of ``gpus`` runs replica 0, the second replica 1."""
        self.state, self.gpus, self.phase = "running", list(gpus), "compute"
        self.done_gpu_s = self.checkpoint_gpu_s
        self.since_checkpoint_s = 0.0
        self.cost_left_gpu_s = 0.0
        self.park_after_checkpoint = self.yield_after_checkpoint = False
        self.corrupt = [False, False]

    def stop(self, state: str) -> None:
        """Leave the GPUs for ``state`` (queued, paused or final), keeping only durable progress."""
        self.state, self.gpus, self.phase = state, [], "compute"
        self.done_gpu_s = self.checkpoint_gpu_s
        self.park_after_checkpoint = self.yield_after_checkpoint = False
        self.corrupt = [False, False]

    def rollback(self) -> float:
        """Return to the last checkpoint (abandoning one in progress); the GPU-s lost. A
        corrupted replica is restored from the checkpoint too."""
        lost = self.done_gpu_s - self.checkpoint_gpu_s
        self.done_gpu_s = self.checkpoint_gpu_s
        self.phase, self.since_checkpoint_s, self.cost_left_gpu_s = "compute", 0.0, 0.0
        self.corrupt = [False, False]
        return lost

    def replica_gpus(self, replica: int) -> list[int]:
        """The GPUs of ``replica`` (0 or 1): one half of :attr:`gpus` each."""
        half = len(self.gpus) // self.replicas
        return self.gpus[replica * half:(replica + 1) * half]

    def replica_digest(self, replica: int) -> str:
        """SHA-256 (hex) of ``replica``'s state: the job and its progress, which a correct
        replica computes exactly like its twin. A corrupted replica's state differs by one
        flipped bit (what an undetected upset in GPU memory leaves behind), so its digest
        differs."""
        state = bytearray(f"{self.job_id}:{self.done_gpu_s!r}".encode())
        if self.corrupt[replica]:
            state[-1] ^= 0x01
        return hashlib.sha256(bytes(state)).hexdigest()

    def replicas_agree(self) -> bool:
        """Whether every replica's digest is the same (always, for one replica)."""
        return len({self.replica_digest(r) for r in range(self.replicas)}) == 1

    def begin_checkpoint(self) -> None:
        self.phase = "checkpoint"
        self.cost_left_gpu_s = self.checkpoint_cost_s * len(self.gpus) / self.replicas

    def _finish_checkpoint(self) -> str:
        """Complete the checkpoint in progress: ``"checkpointed"``, or ``"diverged"`` when the
        replicas disagree (the checkpoint is then not taken: the caller rolls back)."""
        self.phase, self.since_checkpoint_s, self.cost_left_gpu_s = "compute", 0.0, 0.0
        if not self.replicas_agree():
            return "diverged"
        self.checkpoint_gpu_s = self.done_gpu_s
        return "checkpointed"

    def advance(self, step_gpu_s: float, dt_s: float) -> tuple[float, str | None]:
        """Advance a running job by one tick of ``dt_s`` seconds in which its GPUs delivered
        ``step_gpu_s`` full-clock GPU-s (the sum of :func:`gpu_speed` over them, times ``dt_s``).

        For a replicated job ``step_gpu_s`` is one replica's (the slower one's) and the
        checkpoint cost is paid on one replica's GPUs' worth of time.

        Returns ``(useful GPU-s done this tick, what happened)``: ``"completed"`` when the
        work is done, ``"checkpointed"`` when a checkpoint completed (``checkpoint_gpu_s``
        is then the progress to store), ``"diverged"`` when the replicas' digests disagreed
        at a checkpoint or at the end (nothing was saved or completed: roll back), else
        ``None``. A checkpoint does not carry over the rest of its tick: at 1 s ticks the
        rounding is below a second of GPU time.
        """
        if self.phase == "checkpoint":
            self.cost_left_gpu_s -= step_gpu_s
            if self.cost_left_gpu_s > 1e-9:
                return 0.0, None
            return 0.0, self._finish_checkpoint()
        saved = False
        if self.since_checkpoint_s > 0 and self.since_checkpoint_s + dt_s > self.checkpoint_interval_s + 1e-9:
            # this tick would take the unsaved compute past the interval: checkpoint first
            self.begin_checkpoint()
            if self.cost_left_gpu_s > 1e-9:
                return self.advance(step_gpu_s, dt_s)  # the tick pays for the checkpoint
            if self._finish_checkpoint() == "diverged":  # a free checkpoint completes at once
                return 0.0, "diverged"
            saved = True
        step = min(step_gpu_s, self.work_gpu_s - self.done_gpu_s)
        self.done_gpu_s += step
        self.since_checkpoint_s += dt_s
        if self.done_gpu_s >= self.work_gpu_s - 1e-9:
            self.done_gpu_s = self.work_gpu_s
            return step, "completed" if self.replicas_agree() else "diverged"
        return step, "checkpointed" if saved else None
