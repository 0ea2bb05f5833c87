"""Job results from the job runner to the link's results store as declared data products
(``jobs.result`` in, ``link.result_ack`` back), each stored exactly once through restarts of
either process (:mod:`flight.subsystems.link.job_results`). The link never opens jobs.sqlite:
the two run on separate data directories here."""

import pytest

from flight.core.messages import Encoder, decode
from flight.subsystems.jobs.store import JobResult, JobStore
from flight.subsystems.link import downlink as downlink_module
from flight.subsystems.link.packet_stores import STORE_BY_NAME
from tests.support.link_harness import LinkHarness
from tests.support.jobs import GOOD, Harness

RESULTS = STORE_BY_NAME["results"].store_id


class Relay:
    """The bus between a runner harness and a link harness, for the two products only; it
    carries what is published from now on (what came before was lost, as to a link that was down)."""

    def __init__(self, jobs: Harness, link: LinkHarness) -> None:
        self.jobs, self.link = jobs, link
        self._jobs_seen = len(jobs.out)
        self._link_seen = len(link.emitted)
        self.offered: list[int] = []
        self.acknowledged: list[list[int]] = []

    def pass_on(self) -> None:
        for kind, name, data in self.jobs.out[self._jobs_seen:]:
            if (kind, name) == ("data", "jobs.result"):
                self.offered.append(data["job_id"])
                self.link.publish("data", "jobs.result", data)
        self._jobs_seen = len(self.jobs.out)
        for msg in self.link.emitted[self._link_seen:]:
            if (msg.kind, msg.name) == ("data", "link.result_ack"):
                self.acknowledged.append(msg.data["job_ids"])
                self.jobs.runner.on_message(decode(Encoder("link").encode(msg.kind, msg.name, msg.data, 0, 0.0)[1]))
        self._link_seen = len(self.link.emitted)


def _offered(jobs: Harness) -> list[int]:
    return [data["job_id"] for kind, name, data in jobs.out if (kind, name) == ("data", "jobs.result")]


def test_a_result_finished_while_the_link_was_down_is_stored_once_and_then_no_longer_offered(tmp_path, monkeypatch):
    monkeypatch.setattr(downlink_module, "STORE_COMMIT_INTERVAL_S", 0.0)  # a commit every tick
    jobs = Harness(tmp_path / "jobs")
    jobs.runner.execute("submit", {**GOOD, "work_gpu_s": 16.0})
    jobs.tick(25)
    assert len(jobs.events("job_completed")) == 1
    assert _offered(jobs) == [1, 1, 1]  # on commit, then with each housekeeping (ticks 10 and 20)
    link = LinkHarness(tmp_path / "link")
    try:
        link.link.cmd_set_hk_interval(1.0)
        relay = Relay(jobs, link)
        for _ in range(10):  # the runner's next housekeeping offers it again
            jobs.tick()
            relay.pass_on()
            link.frame()
            relay.pass_on()
        assert relay.offered == [1] and relay.acknowledged == [[1]]
        assert link.link.downlink.stores.counts[RESULTS] == 1
        assert jobs.runner.store.unacknowledged == set()
        seen = len(jobs.out)
        jobs.tick(20)
        assert not [n for _, n, _ in jobs.out[seen:] if n == "jobs.result"], "acknowledged: not offered again"
        tick = jobs.runner.tick
        again = Harness(tmp_path / "jobs")  # the acknowledgement is durable
        again.tick(20, start=tick)
        assert _offered(again) == []
        assert link.link.downlink.stores.counts[RESULTS] == 1
    finally:
        link.close()
        jobs.runner.on_stop()


def test_a_link_crash_before_its_commit_loses_no_result_and_a_lost_acknowledgement_stores_nothing_twice(
        tmp_path, monkeypatch):
    result = JobResult(7, "completed", 0.5, 10.0, 10.0, "sha256 ab12").as_product()
    first = LinkHarness(tmp_path)
    first.link.cmd_set_hk_interval(1.0)
    first.frame()  # the first tick commits at once
    monkeypatch.setattr(downlink_module, "STORE_COMMIT_INTERVAL_S", 1e9)
    first.publish("data", "jobs.result", result)
    first.pump()
    first.frame()
    assert first.link.downlink.stores.counts[RESULTS] == 1
    assert not [m for m in first.emitted if m.name == "link.result_ack"], "not committed: not acknowledged"
    first.link.connections.close_all()
    first.link.downlink.stores.db.close()  # killed: the open transaction is lost
    monkeypatch.setattr(downlink_module, "STORE_COMMIT_INTERVAL_S", 0.0)

    second = LinkHarness(tmp_path)
    second.link.cmd_set_hk_interval(1.0)
    try:
        second.publish("data", "jobs.result", result)  # unacknowledged, so the runner offers it again
        second.pump()
        second.frame()
        assert second.link.downlink.stores.counts[RESULTS] == 1
        assert [m.data["job_ids"] for m in second.emitted if m.name == "link.result_ack"] == [[7]]
    finally:
        second.close()
    third = LinkHarness(tmp_path)  # its acknowledgement lost: offered once more
    third.link.cmd_set_hk_interval(1.0)
    try:
        third.publish("data", "jobs.result", result)
        third.pump()
        third.frame()
        third.frame()
        assert third.link.downlink.stores.counts[RESULTS] == 1, "stored once"
        assert [m.data["job_ids"] for m in third.emitted if m.name == "link.result_ack"] == [[7]]
    finally:
        third.close()


@pytest.mark.parametrize("data", [{"job_id": 7}, {**JobResult(7, "completed", 0.5, 1.0, 1.0, "").as_product(),
                                                  "job_id": "7"}, [1, 2], None])
def test_a_malformed_result_product_is_counted_reported_and_changes_nothing(tmp_path, data):
    h = LinkHarness(tmp_path)
    try:
        h.publish("data", "jobs.result", data)
        h.frame()
        h.frame()
        assert h.link.decode_errors == 1 and h.hk()["decode_errors"] == 1
        assert len(h.events("decode_error")) == 1
        assert h.link.downlink.stores.counts[RESULTS] == 0
    finally:
        h.close()


def test_the_job_store_keeps_results_unacknowledged_until_told(tmp_path):
    from flight.subsystems.jobs.model import Job

    store = JobStore(tmp_path / "jobs.sqlite")
    job = Job(job_id=3, priority=5, gpus_min=1, gpus_max=1, work_gpu_s=4.0, checkpoint_interval_s=10.0,
              checkpoint_cost_s=1.0)
    store.add(job)
    assert store.finish(job, "completed", 2.0, "sha256 ff")
    assert store.unacknowledged_results(10) == [JobResult(3, "completed", 2.0, 4.0, 0.0, "sha256 ff")]
    assert store.acknowledge_results([3, 99]) == 1 and store.acknowledge_results([3]) == 0
    store.close()
    reopened = JobStore(tmp_path / "jobs.sqlite")
    assert reopened.unacknowledged_results(10) == [] and reopened.result(3).detail == "sha256 ff"
    reopened.close()
