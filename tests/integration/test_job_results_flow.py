"""Job results from the job runner to the link's results store over the real bus (data products
``jobs.result`` and ``link.result_ack``), through a SIGKILL of the link: every result reaches
the store once, and the runner knows which ones did."""

import os
import signal
import sqlite3
import time

import pytest

from flight.spacelink.pus15_storage import STORE_BY_NAME
from flight.subsystems.link.packet_stores import STORE_FILE
from tests.support.predicates import FlightRun, within

pytestmark = pytest.mark.slow
DURATION_S = 3000
SETTLE_S = 60.0
"""Results finished this close to the end may still be on their way when the run stops."""


def _query(path, sql):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_every_job_result_is_stored_once_for_downlink_through_a_link_kill(tmp_path):
    with FlightRun(tmp_path, "--duration", str(DURATION_S), "--contact", "always") as run:
        run.await_telemetry("jobs.jobs_completed", within(1, 1e9), timeout_s=120)
        os.kill(run.processes()["link"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not run.events("exec.process_restarted"):
            assert time.monotonic() < deadline, "the link was not restarted"
            time.sleep(0.2)
        assert run.wait(timeout_s=240) == 0
    jobs_db, stores_db = run.data / "jobs.sqlite", run.data / STORE_FILE
    finished = dict(_query(jobs_db, "SELECT job_id, time_s FROM results"))
    acknowledged = {j for (j,) in _query(jobs_db, "SELECT job_id FROM results_acknowledged")}
    stored = {j for (j,) in _query(stores_db, "SELECT job_id FROM results_stored")}
    ((packets,),) = _query(stores_db, "SELECT COUNT(*) FROM packets WHERE store_id = "
                                      f"{STORE_BY_NAME['results'].store_id}")
    settled = {j for j, t in finished.items() if t < DURATION_S - SETTLE_S}
    assert len(settled) >= 2
    assert settled <= stored <= set(finished), "every settled result stored, none invented"
    assert packets == len(stored), "each stored once"
    assert acknowledged <= stored
