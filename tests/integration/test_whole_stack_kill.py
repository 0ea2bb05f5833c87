"""The whole stack killed with SIGKILL mid-job, then flown again on the same data directory.

A job goes up through the space link as an operator sends it (``flight ground send
jobs.submit``: a signed TC[8,1] to the link manager, then the command dispatcher). Once it
has checkpointed, the executive and every child process are killed at once, as a power
loss would. A new ``flight run`` on the same data directory then finishes it. Checked:

* every job the runner ever acknowledged (in ``jobs.sqlite`` before the kill) is still
  there after it, and the link-submitted job completes;
* no job is reported complete twice across both runs (``jobs.job_completed`` events in the
  shared ``telemetry.sqlite``, one ``results`` row each);
* the job resumes from its last checkpoint before the kill, so the work lost is what it
  did since that checkpoint: at most one checkpoint interval (its last housekeeping packet
  before the kill shows it; the kill came at most one housekeeping period later);
* a job submitted through the link to the second run completes too.
"""

import signal
import sqlite3
from collections import Counter

import numpy as np
import pytest

from flight.core.messages import decode
from tests.support.predicates import FlightRun, free_port, wait_until

pytestmark = pytest.mark.slow
INTERVAL_S = 120.0
HK_PERIOD_S = 10.0
GPUS = 8
WORK_GPU_S = GPUS * 2500.0 + 0.25
"""An odd amount, so the job is found by it in the store (the TC's verification reports
carry no job id)."""


def send_submit(run: FlightRun, link: str, work_gpu_s: float) -> None:
    """``jobs.submit`` through the space link, as an operator types it; asserts it completed."""
    sent = run.ground("send", "jobs.submit", f"gpus_min={GPUS}", f"gpus_max={GPUS}", f"work_gpu_s={work_gpu_s}",
                  "priority=9", f"checkpoint_interval_s={INTERVAL_S}", "checkpoint_cost_s=1", "deadline_s=0",
                  "critical=false", "kind=synthetic", "--link", link)
    assert sent.returncode == 0 and "completed" in sent.stdout, sent.stdout + sent.stderr


def jobs_db(run: FlightRun) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{run.data / 'jobs.sqlite'}?mode=ro", uri=True, timeout=5)


def job_id_of(run: FlightRun, work_gpu_s: float) -> int:
    db = jobs_db(run)
    try:
        (job_id,), = db.execute("SELECT job_id FROM jobs WHERE work_gpu_s = ?", (work_gpu_s,)).fetchall()
    finally:
        db.close()
    return job_id


def checkpoints_of(run: FlightRun, job_id: int) -> int:
    db = jobs_db(run)
    try:
        return db.execute("SELECT COUNT(*) FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()[0]
    finally:
        db.close()


def await_checkpoints(run: FlightRun, job_id: int, count: int, timeout_s: float = 60.0) -> None:
    wait_until(lambda: checkpoints_of(run, job_id) >= count,
               lambda: f"job {job_id}: {count} checkpoints, {checkpoints_of(run, job_id)} made", timeout_s, 0.1)


def completions(run: FlightRun) -> Counter:
    return Counter(f["job_id"] for f in run.event_fields("jobs.job_completed"))


def test_kill_9_of_the_whole_stack_mid_job_loses_nothing_acknowledged_and_completes_once(tmp_path):
    link = f"127.0.0.1:{free_port()}"
    args = ("--duration", "1000000", "--speed", "max", "--contact", "always", "--link", link)
    with FlightRun(tmp_path, *args) as first:
        first.await_telemetry("link.contact", True)
        send_submit(first, link, WORK_GPU_S)
        job = job_id_of(first, WORK_GPU_S)
        await_checkpoints(first, job, 2)
        first.power_loss()
    assert first.proc.returncode == -signal.SIGKILL

    db = jobs_db(first)
    acknowledged = {j for (j,) in db.execute("SELECT job_id FROM jobs")}
    saved = [(t, done) for t, done in db.execute(
        "SELECT time_s, done_gpu_s FROM checkpoints WHERE job_id = ? ORDER BY time_s", (job,))]
    db.close()
    tm = sqlite3.connect(first.data / "telemetry.sqlite")
    before = [decode(body).data for (body,) in tm.execute("SELECT body FROM tm WHERE name = 'jobs.hk' ORDER BY rowid")]
    tm.close()
    completed_before = completions(first)
    assert job not in completed_before

    second_link = f"127.0.0.1:{free_port()}"
    with FlightRun(tmp_path, "--duration", "1000000", "--speed", "max", "--contact", "always",
                   "--link", second_link) as second:
        restored = second.await_event_fields("jobs.job_restored")
        second.await_telemetry("link.contact", True)
        send_submit(second, second_link, WORK_GPU_S + 1.0)
        after_restart = job_id_of(second, WORK_GPU_S + 1.0)
        wait_until(lambda: {job, after_restart} <= set(completions(second)), "both jobs completed after the restart",
                   90)
        second.interrupt()
        assert second.wait(timeout_s=60) == 130
    assert restored

    db = jobs_db(second)
    stored = dict(db.execute("SELECT job_id, state FROM jobs"))
    results = Counter(j for (j,) in db.execute("SELECT job_id FROM results"))
    restored_at = {f["job_id"]: f["checkpoint_gpu_s"] for f in second.event_fields("jobs.job_restored")}
    db.close()
    assert acknowledged <= set(stored), f"acknowledged jobs lost: {acknowledged - set(stored)}"
    assert stored[job] == stored[after_restart] == "completed"
    counts = completions(second)  # both runs' events: the runs share telemetry.sqlite
    assert max(counts.values()) == 1 and max(results.values()) == 1, "a job was reported complete twice"

    assert restored_at[job] == pytest.approx(saved[-1][1], abs=0.05), "resumed from its last checkpoint"
    last = before[-1]
    on_job = np.asarray(last["gpu_job_id"]) == job
    assert on_job.any(), "the job was running when the stack died"
    unsaved = float(np.asarray(last["gpu_unsaved_gpu_s"])[on_job][0])
    lost_bound_gpu_s = unsaved + HK_PERIOD_S * GPUS  # one more housekeeping period at most, at full clock
    assert lost_bound_gpu_s <= (INTERVAL_S + HK_PERIOD_S) * GPUS, f"the kill could lose {lost_bound_gpu_s} GPU-s"
