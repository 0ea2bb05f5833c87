"""Key management by telecommand (service 141, flight.spacelink.pus141_keys; the onboard key store,
flight.subsystems.link.key_store), through the real link over loopback TCP with the link harness
(the real dispatcher and subsystems): upload wrapped under a key-encryption key, verify, activate,
deactivate, inventory; a revoked key's TCs refused with KEY_NOT_ACTIVE and counted; a rotation
in the middle of a stream of TCs loses none; key states survive a restart of the link on the same
data directory, and a damaged copy of the key store or of the anti-replay state (restored from its
mirror); malformed and hostile key TCs are refused, counted, and change nothing."""

import os
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.core.component import CommandError
from flight.spacelink import framing, keys, pus141_keys as pus141, services
from flight.spacelink.pus141_keys import KeyEntry, KeyState
from flight.spacelink.sdls import ReplayGuard, StationKey, protect
from flight.subsystems.link.key_store import KEYS_FILE, KeyStore
from flight.subsystems.link.uplink import REPLAY_STATE_FILE
from tests.support.link_harness import DICT, Ground, LinkHarness, _kinds, _ping
from tests.support.storage import damage_header

SOURCE = 0x1234
KEEP = (1, 17, pus141.KEY_SERVICE)


# -- the wire format and its cryptography ---------------------------------------------------------
KEK = keys.Kek("master", 1, bytes(range(32)))
NEW = StationKey("local-2", 2, bytes(range(100, 132)))


def test_a_wrapped_key_unwraps_only_under_its_kek_and_unaltered():
    wrapped = pus141.wrap_key(KEK, NEW)
    assert len(wrapped) == pus141.WRAPPED_LEN and NEW.key not in wrapped
    assert pus141.unwrap_key(KEK, wrapped) == (2, NEW.key)
    with pytest.raises(ValueError, match="does not unwrap"):
        pus141.unwrap_key(keys.Kek("other", 2, bytes(32)), wrapped)
    for i in range(len(wrapped)):
        altered = bytearray(wrapped)
        altered[i] ^= 1
        with pytest.raises(ValueError, match="does not unwrap"):
            pus141.unwrap_key(KEK, bytes(altered))


@given(st.lists(st.tuples(st.integers(1, 0xFFFF), st.sampled_from(list(KeyState)),
                          st.from_regex(keys.STATION_NAME, fullmatch=True)), max_size=pus141.MAX_KEYS))
def test_an_inventory_reply_round_trips_and_fits_one_packet(entries):
    data = pus141.inventory_reply_data([KeyEntry(*e) for e in entries])
    assert len(data) <= framing.MAX_TM_SOURCE_DATA
    report = pus141.decode_report(pus141.INVENTORY_REPLY, data, 5.0)
    assert report.keys == tuple(KeyEntry(*e) for e in entries)


@pytest.mark.parametrize("subtype, data, code", [
    (pus141.OTAR, b"", "FORMAT_ERROR"),
    (pus141.OTAR, bytes(2 + 48), "FORMAT_ERROR"),  # no name
    (pus141.OTAR, bytes(2 + 48) + b"\x00", "VALIDATION_ERROR"),  # empty name
    (pus141.OTAR, bytes(2 + 48) + b"\x03a b", "VALIDATION_ERROR"),
    (pus141.OTAR, bytes(2 + 48) + b"\x01a\x00", "FORMAT_ERROR"),  # trailing byte
    (pus141.ACTIVATE, b"\x00", "FORMAT_ERROR"),
    (pus141.ACTIVATE, b"\x00\x00", "VALIDATION_ERROR"),  # SPI 0
    (pus141.DEACTIVATE, b"\x00\x01\x00", "FORMAT_ERROR"),
    (pus141.VERIFY, b"\x00\x01" + bytes(15), "FORMAT_ERROR"),
    (pus141.INVENTORY, b"\x00\x05\x00\x04", "VALIDATION_ERROR"),  # reversed
])
def test_malformed_key_tc_data_is_refused_with_its_code(subtype, data, code):
    parse = {pus141.OTAR: pus141.parse_otar, pus141.VERIFY: pus141.parse_verify,
             pus141.INVENTORY: pus141.parse_inventory}.get(subtype, lambda d: pus141.parse_spi(subtype, d))
    with pytest.raises(CommandError) as exc:
        parse(data)
    assert exc.value.code == code


def test_any_key_tc_data_parses_or_is_refused_with_a_failure_code_and_nothing_else(tmp_path):
    """Hostile data of every key TC, parsed as the link parses it (KEK lookup, unwrap, store
    lookup included): a request or a CommandError, never another exception, and no change."""
    from flight.subsystems.link.key_service import KeyService
    from flight.subsystems.link.uplink import Authenticator

    auth = Authenticator({1: StationKey("local", 1, bytes(32))}, False, {KEK.kek_id: KEK})
    auth.open(tmp_path)
    routes = KeyService(auth, None, None).routes()

    @given(st.sampled_from(sorted(pus141.KEY_TCS)), st.binary(max_size=80))
    def parse(tc_type, data):
        try:
            routes[tc_type].parse(None, data)
        except CommandError as exc:
            assert exc.code in ("FORMAT_ERROR", "VALIDATION_ERROR")

    try:
        parse()
        assert auth.store.inventory(1, 0xFFFF) == [KeyEntry(1, KeyState.ACTIVE, "local")]
    finally:
        auth.close()


def test_the_key_store_keeps_its_states_across_reopening_and_refuses_illegal_transitions(tmp_path):
    first = StationKey("local", 1, bytes(32))
    store = KeyStore(tmp_path / KEYS_FILE)
    assert store.seed({1: first}) and not store.seed({9: StationKey("late", 9, bytes(32))})
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob("link_keys.*")} == {
        name + side: 0o600 for name in (KEYS_FILE, "link_keys.mirror.sqlite") for side in ("", "-wal", "-shm")}
    store.add(NEW)
    with pytest.raises(CommandError, match="already holds a key"):
        store.add(StationKey("again", 2, bytes(32)))
    with pytest.raises(CommandError, match="only active key"):
        store.deactivate(1)
    store.activate(2)
    with pytest.raises(CommandError, match="is ACTIVE, not PRE_ACTIVE"):
        store.activate(2)
    store.deactivate(1)
    with pytest.raises(CommandError, match="DEACTIVATED, not PRE_ACTIVE"):
        store.activate(1)
    with pytest.raises(CommandError, match="no key with SPI 7"):
        store.activate(7)
    store.close()
    again = KeyStore(tmp_path / KEYS_FILE)
    assert again.inventory(1, 0xFFFF) == [KeyEntry(1, KeyState.DEACTIVATED, "local"),
                                          KeyEntry(2, KeyState.ACTIVE, "local-2")]
    assert again.material == {1: first, 2: NEW}
    again.close()


# -- through the link -----------------------------------------------------------------------------
class KeyGround(Ground):
    """A ground that signs each TC with the key it is told to, and sends key management TCs."""

    def __init__(self, harness: LinkHarness) -> None:
        super().__init__(harness)
        self.seq = 100

    def tc(self, subtype: int, data: bytes, key: StationKey, service: int = pus141.KEY_SERVICE):
        self.seq += 1
        tc = protect(framing.build_tc(service, subtype, data, seq_count=self.seq, source_id=SOURCE,
                                      ack_flags=framing.ACK_ALL), key, self.arsn.next())
        self.send(bytes(tc.pack()))
        return tc

    def answers(self, subtype: int, data: bytes, key: StationKey) -> list:
        """Send TC[141,subtype] and return what answers it, up to its final verification report."""
        self.tc(subtype, data, key)
        got = self.collect(lambda g: bool(g) and g[-1][:2] in ((1, 7), (1, 2), (1, 8)), keep=KEEP)
        assert got and got[-1][:2] in ((1, 7), (1, 2)), _kinds(got)
        return [services.decode_tm(DICT, item[-1]) for item in got]

    def ping(self, key: StationKey):
        self.seq += 1
        self.send(bytes(protect(_ping(self.seq), key, self.arsn.next()).pack()))

    def inventory(self, key: StationKey) -> list[KeyEntry]:
        *_, report, final = self.answers(pus141.INVENTORY, pus141.inventory_data(), key)
        assert final.stage == "completed"
        return list(report.keys)


def _final(reports):
    return reports[-1].stage, reports[-1].code


@pytest.fixture
def link(tmp_path):
    keys.create_kek(tmp_path / "keys")
    harness = LinkHarness(tmp_path, contact="always")
    harness.frame()
    ground = KeyGround(harness)
    yield harness, ground
    ground.close()
    harness.close()


def test_upload_verify_activate_then_the_new_key_commands_and_the_revoked_one_is_refused_and_counted(link, tmp_path):
    harness, ground = link
    old = harness.key
    kek = keys.load_kek(tmp_path / "keys")
    new = keys.create_key(tmp_path / "keys", "local-2", spi=2)
    assert _final(ground.answers(pus141.OTAR, pus141.otar_data(kek, new), old)) == ("completed", None)
    assert ground.inventory(old) == [KeyEntry(1, KeyState.ACTIVE, "local"), KeyEntry(2, KeyState.PRE_ACTIVE, "local-2")]

    ground.ping(new)  # pre-active: correctly signed, not yet taken
    (refused,) = [services.decode_tm(DICT, p[-1]) for p in ground.expect(1)]
    assert refused.code == "KEY_NOT_ACTIVE" and "pre-active" in refused.message

    challenge = os.urandom(pus141.CHALLENGE_LEN)
    *_, reply, final = ground.answers(pus141.VERIFY, pus141.verify_data(2, challenge), old)
    assert final.stage == "completed" and reply.spi == 2
    assert reply.response == pus141.verification_response(new.key, 2, challenge)

    assert _final(ground.answers(pus141.ACTIVATE, pus141.spi_data(2), old)) == ("completed", None)
    assert _final(ground.answers(pus141.DEACTIVATE, pus141.spi_data(1), new)) == ("completed", None)
    changes = [(e.data["args"]["spi"], e.data["args"]["state"]) for e in harness.events("key_changed")]
    assert changes == [(2, "PRE_ACTIVE"), (2, "ACTIVE"), (1, "DEACTIVATED")]

    ground.ping(new)
    assert _kinds(ground.expect(1)) == [(17, 2)]
    ground.ping(old)  # revoked: correctly signed, refused, nothing executed
    (refused,) = [services.decode_tm(DICT, p[-1]) for p in ground.expect(1)]
    assert refused.stage == "acceptance failed" and not refused.ok and refused.code == "KEY_NOT_ACTIVE"
    assert "deactivated (revoked)" in refused.message
    harness.frame()
    hk = harness.hk()
    assert hk["tc_key_not_active"] == 2 and hk["tc_auth_failed"] == 2 and hk["keys_active"] == 1
    (event,) = [e for e in harness.events("tc_key_not_active") if "revoked" in e.data["args"]["why"]]
    assert event.data["severity"] == "HIGH"
    forged = StationKey("local", 1, bytes(32))  # SPI 1 with the wrong material: a forgery, not the key
    ground.ping(forged)
    assert services.decode_tm(DICT, ground.expect(1)[0][-1]).code == "AUTHENTICATION_ERROR"


def test_a_rotation_in_the_middle_of_a_stream_of_tcs_loses_none(link, tmp_path):
    """Upload, activate the new key, switch to it, deactivate the old one: every ping of the
    stream, signed with whichever key the ground holds active at the time, is answered."""
    harness, ground = link
    old, kek = harness.key, keys.load_kek(tmp_path / "keys")
    new = keys.create_key(tmp_path / "keys", "local-2", spi=2)
    steps = [(pus141.OTAR, pus141.otar_data(kek, new), old), (pus141.ACTIVATE, pus141.spi_data(2), old),
             (pus141.DEACTIVATE, pus141.spi_data(1), new)]
    pings = replies = 0
    signer = old
    for subtype, data, key in steps:
        for _ in range(4):  # 4 a step: 19 TCs in all stay within a connection's burst of 20
            ground.ping(signer)
            pings += 1
        ground.tc(subtype, data, key)
        got = ground.collect(lambda g: sum(1 for s in g if s[:2] == (17, 2)) >= 4
                             and any(s[:2] in ((1, 7), (1, 2)) for s in g), keep=KEEP)
        replies += sum(1 for s in got if s[:2] == (17, 2))
        assert [s[:2] for s in got if s[0] == 1] == [(1, 1), (1, 3), (1, 7)], _kinds(got)
        if subtype == pus141.ACTIVATE:
            signer = new  # the ground switches once the new key is active on board
    for _ in range(4):
        ground.ping(new)
        pings += 1
    replies += sum(1 for s in ground.expect(4) if s[:2] == (17, 2))
    assert replies == pings == 16
    harness.frame()
    assert harness.hk()["tc_rejected"] == 0


def _rotated(tmp_path) -> tuple[StationKey, StationKey, bytes]:
    """A link on ``tmp_path`` that uploaded and activated SPI 2 and revoked SPI 1, then stopped:
    ``(old key, new key, a ping signed with the new key that it accepted)``."""
    keys.create_kek(tmp_path / "keys")
    harness = LinkHarness(tmp_path, contact="always")
    harness.frame()
    ground = KeyGround(harness)
    old, kek = harness.key, keys.load_kek(tmp_path / "keys")
    new = keys.create_key(tmp_path / "keys", "local-2", spi=2)
    for subtype, data, key in ((pus141.OTAR, pus141.otar_data(kek, new), old),
                               (pus141.ACTIVATE, pus141.spi_data(2), old),
                               (pus141.DEACTIVATE, pus141.spi_data(1), new)):
        assert _final(ground.answers(subtype, data, key)) == ("completed", None)
    accepted = bytes(protect(_ping(900), new, ground.arsn.next()).pack())
    ground.send(accepted)
    assert _kinds(ground.expect(1)) == [(17, 2)]
    ground.close()
    harness.close()
    return old, new, accepted


def _restart_with_damage(tmp_path, *files: str) -> tuple[LinkHarness, KeyGround]:
    """The link started again on ``tmp_path`` (its data directory) after ``files`` of it were
    damaged (their SQLite header overwritten), with a ground connected."""
    for name in files:
        damage_header(tmp_path / name)
    again = LinkHarness(tmp_path, contact="always")
    again.frame()
    return again, KeyGround(again)


def test_key_states_survive_a_restart_of_the_link_on_the_same_data(tmp_path):
    old, new, _ = _rotated(tmp_path)
    keys.create_key(tmp_path / "keys", "late")  # a key file added after the first run is not taken
    again, ground = _restart_with_damage(tmp_path)  # none; the old key's file is still in the keys directory
    ground.ping(old)
    assert services.decode_tm(DICT, ground.expect(1)[0][-1]).code == "KEY_NOT_ACTIVE"
    ground.ping(new)
    assert _kinds(ground.expect(1)) == [(17, 2)]
    assert ground.inventory(new) == [KeyEntry(1, KeyState.DEACTIVATED, "local"), KeyEntry(2, KeyState.ACTIVE, "local-2")]
    assert [(e.data["args"]["station"], e.data["args"]["spi"]) for e in again.events("key_file_not_on_board")] == [("late", 3)]
    assert [e.data["args"]["count"] for e in again.events("authenticated")] == [1]
    ground.close()
    again.close()


def test_a_damaged_key_store_or_replay_state_is_restored_from_its_mirror_so_revoked_stays_revoked(tmp_path):
    old, new, accepted = _rotated(tmp_path)
    again, ground = _restart_with_damage(tmp_path, KEYS_FILE, "link_replay.mirror.sqlite")
    ground.ping(old)
    assert services.decode_tm(DICT, ground.expect(1)[0][-1]).code == "KEY_NOT_ACTIVE"  # still revoked
    ground.send(accepted)
    refused = services.decode_tm(DICT, ground.expect(1)[0][-1])
    assert refused.code == "AUTHENTICATION_ERROR" and "replayed" in refused.message  # still refused
    ground.ping(new)
    assert _kinds(ground.expect(1)) == [(17, 2)]
    assert ground.inventory(new) == [KeyEntry(1, KeyState.DEACTIVATED, "local"), KeyEntry(2, KeyState.ACTIVE, "local-2")]
    restored = {os.path.basename(e.data["args"]["file"]): e.data["args"]["outcome"]
                for e in again.events("store_moved_aside")}
    assert restored == {KEYS_FILE: "restored from its mirror link_keys.mirror.sqlite: nothing was lost",
                        "link_replay.mirror.sqlite": "restored from its mirror link_replay.sqlite: nothing was lost"}
    assert again.events("keys_reprovisioned") == []
    ground.close()
    again.close()


def test_with_both_copies_of_the_key_store_damaged_the_key_files_return_with_a_high_event(tmp_path):
    old, _, _ = _rotated(tmp_path)
    again, ground = _restart_with_damage(tmp_path, KEYS_FILE, "link_keys.mirror.sqlite")
    (event,) = again.events("keys_reprovisioned")
    assert event.data["severity"] == "HIGH" and event.data["args"] == {
        "count": 2, "stations": "local (SPI 1), local-2 (SPI 2)"}
    ground.ping(old)  # as on the mission's first run: the operators must revoke it again
    assert _kinds(ground.expect(1)) == [(17, 2)]
    ground.close()
    again.close()


def test_a_change_its_mirror_cannot_take_is_announced_once_and_the_mirror_rebuilt_at_the_next_start(tmp_path):
    harness = LinkHarness(tmp_path, contact="always")
    harness.frame()
    ground = KeyGround(harness)
    harness.link.auth.replay.store.mirror.execute("DROP TABLE arsn")  # the mirror refuses every write now
    for _ in range(2):
        ground.ping(harness.key)
        assert _kinds(ground.expect(1)) == [(17, 2)]  # accepted: the file holds its number
    harness.frame()
    harness.frame()
    assert [(e.data["severity"], e.data["args"]) for e in harness.events("security_mirror_behind")] == [
        ("MEDIUM", {"count": 2, "total": 2})]
    highest = harness.link.auth.replay.highest(harness.key.spi)
    ground.close()
    harness.close()
    ReplayGuard(tmp_path / REPLAY_STATE_FILE).close()
    mirror = sqlite3.connect(tmp_path / "link_replay.mirror.sqlite")
    assert mirror.execute("SELECT highest FROM arsn").fetchall() == [(str(highest),)]
    mirror.close()


def test_hostile_and_malformed_key_tcs_are_refused_counted_and_change_nothing(link, tmp_path):
    harness, ground = link
    old, kek = harness.key, keys.load_kek(tmp_path / "keys")
    new = keys.create_key(tmp_path / "keys", "local-2", spi=2)
    other_kek = keys.Kek("other", 1, bytes(32))  # id 1 like the satellite's, not its material
    wrapped = bytearray(pus141.otar_data(kek, new))
    wrapped[10] ^= 0x40
    cases = [
        (pus141.OTAR, pus141.otar_data(other_kek, new), "VALIDATION_ERROR", "does not unwrap"),
        (pus141.OTAR, bytes(wrapped), "VALIDATION_ERROR", "does not unwrap"),
        (pus141.OTAR, pus141.otar_data(keys.Kek("x", 9, kek.key), new), "VALIDATION_ERROR", "no key-encryption key 9"),
        (pus141.OTAR, pus141.otar_data(kek, StationKey("dup", 1, bytes(32))), "VALIDATION_ERROR", "already holds"),
        (pus141.OTAR, b"\x00\x01" + bytes(3), "FORMAT_ERROR", ""),
        (pus141.ACTIVATE, pus141.spi_data(1), "VALIDATION_ERROR", "is ACTIVE, not PRE_ACTIVE"),
        (pus141.ACTIVATE, pus141.spi_data(77), "VALIDATION_ERROR", "no key with SPI 77"),
        (pus141.DEACTIVATE, pus141.spi_data(1), "VALIDATION_ERROR", "only active key"),
        (pus141.VERIFY, pus141.verify_data(77, bytes(16)), "VALIDATION_ERROR", "no key with SPI 77"),
        (pus141.INVENTORY, b"\xff\xff\x00\x01", "VALIDATION_ERROR", "reversed"),
        (9, b"", "ILLEGAL_SUBTYPE", "service 141 has no subtype 9"),
    ]
    before = ground.inventory(old)
    for subtype, data, code, why in cases:
        reports = ground.answers(subtype, data, old)
        assert (reports[-1].stage, reports[-1].code) == ("acceptance failed", code), (subtype, reports[-1])
        assert why in reports[-1].message
    # signed with a key that does not authenticate: forged, or pre-active
    ground.tc(pus141.DEACTIVATE, pus141.spi_data(1), StationKey("local", 1, bytes(32)))
    assert services.decode_tm(DICT, ground.expect(1)[0][-1]).code == "AUTHENTICATION_ERROR"
    ground.send(bytes(framing.build_tc(pus141.KEY_SERVICE, pus141.ACTIVATE, pus141.spi_data(1), seq_count=1,
                                       source_id=SOURCE).pack()))  # unsigned
    assert services.decode_tm(DICT, ground.expect(1)[0][-1]).code == "AUTHENTICATION_ERROR"
    assert ground.inventory(old) == before
    harness.frame()
    assert harness.hk()["tc_rejected"] == len(cases) + 2
    assert harness.hk()["tc_auth_failed"] == 2 and not harness.events("key_changed")
    db = sqlite3.connect(tmp_path / KEYS_FILE)
    assert db.execute("SELECT spi, state FROM keys").fetchall() == [(1, KeyState.ACTIVE)]
    db.close()


def test_a_scheduled_tc_signed_with_a_key_revoked_before_its_release_is_refused(link, tmp_path):
    from flight.spacelink import pus11_scheduling as pus11

    harness, ground = link
    old, kek = harness.key, keys.load_kek(tmp_path / "keys")
    new = keys.create_key(tmp_path / "keys", "local-2", spi=2)
    inner = protect(_ping(7, framing.ACK_ALL), old, ground.arsn.next())
    release = harness.link.state.utc_now() + 3
    ground.tc(pus11.SCHEDULE_INSERT, pus11.insert_data([(release, bytes(inner.pack()))]), old,
              service=pus11.SCHEDULE_SERVICE)
    assert [s[:2] for s in ground.expect(3)] == [(1, 1), (1, 3), (1, 7)]
    for subtype, data, key in ((pus141.OTAR, pus141.otar_data(kek, new), old),
                               (pus141.ACTIVATE, pus141.spi_data(2), old),
                               (pus141.DEACTIVATE, pus141.spi_data(1), new)):
        assert _final(ground.answers(subtype, data, key)) == ("completed", None)
    for _ in range(4):
        harness.frame()
    (released,) = harness.events("tc_released")
    assert released.data["args"]["request_id"] == framing.request_id(inner)
    assert [e.data["args"]["why"] for e in harness.events("tc_key_not_active")] == [
        "signed with the key of SPI 1 (local), which is deactivated (revoked): it may be compromised"]


# -- the ground CLI, as an operator types it --------------------------------------------------------
@pytest.mark.parametrize("sub", [["keys"], ["keys", "upload"], ["keys", "verify"], ["keys", "activate"],
                                 ["keys", "deactivate"], ["keys", "list"]])
def test_help_explains_each_keys_command_with_an_example(capsys, sub):
    from tests.support.ground_cli import run

    with pytest.raises(SystemExit) as exit_:
        run(*sub, "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: flight ground " + " ".join(sub) in out and "example" in out


@pytest.fixture
def served_with_kek(tmp_path, ground_keys):
    from tests.support.link_harness import ServedLink

    keys.create_kek(ground_keys)  # as `flight run` does when the key directory has none
    served = ServedLink(tmp_path)
    yield served
    served.close()


def test_a_rotation_by_the_ground_cli_as_the_readme_shows_it(served_with_kek, capsys):
    from tests.support.ground_cli import run

    link = f"--link={served_with_kek.endpoint}"
    assert run("init", "--station", "local-2", command="keys") == 0
    assert run("keys", "upload", link, "local-2") == 0
    assert "completed" in capsys.readouterr().out
    assert run("keys", "verify", link, "2") == 0
    assert "verified: the satellite holds the key of SPI 2 (local-2)" in capsys.readouterr().out
    assert run("keys", "activate", link, "2") == 0
    assert run("keys", "deactivate", link, "1", "--station", "local-2") == 0
    capsys.readouterr()
    assert run("keys", "list", link, "--station", "local-2") == 0
    listed = capsys.readouterr().out
    assert "DEACTIVATED" in listed and "ACTIVE" in listed and "local-2" in listed
    assert run("ping", link) == 1  # signed with the revoked key of station 'local'
    assert "KEY_NOT_ACTIVE" in capsys.readouterr().out
    assert run("ping", link, "--station", "local-2") == 0
    assert run("keys", "deactivate", link, "2", "--station", "local-2") == 1  # the last active key
    assert "only active key" in capsys.readouterr().out
    assert run("keys", "verify", link, "1", "--station", "local-2") == 1
    assert "deactivated" in capsys.readouterr().out
