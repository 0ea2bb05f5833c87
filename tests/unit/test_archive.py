"""The ground archive (flight.ground.archive): a packet received twice is kept once, events
filter by severity and time, commands keep their verification stages, and the listener
archives a pass exactly once across a broken connection (link manager on loopback,
tests.support.link_harness)."""

import hashlib

import pytest

from flight.spacelink import framing, pus17_test as pus17, pus8_functions as pus8, services, tm_sdls
from flight.ground.archive import Archive, listen
from flight.ground.client import LinkClient
from flight.subsystems.link.packet_stores import ACKED, STORE_BY_NAME
from tests.support.link_harness import DICT, THERMAL, THERMAL_HK, UTC0, LinkHarness


@pytest.fixture
def archive(ground_archive):
    a = Archive(ground_archive, DICT)
    yield a
    a.close()


def _hk_packet(encoder: services.TmEncoder, t: float) -> bytes:
    return encoder.hk_report(THERMAL, THERMAL_HK, utc_unix_s=UTC0 + t)


def _event_packet(encoder: services.TmEncoder, name: str, message: str, t: float) -> bytes:
    return encoder.event_report(DICT, name, message, utc_unix_s=UTC0 + t)


def _keep(archive: Archive, packet: bytes) -> bool:
    return archive.add(packet, services.decode_tm(DICT, packet))


def test_a_packet_received_twice_is_kept_once_and_counted(archive):
    enc = services.TmEncoder()
    first, second = _hk_packet(enc, 1.0), _hk_packet(enc, 1.0)  # same sample, a new sequence count
    assert _keep(archive, first) and not _keep(archive, first) and _keep(archive, second)
    archive.commit()
    assert len(archive.packets(store="hk")) == 2
    assert (archive.counters["received"], archive.counters["duplicates"]) == (3, 1)
    (row,) = archive.db.execute("SELECT channel_values FROM hk WHERE packet_id = 1").fetchone()
    assert '"setpoint_c": 1.25' in row


def test_raw_housekeeping_batches_keep_every_packet_once_in_order(archive):
    # 150 packets and 20 repeats, past one multi-row statement (flight.core.storage.insert_rows)
    enc = services.TmEncoder()
    packets = [_hk_packet(enc, float(t)) for t in range(150)]
    for packet in packets + packets[:20]:
        assert archive.add(packet)  # raw: duplicates are found when the batch is written
    archive.commit()
    assert [p for (p,) in archive.db.execute("SELECT packet FROM packets ORDER BY id")] == packets
    assert (archive.counters["received"], archive.counters["duplicates"]) == (170, 20)


def test_undecodable_packets_are_kept_and_counted(archive):
    assert archive.add(b"\x08\x04\xc0\x00\x00\x01\xff\xff", None)
    assert archive.counters["undecodable"] == 1 and len(archive.packets()) == 0  # no time: not in a range


def test_events_by_severity_and_time(archive):
    enc = services.TmEncoder()
    _keep(archive, _event_packet(enc, "thermal.setpoint_changed", "info one", 1.0))
    _keep(archive, _event_packet(enc, "link.tc_auth_failed", "medium one", 2.0))
    _keep(archive, _event_packet(enc, "link.lab_mode", "high one", 3.0))
    assert [m for *_, m in archive.events()] == ["info one", "medium one", "high one"]
    assert [m for *_, m in archive.events(min_severity="MEDIUM")] == ["medium one", "high one"]
    assert [m for *_, m in archive.events(UTC0 + 1.5, UTC0 + 2.5)] == ["medium one"]
    with pytest.raises(ValueError, match="severity"):
        archive.events(min_severity="FATAL")


def test_history_joins_each_command_with_its_stages(archive):
    tc = pus8.function_tc(DICT, "thermal.set_setpoint", {"setpoint_c": 30.0}, seq_count=5, source_id=77)
    archive.command_sent(tc, framing.request_id(tc))
    enc = services.TmEncoder()
    for subtype in (1, 3, 7):
        _keep(archive, enc.verification(subtype, tc, utc_unix_s=UTC0 + subtype))
    other = pus17.ping_tc(seq_count=6, source_id=77)
    archive.command_sent(other, framing.request_id(other))
    first, second = archive.history()
    assert (first.name, first.args) == ("thermal.set_setpoint", {"setpoint_c": 30.0})
    assert [stage for _, stage, _, _ in first.stages] == ["accepted", "started", "completed"]
    assert (second.name, second.stages) == ("TC[17,1]", [])


def test_listener_archives_a_pass_exactly_once_across_a_broken_connection(tmp_path, ground_archive):
    h = LinkHarness(tmp_path)
    archive = Archive(ground_archive, DICT, h.tm_keys)
    try:
        h.link.cmd_set_hk_interval(1.0)
        h.frame(contact=False)
        for n in range(50):  # a backlog stored out of contact
            h.publish("ev", "thermal.setpoint_changed",
                      {"severity": "INFO", "message": f"coolant setpoint change {n}", "args": {}})
            h.publish("tm", "thermal.hk", THERMAL_HK, t=1.0 + n / 100)
            h.frame(contact=False)
        plan = iter(["contact"] * 3 + ["break"] + ["contact"] * 40)

        def stop() -> bool:  # the link's side of the world, run between the listener's receives
            step = next(plan, None)
            if step is None:
                return True
            if step == "break":
                for identity in list(h.link.connections.table):
                    h.link.connections.server.close(identity)  # the connection breaks mid-pass
            h.frame(contact=True)
            return False

        lines = list(listen(lambda: LinkClient(h.link.endpoint, DICT, key=h.key, tm_keys=h.tm_keys), archive, stop=stop))
        assert lines[0].startswith("connected") and any("went away" in line for line in lines)
        h.pump(0.2)  # the final acknowledgement
        h.link.downlink.stores.commit()
        stored = h.link.downlink.stores.db.execute("SELECT store_id, seq, state, packet FROM packets JOIN packet_bytes "
                                          "ON packet_bytes.key = (store_id << 40) | seq").fetchall()
        waiting = [services.decode_tm(DICT, tm_sdls.strip(p)) for *_, state, p in stored if state != ACKED]
        assert [r.name for r in waiting] == ["link.client_disconnected"]  # the listener's own goodbye, for next time
        # kept verified and stripped of the security fields: as plain PUS
        digests = {hashlib.sha256(tm_sdls.strip(p)).digest() for *_, state, p in stored if state == ACKED}
        archived = {d for (d,) in archive.db.execute("SELECT digest FROM packets")}
        assert digests <= archived  # every stored packet is in the archive, and only once (digest is UNIQUE)
        events = archive.events(min_severity="INFO")
        assert sorted(m for _, _, name, m in events if name == "thermal.setpoint_changed") == sorted(
            f"coolant setpoint change {n}" for n in range(50))
        assert h.link.downlink.stores.counts[STORE_BY_NAME["events"].store_id] >= 50
        assert archive.counters["forged"] == 0
    finally:
        archive.close()
        h.close()
