"""The link manager driven directly, as its process runtime drives it, over real loopback
TCP: contact, ping, TC[8,1] -> internal command -> PUS verification, housekeeping and
event downlink, and the uplink's defences (garbage, stalls, overflow, too many clients).

Every TM the ground side receives in these tests is read with spacepackets' own readers
(``Ground.read``): CRC, APID, service/subtype, CDS short time field, and Service1Tm /
Service17Tm for verification and ping replies.
"""

import socket

import pytest
from spacepackets.ecss.req_id import RequestId
from spacepackets.ecss.tc import PusTc

from flight.core.config import RunConfig
from flight.spacelink import keys
from flight.spacelink import framing, pus1_verification as pus1, pus8_functions as pus8, services
from flight.subsystems.link.packet_stores import STORE_BY_NAME
from flight.subsystems.link import connections as connections_module
from flight.subsystems.link import state as state_module
from flight.subsystems.link import uplink as uplink_module
from flight.subsystems.link.connections import MAX_CONNECTIONS
from flight.subsystems.link.manager import LinkManager
from tests.support.link_harness import (BUS, DICT, JOBS, JOBS_HK, THERMAL, THERMAL_HK, UTC0, Ground, LinkHarness,
                                _expected_hk_data, _kinds, _ping, _setpoint, _verification)

# -- set-up and contact -------------------------------------------------------------------------
@pytest.mark.parametrize("lab", [False, True])
@pytest.mark.parametrize("endpoint", ["0.0.0.0:52001", "10.0.0.7:52001", "example.org:52001"])
def test_the_link_refuses_to_bind_anything_but_loopback(tmp_path, endpoint, lab):
    keys.create_key(tmp_path / "keys")
    config = RunConfig(bus=BUS, data_dir=str(tmp_path), link_endpoint=endpoint, keys_dir=str(tmp_path / "keys"),
                       unauthenticated_lab=lab)
    with pytest.raises(ValueError, match="not loopback"):
        LinkManager(config, lambda *a: None, dictionary=DICT)


def test_first_tick_announces_unauthenticated_lab_mode_loudly(tmp_path):
    harness = LinkHarness(tmp_path, lab=True)
    harness.frame()
    (event,) = harness.events("lab_mode")
    assert event.data["severity"] in ("MEDIUM", "HIGH")
    assert "UNAUTHENTICATED" in event.data["message"] and harness.link.endpoint in event.data["message"]
    assert harness.link.endpoint.startswith("127.0.0.1:")
    assert not harness.events("authenticated")
    harness.close()


def test_first_tick_says_telecommands_are_authenticated_and_with_which_keys(harness):
    harness.frame()
    (event,) = harness.events("authenticated")
    assert "local (SPI 1)" in event.data["message"] and harness.link.endpoint in event.data["message"]
    assert not harness.events("lab_mode")


def test_lab_mode_takes_unsigned_tcs(tmp_path):
    harness = LinkHarness(tmp_path, contact="always", lab=True)
    harness.frame()
    ground = Ground(harness)
    ground.send_tc(_ping())
    assert _kinds(ground.expect(1)) == [(17, 2)]
    ground.close()
    harness.close()


def test_ping_is_answered_in_contact(ground, harness):
    tc = ground.send_tc(_ping())
    ((service, subtype, apid, tm, packet),) = ground.expect(1)
    assert (service, subtype, apid) == (17, 2, framing.TC_APID)
    assert tm.pus_tm_sec_header.dest_id == tc.source_id
    harness.frame()
    hk = harness.hk()
    assert (hk["contact"], hk["clients"], hk["tc_received"], hk["tc_accepted"]) == (True, 1, 1, 1)
    assert hk["tm_sent"] >= 1 and hk["bytes_down"] >= len(packet) and hk["bytes_up"] == len(tc.pack())


def test_ping_ack_flags_ask_for_verification_reports(ground):
    tc = ground.send_tc(_ping(flags=framing.ACK_ALL))
    got = ground.expect(4)
    assert _kinds(got) == [(1, 1), (1, 3), (17, 2), (1, 7)]
    for item in (got[0], got[1], got[3]):
        assert _verification(item).tc_req_id == RequestId.from_sp_header(tc.sp_header)


def test_out_of_contact_nothing_is_sent_and_tcs_are_dropped_and_counted(harness):
    harness.frame(contact=False)
    ground = Ground(harness)
    ground.send_tc(_ping())
    assert ground.collect(seconds=0.3, keep=(1, 3, 5, 17)) == []
    harness.frame(contact=False)
    hk = harness.hk()
    assert (hk["contact"], hk["tc_dropped_no_contact"], hk["tc_accepted"]) == (False, 1, 0)
    assert hk["tm_dropped_no_contact"] == 0  # the connection event waits on board
    assert harness.link.downlink.stores.pending_counts[STORE_BY_NAME["events"].store_id] >= 1
    harness.frame(contact=True)
    ground.send_tc(_ping(seq=2))
    assert _kinds(ground.expect(1)) == [(17, 2)]
    assert [e.name for e in harness.emitted if e.name.startswith("link.contact_")] == ["link.contact_acquired"]
    assert harness.events("contact_acquired")[0].data["args"] == {"station": 0.0, "elevation_deg": 12.5}
    ground.close()


def test_the_transmitter_follows_contact(harness):
    harness.frame(contact=True, transmitter_on=False)
    harness.frame(contact=False, transmitter_on=True)
    harness.frame(contact=False, transmitter_on=False)
    actuations = [m.data["actuate"] for m in harness.emitted if m.name == "hal.done" and m.data["actuate"]]
    assert actuations == [{"transmitter_on": True}, {"transmitter_on": False}]


def test_contact_always_keeps_the_link_up_between_passes(tmp_path):
    harness = LinkHarness(tmp_path, contact="always")
    try:
        harness.frame(contact=False, transmitter_on=True)
        ground = Ground(harness)
        ground.send_tc(_ping())
        assert _kinds(ground.expect(1)) == [(17, 2)]
        assert harness.hk()["contact"] is True
        ground.close()
    finally:
        harness.close()


# -- TC[8,1] -----------------------------------------------------------------------------------
def test_function_tc_becomes_an_internal_command_and_its_responses_become_verification(ground, harness):
    tc = ground.send_tc(_setpoint(30.0))
    got = ground.expect(3)
    assert _kinds(got) == [(1, 1), (1, 3), (1, 7)]
    assert all(_verification(i).tc_req_id == RequestId.from_sp_header(tc.sp_header) for i in got)
    assert all(i[3].pus_tm_sec_header.dest_id == tc.source_id for i in got)
    ((command_id, qualified, args),) = harness.commands
    assert (qualified, args) == ("thermal.set_setpoint", {"setpoint_c": 30.0})
    assert isinstance(command_id, str) and 0 < len(command_id) <= 64
    harness.frame()
    assert harness.hk()["commands_pending"] == 0


def test_internal_command_ids_are_unique(ground, harness):
    for seq in range(5):
        ground.send_tc(_setpoint(20.0 + seq, seq=seq))
    ground.expect(15)
    assert len({c[0] for c in harness.commands}) == 5


@pytest.mark.parametrize("script, expected", [
    ([("failed", "VALIDATION_ERROR", "setpoint_c=99 outside [15, 45]")], [(1, 2, "VALIDATION_ERROR")]),
    ([("failed", "BUSY", "thermal has too many commands pending")], [(1, 2, "BUSY")]),
    ([("accepted", "", ""), ("failed", "EXECUTION_ERROR", "thermal restarted")],
     [(1, 1, None), (1, 4, "EXECUTION_ERROR")]),
    ([("accepted", "", ""), ("started", "", ""), ("failed", "EXECUTION_ERROR", "valve stuck")],
     [(1, 1, None), (1, 3, None), (1, 8, "EXECUTION_ERROR")]),
    ([("accepted", "", ""), ("started", "", ""), ("progress", "", ""), ("completed", "", "ok")],
     [(1, 1, None), (1, 3, None), (1, 5, None), (1, 7, None)]),
    ([("started", "", ""), ("completed", "", "ok")], [(1, 1, None), (1, 3, None), (1, 7, None)]),
    ([("failed", "NOT_A_CODE", "?")], [(1, 2, "EXECUTION_ERROR")]),
])
def test_each_response_sequence_maps_to_its_verification_reports(ground, harness, script, expected):
    harness.script = script
    ground.send_tc(_setpoint(30.0))
    got = ground.expect(len(expected))
    assert _kinds(got) == [e[:2] for e in expected]
    for item, (_, _, code) in zip(got, expected):
        s1 = _verification(item)
        assert (s1.error_code.val if s1.error_code else None) == (pus1.FAILURE_CODE_NUMBERS[code] if code else None)
    if expected[-1][2] is not None:
        assert _verification(got[-1]).failure_notice.data.decode() == (
            script[-1][2] if script[-1][1] in pus1.FAILURE_CODE_NUMBERS else "?")


def test_onboard_validation_failure_reaches_the_ground(ground):
    ground.send_tc(_setpoint(99.0))
    ((*_, packet),) = ground.expect(1)
    report = services.decode_tm(DICT, packet)
    assert (report.stage, report.code) == ("acceptance failed", "VALIDATION_ERROR")
    assert "setpoint_c" in report.message


def test_a_command_runs_on_its_owner_and_its_event_comes_down(ground, harness):
    ground.send_tc(_setpoint(31.0))
    got = ground.collect(lambda g: len(g) >= 5, keep=(1, 5))  # and link.client_connected
    assert [k for k in _kinds(got) if k[0] == 1] == [(1, 1), (1, 3), (1, 7)]
    assert [services.decode_tm(DICT, p[-1]).name for p in got if p[2] == THERMAL.component_id] == [
        "thermal.setpoint_changed"]
    assert harness.targets["thermal"].setpoint_c == 31.0


def _tc(service, subtype, data=b"", apid=framing.TC_APID) -> PusTc:
    return PusTc(service=service, message_subtype=subtype, apid=apid, app_data=data, seq_count=9, source_id=7,
                 ack_flags=framing.ACK_ALL)


@pytest.mark.parametrize("tc, code", [
    (_tc(8, 1, b"\x7f\x7f"), "INVALID_OPCODE"),
    (_tc(8, 1, b"\x03\x01\x40"), "FORMAT_ERROR"),
    (_tc(8, 1, b""), "FORMAT_ERROR"),
    (_tc(17, 1, b"hello"), "FORMAT_ERROR"),
    (_tc(3, 1), "ILLEGAL_SUBTYPE"),  # create a report structure: structures come from the dictionary
    (_tc(3, 5), "FORMAT_ERROR"),
    (_tc(17, 1, apid=99), "ILLEGAL_APID"),
])
def test_tcs_that_cannot_be_accepted_get_an_acceptance_failure(ground, harness, tc, code):
    ground.send_tc(tc)
    (item,) = ground.expect(1)
    s1 = _verification(item)
    assert (s1.message_subtype, s1.error_code.val) == (2, pus1.FAILURE_CODE_NUMBERS[code])
    assert s1.tc_req_id == RequestId.from_sp_header(tc.sp_header)
    assert harness.commands == []
    harness.frame()
    assert (harness.hk()["tc_rejected"], harness.hk()["tc_accepted"]) == (1, 0)
    assert harness.events("tc_rejected")


def test_set_hk_interval_is_a_link_command_with_a_validated_range(ground, harness):
    ground.send_tc(pus8.function_tc(DICT, "link.set_hk_interval", {"interval_s": 0.1}, seq_count=1, source_id=1))
    assert services.decode_tm(DICT, ground.expect(1)[0][-1]).code == "VALIDATION_ERROR"
    ground.send_tc(pus8.function_tc(DICT, "link.set_hk_interval", {"interval_s": 2.0}, seq_count=2, source_id=1))
    assert _kinds(ground.expect(3)) == [(1, 1), (1, 3), (1, 7)]
    harness.frame()
    assert harness.hk()["hk_interval_s"] == 2.0


# -- downlink of housekeeping and events --------------------------------------------------------
def _hk_reports(got, component: str) -> list:
    return [services.decode_tm(DICT, item[-1]) for item in got
            if item[:3] == (3, 25, DICT.components[component].component_id)]


def test_housekeeping_is_downlinked_every_interval_with_declared_channel_order(ground, harness):
    harness.link.cmd_set_hk_interval(3.0)
    got = []
    for _ in range(7):
        harness.publish("tm", "thermal.hk", THERMAL_HK, t=harness.tick + 0.5)  # a new sample every tick
        harness.publish("tm", "jobs.hk", JOBS_HK, t=harness.tick + 0.5)
        harness.frame()
        got += ground.collect(seconds=0.1, keep=(3,))
    reports = _hk_reports(got, "thermal")
    assert len(reports) == 2  # 7 ticks at one report per 3 s
    assert reports[0].values == THERMAL_HK
    assert reports[0].utc_unix_s == pytest.approx(UTC0 + 2.5, abs=1e-3)  # the sample delivered before t=4
    for component, values in ((THERMAL, THERMAL_HK), (JOBS, JOBS_HK)):  # float, int and bool arrays
        first = next(i for i in got if i[:3] == (3, 25, component.component_id))
        assert first[3].source_data == _expected_hk_data(component, values)
    jobs = _hk_reports(got, "jobs")[0].values
    assert jobs == JOBS_HK and type(jobs["gpu_job_id"][1]) is int and type(jobs["gpu_fenced"][1]) is bool
    assert _hk_reports(got, "link")  # the link's own housekeeping goes down too


def test_housekeeping_that_cannot_be_encoded_is_counted_not_sent(ground, harness):
    harness.link.cmd_set_hk_interval(1.0)
    harness.publish("tm", "thermal.hk", {"setpoint_c": 25.0})
    harness.frame()
    got = ground.collect(seconds=0.2, keep=(3,))
    assert not _hk_reports(got, "thermal") and _hk_reports(got, "link")
    harness.frame()
    harness.frame()  # the downlink runs after the tick's housekeeping: its count shows in the next
    assert harness.hk()["tm_errors"] == 1
    assert harness.events("tm_encode_failed")[0].data["args"]["what"] == "thermal.hk"


def test_events_go_down_at_once_with_the_subtype_of_their_severity(tmp_path):
    harness = LinkHarness(tmp_path)
    harness.frame()
    grounds = [Ground(harness) for _ in range(MAX_CONNECTIONS + 1)]  # the last is refused: MEDIUM
    grounds[0].send(bytes(7))  # LOW
    harness.publish("ev", "thermal.setpoint_changed",
                    {"severity": "INFO", "message": "coolant setpoint 25.0 -> 30.0 °C", "args": {}})
    harness.frame()
    harness.publish("ev", "hal.frame_rejected", {"severity": "HIGH", "message": "sensor frame 3 rejected",
                                                 "args": {}})
    got = grounds[0].collect(lambda g: (5, 4, 5) in [i[:3] for i in g], keep=(5,))
    events = [services.decode_tm(DICT, i[-1]) for i in got if i[0] == 5]
    by_name = {e.name: e for e in events}
    assert by_name["thermal.setpoint_changed"].severity == "INFO"
    assert by_name["thermal.setpoint_changed"].message == "coolant setpoint 25.0 -> 30.0 °C"
    assert {(i[1], i[2]) for i in got if i[0] == 5} >= {(1, 3), (1, 4), (2, 4), (3, 4), (4, 5)}
    assert {e.severity for e in events} == {"INFO", "LOW", "MEDIUM", "HIGH"}
    for g in grounds:
        g.close()
    harness.close()


def test_malformed_bus_events_are_counted_not_sent(ground, harness):
    harness.publish("ev", "thermal.setpoint_changed", "not a map")
    harness.publish("ev", "nosuch.event", {"severity": "INFO", "message": "x", "args": {}})
    harness.publish("ev", "thermal.setpoint_changed", {"severity": "INFO", "message": "x", "args": {}}, t=-1e12)
    harness.pump()
    harness.frame()
    assert harness.hk()["tm_errors"] == 3
    assert not harness.events("tm_encode_failed")


# -- uplink defences ------------------------------------------------------------------------------
def test_garbage_is_discarded_counted_reported_and_the_next_tc_still_works(ground, harness):
    garbage = b"\x00\xffGET / HTTP/1.1\r\n\r\n\x18\x04\x00"
    ground.send(garbage)
    ground.send_tc(_ping())
    assert _kinds(ground.expect(1)) == [(17, 2)]
    harness.frame()
    hk = harness.hk()
    assert (hk["tc_rejected"], hk["bytes_discarded"], hk["tc_accepted"]) == (1, len(garbage), 1)
    assert harness.events("bytes_rejected")[0].data["args"]["nbytes"] == len(garbage)


def test_a_bad_crc_is_rejected_without_a_reply(ground, harness):
    bad = bytearray(ground.signed(_ping()).pack())
    bad[-2] ^= 0x55
    ground.send(bytes(bad))
    assert ground.collect(seconds=0.3) == []
    harness.frame()
    assert (harness.hk()["tc_rejected"], harness.hk()["tc_received"]) == (1, 0)
    assert "bad CRC" in harness.events("bytes_rejected")[0].data["args"]["why"]


def test_a_partial_packet_from_a_quiet_sender_is_discarded(ground, harness, monkeypatch):
    monkeypatch.setattr(uplink_module, "STALL_S", 0.0)
    long_tc = bytes(ground.signed(pus8.function_tc(DICT, "thermal.set_gains",
                                                  {"loop": "pump", "kp": 0.1, "ki": 0.0, "kd": 0.0},
                                                  seq_count=3, source_id=1)).pack())
    ground.send(long_tc[:10])
    ground.send_tc(_ping())
    assert ground.collect(seconds=0.3) == []  # the cut header claims the ping's bytes
    harness.frame()
    assert _kinds(ground.expect(1)) == [(17, 2)]
    assert harness.hk()["bytes_discarded"] == 10


def test_a_client_overflowing_its_buffer_is_dropped_and_counted(harness, monkeypatch):
    monkeypatch.setattr(connections_module, "RX_BUFFER_BYTES", 64)
    harness.frame()
    ground = Ground(harness)
    ground.send(bytes(200))
    ground.collect(seconds=1.0)
    assert ground.closed
    harness.frame()
    hk = harness.hk()
    assert (hk["buffer_overflows"], hk["clients"]) == (1, 0)
    assert harness.events("buffer_overflow")
    ground.close()


def test_connections_over_the_limit_are_refused_and_counted(harness):
    harness.frame()
    grounds = [Ground(harness) for _ in range(MAX_CONNECTIONS + 1)]
    grounds[-1].collect(seconds=0.5)
    assert grounds[-1].closed and not any(g.closed for g in grounds[:-1])
    harness.frame()
    assert (harness.hk()["clients"], harness.hk()["connections_refused"]) == (MAX_CONNECTIONS, 1)
    grounds[0].close()
    harness.pump(0.1)
    harness.frame()
    assert harness.hk()["clients"] == MAX_CONNECTIONS - 1
    for g in grounds[1:]:
        g.close()


def test_a_verdict_whose_sender_left_goes_to_the_other_clients(ground, harness):
    other = Ground(harness)
    harness.script = []  # the dispatcher has not answered yet
    ground.send_tc(_setpoint(30.0))
    harness.pump(0.1)
    ((command_id, qualified, _),) = harness.commands
    ground.close()
    harness.pump(0.1)
    harness.publish("rsp", qualified, {"id": command_id, "stage": "accepted", "code": "", "message": ""})
    assert _kinds(other.expect(1)) == [(1, 1)]
    other.close()


def test_own_event_flood_is_capped_per_tick(ground, harness):
    bad = bytearray(ground.signed(_ping()).pack())
    bad[-1] ^= 1
    ground.send(b"".join(bytes(bad) + bytes(ground.signed(_ping()).pack()) for _ in range(12)))  # 12 + 12
    assert len(ground.expect(12)) == 12
    harness.frame()
    assert len(harness.events("bytes_rejected")) == state_module.EVENT_BUDGET_PER_TICK - 1  # + client_connected
    assert harness.hk()["events_suppressed"] == 12 - (state_module.EVENT_BUDGET_PER_TICK - 1)


def test_on_stop_closes_the_port(tmp_path):
    harness = LinkHarness(tmp_path)
    port = harness.port
    harness.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
