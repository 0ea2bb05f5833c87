"""Defects the reboot test (tests/integration/test_reboot_day.py) found in the link and the
executive, each pinned here at the unit level: the link driven directly
(:class:`tests.support.link_harness.LinkHarness`)."""

import contextlib
import sqlite3
import time

import pytest

from spacepackets.ccsds.time import CdsShortTimestamp

from flight.core.config import RunConfig
from flight.core.messages import Encoder, decode
from flight.core.tle import DEFAULT_TLE_NAME, DEFAULT_TLE_PATH, load_tle
from flight.executive.dispatcher import Dispatcher
from flight.executive.recorder import Recorder
from flight.executive.supervisor import Executive
from flight.hal.bridge import HalBridge
from flight.hal.onboard_clock import Mission, write_mission
from flight.spacelink import framing, pus11_scheduling as pus11, pus8_functions as pus8
from flight.subsystems.jobs.store import JobResult
from flight.subsystems.link import downlink as downlink_module
from flight.subsystems.link.downlink import STORE_COMMIT_INTERVAL_S
from flight.subsystems.link.manager import LinkManager
from flight.subsystems.link.packet_stores import KEY_SHIFT, STORE_BY_NAME, STORE_FILE
from flight.subsystems.link.pending import PENDING_FILE
from sim_hw.satellite import Satellite
from tests.support.link_harness import BUS, DICT, UTC0, Ground, LinkHarness, _setpoint
from tests.support.predicates import wait_until


def test_a_tc_taken_before_the_first_frame_is_not_recovered_as_a_previous_runs(tmp_path):
    # in ``always`` contact the link takes TCs before its first frame; its first tick recovers the
    # TCs a previous process left in the pending store, and must not take this one for one of
    # them: an idempotent command would be sent on board again and completed twice
    harness = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        harness.script = []  # in flight: its owner has not answered yet
        ground = Ground(harness)
        ground.send_tc(_setpoint(30.0))
        wait_until(lambda: harness.pump(0.01) or harness.commands, "the TC sent on board", 2, 0)
        assert len(harness.commands) == 1
        harness.frame()  # the first tick: recovery
        harness.frame()
        assert [(q, a) for _, q, a in harness.commands] == [("thermal.set_setpoint", {"setpoint_c": 30.0})]
        assert list(harness.link.verification.pending) == [harness.commands[0][0]]
        assert not harness.link.verification.pending[harness.commands[0][0]].recovered
        ground.close()
    finally:
        harness.close()


def _durable_finals(tmp_path) -> list[bytes]:
    """The final verification reports a crash now would leave on board: kept with their TC's
    record in the pending store, or committed in the verification packet store."""
    kept = _rows(tmp_path / PENDING_FILE, "SELECT final FROM pending WHERE final IS NOT NULL")
    stored = _rows(tmp_path / STORE_FILE, "SELECT packet FROM packet_bytes WHERE key >> ? = ?",
                   KEY_SHIFT, STORE_BY_NAME["verification"].store_id)
    return [bytes(f) for (f,) in kept] + [bytes(p) for (p,) in stored if (p[7], p[8]) == (1, 7)]


def _rows(path, sql: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql, args).fetchall()


def test_a_scheduled_tcs_final_report_is_durable_from_the_moment_its_record_goes(tmp_path):
    # the report of a TC released from the schedule goes into the verification packet store,
    # which commits at most every STORE_COMMIT_INTERVAL_S; its TC's record in the pending store
    # must stay until then, or a crash in between loses the report (and no restart knows of it)
    harness = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        ground = Ground(harness)
        harness.frame()
        inner = _setpoint(31.0, seq=5)
        ground.send_tc(framing.build_tc(pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT,
                                        pus11.insert_data([(UTC0 + 3, bytes(inner.pack()))]),
                                        seq_count=6, source_id=0x1234))
        wait_until(lambda: harness.pump(0.01) or len(harness.link.schedule_service.schedule), "the TC scheduled", 2, 0)
        harness.frame()
        harness.frame()  # released, executed, completed: its TM[1,7] stored
        assert [q for _, q, _ in harness.commands] == ["thermal.set_setpoint"]
        assert not harness.link.verification.pending
        assert _durable_finals(tmp_path), "the final report is neither kept with its TC nor committed"
        time.sleep(STORE_COMMIT_INTERVAL_S)
        harness.frame()  # the stores commit: the record goes
        assert _rows(tmp_path / PENDING_FILE, "SELECT COUNT(*) FROM pending") == [(0,)]
        assert len(_durable_finals(tmp_path)) == 1
        ground.close()
    finally:
        harness.close()


def test_a_job_result_reaches_the_ground_only_once_its_storing_is_durable(tmp_path, monkeypatch):
    # in contact a TM[140,1] is sent as it is stored; had a crash then lost the store's open
    # transaction, the runner (not acknowledged) would offer the result again and the link build
    # it anew, with other counters: the ground would archive two different packets for one job
    harness = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        harness.link.cmd_set_hk_interval(1.0)
        harness.frame()
        ground = Ground(harness)
        monkeypatch.setattr(downlink_module, "STORE_COMMIT_INTERVAL_S", 1e9)  # no commit at the tick's end
        harness.publish("data", "jobs.result", JobResult(7, "completed", 0.5, 10.0, 10.0, "sha256 ab12").as_product())
        harness.pump()
        harness.frame()
        assert ground.collect(lambda got: got, seconds=1, keep=(140,)), "the result is sent in contact"
        assert _rows(tmp_path / STORE_FILE, "SELECT job_id FROM results_stored") == [(7,)], \
            "sent before a crash could no longer lose it"
        ground.close()
    finally:
        harness.close()


def test_before_its_first_frame_after_a_reboot_the_link_stamps_tm_where_onboard_time_resumes(tmp_path):
    # the host clock (years from a simulated mission's time) stood in before the first frame: a
    # reboot's first TM went forward in time, and the next ones back
    write_mission(tmp_path, Mission(("1 x", "2 x"), utc_floor_s=UTC0))
    harness = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        ground = Ground(harness)  # its ``client_connected`` event is sent before any frame
        ((_, _, _, tm, _),) = ground.collect(lambda got: got, seconds=2, keep=(5,))
        assert CdsShortTimestamp.unpack(tm.timestamp).as_unix_seconds() == UTC0
        ground.close()
    finally:
        harness.close()


class Killed(Exception):
    """The flight computer loses power here."""


SUBMIT = {"gpus_min": 1, "gpus_max": 1, "work_gpu_s": 10.0, "priority": 5, "checkpoint_interval_s": 60.0,
          "checkpoint_cost_s": 1.0, "deadline_s": 0.0, "critical": False, "kind": "synthetic"}


def _kill(*_args) -> None:
    raise Killed


def _scheduled_submit_killed_at_its_release(tmp_path, method: str) -> list[str]:
    """A link that takes a scheduled ``jobs.submit`` and loses power at its release, in its
    verification's ``method`` (``dispatch``: before the pending-TC store records it;
    ``_send_command``: just after); its files are left as a power loss leaves them. The
    commands it sent on board."""
    first = LinkHarness(tmp_path, contact="always", lab=True)
    first.frame()
    ground = Ground(first)
    inner = pus8.function_tc(DICT, "jobs.submit", SUBMIT, seq_count=5, source_id=0x1234)
    ground.send_tc(framing.build_tc(pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT,
                                    pus11.insert_data([(UTC0 + 3, bytes(inner.pack()))]), seq_count=6, source_id=0x1234))
    wait_until(lambda: first.pump(0.01) or len(first.link.schedule_service.schedule), "the TC scheduled", 2, 0)
    first.script = []  # a command sent on board stays in flight
    first.frame()
    setattr(first.link.verification, method, _kill)
    with pytest.raises(Killed):
        first.frame()  # UTC0 + 3: the release
    ground.close()
    first.link.connections.close_all()
    first.link.downlink.stores.db.close()  # its open transaction is lost
    first._broker.close()
    first._ctx.destroy(linger=0)
    return [q for _, q, _ in first.commands]


def test_a_scheduled_tc_killed_before_it_is_recorded_is_released_after_the_reboot(tmp_path):
    # the schedule deleted a released TC before the pending-TC store had recorded it: a power
    # loss in between lost it, with no report
    assert _scheduled_submit_killed_at_its_release(tmp_path, "dispatch") == []
    second = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        for _ in range(3):  # the harness's clock starts again at UTC0: on to the release time
            second.frame()
        assert [q for _, q, _ in second.commands] == ["jobs.submit"]
        assert len(second.link.schedule_service.schedule) == 0
    finally:
        second.close()


def test_a_scheduled_tc_killed_after_it_is_recorded_is_not_released_again(tmp_path):
    # recorded, not yet deleted from the schedule: the reboot's recovery answers for it (a
    # non-idempotent command: INTERRUPTED), and the schedule must not send it on board again
    assert _scheduled_submit_killed_at_its_release(tmp_path, "_send_command") == []
    assert _rows(tmp_path / PENDING_FILE, "SELECT qualified FROM pending") == [("jobs.submit",)]
    _rows(tmp_path / PENDING_FILE, "UPDATE pending SET exec_pid = -1")  # the executive rebooted too
    second = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        for _ in range(4):
            second.frame()
        assert second.commands == []
        assert len(second.link.schedule_service.schedule) == 0
        assert not second.link.verification.pending, "failed INTERRUPTED"
    finally:
        second.close()


def test_before_its_first_frame_a_new_simulated_mission_is_at_the_simulators_start(tmp_path):
    # without a mission floor (a new mission) the run starts where the simulator does, at the
    # element-set epoch, not at the host's time
    _, tle = load_tle(DEFAULT_TLE_PATH, DEFAULT_TLE_NAME)
    config = RunConfig(bus=BUS, data_dir=str(tmp_path), contact="always", link_endpoint="127.0.0.1:0",
                       unauthenticated_lab=True, tle_lines=tle)
    link = LinkManager(config, lambda *a: None, dictionary=DICT)
    link.on_start()
    try:
        assert link.state.utc_now() == pytest.approx(Satellite(tle).utc_unix_s, abs=1e-3)  # TM time: ms
    finally:
        link.on_stop()


def test_a_reboot_s_tc_ids_do_not_reuse_those_a_previous_boot_left(tmp_path):
    # ids were ``link-<pid>-<serial>``: a flight computer boots the same way each time, so its link
    # gets the same pid, and a TC taken before the first frame (``always`` contact) replaced the
    # record of the previous boot's TC of that id, which recovery then answered for in its place
    first = LinkHarness(tmp_path, contact="always", lab=True)
    first.script = []  # in flight when the power goes
    ground = Ground(first)
    ground.send_tc(pus8.function_tc(DICT, "jobs.submit", SUBMIT, seq_count=1, source_id=0x1234))
    wait_until(lambda: first.pump(0.01) or first.commands, "the TC sent on board", 2, 0)
    ground.close()
    first.close()
    second = LinkHarness(tmp_path, contact="always", lab=True)  # this process: the same pid
    try:
        second.script = []
        ground = Ground(second)
        ground.send_tc(pus8.function_tc(DICT, "jobs.submit", SUBMIT, seq_count=2, source_id=0x1234))
        wait_until(lambda: second.pump(0.01) or second.commands, "the TC sent on board", 2, 0)
        assert second.commands[0][0] != first.commands[0][0]
        assert _rows(tmp_path / PENDING_FILE, "SELECT COUNT(*) FROM pending") == [(2,)]
        ground.close()
    finally:
        second.close()


REBOOTED = {"utc": "", "utc_unix_s": UTC0 + 5000.0, "time_s": 5000.0, "battery_soc": 0.8}
"""The arguments of ``hal.rebooted``: onboard time resumes at mission time 5000 s."""


def test_after_a_reboot_the_executive_publishes_at_mission_time_not_at_the_time_it_has_flown(tmp_path):
    # the link stamps the executive's housekeeping and events with the UTC of their time: the
    # time this run had flown put them back at the mission's start after every reboot
    executive = Executive(RunConfig(bus=BUS, data_dir=str(tmp_path)), 600.0, [])
    for msg in (Encoder("hal").encode("ev", "hal.rebooted", HalBridge.COMPONENT.event_payload("rebooted", REBOOTED),
                                      0, 5000.0),
                Encoder("hal").encode("tm", "hal.hk", {"time_s": 5010.0, "utc_unix_s": UTC0 + 5010.0,
                                                       "eclipse_time_s": 0.0, "energy_harvested_j": 0.0,
                                                       "battery_soc_low": 0.8, "gpu_temp_peak_c": 60.0}, 10, 5010.0)):
        executive.stats.observe(decode(msg[1]))
    assert executive._clock() == (10, 5010.0)


def test_after_a_reboot_the_executive_samples_nothing_before_it_knows_onboard_time(tmp_path):
    # its first housekeeping of a reboot went out at mission time 0 (the mission's start), before
    # the rig said where onboard time resumes
    write_mission(tmp_path, Mission(("1 x", "2 x"), utc_floor_s=UTC0 + 5000.0))
    executive = Executive(RunConfig(bus=BUS, data_dir=str(tmp_path)), 600.0, [])
    executive.bus = Emitted()
    executive.recorder = Recorder(tmp_path / "telemetry.sqlite")
    executive.dispatcher = Dispatcher(None, DICT, "exec", lambda *a: "", lambda *a: None)
    try:
        executive.housekeeping()
        assert executive.bus.sent == []
        executive.stats.observe(decode(Encoder("hal").encode(
            "ev", "hal.rebooted", HalBridge.COMPONENT.event_payload("rebooted", REBOOTED), 0, 5000.0)[1]))
        executive.housekeeping()
        assert [(kind, name) for kind, name, _ in executive.bus.sent] == [("tm", "exec.hk")]
        assert executive._clock()[1] == 5000.0
    finally:
        executive.recorder.close()


class Emitted:
    """The executive's bus, as far as housekeeping uses it: what it emits."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []

    def emit(self, kind: str, name: str, data: dict) -> None:
        self.sent.append((kind, name, data))
