"""Onboard packet stores (flight.subsystems.link.packet_stores) and the link's store-and-forward and TC[15,x]
over real TCP (tests.support.link_harness): retention counts, ordering and priority, delivery and
acknowledgement, durability across a killed process, and every new TM read with
spacepackets' own PUS-C readers."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.pus_15_tm_storage import MessageSubtype as StorageSubtype
from spacepackets.ecss.tm import PusTm

from flight.core.component import CommandError
from flight.spacelink import framing, pus15_storage as pus15, services
from flight.subsystems.link import downlink as downlink_module
from flight.spacelink.pus15_storage import STORE_BY_NAME
from flight.subsystems.link.packet_stores import ACKED, IN_FLIGHT, PENDING, STORE_FILE, PacketStores
from tests.support.link_harness import DICT, THERMAL, THERMAL_HK, UTC0, Ground, LinkHarness, _kinds, _verification

HK, EVENTS = STORE_BY_NAME["hk"].store_id, STORE_BY_NAME["events"].store_id


def _states(stores: PacketStores, store_id: int) -> dict[int, int]:
    stores.commit()
    return dict(stores.db.execute("SELECT seq, state FROM packets WHERE store_id = ?", (store_id,)))


@pytest.fixture
def stores(tmp_path):
    s = PacketStores(tmp_path / STORE_FILE, capacity={"hk": 5})
    yield s
    s.close()


# -- the store ---------------------------------------------------------------------------------
def test_sequence_ids_and_oldest_first(stores):
    seqs = [stores.add("hk", b"p%d" % i, float(i), UTC0 + i) for i in range(3)]
    assert seqs == [1, 2, 3]
    assert [p.packet for p in stores.pending(HK, 10)] == [b"p0", b"p1", b"p2"]
    assert [p.seq for p in stores.pending(HK, 2)] == [1, 2]


def test_a_large_batch_is_written_whole_and_in_order(tmp_path):
    # 150 packets in one transaction: two full multi-row statements and a remainder
    stores = PacketStores(tmp_path / STORE_FILE)
    try:
        packets = [b"p%d" % i for i in range(150)]
        assert stores.add_many("hk", [(p, float(i), UTC0 + i) for i, p in enumerate(packets)]) == list(range(1, 151))
        stores.sent_many("conn", 1, HK, range(1, 76))
        assert [p.packet for p in stores.pending(HK, 200)] == packets[75:]
        assert _states(stores, HK) == {seq: IN_FLIGHT if seq <= 75 else PENDING for seq in range(1, 151)}
    finally:
        stores.close()


def test_a_store_file_from_before_the_bytes_had_their_own_table_opens_with_its_packets(tmp_path):
    old = sqlite3.connect(tmp_path / STORE_FILE)
    old.executescript("""
        CREATE TABLE stores (store_id INTEGER PRIMARY KEY, name TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
            next_seq INTEGER NOT NULL DEFAULT 1, dropped INTEGER NOT NULL DEFAULT 0,
            expired INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0,
            not_stored INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE packets (store_id INTEGER NOT NULL, seq INTEGER NOT NULL, time_s REAL NOT NULL,
            utc_unix_s REAL NOT NULL, state INTEGER NOT NULL DEFAULT 0, packet BLOB NOT NULL,
            PRIMARY KEY (store_id, seq)) WITHOUT ROWID;
        CREATE INDEX packets_state ON packets(store_id, state, seq);
        CREATE INDEX packets_utc ON packets(store_id, utc_unix_s);
        CREATE TABLE results_stored (job_id INTEGER PRIMARY KEY);""")
    old.execute("INSERT INTO stores (store_id, name, next_seq) VALUES (1, 'hk', 4)")
    old.executemany("INSERT INTO packets VALUES (1, ?, ?, ?, ?, ?)",
                    [(1, 1.0, UTC0 + 1, ACKED, b"p1"), (2, 2.0, UTC0 + 2, IN_FLIGHT, b"p2"),
                     (3, 3.0, UTC0 + 3, PENDING, b"p3")])
    old.commit()
    old.close()
    stores = PacketStores(tmp_path / STORE_FILE)
    assert _states(stores, HK) == {1: ACKED, 2: PENDING, 3: PENDING}  # in flight then: sent again
    assert [(p.seq, p.packet) for p in stores.pending(HK, 10)] == [(2, b"p2"), (3, b"p3")]
    assert stores.add("hk", b"p4", 4.0, UTC0 + 4) == 4
    assert stores.delete_up_to([HK], UTC0 + 2) == 2
    assert [p.packet for p in stores.pending(HK, 10)] == [b"p3", b"p4"]
    stores.close()


def test_retention_drops_the_oldest_and_counts_unacknowledged_and_acknowledged_apart(stores):
    for i in range(4):
        stores.add("hk", b"p%d" % i, float(i), UTC0 + i)
    stores.sent("c", 1, HK, 1)
    stores.acknowledged("c", 1)  # seq 1 is in the ground archive
    for i in range(4, 8):
        stores.add("hk", b"p%d" % i, float(i), UTC0 + i)
    assert [p.seq for p in stores.pending(HK, 10)] == [4, 5, 6, 7, 8]  # 5 kept, the newest
    (hk,) = [s for s in stores.status() if s.store_id == HK]
    assert (hk.count, hk.dropped, hk.expired, stores.dropped) == (5, 2, 1, 2)
    assert (hk.oldest_utc_unix_s, hk.newest_utc_unix_s) == (UTC0 + 3, UTC0 + 7)


def test_a_closed_connection_returns_what_it_did_not_acknowledge(stores):
    for i in range(3):
        stores.add("events", b"e%d" % i, float(i), UTC0 + i)
    for tm_index, seq in ((5, 1), (6, 2), (7, 3)):
        stores.sent("a", tm_index, EVENTS, seq)
    stores.sent("b", 1, EVENTS, 3)  # the last one also went to a second ground
    assert stores.pending(EVENTS, 10) == []
    assert stores.acknowledged("a", 5) == 1
    assert stores.closed("a") == 1  # seq 2 goes back; seq 3 is still with "b"
    assert _states(stores, EVENTS) == {1: ACKED, 2: PENDING, 3: IN_FLIGHT}
    assert stores.closed("b") == 1
    assert [p.seq for p in stores.pending(EVENTS, 10)] == [2, 3]


_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 6)),
    st.tuples(st.just("send"), st.sampled_from("ab"), st.integers(1, 6)),
    st.tuples(st.just("ack"), st.sampled_from("ab"), st.integers(0, 8)),
    st.tuples(st.just("close"), st.sampled_from("ab")),
    st.tuples(st.just("commit")),
), max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
@example(ops=[("add", 3), ("send", "a", 1), ("send", "b", 1), ("send", "a", 1), ("ack", "a", 0)])  # a gap b holds
def test_packet_states_follow_sends_acknowledgements_and_closes_whenever_the_store_commits(tmp_path, ops):
    """The states written (state changes batched between commits, runs of them written as
    range updates) are those of each change applied one packet at a time, in order: a
    packet goes in flight when first sent, is done when a connection that had it
    acknowledges it, and goes back to pending when the last connection holding it closes."""
    path = tmp_path / f"{os.urandom(6).hex()}.sqlite"
    stores = PacketStores(path)
    state: dict[int, int] = {}
    holders: dict[int, int] = {}
    sent = {"a": [], "b": []}  # (tm index, seq) per connection, not yet acknowledged
    count = {"a": 0, "b": 0}
    try:
        for op in ops:
            if op[0] == "add":
                for seq in stores.add_many("hk", [(b"p%d" % len(state), 1.0, UTC0)] * op[1]):
                    state[seq], holders[seq] = PENDING, 0
            elif op[0] == "send":
                conn = op[1]
                for p in stores.pending(HK, op[2]):
                    count[conn] += 1
                    stores.sent(conn, count[conn], HK, p.seq)
                    sent[conn].append((count[conn], p.seq))
                    if holders[p.seq] == 0 and state[p.seq] == PENDING:
                        state[p.seq] = IN_FLIGHT
                    holders[p.seq] += 1
            elif op[0] == "ack":
                conn, received = op[1], count[op[1]] - op[2]
                stores.acknowledged(conn, received)
                while sent[conn] and sent[conn][0][0] <= received:
                    _, seq = sent[conn].pop(0)
                    holders[seq] -= 1
                    if state[seq] == IN_FLIGHT:
                        state[seq] = ACKED
            elif op[0] == "close":
                stores.closed(op[1])
                for _, seq in sent[op[1]]:
                    holders[seq] -= 1
                    if holders[seq] == 0 and state[seq] == IN_FLIGHT:
                        state[seq] = PENDING
                sent[op[1]] = []
            else:
                stores.commit()
        assert _states(stores, HK) == state
    finally:
        stores.close()


def test_disabled_storage_stores_nothing_and_counts(stores):
    stores.set_enabled([HK], False)
    assert stores.add("hk", b"x", 0.0, UTC0) is None
    stores.set_enabled([HK], True)
    assert stores.add("hk", b"y", 1.0, UTC0 + 1) == 1
    (hk,) = [s for s in stores.status() if s.store_id == HK]
    assert (hk.count, hk.not_stored, hk.enabled) == (1, 1, True)
    with pytest.raises(KeyError):
        stores.set_enabled([99], False)


def test_delete_up_to_and_retrieve_by_time_range(stores):
    for i in range(4):
        stores.add("events", b"e%d" % i, float(i), UTC0 + i)
        stores.sent("c", i + 1, EVENTS, i + 1)
    stores.acknowledged("c", 4)
    assert stores.delete_up_to([EVENTS], UTC0 + 1) == 2
    assert stores.retrieve(EVENTS, UTC0 + 2, UTC0 + 2) == 1
    assert [p.packet for p in stores.pending(EVENTS, 10)] == [b"e2"]
    (ev,) = [s for s in stores.status() if s.store_id == EVENTS]
    assert (ev.count, ev.deleted, ev.unacknowledged) == (2, 2, 1)


def test_bad_capacity_is_refused(tmp_path):
    with pytest.raises(ValueError, match="capacities"):
        PacketStores(tmp_path / STORE_FILE, capacity={"hk": 0})
    with pytest.raises(ValueError, match="capacities"):
        PacketStores(tmp_path / STORE_FILE, capacity={"telemetry": 10})


def test_committed_packets_survive_a_killed_process_and_in_flight_ones_are_sent_again(tmp_path):
    path = tmp_path / STORE_FILE
    script = textwrap.dedent(f"""
        import os, signal
        from flight.subsystems.link.packet_stores import PacketStores
        s = PacketStores({str(path)!r})
        for i in range(10):
            s.add("hk", b"p%d" % i, float(i), 1e9 + i)
        s.sent("conn", 1, 1, 1)
        s.sent("conn", 2, 1, 2)
        s.acknowledged("conn", 1)
        s.set_enabled([2], False)
        s.commit()
        s.add("hk", b"lost", 10.0, 1e9 + 10)  # not committed when the process dies
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()},
                          timeout=60, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    stores = PacketStores(path)
    try:
        assert _states(stores, HK)[1] == ACKED
        assert [p.seq for p in stores.pending(HK, 100)] == list(range(2, 11))  # seq 2 was in flight
        assert stores.add("hk", b"next", 11.0, 1e9 + 11) == 11  # the uncommitted seq 11 is reused, never a stored one
        assert stores.enabled[EVENTS] is False
    finally:
        stores.close()


# -- the link: store and forward ----------------------------------------------------------------
def _read(packet: bytes) -> PusTm:
    tm = PusTm.unpack(packet, timestamp_len=CdsShortTimestamp.TIMESTAMP_SIZE)  # CRC checked here
    CdsShortTimestamp.unpack(tm.timestamp)
    return tm


def _archiving(ground: Ground) -> Ground:
    """``ground`` after its TC[15,130] with nothing received yet: it archives, so the link
    sends it the stored backlog."""
    ground.send_tc(pus15.storage_tc(pus15.DOWNLINK_ACK, received=0, seq_count=8, source_id=0x1234,
                                  ack_flags=framing.ACK_NONE))
    ground.harness.pump(0.05)
    return ground


def _event(harness: LinkHarness, n: int) -> None:
    harness.publish("ev", "thermal.setpoint_changed",
                    {"severity": "INFO", "message": f"coolant setpoint change {n}", "args": {}})


def _events_received(got) -> list[str]:
    return [services.decode_tm(DICT, p[-1]).message for p in got if p[0] == 5 and p[2] == 3]


def test_a_ground_that_never_acknowledges_gets_real_time_only(ground, harness):
    _event(harness, 0)
    harness.frame()
    assert _events_received(ground.collect(seconds=0.2, keep=(5,))) == ["coolant setpoint change 0"]
    ground.close()
    harness.pump(0.1)
    again = Ground(harness)  # the event was never acknowledged, but this ground did not ask for the backlog
    harness.frame()
    assert _events_received(again.collect(seconds=0.2, keep=(5,))) == []
    assert harness.link.downlink.stores.pending_counts[EVENTS] >= 1  # it waits on board for an archiving ground
    again.close()


def test_out_of_contact_events_wait_on_board_and_come_down_on_the_next_pass_by_priority(harness):
    harness.link.cmd_set_hk_interval(1.0)
    harness.frame(contact=False)
    ground = Ground(harness)
    for n in range(3):
        _event(harness, n)
    harness.publish("tm", "thermal.hk", THERMAL_HK)  # sampled once, out of contact
    harness.frame(contact=False)
    harness.frame(contact=False)
    assert ground.collect(seconds=0.2, keep=(3, 5)) == []
    harness.frame(contact=True)  # real time only: this ground has not asked for the backlog yet
    assert ground.collect(seconds=0.2, keep=(3, 5))[0][2] == DICT.components["link"].component_id
    _archiving(ground)
    harness.frame()
    got = ground.collect(lambda g: (3, 25, THERMAL.component_id) in [p[:3] for p in g], keep=(3, 5))
    assert _events_received(got) == [f"coolant setpoint change {n}" for n in range(3)]
    thermal = [s for s, _, apid, *_ in got if apid == THERMAL.component_id]
    assert thermal == [5, 5, 5, 3]  # the event backlog before the housekeeping backlog
    harness.frame()
    assert harness.hk()["tm_backlog_sent"] >= 3 and harness.hk()["tm_dropped_no_contact"] == 0
    ground.close()


def test_backlog_stays_within_the_pass_data_rate(harness):
    harness.frame(contact=False)
    for n in range(20):
        _event(harness, n)
    harness.frame(contact=True, downlink_rate_bps=0.0)
    ground = _archiving(Ground(harness))
    size = len(services.TmEncoder().event_report(DICT, "thermal.setpoint_changed", "coolant setpoint change 0",
                                            utc_unix_s=UTC0))
    got = []
    for ticks in range(1, 4):  # a rate that carries 4 of these event packets a tick
        harness.frame(contact=True, downlink_rate_bps=4.5 * size * 8)
        got += ground.collect(seconds=0.2, keep=(5,))
        assert len(_events_received(got)) <= 4 * ticks
    assert len(_events_received(got)) >= 6  # the link's own stored events took part of the first tick


def test_acknowledged_packets_are_done_and_unacknowledged_ones_go_to_the_next_connection(harness):
    harness.frame(contact=False)
    for n in range(5):
        _event(harness, n)
    harness.frame(contact=False)
    harness.frame()
    first = _archiving(Ground(harness))
    harness.frame()
    got = first.collect(lambda g: len(_events_received(g)) >= 5, keep=(3, 5))
    received = len(got)
    first.close()  # went away without acknowledging
    harness.pump(0.1)
    second = _archiving(Ground(harness))
    harness.frame()
    got = second.collect(lambda g: len(_events_received(g)) >= 5, keep=(1, 3, 5))
    assert _events_received(got)[:5] == [f"coolant setpoint change {n}" for n in range(5)]
    assert received >= 5
    second.send_tc(pus15.storage_tc(pus15.DOWNLINK_ACK, received=len(got), seq_count=9, source_id=0x1234,
                                  ack_flags=framing.ACK_NONE))
    second.collect(seconds=0.2)
    harness.frame()
    assert harness.hk()["tm_acknowledged"] >= 5 and harness.hk()["tm_requeued"] >= 5
    assert harness.link.downlink.stores.pending(EVENTS, 100) == []
    second.close()


# -- TC[15,x] and the TM they provoke, read with spacepackets ----------------------------------------
def test_storage_subtypes_are_the_ecss_numbers_spacepackets_knows():
    assert pus15.RETRIEVE_BY_TIME_RANGE == StorageSubtype.RETRIEVAL_BY_TIME_RANGE
    assert pus15.DELETE_UP_TO == StorageSubtype.DELETE_UP_TO


def test_store_status_report_parses_with_spacepackets(ground, harness):
    _event(harness, 0)
    harness.frame()
    ground.send_tc(pus15.storage_tc(pus15.REPORT_STORE_STATUS, seq_count=3, source_id=0x1234))
    got = ground.collect(lambda g: (15, 13) in _kinds(g), keep=(1, 15))
    ((_, _, apid, tm, packet),) = [g for g in got if g[:2] == (15, 13)]
    assert apid == framing.TC_APID and tm.pus_tm_sec_header.dest_id == 0x1234
    report = services.decode_tm(DICT, packet)
    assert [e.store_id for e in report.stores] == [1, 2, 3, 4]
    events = report.stores[1]
    assert events.count >= 1 and events.enabled and events.oldest_utc_unix_s >= UTC0
    assert _kinds(got)[-1] == (1, 7)


def test_enable_disable_delete_and_retrieve_by_command(ground, harness, monkeypatch):
    monkeypatch.setattr(downlink_module, "STORE_COMMIT_INTERVAL_S", 1e9)  # only a TC's own commit reaches the disk
    def tc(subtype, **kw):
        ground.send_tc(pus15.storage_tc(subtype, seq_count=4 + subtype, source_id=0x1234, **kw))
        got = ground.collect(lambda g: (1, 7) in _kinds(g) or (1, 2) in _kinds(g))
        return _kinds(got)

    def on_disk() -> dict[int, tuple]:  # what another process (or the link restarted) would find
        with sqlite3.connect(harness.link.config.data_path / STORE_FILE) as db:
            return {i: rest for i, *rest in db.execute("SELECT store_id, enabled, deleted FROM stores")}

    assert tc(pus15.DISABLE_STORAGE, store_ids=[HK]) == [(1, 1), (1, 3), (1, 7)]
    assert harness.link.downlink.stores.enabled[HK] is False
    assert on_disk()[HK][0] == 0, "a store change reported complete is committed"
    assert tc(pus15.ENABLE_STORAGE, store_ids=[HK]) == [(1, 1), (1, 3), (1, 7)]
    assert tc(pus15.DELETE_UP_TO, store_ids=[HK, EVENTS], to_utc_unix_s=UTC0 + 1e6) == [(1, 1), (1, 3), (1, 7)]
    assert harness.link.downlink.stores.counts[EVENTS] <= 1  # only the event reporting the deletion
    assert harness.link.downlink.stores.status()[EVENTS - 1].deleted >= 2
    assert on_disk()[EVENTS][1] == harness.link.downlink.stores.status()[EVENTS - 1].deleted
    assert tc(pus15.RETRIEVE_BY_TIME_RANGE, store_ids=[EVENTS], from_utc_unix_s=UTC0,
              to_utc_unix_s=UTC0 + 10) == [(1, 1), (1, 3), (1, 7)]


@pytest.mark.parametrize("subtype, data, code", [
    (pus15.ENABLE_STORAGE, b"\x01\x63", "VALIDATION_ERROR"),        # no store 99
    (pus15.ENABLE_STORAGE, b"\x00", "FORMAT_ERROR"),                # empty list
    (pus15.RETRIEVE_BY_TIME_RANGE, b"\x01\x00", "FORMAT_ERROR"),    # short
    (pus15.DOWNLINK_ACK, b"\x00" * 9, "FORMAT_ERROR"),              # trailing byte
    (77, b"", "ILLEGAL_SUBTYPE"),
])
def test_malformed_storage_tcs_are_refused_and_change_nothing(ground, harness, subtype, data, code):
    def state():  # the refusal's own event is stored, so the events store is left out
        return [s for s in harness.link.downlink.stores.status() if s.store_id != EVENTS], harness.link.downlink.stores.enabled

    before = state()
    ground.send_tc(framing.build_tc(pus15.STORAGE_SERVICE, subtype, data, seq_count=7, source_id=0x1234))
    (item,) = ground.expect(1)
    assert item[:2] == (1, 2) and services.decode_tm(DICT, item[-1]).code == code
    assert _verification(item).failure_notice is not None
    assert state() == before


def test_retrieve_with_start_after_end_is_a_format_error():
    tc = pus15.storage_tc(pus15.RETRIEVE_BY_TIME_RANGE, store_ids=[2], from_utc_unix_s=UTC0 + 5, to_utc_unix_s=UTC0,
                        seq_count=1, source_id=1)
    with pytest.raises(CommandError, match="start time after end time"):
        pus15.decode_storage_tc(tc.message_subtype, bytes(tc.app_data))


def test_a_job_result_and_its_stored_mark_commit_together(stores):
    seq = stores.add_result(7, b"r7", 1.0, UTC0)
    reader = sqlite3.connect(stores.path)
    try:
        assert reader.execute("SELECT COUNT(*) FROM results_stored").fetchone() == (0,)
        stores.commit()
        assert reader.execute("SELECT COUNT(*) FROM results_stored").fetchone() == (1,)
        assert reader.execute("SELECT seq FROM packets WHERE store_id = ?",
                              (STORE_BY_NAME["results"].store_id,)).fetchall() == [(seq,)]
    finally:
        reader.close()


def _job_result(job_id: int, time_s: float, done_gpu_s: float = 1.0, detail: str = "") -> dict:
    """A ``jobs.result`` data product as the job runner publishes it."""
    from flight.subsystems.jobs.store import JobResult

    return JobResult(job_id, "completed", time_s, 1.0, done_gpu_s, detail).as_product()


def test_job_results_wait_for_a_later_tick_and_one_offered_again_is_stored_once(tmp_path):
    h = LinkHarness(tmp_path)
    results = STORE_BY_NAME["results"].store_id
    try:
        h.link.cmd_set_hk_interval(1.0)
        h.publish("data", "jobs.result", _job_result(7, 3.0))  # a result of tick 3, offered before tick 1
        for _ in range(3):
            h.frame()
        assert h.link.downlink.stores.counts[results] == 0  # not before a tick after its own
        h.frame()
        assert h.link.downlink.stores.counts[results] == 1
        for _ in range(3):  # the runner offers it again until it hears our acknowledgement
            h.publish("data", "jobs.result", _job_result(7, 3.0))
            h.frame()
        assert h.link.downlink.stores.counts[results] == 1
        h.publish("data", "jobs.result", _job_result(8, 5.0))
        h.pump()  # delivered before the next frame, as the bus does in lockstep
        h.frame()
        assert h.link.downlink.stores.counts[results] == 2
        for _ in range(3):
            h.frame()
        assert h.link.downlink.stores.counts[results] == 2 and h.link.downlink.stores.results_stored() == {7, 8}
    finally:
        h.close()


def test_job_results_are_stored_once_and_parse_with_spacepackets(tmp_path):
    h = LinkHarness(tmp_path)
    try:
        h.publish("data", "jobs.result", _job_result(7, 0.5, 100.0, "sha256 ab12"))
        h.pump()
        h.frame()
        ground = _archiving(Ground(h))
        h.frame()
        got = ground.collect(lambda g: any(p[0] == 140 for p in g), keep=(140,))
        ((service, subtype, apid, tm, packet),) = got
        assert (service, subtype, apid) == (140, 1, DICT.components["jobs"].component_id)
        assert _read(packet).message_subtype == 1
        report = services.decode_tm(DICT, packet)
        assert (report.job_id, report.outcome, report.done_gpu_s, report.detail) == (7, "completed", 100.0,
                                                                                      "sha256 ab12")
        assert report.utc_unix_s == pytest.approx(UTC0 + 0.5, abs=1e-3)
        for _ in range(12):
            h.frame()
        assert h.link.downlink.stores.counts[STORE_BY_NAME["results"].store_id] == 1
        ground.close()
    finally:
        h.close()
