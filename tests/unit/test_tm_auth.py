"""Authenticated telemetry (flight/spacelink/tm_sdls.py): every TM sealed on board verifies on
the ground and strips to the plain PUS-C packet a lab-mode satellite sends; forged (wrong key,
wrong MAC, unsealed) and altered (any one bit) TM is refused; repeats and late (played back)
TM are told apart; the onboard sequence numbers never repeat across restarts; and the ground
client, the archive and the gateway count, flag and keep apart what fails, with its APID and
sequence count, while passing on what is genuine."""

import os
import socket
import threading

import pytest
from fastcrc import crc16
from spacepackets.ecss import PusTm

from flight.ground.archive import Archive, listen
from flight.ground.client import LinkClient
from flight.ground.gateway import Gateway
from flight.spacelink import framing, pus17_test as pus17, services, tm_sdls
from flight.spacelink.sdls import StationKey
from tests.support.link_harness import DICT, THERMAL, THERMAL_HK, UTC0
from tests.support.predicates import wait_until

KEY = StationKey("telemetry", 1, bytes(range(32)))
OTHER = StationKey("telemetry", 1, os.urandom(32))
"""A key with the right SPI that is not the satellite's: what a forger without the key has."""


@pytest.fixture
def sealer(tmp_path):
    s = tm_sdls.TmSealer(KEY)
    s.open(tmp_path, clock_ns=lambda: 0)  # numbers from 1, as the tests read them
    yield s
    s.close()


def _hk(framer: framing.TmFramer, t: float = 1.0) -> bytes:
    return services.TmEncoder.hk_report(framer, THERMAL, THERMAL_HK, utc_unix_s=UTC0 + t)


def _forged(packet: bytes, key: StationKey = OTHER) -> bytes:
    """``packet`` re-sealed by someone holding ``key`` (headers, SN and content kept)."""
    verified = tm_sdls.TmVerifier({KEY.spi: KEY}).verify(packet)
    return tm_sdls.seal_packet(tm_sdls.strip(packet), key, verified.sn)


# -- the seal ----------------------------------------------------------------------------------
def test_a_sealed_tm_verifies_and_strips_to_the_plain_packet_any_pus_tool_reads(sealer):
    sealed, plain = _hk(framing.TmFramer(sealer)), _hk(framing.TmFramer())
    assert len(sealed) - len(plain) == tm_sdls.SECURITY_OVERHEAD == 26
    assert tm_sdls.TmVerifier({1: KEY}).verify(sealed) == tm_sdls.Verified(1, 1)
    assert tm_sdls.strip(sealed) == plain
    tm = PusTm.unpack(sealed, timestamp_len=framing.TIMESTAMP_LEN)  # a PUS tool parses the sealed one too (CRC)
    assert (tm.apid, tm.service, tm.message_subtype) == (THERMAL.component_id, 3, 25)
    assert bytes(tm.source_data[10:-16]) == bytes(PusTm.unpack(plain, timestamp_len=7).source_data)
    assert tm_sdls.seal_packet(plain, KEY, 1) == sealed, "the ICD's recipe builds the same bytes"


def test_forged_tm_is_refused_wrong_key_unknown_spi_or_no_seal_at_all(sealer):
    sealed = _hk(framing.TmFramer(sealer))
    verifier = tm_sdls.TmVerifier({1: KEY})
    with pytest.raises(tm_sdls.TmAuthenticationError, match="MAC mismatch"):
        verifier.verify(_forged(sealed))
    with pytest.raises(tm_sdls.TmAuthenticationError, match="no telemetry key for SPI 9"):
        verifier.verify(_forged(sealed, StationKey("telemetry", 9, KEY.key)))
    with pytest.raises(tm_sdls.TmAuthenticationError):
        verifier.verify(_hk(framing.TmFramer()))  # a lab-mode (unsealed) packet is not genuine
    with pytest.raises(tm_sdls.TmAuthenticationError, match="too short"):
        verifier.verify(sealed[:20])


def test_one_bit_flipped_anywhere_in_a_sealed_tm_is_refused(sealer):
    sealed = pus17.ping_reply(framing.TmFramer(sealer), pus17.ping_tc(seq_count=1, source_id=7), utc_unix_s=UTC0)
    verifier = tm_sdls.TmVerifier({1: KEY})
    for bit in range(len(sealed) * 8):
        altered = bytearray(sealed)
        altered[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(tm_sdls.TmAuthenticationError):
            verifier.verify(bytes(altered))
        if bit < (len(sealed) - 2) * 8:  # the CRC made good again, as a careful forger would
            altered[-2:] = crc16.ibm_3740(bytes(altered[:-2])).to_bytes(2, "big")
            with pytest.raises(tm_sdls.TmAuthenticationError):
                verifier.verify(bytes(altered))


def test_the_ground_tells_new_late_and_repeated_sequence_numbers_apart():
    window = tm_sdls.SequenceWindow()
    assert [window.admit(1, sn) for sn in (5, 6, 7)] == ["new"] * 3
    assert window.admit(1, 3) == "late"  # played back from a packet store
    assert window.admit(1, 6) == "repeat" and window.admit(1, 3) == "repeat"  # re-sent, or replayed
    assert window.admit(1, 4) == "late" and window.admit(1, 8) == "new" and window.admit(1, 4) == "repeat"
    assert window.admit(2, 4) == "new", "per SPI"
    assert window.highest(1) == 8 and window._ranges[1] == [[3, 8]], "consecutive numbers merge into one range"


def test_onboard_sequence_numbers_never_repeat_across_restarts_and_crashes(tmp_path, monkeypatch):
    monkeypatch.setattr(tm_sdls, "SN_BLOCK", 64)  # blocks small enough to use one up here
    clock = lambda: 0  # noqa: E731  the numbers of a new key start right above it
    first = tm_sdls.SnCounter(tmp_path / tm_sdls.SN_FILE, clock)
    a = [first.next(1) for _ in range(3)]
    first.close()
    second = tm_sdls.SnCounter(tmp_path / tm_sdls.SN_FILE, clock)  # a restart
    b = [second.next(1) for _ in range(tm_sdls.SN_BLOCK + 1)]  # into a second block, then a crash: no close
    third = tm_sdls.SnCounter(tmp_path / tm_sdls.SN_FILE, clock)
    c = third.next(1)
    third.close()
    second.close()
    assert a == [1, 2, 3] and b[0] == tm_sdls.SN_BLOCK + 1
    assert c > b[-1] and len(set(a + b + [c])) == len(a + b) + 1


def test_a_reservation_file_lost_to_damage_does_not_bring_old_sequence_numbers_back(tmp_path):
    """A damaged store is moved aside and started afresh (flight.core.storage): the host
    clock in ns, where a key with no reservation starts, is past every number handed out."""
    path = tmp_path / tm_sdls.SN_FILE
    before = tm_sdls.SnCounter(path)
    used = [before.next(1) for _ in range(5)]
    before.close()
    for leftover in tmp_path.glob(tm_sdls.SN_FILE + "*"):
        leftover.unlink()
    after = tm_sdls.SnCounter(path)
    assert after.next(1) > max(used)
    after.close()


def test_a_tm_that_cannot_be_numbered_is_not_built_and_takes_no_count(tmp_path):
    sealer = tm_sdls.TmSealer(KEY)
    framer = framing.TmFramer(sealer)
    with pytest.raises(RuntimeError):
        _hk(framer)  # never opened
    sealer.open(tmp_path)
    sealer._counter._db.execute("PRAGMA query_only = ON")  # storage refuses the next reservation
    with pytest.raises(tm_sdls.SealError):
        _hk(framer)
    sealer.close()
    sealer.open(tmp_path)
    assert PusTm.unpack(tm_sdls.strip(_hk(framer)), 7).seq_count == 0, "the failed packets took no count"
    sealer.close()


# -- the ground ----------------------------------------------------------------------------------
class FakeLink:
    """A TCP server on loopback that plays the satellite's downlink: it sends the bytes given
    to :meth:`send` to the one ground that connects."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.conn: socket.socket | None = None
        self._accepted = threading.Thread(target=self._accept, daemon=True)
        self._accepted.start()

    def _accept(self) -> None:
        self.conn, _ = self.server.accept()

    def send(self, *packets: bytes) -> None:
        self._accepted.join(5)
        self.conn.sendall(b"".join(packets))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def fake_link():
    link = FakeLink()
    yield link
    link.close()


def _downlink(sealer) -> dict[str, bytes]:
    """A genuine ping reply and housekeeping report, then forged, altered, repeated and late copies."""
    framer = framing.TmFramer(sealer)
    early = _hk(framer, 0.5)  # built first, held on board: played back after the others
    ping = pus17.ping_reply(framer, pus17.ping_tc(seq_count=1, source_id=7), utc_unix_s=UTC0 + 1)
    hk = _hk(framer, 1.0)
    altered = bytearray(_hk(framer, 2.0))
    altered[30] ^= 0x04  # one bit of a housekeeping value
    return {"ping": ping, "hk": hk, "forged": _forged(_hk(framer, 3.0)), "altered": bytes(altered),
            "repeat": hk, "late": early}


def test_the_ground_client_delivers_only_genuine_tm_and_flags_forged_and_altered(sealer, fake_link, tmp_path):
    packets = _downlink(sealer)
    flagged: list[str] = []
    with LinkClient(fake_link.endpoint, DICT, key=None, tm_keys={1: KEY}) as client:
        archive = Archive(tmp_path / "archive.sqlite", DICT, {1: KEY})
        client.keep_in(archive)
        archived = client.on_forged
        client.on_forged = lambda packet, why: (archived(packet, why), flagged.append(why))
        fake_link.send(*packets.values())
        got = []
        while (report := client.receive(2)) is not None:
            got.append(report)
        assert [type(r).__name__ for r in got] == ["PingReply", "HkReport", "HkReport"], "ping, hk, then the late one"
        assert got[2].utc_unix_s == UTC0 + 0.5
        assert (client.tm_received, client.tm_forged, client.tm_repeated, client.tm_late) == (6, 2, 1, 1)
        assert len(flagged) == 2 and all(f"APID {THERMAL.component_id}, seq count" in why for why in flagged)
        assert "MAC mismatch" in flagged[0] and "SN 5" in flagged[0]
        archive.commit()
        assert archive.counters["forged"] == 2 and archive.counters["duplicates"] == 1
        kept = archive.packets()
        assert len(kept) == 3 and tm_sdls.strip(packets["hk"]) in [p for *_, p in kept], "kept as plain PUS"
        assert [why for _, apid, _, why in archive.forged()] == flagged
        assert {p for (p,) in archive.db.execute("SELECT packet FROM forged")} == {packets["forged"],
                                                                                  packets["altered"]}
        archive.close()


def test_the_archive_checks_for_itself_whoever_hands_it_the_packet(sealer, tmp_path):
    packets = _downlink(sealer)
    with Archive(tmp_path / "archive.sqlite", DICT, {1: KEY}) as archive:
        assert archive.add(packets["hk"]) and not archive.add(packets["forged"]) and not archive.add(packets["altered"])
        assert not archive.add(_hk(framing.TmFramer())), "an unsealed packet is not genuine either"
        archive.commit()
        assert archive.counters["forged"] == 3 and len(archive.packets()) == 1
        assert archive.db.execute("SELECT COUNT(*) FROM forged").fetchone()[0] == 3


def test_the_listener_warns_with_apid_and_sequence_count_and_archives_forged_tm_apart(sealer, fake_link, tmp_path):
    packets = _downlink(sealer)
    ticks = iter(range(30))
    with Archive(tmp_path / "archive.sqlite", DICT, {1: KEY}) as archive:
        def stop() -> bool:
            n = next(ticks, None)
            if n == 1:
                fake_link.send(*packets.values())
            return n is None

        lines = list(listen(lambda: LinkClient(fake_link.endpoint, DICT, key=None, tm_keys={1: KEY}), archive,
                            stop=stop))
        warnings = [line for line in lines if line.startswith("WARNING: forged or altered TM")]
        assert len(warnings) == 2 and all(f"APID {THERMAL.component_id}, seq count " in w for w in warnings)
        assert archive.counters["forged"] == 2 and len(archive.packets()) == 3


def test_the_gateway_relays_only_verified_tm_stripped_to_plain_pus(sealer, fake_link, tmp_path):
    packets = _downlink(sealer)
    gateway = Gateway("127.0.0.1:0", fake_link.endpoint, None, DICT, tm_keys={1: KEY})
    lines: list[str] = []
    try:
        wait_until(lambda: bool(lines.extend(gateway.step(0.02))) or gateway.link is not None, "the link", 5)
        tool = socket.create_connection(("127.0.0.1", int(gateway.endpoint.rpartition(":")[2])))
        wait_until(lambda: bool(lines.extend(gateway.step(0.02))) or gateway.clients, "the tool connected", 5)
        fake_link.send(*packets.values())
        wait_until(lambda: bool(lines.extend(gateway.step(0.02)))
                   or gateway.counters.tm_relayed + gateway.counters.tm_forged == 6, "the downlink relayed", 5)
        for _ in range(5):
            lines += gateway.step(0.02)
        tool.settimeout(2)
        received = b""
        expected = b"".join(tm_sdls.strip(packets[k]) for k in ("ping", "hk", "repeat", "late"))
        while len(received) < len(expected):
            received += tool.recv(65536)
        assert received == expected, "genuine TM only, as plain PUS-C"
        assert gateway.counters.tm_forged == 2 and "TM forged or altered 2" in gateway.status()
        assert sum(line.startswith("WARNING: forged or altered TM") for line in lines) == 2
        tool.close()
    finally:
        gateway.close()
