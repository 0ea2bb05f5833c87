"""The job runner's durable state: ``<data dir>/jobs.sqlite`` (SQLite, WAL, synchronous FULL).

Schema::

    jobs(job_id PK, kind, priority, gpus_min, gpus_max, work_gpu_s, checkpoint_interval_s,
         checkpoint_cost_s, deadline_s NULL, critical, state, submitted_s,
         checkpoint_gpu_s, checkpoint_s NULL, finished_s NULL)
        -- state: queued | paused | completed | cancelled | failed ("running" is never
        -- stored: a job the process was running comes back queued, from its checkpoint)
    checkpoints(job_id, time_s, done_gpu_s)           -- the checkpoints index, one row each
    results(job_id PK, outcome, time_s, work_gpu_s, done_gpu_s, detail)
        -- one row per finished job, written in the transaction that finishes it; the
        -- primary key makes a second completion of one job impossible. outcome: completed |
        -- cancelled | failed; time_s: simulated s since the run epoch; detail: for a program
        -- job "sha256 <hex> results/job-<id>.npy" (its output file under the data dir), for a
        -- critical job "2 replicas agree: " before that (a synthetic one: "2 replicas agree:
        -- sha256 <hex>"), for a failure why, else ""
    results_acknowledged(job_id PK)                   -- results the link has stored for downlink
    fenced(gpu PK, time_s, reason)                    -- GPUs no new work lands on
    ecc_uncorrectable(gpu, time_s)                    -- the fencing window's history

Every method that changes something commits before it returns (``synchronous=FULL``: the
change survives a kill -9 and a power loss), so a caller may acknowledge it afterwards.
:meth:`JobStore.batch` groups the writes of one tick into one transaction.

A finished job's result leaves as a :class:`JobResult` (the job runner publishes it as data
product ``jobs.result``); it stays *unacknowledged* until the link says it has it stored
(:meth:`JobStore.acknowledge_results`), so the runner can offer it again
(:meth:`JobStore.unacknowledged_results`) after either process restarted.

Errors: :class:`sqlite3.Error` from the database propagate.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from flight.core.storage import open_durable
from flight.subsystems.jobs.model import FINAL_STATES, Job

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY, kind TEXT NOT NULL, priority INTEGER NOT NULL,
    gpus_min INTEGER NOT NULL, gpus_max INTEGER NOT NULL, work_gpu_s REAL NOT NULL,
    checkpoint_interval_s REAL NOT NULL, checkpoint_cost_s REAL NOT NULL, deadline_s REAL,
    critical INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'paused', 'completed', 'cancelled', 'failed')),
    submitted_s REAL NOT NULL, checkpoint_gpu_s REAL NOT NULL DEFAULT 0, checkpoint_s REAL, finished_s REAL);
CREATE TABLE IF NOT EXISTS checkpoints (job_id INTEGER NOT NULL, time_s REAL NOT NULL, done_gpu_s REAL NOT NULL);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints(job_id);
CREATE TABLE IF NOT EXISTS results (
    job_id INTEGER PRIMARY KEY, outcome TEXT NOT NULL, time_s REAL NOT NULL, work_gpu_s REAL NOT NULL,
    done_gpu_s REAL NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results_acknowledged (job_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS fenced (gpu INTEGER PRIMARY KEY, time_s REAL NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ecc_uncorrectable (gpu INTEGER NOT NULL, time_s REAL NOT NULL);
"""
_JOB_COLUMNS = ("job_id", "kind", "priority", "gpus_min", "gpus_max", "work_gpu_s", "checkpoint_interval_s",
                "checkpoint_cost_s", "deadline_s", "critical", "state", "submitted_s", "checkpoint_gpu_s",
                "checkpoint_s")
_RESULT_COLUMNS = "job_id, outcome, time_s, work_gpu_s, done_gpu_s, detail"


@dataclass(frozen=True)
class JobResult:
    """A finished job's result: one row of ``results``, and the fields of data product
    ``jobs.result``. ``time_s``: simulated s since the run epoch when it finished; GPU-s of
    work asked (``work_gpu_s``) and done (``done_gpu_s``); ``detail`` as in the schema above."""

    job_id: int
    outcome: str
    time_s: float
    work_gpu_s: float
    done_gpu_s: float
    detail: str

    def as_product(self) -> dict:
        """The data product's fields."""
        return asdict(self)

    @classmethod
    def from_product(cls, data: object) -> JobResult:
        """Read a ``jobs.result`` data product.

        Raises:
            ValueError: not a dict of exactly these fields with their types (ints for
                ``job_id`` >= 1, numbers for the GPU-s and time, strings for the rest).
        """
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError(f"a job result has the fields {', '.join(cls.__dataclass_fields__)}")
        job_id = data["job_id"]
        if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id < 1:
            raise ValueError(f"job_id {job_id!r} is not a job id")
        numbers = ("time_s", "work_gpu_s", "done_gpu_s")
        if any(not isinstance(data[k], (int, float)) or isinstance(data[k], bool) for k in numbers):
            raise ValueError(f"{', '.join(numbers)} must be numbers")
        if not isinstance(data["outcome"], str) or not isinstance(data["detail"], str):
            raise ValueError("outcome and detail must be strings")
        return cls(job_id, data["outcome"], *(float(data[k]) for k in numbers), data["detail"])


class JobStore:
    """The open job database. One writer: the job runner process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_durable(path)
        self.db.executescript(_SCHEMA)
        self._depth = 0
        self.unacknowledged: set[int] = {job_id for (job_id,) in self.db.execute(
            "SELECT job_id FROM results WHERE job_id NOT IN (SELECT job_id FROM results_acknowledged)")}
        """Job ids whose result the link has not acknowledged (kept in step with the tables)."""

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around every write inside the block (nested blocks join it)."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------
    def load_active(self) -> list[Job]:
        """Every job not yet finished (queued or paused), by id."""
        rows = self.db.execute(
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE state IN ('queued', 'paused') ORDER BY job_id")
        jobs = []
        for row in rows:
            d = dict(zip(_JOB_COLUMNS, row))
            d["critical"] = bool(d["critical"])
            job = Job(**d)
            job.done_gpu_s = job.checkpoint_gpu_s
            jobs.append(job)
        return jobs

    def next_job_id(self) -> int:
        return (self.db.execute("SELECT MAX(job_id) FROM jobs").fetchone()[0] or 0) + 1

    def finished_work_gpu_s(self) -> float:
        """GPU-s of work in every completed job."""
        return self.db.execute("SELECT COALESCE(SUM(work_gpu_s), 0) FROM results WHERE outcome = 'completed'"
                               ).fetchone()[0]

    def result(self, job_id: int) -> JobResult | None:
        row = self.db.execute(f"SELECT {_RESULT_COLUMNS} FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobResult(*row)

    def unacknowledged_results(self, limit: int) -> list[JobResult]:
        """Up to ``limit`` results the link has not acknowledged, oldest job first."""
        if not self.unacknowledged:
            return []
        wanted = heapq.nsmallest(limit, self.unacknowledged)
        rows = self.db.execute(f"SELECT {_RESULT_COLUMNS} FROM results WHERE job_id IN "
                               f"({', '.join('?' * len(wanted))}) ORDER BY job_id", wanted).fetchall()
        return [JobResult(*row) for row in rows]

    def first_submitted_s(self) -> float | None:
        return self.db.execute("SELECT MIN(submitted_s) FROM jobs").fetchone()[0]

    def fenced(self) -> dict[int, float]:
        """``{gpu: time fenced}``."""
        return dict(self.db.execute("SELECT gpu, time_s FROM fenced"))

    def uncorrectable(self) -> list[tuple[int, float]]:
        """``(gpu, time_s)`` of every recorded uncorrectable error, oldest first."""
        return list(self.db.execute("SELECT gpu, time_s FROM ecc_uncorrectable ORDER BY time_s"))

    # -- writing -----------------------------------------------------------------------
    def add(self, job: Job) -> None:
        with self.batch():
            self.db.execute(
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                (job.job_id, job.kind, job.priority, job.gpus_min, job.gpus_max, job.work_gpu_s,
                 job.checkpoint_interval_s, job.checkpoint_cost_s, job.deadline_s, int(job.critical),
                 "queued" if job.state == "running" else job.state, job.submitted_s, job.checkpoint_gpu_s,
                 job.checkpoint_s))

    def set_state(self, job_id: int, state: str) -> None:
        """Move a job between the waiting states (``queued``, ``paused``)."""
        with self.batch():
            self.db.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (state, job_id))

    def checkpoint(self, job_id: int, time_s: float, done_gpu_s: float) -> None:
        """Record a completed checkpoint: the job resumes from ``done_gpu_s`` after a crash."""
        with self.batch():
            self.db.execute("UPDATE jobs SET checkpoint_gpu_s = ?, checkpoint_s = ? WHERE job_id = ?",
                            (done_gpu_s, time_s, job_id))
            self.db.execute("INSERT INTO checkpoints VALUES (?, ?, ?)", (job_id, time_s, done_gpu_s))

    def finish(self, job: Job, outcome: str, time_s: float, detail: str = "") -> bool:
        """Mark ``job`` ``outcome`` (a final state) and record its result, in one transaction.

        Returns False, changing nothing, when the job had already finished: the caller must
        then not announce it again.

        Raises:
            ValueError: ``outcome`` is not a final state.
        """
        if outcome not in FINAL_STATES:
            raise ValueError(f"{outcome!r} is not a final state")
        with self.batch():
            changed = self.db.execute(
                "UPDATE jobs SET state = ?, finished_s = ? WHERE job_id = ? AND state IN ('queued', 'paused')",
                (outcome, time_s, job.job_id)).rowcount
            if changed:
                self.db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
                                (job.job_id, outcome, time_s, job.work_gpu_s, job.done_gpu_s, detail))
        if changed:
            self.unacknowledged.add(job.job_id)
        return bool(changed)

    def acknowledge_results(self, job_ids: Iterable[int]) -> int:
        """The link has these results stored: they need not be offered again. Ids without a
        result, or acknowledged before, change nothing. Returns how many were new."""
        new = sorted(set(job_ids) & self.unacknowledged)
        if new:
            with self.batch():
                self.db.executemany("INSERT OR IGNORE INTO results_acknowledged (job_id) VALUES (?)",
                                    [(job_id,) for job_id in new])
            self.unacknowledged.difference_update(new)
        return len(new)

    def record_uncorrectable(self, gpu: int, time_s: float) -> None:
        with self.batch():
            self.db.execute("INSERT INTO ecc_uncorrectable VALUES (?, ?)", (gpu, time_s))

    def fence(self, gpu: int, time_s: float, reason: str) -> None:
        with self.batch():
            self.db.execute("INSERT OR REPLACE INTO fenced VALUES (?, ?, ?)", (gpu, time_s, reason))

    def unfence(self, gpu: int) -> bool:
        """Clear a fence and the GPU's error history (it starts a fresh window); False if
        ``gpu`` was not fenced."""
        with self.batch():
            self.db.execute("DELETE FROM ecc_uncorrectable WHERE gpu = ?", (gpu,))
            return bool(self.db.execute("DELETE FROM fenced WHERE gpu = ?", (gpu,)).rowcount)
