"""Authenticated telemetry through the whole stack: a real ``flight run`` seals every TM with
the telemetry key it created beside the station key; a ground with that key sees only
verified TM (answers, housekeeping, events) and archives nothing as forged; a ground holding
a wrong telemetry key is given nothing at all, every packet counted as forged with its APID;
and the operator's ``flight ground`` tools verify by default."""

import os

from flight.core.dictionary import full_dictionary
from flight.ground.archive import Archive
from flight.ground.client import LinkClient
from flight.spacelink import keys, tm_sdls
from flight.spacelink.pus3_housekeeping import HkReport
from flight.spacelink.pus5_events import EventReport
from flight.spacelink.sdls import StationKey
from tests.support.predicates import PACED, FlightRun

DICT = full_dictionary()


def test_the_ground_sees_only_verified_telemetry_from_a_real_run(tmp_path):
    with FlightRun(tmp_path, *PACED, "--contact", "always", "--duration", "3000") as run:
        run.await_telemetry("link.contact", True, timeout_s=60)
        tm_keys = run.tm_keys
        assert list(tm_keys) == [1] and tm_keys[1].key != keys.load_key(run.keys).key, "a key of its own"
        with Archive(tmp_path / "archive.sqlite", DICT, tm_keys) as archive:
            with LinkClient(run.link, DICT, key=keys.load_key(run.keys), tm_keys=tm_keys) as ground:
                ground.keep_in(archive)
                stages = [r.stage for r in ground.command("thermal.set_setpoint", {"setpoint_c": 31.0}, 10)]
                assert stages == ["accepted", "started", "completed"]
                seen: set[str] = set()
                while not {"hk", "event"} <= seen:
                    report = ground.receive(20)
                    assert report is not None, "housekeeping and events keep coming"
                    seen.add("hk" if isinstance(report, HkReport) else "event" if isinstance(report, EventReport)
                               else "other")
                ground.archive = None  # closed by the with-block below, not by the client
                assert ground.tm_received > 5 and ground.tm_forged == 0 and ground.undecodable == 0
            archive.commit()
            assert archive.counters["forged"] == 0 and archive.counters["received"] == ground.tm_received
            assert archive.events(min_severity="INFO"), "events archived, decoded from verified packets"

        intruder = {1: StationKey("telemetry", 1, os.urandom(32))}  # the right SPI, not the satellite's key
        with LinkClient(run.link, DICT, key=None, tm_keys=intruder) as wrong:
            flagged: list[str] = []
            wrong.on_forged = lambda _packet, why: flagged.append(why)
            assert wrong.receive(5) is None, "nothing delivered that does not verify"
            assert wrong.tm_forged == wrong.tm_received > 0
            assert all(why.startswith("APID ") and "MAC mismatch for SPI 1" in why for why in flagged)

        ping = run.ground("ping", "--link", run.link, "--timeout", "5")
        assert ping.returncode == 0 and "WARNING" not in ping.stderr, ping.stdout + ping.stderr
        assert (run.data / tm_sdls.SN_FILE).exists()
    assert "created the telemetry key (SPI 1)" in run.output
