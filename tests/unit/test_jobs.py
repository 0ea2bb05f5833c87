"""The job runner without processes: the job model, the scheduler, the durable store, ECC
accounting, and the subsystem driven frame by frame (a "crash" is dropping the object
without closing anything and building a new one on the same data directory). Hostile
``jobs.submit`` arguments go through the handler and through a real dispatcher."""

import hashlib
import itertools
import signal

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight.core.component import CommandError, Dictionary
from flight.executive.dispatcher import Dispatcher
from flight.spacelink.pus3_housekeeping import decode_hk, encode_hk
from flight.hal.protocol import N_GPUS
from flight.subsystems.jobs.programs import ProgramRun
from flight.subsystems.jobs.model import Job
from flight.subsystems.jobs.radiation import FENCE_WINDOW_S, EccMonitor
from flight.subsystems.jobs.scheduler import Limits, plan
from flight.subsystems.jobs.store import JobStore
from flight.core.messages import Encoder, Message, decode
from flight.executive.recorder import RunStats
from flight.subsystems.jobs.runner import JobRunner
from tests.support.jobs import GOOD, STEPS, Harness, finish, rows, tick_until
from tests.support.predicates import wait_until


def job(job_id=1, **kw):
    args = {"priority": 5, "gpus_min": 2, "gpus_max": 2, "work_gpu_s": 100.0, "checkpoint_interval_s": 10.0,
            "checkpoint_cost_s": 1.0, **kw}
    return Job(job_id, **args)


# -- model -------------------------------------------------------------------------------
def test_a_job_checkpoints_every_interval_paying_the_cost_and_completes_exactly_at_its_work():
    j = job(work_gpu_s=50.0)
    j.start([0, 1])
    log, checkpoints = [], []
    while not log or log[-1][1] != "completed":
        log.append(j.advance(2.0, 1.0))  # 2 GPUs at full clock
        if log[-1][1] == "checkpointed":
            checkpoints.append((len(log) - 1, j.checkpoint_gpu_s))
    # 10 s of compute (20 GPU-s), then a 1 s checkpoint (2 GPUs x 1 s = 2 GPU-s of cost), ...
    assert [w for w, _ in log[:10]] == [2.0] * 10 and log[9][1] is None
    assert log[10] == (0.0, "checkpointed")
    assert checkpoints == [(10, 20.0), (21, 40.0)]
    done_at = next(i for i, (_, what) in enumerate(log) if what == "completed")
    assert done_at == 26 and j.done_gpu_s == 50.0
    assert sum(w for w, _ in log[:done_at + 1]) == pytest.approx(50.0)


def test_progress_follows_the_clock_and_rollback_returns_to_the_checkpoint():
    j = job(checkpoint_interval_s=5.0, checkpoint_cost_s=0.0)
    j.start([3, 4])
    for _ in range(7):
        j.advance(2 * 0.5, 1.0)  # 2 GPUs at half clock
    assert j.done_gpu_s == pytest.approx(7.0) and j.checkpoint_gpu_s == pytest.approx(5.0)  # free checkpoint at 5 s
    assert j.rollback() == pytest.approx(2.0) and j.done_gpu_s == pytest.approx(5.0)


@settings(max_examples=200, deadline=None)
@given(speeds=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=400), interval=st.floats(10.0, 100.0),
       cost=st.floats(0.0, 10.0), gpus=st.integers(1, 8))
def test_work_at_risk_never_exceeds_one_interval_of_compute(speeds, interval, cost, gpus):
    j = job(gpus_min=gpus, gpus_max=gpus, work_gpu_s=1e4, checkpoint_interval_s=interval, checkpoint_cost_s=cost)
    j.start(list(range(gpus)))
    done = 0.0
    for speed in speeds:
        useful, what = j.advance(speed * gpus, 1.0)
        done += useful
        assert j.checkpoint_gpu_s <= j.done_gpu_s <= j.work_gpu_s
        assert j.since_checkpoint_s <= interval + 1e-9, "never computes past the interval unsaved"
        assert j.done_gpu_s - j.checkpoint_gpu_s <= interval * gpus + 1e-6, "a crash loses <= one interval of work"
        if what == "completed":
            break
    assert done == pytest.approx(j.done_gpu_s)


# -- scheduler ----------------------------------------------------------------------------
def test_placement_by_priority_then_deadline_with_backfill_and_gpus_max():
    big = job(1, priority=9, gpus_min=6, gpus_max=6)
    late = job(2, priority=5, deadline_s=900.0, gpus_min=2, gpus_max=8)
    soon = job(3, priority=5, deadline_s=100.0, gpus_min=1, gpus_max=2)
    small = job(4, priority=0, gpus_min=1, gpus_max=1)
    usable = np.zeros(N_GPUS, dtype=bool)
    usable[[7, 1, 2, 3, 4]] = True
    placed = plan([small, late, big, soon], Limits(usable, N_GPUS)).start
    # big (6) does not fit in 5; soon first by deadline takes 2, late takes the other 3, small gets none
    assert [(j.job_id, g) for j, g in placed] == [(3, [1, 2]), (2, [3, 4, 7])]


# -- store --------------------------------------------------------------------------------
def test_the_store_survives_reopening_and_finishes_a_job_once(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    a, b = job(1, deadline_s=50.0, critical=True), job(2)
    store.add(a)
    store.add(b)
    store.checkpoint(1, 12.0, 30.0)
    store.set_state(2, "paused")
    assert store.finish(a, "completed", 20.0) is True
    assert store.finish(a, "completed", 21.0) is False, "a second completion changes nothing"
    with pytest.raises(ValueError):
        store.finish(b, "running", 1.0)
    del store  # no close: as after kill -9
    again = JobStore(path)
    loaded = again.load_active()
    assert [(j.job_id, j.state) for j in loaded] == [(2, "paused")]
    assert again.db.execute("SELECT job_id, outcome FROM results").fetchall() == [(1, "completed")]
    assert again.db.execute("SELECT * FROM checkpoints").fetchall() == [(1, 12.0, 30.0)]
    assert again.next_job_id() == 3 and again.finished_work_gpu_s() == 100.0


def test_a_failed_batch_leaves_nothing_behind(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    with pytest.raises(RuntimeError), store.batch():
        store.add(job(1))
        store.add(job(2))
        raise RuntimeError("boom")
    assert store.load_active() == []


# -- ECC ----------------------------------------------------------------------------------
def test_ecc_monitor_baselines_counts_deltas_and_fills_the_fence_window():
    mon = EccMonitor(4)
    z = np.zeros(4)
    assert mon.observe(np.array([5.0, 0, 0, 0]), np.array([2.0, 0, 0, 0]), 0.0) == [], "first frame: baseline"
    assert mon.observe(np.array([7.0, 1, 0, 0]), np.array([3.0, 0, 0, 0]), 10.0) == [(0, 1, False)]
    assert mon.corrected.tolist() == [2, 1, 0, 0]
    assert mon.observe(np.array([7.0, 1, 0, 0]), np.array([4.0, 0, 0, 0]), 20.0) == [(0, 1, False)]
    assert mon.observe(np.array([7.0, 1, 0, 0]), np.array([5.0, 0, 0, 0]), 30.0) == [(0, 1, True)]
    late = EccMonitor(4, [(1, 0.0), (1, 10.0)])
    late.observe(z, z, 0.0)
    assert late.observe(z, np.array([0.0, 1, 0, 0]), FENCE_WINDOW_S + 5.0) == [(1, 1, False)], "old errors age out"


def test_a_rack_wide_storm_of_uncorrectable_errors_fences_no_gpu_but_a_lone_failing_gpu_is_fenced():
    """Every GPU erring together is the environment (an SEU storm): rolled back, not fenced.
    One GPU erring among quiet ones is the part."""
    mon = EccMonitor(8)
    unc = np.zeros(8)
    mon.observe(unc, unc, 0.0)
    for t in (10.0, 20.0, 30.0, 40.0):
        unc = unc + 1.0
        hits = mon.observe(np.zeros(8), unc, t)
        assert len(hits) == 8 and not any(full for _, _, full in hits)
    lone = EccMonitor(8)
    unc = np.zeros(8)
    lone.observe(unc, unc, 0.0)
    for t in (10.0, 20.0, 30.0):
        unc[5] += 1.0
        hits = lone.observe(np.zeros(8), unc, t)
    assert hits == [(5, 1, True)]


# -- the subsystem, frame by frame ----------------------------------------------------------
def test_an_acknowledged_submit_is_on_disk_before_the_handler_returns(tmp_path):
    h = Harness(tmp_path)
    assert h.runner.execute("submit", GOOD) == "job 1 queued"
    assert rows(tmp_path / "jobs.sqlite", "SELECT job_id, state, gpus_min, gpus_max FROM jobs") == [(1, "queued", 4, 8)]
    assert h.events("job_submitted")


def test_a_crash_resumes_from_the_last_checkpoint_and_completion_is_announced_once(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "gpus_min": 2, "gpus_max": 2, "work_gpu_s": 200.0})
    h.tick(30)  # placed on tick 1; compute 20 s (40 GPU-s) by tick 21, 1 s checkpoint (cost 4 GPU-s at 2 GPUs: 2 s)
    ck = rows(tmp_path / "jobs.sqlite", "SELECT time_s, done_gpu_s FROM checkpoints")
    assert ck == [(23.0, 40.0)]
    assert h.runner.jobs[1].done_gpu_s == pytest.approx(54.0)
    crashed_at = h.runner.tick
    h2 = Harness(tmp_path)  # the old object is simply abandoned, as kill -9 leaves it
    h2.tick(2, start=crashed_at)  # placed again on the first tick, one tick of work on the next
    restored = h2.events("job_restored")
    assert [e["args"]["checkpoint_gpu_s"] for e in restored] == [40.0]
    assert h2.runner.jobs[1].state == "running" and h2.runner.jobs[1].done_gpu_s == pytest.approx(42.0)
    h2.tick(200)
    assert len(h2.events("job_completed")) == 1
    assert rows(tmp_path / "jobs.sqlite", "SELECT job_id, outcome, work_gpu_s FROM results") == [(1, "completed", 200.0)]
    h3 = Harness(tmp_path)
    h3.tick(20, start=h2.runner.tick)
    assert not h3.events("job_completed") and not h3.events("job_restored") and not h3.runner.jobs


def test_no_database_write_on_an_ordinary_tick(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "checkpoint_interval_s": 1000.0})
    h.tick(2)
    statements = []
    h.runner.store.db.set_trace_callback(statements.append)
    h.tick(50)
    assert statements == []


def test_an_uncorrectable_error_rolls_back_and_three_in_an_hour_fence_the_gpu(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "gpus_min": 72, "gpus_max": 72, "work_gpu_s": 1e6})
    h.tick(25)  # checkpoint 20 s in (1440 GPU-s), completed at tick 23
    assert h.runner.jobs[1].checkpoint_gpu_s == pytest.approx(1440.0)
    for n in (1, 2):
        h.unc[5] += 1
        h.tick()
        assert len(h.events("job_rolled_back")) == n and h.runner.jobs[1].state == "running"
        assert h.runner.jobs[1].done_gpu_s == pytest.approx(1440.0 + 72.0)  # rolled back, then this tick's work
    assert not h.events("gpu_fenced")
    h.unc[5] += 1
    h.tick()
    (fenced,) = h.events("gpu_fenced")
    assert fenced["severity"] == "MEDIUM" and fenced["args"]["gpu"] == 5
    assert h.runner.jobs[1].state == "queued", "72 GPUs wanted, 71 usable: it waits"
    h.runner.execute("submit", {**GOOD, "gpus_min": 1, "gpus_max": 72})
    h.tick(3)
    assert 5 not in h.runner.jobs[2].gpus and len(h.runner.jobs[2].gpus) == 71
    h.tick(10)
    assert h.hk()["gpus_fenced"] == 1 and h.hk()["gpu_fenced"][5]
    assert rows(tmp_path / "jobs.sqlite", "SELECT gpu FROM fenced") == [(5,)]
    assert Harness(tmp_path).runner.fenced[5], "the fence survives a restart"
    assert h.runner.execute("unfence", {"gpu": 5}) == "GPU 5 unfenced"
    with pytest.raises(CommandError) as err:
        h.runner.execute("unfence", {"gpu": 5})
    assert err.value.code == "EXECUTION_ERROR"


def test_corrected_errors_are_counted_per_gpu_in_housekeeping(tmp_path):
    h = Harness(tmp_path)
    h.tick(1)
    h.cor[[0, 0, 3]] += [1, 1, 4]  # numpy fancy add: 0 += 1 once, 3 += 4
    h.tick(9)
    hk = h.hk()
    assert hk["ecc_corrected_total"] == 5 and hk["gpu_ecc_corrected"][3] == 4


def test_pause_checkpoints_first_resume_requeues_cancel_finishes(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "gpus_min": 2, "gpus_max": 2})
    h.tick(5)  # placed on tick 1, 4 s of compute (8 GPU-s)
    assert h.runner.execute("pause", {"job_id": 1}) == "job 1 pausing after its checkpoint"
    h.tick(3)  # 2 s of checkpoint cost (2 GPUs x 2 s at full clock = 4 GPU-s)
    job1 = h.runner.jobs[1]
    assert job1.state == "paused" and job1.checkpoint_gpu_s == pytest.approx(8.0) and not job1.gpus
    assert rows(tmp_path / "jobs.sqlite", "SELECT state, checkpoint_gpu_s FROM jobs") == [("paused", 8.0)]
    assert Harness(tmp_path).runner.jobs[1].state == "paused", "paused survives a restart"
    h.runner.execute("resume", {"job_id": 1})
    h.tick(2)
    assert job1.state == "running" and job1.done_gpu_s == pytest.approx(10.0)
    assert "1:R5:2g" in h.runner.execute("list", {}) and h.events("queue")
    h.runner.execute("cancel", {"job_id": 1})
    assert not h.runner.jobs and rows(tmp_path / "jobs.sqlite", "SELECT outcome FROM results") == [("cancelled",)]
    with pytest.raises(CommandError):
        h.runner.execute("cancel", {"job_id": 1})


def test_a_job_past_its_deadline_fails(tmp_path):
    h = Harness(tmp_path)
    h.tick(1)
    h.runner.execute("submit", {**GOOD, "deadline_s": 10.0, "work_gpu_s": 1e6})
    h.tick(12)
    (failed,) = h.events("job_failed")
    assert failed["args"] == {"job_id": 1, "why": "missed its deadline 10 s"} and not h.runner.jobs


def test_saturate_keeps_every_usable_gpu_busy_with_the_same_jobs_after_a_restart(tmp_path):
    h = Harness(tmp_path, workload="saturate")
    h.tick(10)
    assert h.hk()["gpus_busy"] == N_GPUS
    first = {j.job_id: (j.gpus_min, j.work_gpu_s, j.priority) for j in h.runner.jobs.values()}
    h2 = Harness(tmp_path, workload="saturate")
    assert {j.job_id: (j.gpus_min, j.work_gpu_s, j.priority) for j in h2.runner.jobs.values()} == first
    h2.tick(10, start=10)
    assert h2.hk()["gpus_busy"] == N_GPUS
    assert h2.hk()["work_done_gpu_s"] == pytest.approx(N_GPUS * 9.0), "a per-process counter (placed on its first tick)"


# -- hostile arguments ------------------------------------------------------------------------
def _snapshot(h):
    return (sorted((j.job_id, j.state) for j in h.runner.jobs.values()),
            rows(h.config.data_path / "jobs.sqlite", "SELECT * FROM jobs ORDER BY job_id"))


def hostile(int_bits):
    """Argument maps a hostile or careless sender might build; integers within ``int_bits``
    (a message on the bus can carry at most 64-bit integers, the handler sees anything)."""
    value = st.one_of(st.none(), st.booleans(), st.integers(-2**int_bits, 2**int_bits - 1), st.floats(allow_nan=True),
                      st.text(max_size=20), st.binary(max_size=8), st.lists(st.integers(-9, 9), max_size=3),
                      st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2))
    return st.one_of(
        st.dictionaries(st.sampled_from(sorted(GOOD)), value).map(lambda d: {**GOOD, **d}),
        st.dictionaries(st.text(max_size=12), value, max_size=10),
        value,
    )


@pytest.fixture(scope="module")
def submit_harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("hostile"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=hostile(70))
def test_hostile_submit_arguments_change_nothing(submit_harness, args):
    h = submit_harness
    before = _snapshot(h)
    try:
        h.runner.execute("submit", args)
    except CommandError as exc:
        assert exc.code in ("VALIDATION_ERROR", "FORMAT_ERROR")
        assert _snapshot(h) == before
    else:  # hypothesis may build a valid submit: then exactly one job more
        assert len(_snapshot(h)[1]) == len(before[1]) + 1


_ids = itertools.count()


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory):
    """A real Dispatcher; the jobs end is a DEALER that runs what arrives on a real JobRunner."""
    h = Harness(tmp_path_factory.mktemp("dispatched"))
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind("inproc://jobs-cmd")
    disp = Dispatcher(router, Dictionary([JobRunner.COMPONENT], partial=True), "exec", lambda *a: "", lambda *a: None)
    socks = {}
    for name in ("ground", "jobs"):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, name.encode())
        s.setsockopt(zmq.LINGER, 0)
        s.connect("inproc://jobs-cmd")
        socks[name] = s
    socks["jobs"].send(Encoder("jobs").encode("rsp", "x", {"id": "hello", "stage": "completed"})[1])
    router.poll(1000)
    disp.drain()
    yield h, disp, socks
    ctx.destroy(linger=0)


def command(h, disp, socks, args):
    """Send ``jobs.submit`` from the ground DEALER; return the final stage and code it gets."""
    cmd_id = f"c{next(_ids)}"
    socks["ground"].send(Encoder("ground").encode("cmd", "jobs.submit", {"id": cmd_id, "args": args})[1])
    socks["ground"].poll(0)
    while True:
        if disp.router.poll(10):
            disp.drain()
        if socks["jobs"].poll(0):  # forwarded: execute as the job runner's process does
            fwd = decode(socks["jobs"].recv())
            try:
                h.runner.execute("submit", fwd.data["args"])
                stage, code = "completed", ""
            except CommandError as exc:
                stage, code = "failed", exc.code
            socks["jobs"].send(Encoder("jobs").encode("rsp", fwd.name, {"id": fwd.data["id"], "stage": stage,
                                                                        "code": code, "message": ""})[1])
            continue
        if socks["ground"].poll(10):
            rsp = decode(socks["ground"].recv())
            if rsp.data["stage"] in ("completed", "failed"):
                return rsp.data["stage"], rsp.data["code"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=hostile(63))
def test_hostile_submit_arguments_through_the_dispatcher_change_nothing(dispatched, args):
    h, disp, socks = dispatched
    before = _snapshot(h)
    stage, code = command(h, disp, socks, args)
    if stage == "failed":
        assert code in ("VALIDATION_ERROR", "FORMAT_ERROR")
        assert _snapshot(h) == before
    else:
        assert len(_snapshot(h)[1]) == len(before[1]) + 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["cancel", "pause", "resume", "unfence", "list", "nope"]),
       args=st.one_of(hostile(70), st.dictionaries(
           st.sampled_from(["job_id", "gpu"]),
           st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=5), st.none()),
           min_size=1)))
def test_hostile_arguments_to_any_command_change_nothing_when_refused(submit_harness, name, args):
    h = submit_harness
    before = (_snapshot(h), h.runner.fenced.copy())
    try:
        h.runner.execute(name, args)
    except CommandError as exc:
        assert exc.code in ("INVALID_OPCODE", "VALIDATION_ERROR", "FORMAT_ERROR", "EXECUTION_ERROR")
        after = (_snapshot(h), h.runner.fenced.copy())
        assert after[0] == before[0] and (after[1] == before[1]).all()


def test_cross_argument_checks_are_validation_errors(tmp_path):
    h = Harness(tmp_path)
    h.tick(100)
    for bad in ({"gpus_min": 8, "gpus_max": 4}, {"checkpoint_cost_s": 30.0}, {"deadline_s": 50.0}):
        with pytest.raises(CommandError) as err:
            h.runner.execute("submit", {**GOOD, **bad})
        assert err.value.code == "VALIDATION_ERROR"
    assert not h.runner.jobs


def test_a_gpu_going_offline_rolls_its_job_back_and_requeues_it_elsewhere(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "gpus_min": 2, "gpus_max": 2})
    h.tick(25)  # checkpoint at 20 s of compute (40 GPU-s) done by tick 23
    gpus = list(h.runner.jobs[1].gpus)
    h.online[gpus[0]] = False
    h.tick()
    (rolled,) = h.events("job_rolled_back")
    assert rolled["args"]["checkpoint_gpu_s"] == pytest.approx(40.0) and "offline" in rolled["args"]["why"]
    job1 = h.runner.jobs[1]
    assert job1.state == "running" and gpus[0] not in job1.gpus, "placed again on online GPUs in the same tick"


def test_the_housekeeping_packet_encodes_for_the_space_link(tmp_path):
    h = Harness(tmp_path, workload="saturate")
    h.tick(10)
    component, values = decode_hk(Dictionary([JobRunner.COMPONENT], partial=True), encode_hk(JobRunner.COMPONENT, h.hk()))
    assert component.name == "jobs" and values["gpus_busy"] == N_GPUS and len(values["gpu_job_id"]) == N_GPUS


# -- command jobs: a real program ------------------------------------------------------------
def await_word(run, word, timeout_s=30.0):
    def said_it():
        return next(((value,) for w, value in run.poll() if w == word), None)

    return wait_until(said_it, f"{word!r} from the program", timeout_s, 0.01)[0]


def test_a_program_killed_after_a_checkpoint_resumes_to_the_same_result(tmp_path, reference_digest):
    run = ProgramRun("flight.subsystems.jobs.matmul", tmp_path / "1", STEPS, 1)
    await_word(run, "progress")
    assert run.request_checkpoint()
    saved = int(await_word(run, "checkpoint"))
    run.kill()
    assert 0 <= saved < STEPS and (tmp_path / "1" / "checkpoint.npz").exists()
    again = ProgramRun("flight.subsystems.jobs.matmul", tmp_path / "1", STEPS, 1)
    said = finish(again)
    assert int(said[0][1]) == saved, "resumed from the checkpoint, not from the start"
    assert dict(said)["done"] == reference_digest and said[-1] == ("exit", "0")


def test_a_stopped_program_checkpoints_and_exits_cleanly(tmp_path):
    run = ProgramRun("flight.subsystems.jobs.matmul", tmp_path / "1", 10**6, 1)
    run.stop()  # before it is ready: sent once it is
    said = finish(run)
    assert [w for w, _ in said if w != "progress"] == ["checkpoint", "exit"] and said[-1] == ("exit", "0")


def test_a_command_job_survives_a_pause_and_a_runner_crash_and_its_output_is_kept(tmp_path, reference_digest):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "kind": "matmul", "gpus_min": 2, "gpus_max": 2, "work_gpu_s": float(STEPS),
                                "checkpoint_interval_s": 10.0})
    job1 = h.runner.jobs[1]
    tick_until(h, lambda: job1.state == "running" and job1.done_gpu_s > 0)
    h.runner.execute("pause", {"job_id": 1})
    tick_until(h, lambda: job1.state == "paused")
    assert 1 not in h.runner.programs and job1.checkpoint_gpu_s > 0
    assert rows(tmp_path / "jobs.sqlite", "SELECT state FROM jobs") == [("paused",)]
    paused_at = job1.checkpoint_gpu_s
    h.runner.execute("resume", {"job_id": 1})
    tick_until(h, lambda: job1.checkpoint_gpu_s > paused_at)  # restarted from the pause, checkpointed again
    # kill -9 of the job runner: its program gets SIGTERM (PR_SET_PDEATHSIG) and checkpoints
    (run,) = h.runner.programs[1]
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait()
    h2 = Harness(tmp_path)
    job1 = h2.runner.jobs[1]
    tick_until(h2, lambda: not h2.runner.jobs)
    (result,) = rows(tmp_path / "jobs.sqlite", "SELECT outcome, detail FROM results")
    assert result[0] == "completed" and f"sha256 {reference_digest}" in result[1]
    output = np.load(tmp_path / "results" / "job-1.npy")
    assert hashlib.sha256(output.tobytes()).hexdigest() == reference_digest
    assert len(h2.events("job_completed")) == 1 and not (tmp_path / "jobs" / "1").exists()


def test_a_program_that_dies_fails_its_job(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "kind": "matmul", "gpus_min": 1, "gpus_max": 1, "work_gpu_s": 10**6})
    tick_until(h, lambda: 1 in h.runner.programs and h.runner.programs[1][0].ready)
    h.runner.programs[1][0].proc.kill()  # as the kernel's OOM killer would
    tick_until(h, lambda: not h.runner.jobs)
    (failed,) = h.events("job_failed")
    assert "exited with -9" in failed["args"]["why"]


def test_a_critical_command_job_runs_two_processes_and_an_upset_in_one_is_caught_and_computed_again(
        tmp_path, reference_digest):
    """Silent data corruption in one replica of a critical command job: one bit of its state
    flipped (SIGUSR2, the contract's fault injection). The digests disagree at the end, the
    job starts again from nothing (no checkpoint was compared), and completes with the
    uncorrupted result."""
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "kind": "matmul", "critical": True, "gpus_min": 1, "gpus_max": 1,
                                "work_gpu_s": float(STEPS), "checkpoint_interval_s": 10.0})
    job1 = h.runner.jobs[1]
    tick_until(h, lambda: job1.state == "running" and all(run.ready for run in h.runner.programs[1]))
    first = h.runner.programs[1]
    assert len(first) == 2 and len(job1.gpus) == 2
    assert {run.workdir.name for run in first} == {"replica-0", "replica-1"}
    h.runner.execute("inject_sdc", {"job_id": 1, "replica": 1})
    tick_until(h, lambda: h.runner.sdc_detected == 1)
    (mismatch,) = h.events("replica_mismatch")
    assert h.runner.programs[1] is not first and job1.checkpoint_gpu_s == 0.0, "started again from nothing"
    tick_until(h, lambda: not h.runner.jobs)
    (result,) = rows(tmp_path / "jobs.sqlite", "SELECT outcome, detail FROM results")
    assert result == ("completed", f"2 replicas agree: sha256 {reference_digest} results/job-1.npy")
    assert len(h.events("job_completed")) == 1 and not (tmp_path / "jobs" / "1").exists()


def test_the_run_summary_reports_useful_work_apart_from_work_lost_to_rollbacks(tmp_path):
    h = Harness(tmp_path)
    h.runner.execute("submit", {**GOOD, "gpus_min": 2, "gpus_max": 2, "work_gpu_s": 1e4, "checkpoint_interval_s": 10.0,
                                "checkpoint_cost_s": 0.0})
    h.tick(14)  # placed on tick 1, computing from tick 2: a free checkpoint after 10 s, then 3 s (6 GPU-s)
    h.unc[0] += 1
    h.tick(16)  # the rollback throws those 6 GPU-s away
    stats = RunStats(last_tick=30)
    for n, (kind, name, data) in enumerate(h.out):
        stats.observe(Message("jobs", n, 30, 30.0, kind, name, data))
    s = stats.summary()
    done = h.runner.work_done_gpu_s
    assert s["gpu_work_done_s"] == pytest.approx(done)
    assert s["gpu_work_lost_s"] == pytest.approx(6.0) == h.hk()["work_lost_gpu_s"]
    assert s["gpu_work_useful_s"] == pytest.approx(h.runner.jobs[1].checkpoint_gpu_s)
    assert s["gpu_work_useful_s"] + s["gpu_work_lost_s"] + h.hk()["work_unsaved_gpu_s"] == pytest.approx(done)
