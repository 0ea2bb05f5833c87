"""Accepted means never silently lost: a TC that got TM[1,1] ends with TM[1,7] or TM[1,8] whatever
is killed while it is in flight (flight/subsystems/link/pending.py), full stack, through the real
space link.

The TC's target (the job runner, and the thermal controller) is held with SIGSTOP so the TC is
in flight when the kill comes; then

* the link is killed (SIGKILL) and restarts: the TC it recorded before its TM[1,1] is found
  again, and the final answer that comes once the target runs on is reported (TM[1,7]) to the
  ground, from the verification packet store;
* the target is killed: the executive fails the TC with INTERRUPTED (TM[1,8]);
* the whole flight computer is killed and flown again on the same data: the non-idempotent
  ``jobs.submit`` ends with TM[1,8] INTERRUPTED, the idempotent ``thermal.set_setpoint`` is
  executed again and completes (TM[1,7]), both reported on the next contact.
"""

import os
import signal

import pytest

from flight.core.dictionary import full_dictionary
from flight.core.messages import decode
from flight.ground.client import LinkClient
from flight.spacelink.pus1_verification import Verification
from tests.support.predicates import FlightRun, wait_until

pytestmark = pytest.mark.slow
DICT = full_dictionary()
RUN = ("--unauthenticated-lab", "--contact", "always", "--speed", "5", "--duration", "3000")
SUBMIT = {"gpus_min": 8, "gpus_max": 8, "work_gpu_s": 800.0, "priority": 5, "checkpoint_interval_s": 120.0,
          "checkpoint_cost_s": 1.0, "deadline_s": 0.0, "critical": False, "kind": "synthetic"}


def connect(run: FlightRun, all_flying: bool = True) -> LinkClient:
    """A ground client of the run's link, archiving (it gets the stored backlog); with
    ``all_flying``, once every subsystem flies (a TC to one not yet connected is refused)."""
    def attempt():
        try:
            return LinkClient(run.link, DICT, key=None, connect_timeout_s=1.0)
        except OSError:
            return None
    def in_contact():
        try:
            return client.ping(timeout_s=1.0) >= 0.0
        except TimeoutError:
            return False  # before the link's first frame nothing is in contact: TCs are dropped
    client = wait_until(attempt, "the link accepting connections", 60)
    wait_until(in_contact, "the link in contact (a ping answered)", 60)
    client.acknowledge()
    if not all_flying:
        return client
    mark = run._rows("SELECT COALESCE(MAX(rowid), 0) FROM tm WHERE name = 'link.hk'", ())[0][0]
    wait_until(lambda: run._rows("SELECT COUNT(DISTINCT name) FROM tm WHERE rowid > ? AND name IN "
                                 "('power.hk', 'thermal.hk', 'jobs.hk', 'link.hk')", (mark,))[0][0] == 4,
               "housekeeping of every subsystem", 60)
    return client


def send(client: LinkClient, qualified: str, args: dict) -> int:
    """Send the TC and wait for its TM[1,1]; its request id."""
    req = client.send(client.function(qualified, args))
    first = wait_until(lambda: next((r for r in iter(lambda: client.receive(0.5), None)
                                     if isinstance(r, Verification) and r.request_id == req
                                     and (r.subtype == 1 or r.final)), None),
                       f"TM[1,1] of {qualified}", 30)
    assert first.subtype == 1, first
    return req


def final_reports(client: LinkClient, *reqs: int, timeout_s: float = 60) -> dict[int, Verification]:
    """The final verification report of each TC ``reqs`` names, in whatever order they come."""
    finals: dict[int, Verification] = {}

    def all_in():
        while (r := client.receive(0.5)) is not None:
            if isinstance(r, Verification) and r.request_id in reqs and r.final:
                finals[r.request_id] = r
        return set(finals) == set(reqs)
    wait_until(all_in, lambda: f"final verification reports of {set(reqs) - set(finals)}", timeout_s)
    return finals


def final_report(client: LinkClient, req: int) -> Verification:
    return final_reports(client, req)[req]


def pid_of(run: FlightRun, name: str) -> int:
    return wait_until(lambda: run.processes().get(name), f"the {name} process", 30)


def link_pending(run: FlightRun, after_rowid: int) -> int | None:
    rows = run._rows("SELECT body FROM tm WHERE name = 'link.hk' AND rowid > ? ORDER BY rowid DESC LIMIT 1",
                     (after_rowid,))
    return decode(rows[0][0]).data["commands_pending"] if rows else None


def test_a_tc_in_flight_when_the_link_is_killed_is_reported_complete_after_its_restart(tmp_path):
    with FlightRun(tmp_path, *RUN) as run:
        client = connect(run)
        jobs, link = pid_of(run, "jobs"), pid_of(run, "link")
        os.kill(jobs, signal.SIGSTOP)
        try:
            req = send(client, "jobs.submit", SUBMIT)
            mark = run._rows("SELECT COALESCE(MAX(rowid), 0) FROM tm", ())[0][0]
            os.kill(link, signal.SIGKILL)
            client.close()
            wait_until(lambda: run.processes().get("link") not in (None, link), "the link restarted", 30)
            client = connect(run, all_flying=False)  # the job runner is held
            # the restarted link has found the TC again before the answer can come
            wait_until(lambda: link_pending(run, mark) == 1, "the recovered TC pending on the new link", 30)
        finally:
            os.kill(jobs, signal.SIGCONT)
        report = final_report(client, req)
        assert report.subtype == 7, report
        client.close()


def test_a_tc_in_flight_when_its_target_is_killed_fails_interrupted(tmp_path):
    with FlightRun(tmp_path, *RUN) as run:
        client = connect(run)
        jobs = pid_of(run, "jobs")
        os.kill(jobs, signal.SIGSTOP)
        req = send(client, "jobs.submit", SUBMIT)
        os.kill(jobs, signal.SIGKILL)
        report = final_report(client, req)
        assert (report.subtype, report.code) == (8, "INTERRUPTED"), report
        assert "restarted" in report.message
        client.close()


def test_after_the_whole_flight_computer_is_killed_each_accepted_tc_gets_its_final_report(tmp_path):
    with FlightRun(tmp_path, *RUN) as run:
        client = connect(run)
        jobs, thermal = pid_of(run, "jobs"), pid_of(run, "thermal")
        os.kill(jobs, signal.SIGSTOP)
        os.kill(thermal, signal.SIGSTOP)
        submit = send(client, "jobs.submit", SUBMIT)
        setpoint = send(client, "thermal.set_setpoint", {"setpoint_c": 31.5})
        run.power_loss()  # every process at once, the two held ones too
        client.close()
    with FlightRun(tmp_path, *RUN) as run:
        client = connect(run)
        reports = final_reports(client, submit, setpoint)
        assert (reports[submit].subtype, reports[submit].code) == (8, "INTERRUPTED"), reports
        assert reports[setpoint].subtype == 7, reports
        run.await_telemetry("thermal.setpoint_c", 31.5)
        client.close()
