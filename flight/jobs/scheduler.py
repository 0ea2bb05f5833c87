"""Which waiting job gets which GPUs.

Greedy, in :meth:`flight.jobs.model.Job.order_key` order (priority, then deadline, then
age): a job starts when at least ``gpus_min`` usable GPUs are free and takes up to
``gpus_max`` of them, lowest index first. A job that does not fit does not block smaller
jobs behind it (backfill). Usable means online and not fenced; the caller passes only
those. The order is total, so the same queue and GPUs always give the same placement
(lockstep runs stay reproducible).
"""

from __future__ import annotations

from collections.abc import Iterable

from flight.jobs.model import Job


def place(queued: Iterable[Job], free_gpus: list[int]) -> list[tuple[Job, list[int]]]:
    """Assign free GPUs to queued jobs.

    Args:
        queued: jobs in state ``queued`` (any order).
        free_gpus: indices of usable, unassigned GPUs.

    Returns:
        ``(job, gpus)`` for each job to start; each GPU appears at most once.
    """
    free = sorted(free_gpus)
    placed = []
    for job in sorted(queued, key=Job.order_key):
        if not free:
            break
        if job.gpus_min <= len(free):
            take = min(job.gpus_max, len(free))
            placed.append((job, free[:take]))
            free = free[take:]
    return placed
