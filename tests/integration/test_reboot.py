"""A reboot of the flight computer is not a new mission: ``flight run`` twice on one data directory.

* the second run resumes the satellite where the first left it: its ``utc_start`` is the first
  run's ``utc_end`` (not the TLE epoch again), its first battery SOC (the ``hal.rebooted``
  event) the first run's last;
* a job deadline set in the first run (a scenario's timed ``jobs.submit``) is honoured in the
  second: the job fails for it at that onboard time, and the scenario's command is not sent again;
* another element set on that directory is refused with a message, ``--fresh`` starts anew;
* against an external rig (``--hal``) whose clock went back, the flight side refuses to run on.
"""

import json
import sqlite3
import subprocess
import sys
from datetime import datetime

import pytest

from flight.hal import onboard_clock
from tests.support.predicates import FlightRun, free_port

pytestmark = pytest.mark.slow
DEADLINE_S = 250.0
SCENARIO = f"""
description = "a job that cannot finish before its deadline, submitted at 5 s"
[run]
duration_s = 200
seed = 3
[load]
workload = "none"
[[command]]
at_s = 5
name = "jobs.submit"
[command.args]
gpus_min = 8
gpus_max = 8
work_gpu_s = 1.0e7
priority = 5
checkpoint_interval_s = 120.0
checkpoint_cost_s = 1.0
deadline_s = {DEADLINE_S}
critical = false
kind = "synthetic"
"""


def fly(tmp_path, *args: str) -> tuple[int, dict, str]:
    with FlightRun(tmp_path, "--unauthenticated-lab", *args) as run:
        code = run.wait(timeout_s=120)
    summary = run.summary() if code in (0, 1) and run.summary_path.exists() else {}
    return code, summary, run.output


def events(tmp_path, name: str) -> list[tuple[float, dict]]:
    db = sqlite3.connect(f"file:{tmp_path / 'run' / 'telemetry.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT time_s, args FROM ev WHERE name = ? ORDER BY time_s", (name,)).fetchall()
    finally:
        db.close()
    return [(t, json.loads(a)) for t, a in rows]


def last_hk_soc(tmp_path) -> tuple[float, float]:
    from flight.core.messages import decode

    db = sqlite3.connect(f"file:{tmp_path / 'run' / 'telemetry.sqlite'}?mode=ro", uri=True)
    try:
        time_s, body = db.execute("SELECT time_s, body FROM tm WHERE name = 'hal.hk' ORDER BY time_s DESC").fetchone()
    finally:
        db.close()
    return time_s, decode(body).data["battery_soc"]


def test_a_second_run_resumes_the_mission_and_honours_the_first_runs_deadline(tmp_path):
    scenario = tmp_path / "deadline.toml"
    scenario.write_text(SCENARIO)
    code, first, out = fly(tmp_path, "--scenario", str(scenario))
    assert code == 0, out
    end_time_s, end_soc = last_hk_soc(tmp_path)
    assert end_time_s == 200.0
    assert len(events(tmp_path, "jobs.job_submitted")) == 1

    code, second, out = fly(tmp_path, "--scenario", str(scenario))
    assert code == 0, out
    assert datetime.fromisoformat(second["utc_start"]) >= datetime.fromisoformat(first["utc_end"])
    assert second["utc_start"] == first["utc_end"] and second["mission_time_s"] == 400.0
    (t, rebooted), = events(tmp_path, "hal.rebooted")
    assert rebooted["battery_soc"] == end_soc and rebooted["time_s"] == 200.0
    failed = [(t, a) for t, a in events(tmp_path, "jobs.job_failed") if "deadline" in a.get("why", "")]
    assert len(failed) == 1, failed  # the first run's job only: the scenario's submit was not sent again
    assert DEADLINE_S <= failed[0][0] <= DEADLINE_S + 2.0


def test_another_element_set_is_refused_and_fresh_starts_a_new_mission(tmp_path):
    code, first, out = fly(tmp_path, "--duration", "30")
    assert code == 0, out
    code, _, out = fly(tmp_path, "--duration", "30", "--tle", "flight/data/tle-beta0.txt", "--tle-name", "RACKSAT-BETA0")
    assert code == 2 and "holds another mission" in out and "--fresh" in out
    code, fresh, out = fly(tmp_path, "--duration", "30", "--tle", "flight/data/tle-beta0.txt", "--tle-name", "RACKSAT-BETA0", "--fresh")
    assert code == 0, out
    assert not events(tmp_path, "hal.rebooted")
    assert len(list((tmp_path / "run").glob("superseded-*/telemetry.sqlite"))) == 1
    assert fresh["mission_time_s"] == 30.0


def test_against_a_rig_whose_clock_went_back_the_flight_side_refuses_to_run_on(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    def rig() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "sim_hw.server", "--bind", endpoint, "--speed", "20"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    for attempt in (1, 2):
        sim = rig()  # a rig started again at the TLE epoch: its clock goes back
        try:
            code, summary, out = fly(tmp_path, "--hal", endpoint, "--speed", "20", "--duration", "80")
        finally:
            sim.terminate()
            sim.wait(timeout=10)
        if attempt == 1:
            assert code == 0, out
            assert onboard_clock.read_mission(tmp_path / "run").utc_floor_s is not None
    assert code == 1 and "onboard time went backwards" in summary["end"], out
    (t, args), = events(tmp_path, "hal.clock_backwards")
    assert args["floor_utc"] > args["utc"]
