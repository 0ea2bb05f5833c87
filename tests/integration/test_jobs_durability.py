"""The job runner killed with SIGKILL at random moments of one lockstep run.

Jobs are submitted through the real command dispatcher (a DEALER on the run's command
bus, as the link manager talks to it) between the kills. After the run:

* every job whose submit completed is in ``jobs.sqlite`` (none lost);
* no job has two ``jobs.job_completed`` events in the run's ``telemetry.sqlite``;
* every job running at a crash resumes from its last checkpoint in the checkpoints index;
* each crash lost at most one checkpoint interval of a synthetic job's work: the work it
  had done since its checkpoint at the dead process's last housekeeping packet
  (``gpu_unsaved_gpu_s``) is at most ``checkpoint_interval_s`` x its GPUs (full clock). The
  crash came at most one housekeeping period later, which can add that period's work at
  full clock; the check allows for it. A command job's progress is its program's steps,
  which run at the host's pace, not the simulated clock's, so no GPU-s bound holds for it:
  its check is that it resumed from its own checkpoint and its result equals an
  uninterrupted run's.
"""

import hashlib
import itertools
import os
import random
import re
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zmq

from flight.core import bus
from flight.core.config import RunConfig
from flight.subsystems.jobs.programs import ProgramRun
from flight.core.messages import Encoder, decode
from flight.executive.recorder import event_args
from tests.support.predicates import FlightRun, at_least, event_named, free_port, wait_until

pytestmark = pytest.mark.slow
KILLS = 4
PROGRAM_STEPS = 15_000
"""Steps of the matmul command job that runs through the kills (a few seconds of numpy)."""
INTERVAL_S = 120.0
COST_S = 1.0
HK_PERIOD_S = 10.0


def run_config(pid: int) -> RunConfig:
    """The RunConfig a flight process was started with (``python -m flight.core.runtime NAME CONFIG_JSON``)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return RunConfig.from_json(argv[4].decode())


def submit(sock: zmq.Socket, n: int, timeout_s: float = 30.0, **override) -> int:
    """``jobs.submit`` through the dispatcher until one completes (a job runner just
    restarted refuses commands until it has connected); the job id it was given."""
    enc = Encoder("test")
    args = {"gpus_min": 8, "gpus_max": 8, "work_gpu_s": 8 * 500.0, "priority": 9, "checkpoint_interval_s": INTERVAL_S,
            "checkpoint_cost_s": COST_S, "deadline_s": 0.0, "critical": n % 2 == 0, "kind": "synthetic", **override}
    attempts = itertools.count()

    def attempt() -> int | None:
        cmd_id = f"t{n}.{next(attempts)}"
        sock.send(enc.encode("cmd", "jobs.submit", {"id": cmd_id, "args": args})[1])
        while sock.poll(5000):
            rsp = decode(sock.recv()).data
            if rsp["id"] == cmd_id and rsp["stage"] == "completed":
                return int(re.match(r"job (\d+) queued", rsp["message"]).group(1))
            if rsp["id"] == cmd_id and rsp["stage"] == "failed":
                assert rsp["code"] == "EXECUTION_ERROR", rsp  # the runner unreachable, nothing else
                return None
        return None

    return wait_until(attempt, f"a completed jobs.submit ({n})", timeout_s)


def test_kill_9_of_the_job_runner_loses_no_job_and_completes_each_once(tmp_path):
    seed = random.randrange(2**32)
    print(f"kill moments drawn with seed {seed}")  # shown by pytest on failure
    rnd = random.Random(seed)
    acknowledged = []
    # open-ended: stopped (Ctrl-C) once a job submitted after the last crash has completed
    with FlightRun(tmp_path, "--duration", "1000000", "--speed", "max", "--link", f"127.0.0.1:{free_port()}") as run:
        run.await_telemetry("jobs.running", at_least(1))
        config = run_config(run.processes()["jobs"])
        ctx = zmq.Context()
        sock = bus.dealer(ctx, config.bus, "durability-test")
        try:
            program = submit(sock, 1000, kind="matmul", work_gpu_s=float(PROGRAM_STEPS), gpus_min=4, gpus_max=4,
                             critical=True)
            for n in range(KILLS):
                acknowledged += [submit(sock, 2 * n), submit(sock, 2 * n + 1)]
                time.sleep(rnd.uniform(0.3, 2.0))  # the point: a kill at a random moment of the work
                os.kill(run.processes()["jobs"], signal.SIGKILL)
                run.await_events("exec.process_restarted", count=n + 1, timeout_s=30)
            last = submit(sock, 2 * KILLS)
            acknowledged.append(last)
        finally:
            ctx.destroy(linger=0)
        for job_id in (last, program):
            run.await_events(event_named("jobs.job_completed", job_id=job_id), timeout_s=60)
        run.interrupt()
        assert run.wait(timeout_s=60) == 130
    assert run.summary()["restarts"] == KILLS

    jobs_db = sqlite3.connect(run.data / "jobs.sqlite")
    tm_db = sqlite3.connect(run.data / "telemetry.sqlite")
    stored = {row[0]: row[1:] for row in jobs_db.execute(
        "SELECT job_id, state, checkpoint_interval_s, checkpoint_cost_s, kind FROM jobs")}
    assert set(acknowledged) <= set(stored), "an acknowledged job was lost"
    results = dict(jobs_db.execute("SELECT job_id, outcome FROM results"))
    assert all(results.get(j) == state for j, (state, *_) in stored.items() if state in ("completed", "cancelled"))

    completions = Counter(f["job_id"] for _, _, f in event_args(tm_db, "jobs.job_completed"))
    assert completions, "jobs completed during the run"
    assert max(completions.values()) == 1, f"completed twice: {[j for j, c in completions.items() if c > 1]}"
    assert all(results.get(j) == "completed" for j in completions)
    assert any(stored[j][0] == "completed" for j in acknowledged), "a submitted job finished across crashes"

    checkpoints = list(jobs_db.execute("SELECT job_id, time_s, done_gpu_s FROM checkpoints ORDER BY time_s"))
    hk = [(t, decode(body).data) for t, body in tm_db.execute("SELECT time_s, body FROM tm WHERE name = 'jobs.hk' "
                                                               "ORDER BY rowid")]
    restores: dict[float, dict[int, float]] = {}
    for t, _, f in event_args(tm_db, "jobs.job_restored"):
        restores.setdefault(t, {})[f["job_id"]] = f["checkpoint_gpu_s"]
    assert restores, "jobs were resumed from checkpoints"
    checked = 0
    for restarted_at, restored in restores.items():
        last = max(((t, d) for t, d in hk if t < restarted_at), key=lambda x: x[0])[1]
        gpu_job = np.asarray(last["gpu_job_id"])
        unsaved = np.asarray(last["gpu_unsaved_gpu_s"])
        for job_id in set(gpu_job[gpu_job > 0].tolist()):
            n_gpus = int(np.count_nonzero(gpu_job == job_id))
            _, interval, _, kind = stored[job_id]
            lost_bound = float(unsaved[gpu_job == job_id][0]) + HK_PERIOD_S * n_gpus
            assert kind != "synthetic" or lost_bound <= (interval + HK_PERIOD_S) * n_gpus, (
                f"job {job_id} could lose {lost_bound} GPU-s")
            saved = [done for j, t, done in checkpoints if j == job_id and t < restarted_at]
            finished_before = jobs_db.execute("SELECT 1 FROM results WHERE job_id = ? AND time_s < ?",
                                              (job_id, restarted_at)).fetchone()
            if saved and not finished_before:
                assert restored.get(job_id) == pytest.approx(saved[-1], abs=0.05), (
                    f"job {job_id} resumed at {restored.get(job_id)} GPU-s, its last checkpoint was {saved[-1]}")
                checked += 1
    assert checked, "some job running at a crash was resumed from its checkpoint"

    # the critical command job's two programs were stopped by each crash and resumed, each
    # from its own checkpoint, and agreed at the end
    starts = [f for f in run.event_fields("jobs.job_started") if f["job_id"] == program]
    assert len(starts) >= 2, "the program ran across at least one crash"
    (detail,) = jobs_db.execute("SELECT detail FROM results WHERE job_id = ? AND outcome = 'completed'",
                                (program,)).fetchone()
    output = np.load(run.data / "results" / f"job-{program}.npy")
    digest = hashlib.sha256(output.tobytes()).hexdigest()
    assert detail == f"2 replicas agree: sha256 {digest} results/job-{program}.npy"
    reference, said = ProgramRun("flight.subsystems.jobs.matmul", tmp_path / "reference", PROGRAM_STEPS, program), []
    wait_until(lambda: said.extend(reference.poll()) or reference.exited, "the reference program's exit",
               timeout_s=300, interval_s=0.05)
    assert dict(said).get("done") == digest, "the interrupted program's result equals an uninterrupted run's"
