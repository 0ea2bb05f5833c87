"""The link's counters, ack flags and refusals as ECSS-E-ST-70-41C and CCSDS 133.0-B-2 say,
checked on the wire through the real link (the harness's LinkManager on loopback TCP, its
commands through the real dispatcher to real subsystems): issue 12's defects 1, 2, 3, 5, 6
and 7 (4, the rate-limit report, is in test_link_auth.py next to the rate limit).

Every packet is read with spacepackets' own readers (``Ground.read``)."""

import importlib.metadata
import re
import struct
from collections import defaultdict
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from spacepackets.ecss.req_id import RequestId

from flight.spacelink import framing, pus1_verification as pus1, pus17_test as pus17, pus8_functions as pus8
from flight.spacelink import pus3_housekeeping as pus3, pus20_parameters as pus20, services
from tests.support.link_harness import DICT, JOBS_HK, THERMAL_HK, Ground, _kinds, _verification

ALL_SERVICES = (1, 3, 5, 11, 15, 17, 20, 140)
SOURCE_A, SOURCE_B = 0x0A0A, 0x0B0B


def _counts_by_apid(got) -> dict[int, list[int]]:
    out = defaultdict(list)
    for _, _, apid, tm, _ in got:
        out[apid].append(tm.seq_count)
    return out


def _assert_gap_free(got) -> None:
    """Per APID, each packet's sequence count is the one before it + 1 (mod 2**14)."""
    for apid, counts in _counts_by_apid(got).items():
        steps = [(b - a) % framing.SEQ_COUNT_MODULO for a, b in zip(counts, counts[1:])]
        assert set(steps) <= {1}, f"APID {apid}: counts {counts}"


def _ping(source_id: int, seq: int, flags: int = framing.ACK_ALL):
    return pus17.ping_tc(seq_count=seq, source_id=source_id, ack_flags=flags)


# -- defect 1: a TC's reports in sequence-count order ----------------------------------------------
@pytest.mark.parametrize("tc, expected", [
    (_ping(SOURCE_A, 1), [(1, 1), (1, 3), (17, 2), (1, 7)]),
    (framing.build_tc(20, 1, pus20.parameter_ids_data([DICT.parameter_id("thermal.setpoint_c")]), seq_count=2,
                      source_id=SOURCE_A), [(1, 1), (1, 3), (20, 2), (1, 7)]),
    (framing.build_tc(3, 9, pus3.sid_list_data([DICT.components["thermal"].component_id]), seq_count=3,
                      source_id=SOURCE_A), [(1, 1), (1, 3), (3, 10), (1, 7)]),
])
def test_the_reports_of_a_tc_the_link_serves_are_counted_in_the_order_they_are_sent(ground, tc, expected):
    ground.send_tc(tc)
    got = ground.expect(len(expected), keep=(1, 3, 17, 20))
    assert _kinds(got) == expected
    counts = [tm.seq_count for *_, tm, _ in got]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    _assert_gap_free(got)


# -- defect 2: every connection sees one gap-free downlink ----------------------------------------
def test_a_ground_sees_gap_free_counts_and_tells_others_reports_by_destination(ground, harness):
    other = Ground(harness)
    try:
        ground.send_tc(_ping(SOURCE_A, 1))
        ground.send_tc(_ping(SOURCE_A, 2, framing.ACK_NONE))
        other.send_tc(_ping(SOURCE_B, 1))
        seen_by_other = other.collect(lambda g: len([i for i in g if i[:2] == (17, 2)]) >= 3, keep=ALL_SERVICES)
        seen_by_ground = ground.collect(lambda g: len([i for i in g if i[:2] == (17, 2)]) >= 3, keep=ALL_SERVICES)
        for got in (seen_by_other, seen_by_ground):
            _assert_gap_free(got)
            replies = [tm for service, subtype, _, tm, _ in got if (service, subtype) == (17, 2)]
            assert [tm.pus_tm_sec_header.dest_id for tm in replies] == [SOURCE_A, SOURCE_A, SOURCE_B]
            # per destination the message type counter steps by one: a ground's own reports show its losses
            assert [tm.pus_tm_sec_header.message_counter for tm in replies] == [0, 1, 0]
        # both connections get the same packets, in the same order
        assert [p for *_, p in seen_by_other if p in {q for *_, q in seen_by_ground}] == [
            p for *_, p in seen_by_ground if p in {q for *_, q in seen_by_other}]
    finally:
        other.close()


# -- defect 3: TC[8,1] ack flags ------------------------------------------------------------------
@pytest.mark.parametrize("flags, expected", [
    (framing.ACK_NONE, []),
    (framing.ACK_ACCEPTANCE, [(1, 1)]),
    (framing.ACK_START, [(1, 3)]),
    (framing.ACK_COMPLETION, [(1, 7)]),
    (framing.ACK_ACCEPTANCE | framing.ACK_COMPLETION, [(1, 1), (1, 7)]),
    (framing.ACK_ALL, [(1, 1), (1, 3), (1, 7)]),
])
def test_function_tcs_get_the_success_reports_their_ack_flags_ask_for(ground, harness, flags, expected):
    value = 20.0 + flags
    tc = ground.send_tc(pus8.function_tc(DICT, "thermal.set_setpoint", {"setpoint_c": value}, seq_count=4,
                                         source_id=SOURCE_A, ack_flags=flags))
    got = ground.collect(seconds=0.5)  # everything that comes, not just as many as expected
    assert _kinds(got) == expected
    assert all(_verification(i).tc_req_id == RequestId.from_sp_header(tc.sp_header) for i in got)
    assert harness.targets["thermal"].setpoint_c == value  # executed all the same
    harness.frame()
    assert harness.hk()["commands_pending"] == 0


@pytest.mark.parametrize("flags", [framing.ACK_NONE, framing.ACK_ACCEPTANCE])
def test_failures_are_reported_whatever_the_ack_flags(ground, harness, flags):
    ground.send_tc(pus8.function_tc(DICT, "thermal.set_setpoint", {"setpoint_c": 99.0}, seq_count=5,
                                    source_id=SOURCE_A, ack_flags=flags))
    (item,) = ground.expect(1)
    assert item[:2] == (1, 2)
    assert _verification(item).error_code.val == pus1.FAILURE_CODE_NUMBERS["VALIDATION_ERROR"]


def test_a_parameter_set_honours_its_ack_flags_like_a_function(ground, harness):
    data = pus20.set_parameter_data(DICT, "thermal.setpoint_c", 31.0)
    ground.send_tc(framing.build_tc(20, 3, data, seq_count=6, source_id=SOURCE_A, ack_flags=framing.ACK_COMPLETION))
    assert _kinds(ground.collect(seconds=0.5)) == [(1, 7)]
    assert harness.targets["thermal"].setpoint_c == 31.0


# -- defect 5: the message type counter per application process ------------------------------------
def test_the_message_type_counter_of_housekeeping_steps_by_one_per_apid(ground, harness):
    harness.link.cmd_set_hk_interval(1.0)
    got = []
    for _ in range(5):
        harness.publish("tm", "thermal.hk", THERMAL_HK, t=harness.tick + 0.5)
        harness.publish("tm", "jobs.hk", JOBS_HK, t=harness.tick + 0.5)
        harness.frame()
        got += ground.collect(seconds=0.1, keep=(3,))
    counters = defaultdict(list)
    for service, subtype, apid, tm, _ in got:
        if (service, subtype) == (3, 25):
            counters[apid].append(tm.pus_tm_sec_header.message_counter)
    assert len(counters) >= 3  # thermal, jobs and the link itself
    for apid, values in counters.items():
        assert len(values) >= 3 and values == list(range(values[0], values[0] + len(values))), (apid, values)


# -- defect 6: spacepackets is pinned to what the code uses ---------------------------------------
def test_the_installed_spacepackets_is_the_pinned_one_and_has_the_api_used():
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    (pin,) = [Requirement(r) for r in re.findall(r'"(spacepackets[^"]*)"', pyproject)]
    installed = importlib.metadata.version("spacepackets")
    assert pin.specifier.contains(installed), f"spacepackets {installed} is not {pin}"
    assert not pin.specifier.contains("0.28.0") and not pin.specifier.contains("0.31.0")  # lack the API below
    from spacepackets.ecss import pus_1_verification

    assert {"TM_ACCEPTANCE_SUCCESS", "TM_COMPLETION_FAILURE"} <= set(pus_1_verification.MessageSubtype.__members__)
    params = pus_1_verification.ManagedParamsVerification(bytes_step_id=1, bytes_err_code=1)
    assert (params.bytes_step_id, params.bytes_err_code) == (1, 1)


# -- defect 7: service type and subtype refused apart ---------------------------------------------
@pytest.mark.parametrize("service, subtype, code", [
    (17, 3, "ILLEGAL_SUBTYPE"),
    (3, 27, "ILLEGAL_SUBTYPE"),
    (8, 2, "ILLEGAL_SUBTYPE"),
    (15, 77, "ILLEGAL_SUBTYPE"),
    (2, 1, "ILLEGAL_SERVICE"),
    (99, 1, "ILLEGAL_SERVICE"),
])
def test_an_unserved_subtype_and_an_unserved_service_are_refused_with_their_own_codes(ground, harness, service,
                                                                                       subtype, code):
    tc = ground.send_tc(framing.build_tc(service, subtype, seq_count=7, source_id=SOURCE_A))
    (item,) = ground.expect(1)
    s1 = _verification(item)
    assert (item[:2], s1.error_code.val) == ((1, 2), pus1.FAILURE_CODE_NUMBERS[code])
    assert s1.tc_req_id == RequestId.from_sp_header(tc.sp_header)
    assert (f"service {service} has no subtype {subtype}" if code == "ILLEGAL_SUBTYPE"
            else f"service type {service} is not served") in s1.failure_notice.data.decode()
    assert harness.commands == []


def test_our_ground_client_takes_only_the_answers_addressed_to_it(tmp_path):
    """Every connection gets every TM, so the client must pick its own by destination id."""
    from flight.ground.client import LinkClient
    from flight.spacelink.pus20_parameters import ParameterReport
    from tests.support.link_harness import ServedLink

    served = ServedLink(tmp_path)
    try:
        with LinkClient(served.endpoint, DICT, key=served.harness.key, tm_keys=served.harness.tm_keys) as a, \
                LinkClient(served.endpoint, DICT, key=served.harness.key, tm_keys=served.harness.tm_keys) as b:
            ask_a = pus20.parameter_ids_data([DICT.parameter_id("thermal.setpoint_c")])
            ask_b = pus20.parameter_ids_data([DICT.parameter_id("link.hk_interval_s")])
            answers_a = a.request(20, 1, ask_a, timeout_s=5)
            first = next(answers_a)  # a's TC is out and being answered
            got_b = list(b.request(20, 1, ask_b, timeout_s=5))
            got_a = [first, *answers_a]
        for got, client, name in ((got_a, a, "thermal.setpoint_c"), (got_b, b, "link.hk_interval_s")):
            (report,) = [r for r in got if isinstance(r, ParameterReport)]
            assert set(report.values) == {name} and report.dest_id == client.source_id
            assert got[-1].stage == "completed"
    finally:
        served.close()


# -- ICD item: events carry their typed arguments --------------------------------------------------
def test_an_event_comes_down_with_its_typed_arguments_in_declared_order(ground, harness):
    ground.send_tc(pus8.function_tc(DICT, "thermal.set_setpoint", {"setpoint_c": 33.0}, seq_count=8,
                                    source_id=SOURCE_A))
    got = ground.collect(lambda g: any(i[:3] == (5, 1, DICT.components["thermal"].component_id) for i in g),
                         keep=(5,))
    (*_, tm, packet) = next(i for i in got if i[2] == DICT.components["thermal"].component_id)
    data = tm.source_data
    event_id, length = struct.unpack(">HH", data[:4])
    n, old_c, new_c = struct.unpack(">Bdd", data[4 + length:])  # as docs/icd.md lays it out
    assert (event_id, n, new_c) == (DICT.event_id("thermal.setpoint_changed"), 2, 33.0)
    report = services.decode_tm(DICT, packet)
    assert report.args == {"old_c": old_c, "new_c": 33.0} and "33.0" in report.message


def test_an_event_with_malformed_arguments_still_comes_down_without_them(ground, harness):
    harness.publish("ev", "thermal.setpoint_changed", {"severity": "INFO", "message": "coolant setpoint [malformed]",
                                                       "args": {"old_c": 20.0}, "arg_errors": 1})
    harness.publish("ev", "link.contact_acquired", {"severity": "INFO", "message": "contact acquired: station x",
                                                    "args": {"station": "x", "elevation_deg": 1.0}})
    names = {"thermal.setpoint_changed", "link.contact_acquired"}
    got = ground.collect(lambda g: names <= {services.decode_tm(DICT, i[-1]).name for i in g}, keep=(5,))
    reports = {r.name: r for r in (services.decode_tm(DICT, i[-1]) for i in got)}
    for name in ("thermal.setpoint_changed", "link.contact_acquired"):
        assert reports[name].args == {} and "contact acquired" in reports["link.contact_acquired"].message
