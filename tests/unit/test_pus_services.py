"""The operations services over a real link connection: PUS-C 3 (housekeeping structures,
on/off, interval), 5 (event reports on/off), 11 (time-based schedule) and 20 (parameters).
Every report is read with spacepackets' own PUS-C reader (CRC, APID, service/subtype, CDS
time) and its data checked against the wire format written out here; every malformed or
hostile TC gets TM[1,2] with its code and changes nothing."""

import functools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import InvalidTmCrc16Error, PusTm

from flight.spacelink import framing, pus11_scheduling as pus11, pus17_test as pus17, pus8_functions as pus8, services
from flight.core.component import CommandError
from flight.spacelink.sdls import AuthenticationError, StationKey, protect
from flight.core.parameters import PARAMETERS_FILE, ParameterStore
from tests.support.link_harness import DICT, THERMAL, THERMAL_HK, UTC0, Ground, LinkHarness

SOURCE = 0x2345
THERMAL_SID = THERMAL.component_id
SETPOINT_EVENT = "thermal.setpoint_changed"
REPORTS = {(3, 10), (5, 8), (11, 10), (20, 2)}


class Operator:
    """A ground operator on ``ground``: sends operations TCs and reads what answers them."""

    def __init__(self, ground: Ground) -> None:
        self.ground = ground
        self.seq = 100

    def tc(self, service: int, subtype: int, data: bytes = b"", flags: int = framing.ACK_ALL) -> PusTc:
        self.seq += 1
        return framing.build_tc(service, subtype, data, seq_count=self.seq, source_id=SOURCE, ack_flags=flags)

    def ask(self, tc: PusTc) -> tuple[list[int], list[tuple[int, int, bytes]]]:
        """Send ``tc`` signed; return the subtypes of the verification reports about it and
        the reports (service, subtype, source data) it asked for, up to its final stage."""
        req = framing.request_id(self.ground.send_tc(tc))

        def about(tm) -> bool:
            return int.from_bytes(tm.source_data[:4], "big") == req

        got = self.ground.collect(lambda got: any(s == 1 and about(tm) and (t % 2 == 0 or t == 7)
                                                  for s, t, _, tm, _ in got), keep=(1, 3, 5, 11, 20))
        stages = [t for s, t, _, tm, _ in got if s == 1 and about(tm)]
        reports = [(s, t, tm) for s, t, _, tm, _ in got if (s, t) in REPORTS]
        for *_, tm in reports:
            assert tm.apid == framing.TC_APID and tm.pus_tm_sec_header.dest_id == SOURCE
        return stages, [(s, t, bytes(tm.source_data)) for s, t, tm in reports]

    def failure(self, tc: PusTc, signed: bool = True) -> str:
        """The failure code of TM[1,2] about ``tc`` (asserting it is its only answer)."""
        sent = self.ground.signed(tc) if signed else tc
        self.ground.send(bytes(sent.pack()))
        (item,) = self.ground.expect(1)
        service, subtype, apid, tm, packet = item
        assert (service, subtype, apid) == (1, 2, framing.TC_APID)
        report = services.decode_tm(DICT, packet)
        assert report.request_id == framing.request_id(sent)
        return report.code


@pytest.fixture
def operator(ground):
    return Operator(ground)


def fly(harness: LinkHarness, ground: Ground, seconds: int) -> list[tuple[int, int, int]]:
    """Fly ``seconds`` one-second ticks, thermal publishing housekeeping each tick; return
    (service, subtype, apid) of every TM[3,25] and TM[5,x] the ground got."""
    got = []
    for _ in range(seconds):
        harness.publish("tm", "thermal.hk", THERMAL_HK)
        harness.frame()
        got += [(s, t, a) for s, t, a, *_ in ground.collect(seconds=0.02, keep=(3, 5))]
    return got


@pytest.mark.parametrize("ask, report", [
    ((3, 9, struct.pack(">HH", 1, THERMAL_SID)), (3, 10)),
    ((5, 7, b""), (5, 8)),
    ((11, 16, b""), (11, 10)),
    ((20, 1, struct.pack(">HH", 1, DICT.parameter_id("thermal.setpoint_c"))), (20, 2)),
])
def test_each_new_report_reads_with_spacepackets_own_pus_c_reader(harness, ground, operator, ask, report):
    ground.send_tc(operator.tc(*ask))
    (packet,) = [p for s, t, _, _, p in ground.collect(lambda got: (1, 7) in [g[:2] for g in got],
                                                     keep=(1, report[0])) if (s, t) == report]
    tm = PusTm.unpack(packet, timestamp_len=CdsShortTimestamp.TIMESTAMP_SIZE)
    assert (tm.apid, tm.service, tm.message_subtype, tm.pus_tm_sec_header.dest_id) == (framing.TC_APID, *report, SOURCE)
    assert CdsShortTimestamp.unpack(tm.timestamp).as_unix_seconds() == UTC0 + harness.tick
    with pytest.raises(InvalidTmCrc16Error):
        PusTm.unpack(packet[:-1] + bytes([packet[-1] ^ 1]), timestamp_len=CdsShortTimestamp.TIMESTAMP_SIZE)


# -- service 3 ----------------------------------------------------------------------------------
def test_structure_reports_list_every_component_with_its_channels(operator):
    stages, reports = operator.ask(operator.tc(3, 9, struct.pack(">H", 0)))
    assert stages == [1, 3, 7]
    with_hk = [c for c in DICT.components.values() if c.telemetry]
    assert [(s, t) for s, t, _ in reports] == [(3, 10)] * len(with_hk)
    for (_, _, data), component in zip(reports, with_hk):
        sid, enabled, interval_ms, n = struct.unpack_from(">HBIH", data)
        ids = struct.unpack_from(f">{n}H", data, 9)
        assert (sid, enabled, interval_ms, n) == (component.component_id, 1, 10_000, len(component.telemetry))
        assert ids == tuple(component.component_id << 8 | i for i in range(1, n + 1))
        assert len(data) == 9 + 2 * n


def test_periodic_housekeeping_follows_disable_enable_and_the_structure_interval(harness, ground, operator):
    assert (3, 25, THERMAL_SID) in fly(harness, ground, 12)
    assert operator.ask(operator.tc(3, 6, struct.pack(">HH", 1, THERMAL_SID)))[0] == [1, 3, 7]
    off = fly(harness, ground, 25)
    assert (3, 25, THERMAL_SID) not in off and (3, 25, framing.TC_APID) in off, "only thermal's structure is off"
    assert harness.hk()["hk_structures_disabled"] == 1
    assert operator.ask(operator.tc(3, 5, struct.pack(">HH", 1, THERMAL_SID)))[0] == [1, 3, 7]
    assert operator.ask(operator.tc(3, 31, struct.pack(">HHI", 1, THERMAL_SID, 2_000)))[0] == [1, 3, 7]
    on = fly(harness, ground, 20)
    assert 9 <= on.count((3, 25, THERMAL_SID)) <= 11, "every 2 s"
    assert on.count((3, 25, framing.TC_APID)) <= 3, "the others keep the default 10 s"
    _, reports = operator.ask(operator.tc(3, 9, struct.pack(">HH", 1, THERMAL_SID)))
    assert struct.unpack_from(">HBI", reports[0][2]) == (THERMAL_SID, 1, 2_000)


def test_a_shorter_interval_applies_from_now(harness, ground, operator):
    assert fly(harness, ground, 12).count((3, 25, THERMAL_SID)) == 1, "reported, next due in 10 s"
    interval_id = DICT.parameter_id("link.hk_interval_s")
    assert operator.ask(operator.tc(20, 3, struct.pack(">HHd", 1, interval_id, 2.0)))[0] == [1, 3, 7]
    assert fly(harness, ground, 6).count((3, 25, THERMAL_SID)) >= 2


# -- service 5 ----------------------------------------------------------------------------------
def test_event_reports_follow_disable_and_enable_and_the_disabled_list_is_reported(harness, ground, operator):
    event_id = DICT.event_id(SETPOINT_EVENT)
    payload = THERMAL.event_payload("setpoint_changed", {"old_c": 25.0, "new_c": 30.0})

    def setpoint_events() -> int:
        harness.publish("ev", SETPOINT_EVENT, payload)
        harness.pump(0.02)
        return sum(1 for s, t, a, *_ in ground.collect(seconds=0.1, keep=(5,)) if (t, a) == (1, THERMAL_SID))

    assert setpoint_events() == 1
    assert operator.ask(operator.tc(5, 6, struct.pack(">HH", 1, event_id)))[0] == [1, 3, 7]
    assert setpoint_events() == 0
    stages, reports = operator.ask(operator.tc(5, 7))
    assert stages == [1, 3, 7] and reports == [(5, 8, struct.pack(">HH", 1, event_id))]
    assert operator.ask(operator.tc(5, 5, struct.pack(">HH", 1, event_id)))[0] == [1, 3, 7]
    assert setpoint_events() == 1
    assert operator.ask(operator.tc(5, 7))[1] == [(5, 8, struct.pack(">H", 0))]
    harness.frame()
    assert harness.hk()["events_filtered"] == 1


# -- service 11 ---------------------------------------------------------------------------------
def _inner(operator: Operator, qualified: str, args: dict, flags: int = framing.ACK_ALL) -> PusTc:
    operator.seq += 1
    return operator.ground.signed(pus8.function_tc(DICT, qualified, args, seq_count=operator.seq, source_id=SOURCE,
                                                  ack_flags=flags))


def test_scheduled_commands_run_at_their_time_through_the_normal_command_path(harness, ground, operator):
    now = UTC0 + harness.tick
    later = _inner(operator, "link.set_hk_interval", {"interval_s": 7.0})
    operator.seq += 1
    ping = ground.signed(pus17.ping_tc(seq_count=operator.seq, source_id=SOURCE, ack_flags=framing.ACK_COMPLETION))
    insert = pus11.insert_data([(now + 4, bytes(later.pack())), (now + 2, bytes(ping.pack()))])
    assert operator.ask(operator.tc(11, 4, insert))[0] == [1, 3, 7]

    stages, reports = operator.ask(operator.tc(11, 16))
    assert stages == [1, 3, 7] and [(s, t) for s, t, _ in reports] == [(11, 10)]
    data = reports[0][2]
    assert struct.unpack_from(">H", data) == (2,)
    first_release = CdsShortTimestamp.unpack(data[2:9]).as_unix_seconds()
    (length,) = struct.unpack_from(">H", data, 9)
    assert (first_release, data[11:11 + length]) == (now + 2, bytes(ping.pack())), "release order"

    answers = []
    for _ in range(5):
        harness.frame()
        answers += [(s, t, int.from_bytes(tm.source_data[:4], "big") if s == 1 else None)
                    for s, t, _, tm, _ in ground.collect(seconds=0.05)]
    assert (17, 2, None) in answers and (1, 7, framing.request_id(ping)) in answers
    assert [(s, t) for s, t, r in answers if r == framing.request_id(later)] == [(1, 1), (1, 3), (1, 7)]
    assert harness.link.hk_interval_s == 7.0, "the scheduled command executed"
    assert harness.hk()["tc_released"] == 2 and len(harness.events("tc_released")) == 2
    assert operator.ask(operator.tc(11, 16))[1] == [(11, 10, struct.pack(">H", 0))]


def test_a_disabled_schedule_holds_its_activities_and_delete_and_reset_remove_them(harness, ground, operator):
    now = UTC0 + harness.tick
    a, b, c = (_inner(operator, "link.set_hk_interval", {"interval_s": v}) for v in (3.0, 4.0, 5.0))
    assert operator.ask(operator.tc(11, 2))[0] == [1, 3, 7]
    insert = pus11.insert_data([(now + 1, bytes(a.pack())), (now + 1, bytes(b.pack())), (now + 60, bytes(c.pack()))])
    assert operator.ask(operator.tc(11, 4, insert))[0] == [1, 3, 7]
    for _ in range(3):
        harness.frame()
    assert harness.link.hk_interval_s == 10.0 and len(harness.link.schedule_service.schedule) == 3
    assert operator.ask(operator.tc(11, 5, pus11.request_id_data([framing.request_id(b)])))[0] == [1, 3, 7]
    assert operator.ask(operator.tc(11, 1))[0] == [1, 3, 7]
    harness.frame()
    harness.pump(0.05)
    assert harness.link.hk_interval_s == 3.0, "the overdue activity ran once enabled; the deleted one did not"
    assert operator.ask(operator.tc(11, 3))[0] == [1, 3, 7]
    harness.frame()
    assert len(harness.link.schedule_service.schedule) == 0 and harness.hk()["schedule_activities"] == 0


def test_the_schedule_survives_a_restart_of_the_link(tmp_path):
    first = LinkHarness(tmp_path)
    first.frame()
    ground = Ground(first)
    operator = Operator(ground)
    inner = _inner(operator, "link.set_hk_interval", {"interval_s": 9.0})
    release = UTC0 + first.tick + 3
    assert operator.ask(operator.tc(11, 4, pus11.insert_data([(release, bytes(inner.pack()))])))[0] == [1, 3, 7]
    ground.close()
    first.close()

    second = LinkHarness(tmp_path)
    try:
        assert [a.request_id for a in second.link.schedule_service.schedule.activities()] == [framing.request_id(inner)]
        for _ in range(4):
            second.frame()
        second.pump(0.05)
        assert second.link.hk_interval_s == 9.0
    finally:
        second.close()


def test_in_lab_mode_a_scheduled_tc_is_unsigned_like_every_other(tmp_path):
    harness = LinkHarness(tmp_path, lab=True)
    try:
        harness.frame()
        ground = Ground(harness)
        operator = Operator(ground)
        inner = _inner(operator, "link.set_hk_interval", {"interval_s": 6.0})
        insert = pus11.insert_data([(UTC0 + harness.tick + 2, bytes(inner.pack()))])
        assert operator.ask(operator.tc(11, 4, insert))[0] == [1, 3, 7]
        for _ in range(3):
            harness.frame()
        harness.pump(0.05)
        assert harness.link.hk_interval_s == 6.0
        ground.close()
    finally:
        harness.close()


# -- service 20 ---------------------------------------------------------------------------------
def test_parameters_are_reported_set_through_their_owner_and_persisted(tmp_path, harness, operator):
    ids = [DICT.parameter_id(n) for n in ("thermal.setpoint_c", "link.hk_interval_s")]
    stages, reports = operator.ask(operator.tc(20, 1, struct.pack(">HHH", 2, *ids)))
    assert stages == [1, 3, 7]
    assert reports == [(20, 2, struct.pack(">HHdHd", 2, ids[0], 25.0, ids[1], 10.0))]

    assert operator.ask(operator.tc(20, 3, struct.pack(">HHd", 1, ids[1], 4.0)))[0] == [1, 3, 7]
    assert harness.commands[-1][1:] == ("link.set_parameter", {"name": "hk_interval_s", "value": 4.0})
    assert harness.link.hk_interval_s == 4.0
    assert operator.ask(operator.tc(20, 1, struct.pack(">HH", 1, ids[1])))[1] == [
        (20, 2, struct.pack(">HHd", 1, ids[1], 4.0))]
    store = ParameterStore(tmp_path / PARAMETERS_FILE)
    assert store.load(["link.hk_interval_s"]) == {"link.hk_interval_s": 4.0}
    store.close()

    harness.close()
    again = LinkHarness(tmp_path)
    try:
        again.frame()
        assert again.link.hk_interval_s == 4.0, "the link restarts with the persisted value"
    finally:
        again.close()


# -- malformed and hostile TCs --------------------------------------------------------------------
def _state(harness: LinkHarness) -> tuple:
    link = harness.link
    store = ParameterStore(link.config.data_path / PARAMETERS_FILE)
    try:
        params = store.load()
    finally:
        store.close()
    return (link.schedule_service.schedule.activities(), link.schedule_service.schedule.enabled, set(link.reporting.hk_disabled),
            dict(link.reporting.hk_intervals_s), set(link.reporting.events_disabled), link.hk_interval_s, params, len(harness.commands))


def _embedded(operator: Operator, release_offset_s: float = 60.0, tc: PusTc | None = None,
              key: StationKey | None = None) -> bytes:
    """TC[11,4] data holding one ``tc`` (default: a valid command) signed with ``key``
    (default: the ground's own) due ``release_offset_s`` after onboard now."""
    tc = tc if tc is not None else pus8.function_tc(DICT, "link.set_hk_interval", {"interval_s": 5.0},
                                                   seq_count=7, source_id=SOURCE)
    tc = operator.ground.signed(tc) if key is None else protect(tc, key, operator.ground.arsn.next())
    return pus11.insert_data([(UTC0 + operator.ground.harness.tick + release_offset_s, bytes(tc.pack()))])


HOSTILE = {
    "3,5 no list": (lambda o: o.tc(3, 5), "FORMAT_ERROR"),
    "3,6 unknown structure": (lambda o: o.tc(3, 6, struct.pack(">HH", 1, 99)), "VALIDATION_ERROR"),
    "3,9 trailing byte": (lambda o: o.tc(3, 9, struct.pack(">HHB", 1, THERMAL_SID, 0)), "FORMAT_ERROR"),
    "3,31 zero interval": (lambda o: o.tc(3, 31, struct.pack(">HHI", 1, THERMAL_SID, 0)), "VALIDATION_ERROR"),
    "3,31 cut short": (lambda o: o.tc(3, 31, struct.pack(">HH", 1, THERMAL_SID)), "FORMAT_ERROR"),
    "3,31 count lies": (lambda o: o.tc(3, 31, struct.pack(">HHI", 0xFFFF, THERMAL_SID, 5000)), "FORMAT_ERROR"),
    "3,2 not served": (lambda o: o.tc(3, 2), "ILLEGAL_SUBTYPE"),
    "5,6 unknown event": (lambda o: o.tc(5, 6, struct.pack(">HH", 1, 0x7F7F)), "VALIDATION_ERROR"),
    "5,5 empty list": (lambda o: o.tc(5, 5, struct.pack(">H", 0)), "FORMAT_ERROR"),
    "5,7 with data": (lambda o: o.tc(5, 7, b"\x00"), "FORMAT_ERROR"),
    "11,1 with data": (lambda o: o.tc(11, 1, b"\x01"), "FORMAT_ERROR"),
    "11,4 garbage": (lambda o: o.tc(11, 4, b"\x00\x01" + bytes(range(40))), "FORMAT_ERROR"),
    "11,4 past release": (lambda o: o.tc(11, 4, _embedded(o, release_offset_s=-5)), "VALIDATION_ERROR"),
    "11,4 nested schedule": (lambda o: o.tc(11, 4, _embedded(o, tc=framing.build_tc(11, 3, seq_count=1,
                                                                                  source_id=SOURCE))),
                             "INVALID_OPCODE"),
    "11,4 out-of-range command": (lambda o: o.tc(11, 4, _embedded(o, tc=pus8.function_tc(
        DICT, "thermal.set_setpoint", {"setpoint_c": 99.0}, seq_count=3, source_id=SOURCE))), "VALIDATION_ERROR"),
    "11,4 embedded wrong key": (lambda o: o.tc(11, 4, _embedded(o, key=StationKey("x", 1, bytes(32)))),
                                "AUTHENTICATION_ERROR"),
    "11,4 embedded unsigned": (lambda o: o.tc(11, 4, pus11.insert_data([(
        UTC0 + 600, bytes(pus17.ping_tc(seq_count=4, source_id=SOURCE).pack()))])), "AUTHENTICATION_ERROR"),
    "11,5 unknown request id": (lambda o: o.tc(11, 5, pus11.request_id_data([0xDEADBEEF])), "VALIDATION_ERROR"),
    "20,1 unknown parameter": (lambda o: o.tc(20, 1, struct.pack(">HH", 1, 0x0399)), "VALIDATION_ERROR"),
    "20,3 out of range": (lambda o: o.tc(20, 3, struct.pack(">HHd", 1, DICT.parameter_id("thermal.setpoint_c"),
                                                            99.0)), "VALIDATION_ERROR"),
    "20,3 two at once": (lambda o: o.tc(20, 3, struct.pack(">HHdHd", 2, DICT.parameter_id("thermal.setpoint_c"),
                                                           30.0, DICT.parameter_id("link.hk_interval_s"), 5.0)),
                         "FORMAT_ERROR"),
    "20,3 value cut short": (lambda o: o.tc(20, 3, struct.pack(">HHf", 1, DICT.parameter_id("link.hk_interval_s"),
                                                               5.0)), "FORMAT_ERROR"),
    "20,3 NaN": (lambda o: o.tc(20, 3, struct.pack(">HHd", 1, DICT.parameter_id("link.hk_interval_s"),
                                                   float("nan"))), "VALIDATION_ERROR"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_malformed_or_hostile_tc_fails_with_its_code_and_changes_nothing(harness, operator, case):
    build, code = HOSTILE[case]
    before = _state(harness)
    assert operator.failure(build(operator)) == code
    assert _state(harness) == before


def test_a_scheduled_tc_cannot_replay_one_already_executed_nor_be_replayed(harness, ground, operator):
    inner = _inner(operator, "link.set_hk_interval", {"interval_s": 6.0})
    ground.send(bytes(inner.pack()))
    ground.expect(3)  # it ran at once: accepted, started, completed
    before = _state(harness)
    insert = pus11.insert_data([(UTC0 + harness.tick + 30, bytes(inner.pack()))])
    assert operator.failure(operator.tc(11, 4, insert)) == "AUTHENTICATION_ERROR"
    assert _state(harness) == before

    scheduled = _inner(operator, "link.set_hk_interval", {"interval_s": 8.0})
    insert = pus11.insert_data([(UTC0 + harness.tick + 30, bytes(scheduled.pack()))])
    assert operator.ask(operator.tc(11, 4, insert))[0] == [1, 3, 7]
    assert operator.failure(scheduled, signed=False) == "AUTHENTICATION_ERROR", "nor be sent again at once"
    assert harness.link.hk_interval_s == 6.0
    harness.frame()
    assert harness.hk()["tc_auth_failed"] == 2


def test_an_operations_tc_is_authenticated_like_any_other(harness, operator):
    before = _state(harness)
    assert operator.failure(operator.tc(11, 3), signed=False) == "AUTHENTICATION_ERROR"
    assert operator.failure(operator.tc(20, 3, struct.pack(">HHd", 1, DICT.parameter_id("link.hk_interval_s"),
                                                           2.0)), signed=False) == "AUTHENTICATION_ERROR"
    assert _state(harness) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(sorted(services.OPS_TCS)), data=st.binary(max_size=64),
       count=st.integers(0, 3), tail=st.binary(max_size=24))
def test_any_data_of_any_operations_tc_decodes_or_fails_with_a_code(harness, which, data, count, tail):
    """Random data, and data with a plausible count in front, never escapes the decoders
    as anything but a failure with a code; decoding changes nothing."""
    route = harness.link.router.routes[which]
    tc = PusTc(service=which[0], message_subtype=which[1], apid=framing.TC_APID)
    parse = functools.partial(route.parse, tc)
    before = _state(harness)
    for candidate in (data, struct.pack(">H", count) + tail):
        try:
            parse(candidate)
        except (CommandError, AuthenticationError):
            pass
    assert _state(harness) == before
