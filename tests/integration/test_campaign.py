"""Campaigns end to end (issue 15): `flight campaign run` as a user runs it, on a real Dask
scheduler and two workers started as separate processes on loopback and on a LocalCluster,
with the same results; a case that raises is a failed row with its traceback; Ctrl-C and a
rerun fly only the missing cases; report and replay of the results. Cases are short
(tens of simulated seconds), so each test takes seconds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from flight.campaign import runner, spec
from flight.exit_status import EXIT_INTERRUPTED, EXIT_OK

pytestmark = pytest.mark.slow
SMOKE = Path("flight/campaigns/smoke.toml").resolve()
START_TIMEOUT_S = 60.0


def flight(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flight.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"no {what} within {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    """End a process started in its own session, and everything it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def dask_scheduler(tmp_path):
    """A Dask scheduler and two one-thread workers, each its own process, on loopback; the
    scheduler's address (read from its scheduler file)."""
    scheduler_file = tmp_path / "scheduler.json"
    logs = open(tmp_path / "dask.log", "wb")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                              stdout=logs, stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        address = wait_for(lambda: scheduler_file.exists() and json.loads(scheduler_file.read_text() or "{}").get("address"),
                           START_TIMEOUT_S, "scheduler file")
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                 "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"w{i}"],
                stdout=logs, stderr=subprocess.STDOUT, start_new_session=True))
        from distributed import Client

        with Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)
        logs.close()


def table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / runner.RESULTS_FILE).drop(columns="wall_s")


def test_a_scheduler_address_and_a_local_cluster_give_the_same_results(tmp_path, dask_scheduler):
    assert dask_scheduler.startswith("tcp://127.0.0.1:")
    remote = flight("campaign", "run", str(SMOKE), "--scheduler", dask_scheduler, "--out", str(tmp_path / "remote"))
    assert remote.returncode == EXIT_OK, remote.stderr
    local = flight("campaign", "run", str(SMOKE), "--workers", "2", "--out", str(tmp_path / "local"))
    assert local.returncode == EXIT_OK, local.stderr
    a, b = table(tmp_path / "remote"), table(tmp_path / "local")
    assert len(a) == spec.load(SMOKE).cases and (a["end"] == "completed").all()
    pd.testing.assert_frame_equal(a, b)
    for case in (tmp_path / "remote" / runner.CASES_DIR).iterdir():
        assert {p.name for p in case.iterdir()} == {"row.json", "summary.json", "scenario.toml", "case.tle"}

    report = flight("campaign", "report", str(tmp_path / "local"))
    assert report.returncode == EXIT_OK, report.stderr
    assert "pass rate" in report.stdout
    for name in ("campaign_outcomes.png", "campaign_scatter.png", "summary.md", "summary.csv"):
        assert (tmp_path / "local" / "report" / name).stat().st_size > 0
    replay = flight("campaign", "replay", str(tmp_path / "local"), "2", "--in-process")
    assert replay.returncode == EXIT_OK and "case-00002 reproduced" in replay.stdout, replay.stdout + replay.stderr


CRASHING = """
[campaign]
cases = 6
master_seed = 3
duration_s = 20
scenarios = ["dead-gpu"]

[[dispersion]]                 # an unbounded normal: some cases get no radiator segment at all
parameter = "sim.radiator_segments"
unit = "1"
distribution = "normal"
mean = 1
sigma = 1.5
"""


def test_a_case_that_raises_is_a_failed_row_with_its_traceback(tmp_path):
    path = tmp_path / "crashing.toml"
    path.write_text(CRASHING)
    c = spec.load(path)
    segments = [c.case(i).values["sim.radiator_segments"] for i in range(c.cases)]
    assert min(segments) <= 0 < max(segments), "the seed gives both kinds of case"
    done = runner.run(c, tmp_path / "out", workers=1)
    assert (done.flown, done.interrupted) == (c.cases, False)
    rows = table(tmp_path / "out").set_index("case")
    for i, n in enumerate(segments):
        row = rows.loc[i]
        if n <= 0:
            assert not row["passed"] and row["end"] == "raised"
            assert row["error"].startswith("Traceback") and "Error" in row["error"].splitlines()[-1]
        else:
            assert row["end"] == "completed" and row["error"] == ""


def test_ctrl_c_then_a_rerun_flies_only_the_missing_cases(tmp_path):
    path = tmp_path / "many.toml"
    path.write_text(SMOKE.read_text().replace("cases = 4", "cases = 40").replace("duration_s = 120", "duration_s = 60"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "flight.cli", "campaign", "run", str(path), "--workers", "1",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for(lambda: len(list(out.glob("cases/*/row.json"))) >= 3, START_TIMEOUT_S, "three finished cases")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the foreground group
        assert proc.wait(timeout=60) == EXIT_INTERRUPTED, proc.stdout.read().decode()
    finally:
        stop(proc)
        proc.stdout.close()
    first = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cases/*/row.json")}
    assert 3 <= len(first) < 40
    assert len(table(out)) == len(first), "the table holds what was flown before the interrupt"
    assert all(json.loads((out / "cases" / name / "row.json").read_text())["end"] == "completed" for name in first)

    again = flight("campaign", "run", str(path), "--workers", "1", "--out", str(out))
    assert again.returncode == EXIT_OK, again.stderr
    assert f"{len(first)} cases already flown" in again.stderr
    assert len(table(out)) == 40
    assert all((out / "cases" / name / "row.json").stat().st_mtime_ns == t for name, t in first.items()), \
        "a finished case is not flown again"


def test_another_campaign_in_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    assert flight("campaign", "run", str(SMOKE), "--workers", "1", "--out", str(out)).returncode == EXIT_OK
    other = tmp_path / "other.toml"
    other.write_text(SMOKE.read_text().replace("master_seed = 7", "master_seed = 8"))
    refused = flight("campaign", "run", str(other), "--workers", "1", "--out", str(out))
    assert refused.returncode == 2 and "another campaign" in refused.stderr
    malformed = tmp_path / "bad.toml"
    malformed.write_text(SMOKE.read_text().replace('unit = "1"', 'unit = "%"'))
    bad = flight("campaign", "run", str(malformed), "--out", str(tmp_path / "never"))
    assert bad.returncode == 2 and "dispersion[0].unit" in bad.stderr and not (tmp_path / "never").exists()
