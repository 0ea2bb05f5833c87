"""The ground gateway against the served link on loopback (a plain TC signed and answered, a
garbage or oversize client cut off while another goes on, refusals of its own while the
satellite is not heard or the data is too large to sign, reconnecting when the satellite
comes back, the stored backlog relayed only with playback, the warning for a non-loopback
listen), and the operator habits of the ground
CLI: connection options before the verb, ``watch`` showing UTC as a date and time and
limits as marks."""

import io
import os
import socket
import threading
import time

import pytest
from rich.console import Console
from spacepackets.ccsds import SpacePacketHeader
from spacepackets.ecss import CCSDS_HEADER_LEN, PusTc, PusTm

from flight.ground.archive import Archive
from flight.ground.cli.gateway import exposure_warning
from flight.ground.cli.watch import WatchView
from flight.ground.client import LinkClient
from flight.ground.gateway import GATEWAY_APID, PROBE_TIMEOUT_S, Gateway
from flight.spacelink.framing import MAX_TC_APP_DATA, TC_APID, TIMESTAMP_LEN
from flight.spacelink.pus17_test import ping_tc
from flight.spacelink.pus15_storage import STORAGE_SERVICE, STORE_BY_NAME
from flight.spacelink.pus1_verification import FAILURE_CODE_NUMBERS
from flight.spacelink.pus3_housekeeping import HkReport
from flight.spacelink.pus5_events import EventReport
from tests.support.ground_cli import run
from tests.support.link_harness import DICT, UTC0, ServedLink
from tests.support.predicates import free_port, wait_until

pytestmark = pytest.mark.usefixtures("ground_keys")


class Running:
    """A gateway to ``link`` signing with ``key`` and verifying TM with ``tm_keys``, stepped
    in its own thread (which opens the archive at ``archive``, if given, as SQLite wants)
    until :meth:`close`."""

    def __init__(self, link: str, key, archive=None, tm_keys=None, playback: bool = False) -> None:
        self.tm_keys = tm_keys
        self.gateway = Gateway("127.0.0.1:0", link, key, DICT, tm_keys=tm_keys, playback=playback)
        self.archive: Archive | None = None
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(archive,), name="gateway", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.gateway.endpoint.rpartition(":")[2])

    def _loop(self, archive_path) -> None:
        if archive_path is not None:
            self.archive = Archive(archive_path, DICT, self.tm_keys)
            self.gateway.archive = self.archive
        while not self._stop.is_set():
            self.lines += self.gateway.step(0.02)
        self.gateway.close()
        if self.archive is not None:
            self.archive.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def gateway(served, tmp_path):
    running = Running(served.endpoint, served.harness.key, tmp_path / "gateway-archive.sqlite",
                      served.harness.tm_keys)
    wait_until(running.gateway.heard, "the gateway to hear the satellite", 10)
    yield running
    running.close()


def test_a_plain_tc_through_the_gateway_is_signed_and_answered(gateway, served):
    with LinkClient(gateway.gateway.endpoint, DICT, key=None) as client:  # no key: the gateway signs
        assert client.ping(5) < 5
        stages = [r.stage for r in client.command("thermal.set_setpoint", {"setpoint_c": 30.0}, 5)]
    assert stages == ["accepted", "started", "completed"]
    assert served.harness.link.counters.tc_auth_failed == 0
    counters = gateway.gateway.counters
    assert counters.tc_forwarded == 2 and counters.tc_refused == 0 and counters.tm_relayed > 0
    gateway.close()
    assert gateway.archive.counters["received"] == counters.tm_relayed, "every TM relayed is archived"
    with Archive(gateway.archive.path, DICT) as archive:
        assert [h.name for h in archive.history()] == ["TC[17,1]", "thermal.set_setpoint"], "TCs kept as sent"


def test_a_client_sending_garbage_is_cut_off_while_another_goes_on(gateway):
    with LinkClient(gateway.gateway.endpoint, DICT, key=None) as good, \
            socket.create_connection(("127.0.0.1", gateway.port)) as bad:
        bad.sendall(os.urandom(2000))
        bad.settimeout(5)
        while bad.recv(65536):  # TM relayed until the gateway closes it
            pass
        assert good.ping(5) < 5
    assert gateway.gateway.counters.clients_garbage == 1 and gateway.gateway.counters.garbage_bytes > 0
    assert any("not a PUS-C TC" in line for line in gateway.lines)


def read_tm(sock: socket.socket, timeout_s: float, wanted=lambda tm: True) -> PusTm:
    """The first TM for which ``wanted(tm)`` from a plain CCSDS stream (packets before it are skipped)."""
    sock.settimeout(timeout_s)
    buf = b""
    while True:
        while len(buf) < CCSDS_HEADER_LEN or len(buf) < SpacePacketHeader.unpack(buf[:CCSDS_HEADER_LEN]).packet_len:
            chunk = sock.recv(4096)
            assert chunk, "the gateway closed the connection"
            buf += chunk
        length = SpacePacketHeader.unpack(buf[:CCSDS_HEADER_LEN]).packet_len
        tm, buf = PusTm.unpack(buf[:length], TIMESTAMP_LEN), buf[length:]
        if wanted(tm):
            return tm


def test_without_a_link_the_gateway_refuses_with_its_own_report(ground_keys):
    from flight.spacelink import keys

    key = keys.create_key(ground_keys)
    running = Running(f"127.0.0.1:{free_port()}", key)  # nobody listens there
    try:
        with socket.create_connection(("127.0.0.1", running.port)) as client:
            tc = ping_tc(seq_count=7, source_id=0x4242)
            client.sendall(tc.pack())
            tm = read_tm(client, 5)
    finally:
        running.close()
    assert (tm.apid, tm.service, tm.message_subtype, tm.pus_tm_sec_header.dest_id) == (GATEWAY_APID, 1, 2, 0x4242)
    assert tm.source_data[:4] == tc.pack()[:4], "about the TC's request id"
    assert tm.source_data[4] == FAILURE_CODE_NUMBERS["BUSY"] and b"gateway: no connection" in tm.source_data
    assert running.gateway.counters.tc_refused == 1 and running.gateway.counters.link_connects == 0
    assert any("not reachable" in line for line in running.lines)


def test_on_a_quiet_link_a_tc_waits_for_a_probe_and_goes_when_the_satellite_answers(gateway, served):
    served.call(lambda h: h.link.cmd_set_hk_interval(3600.0))  # housekeeping once an hour: a quiet link
    wait_until(lambda: not gateway.gateway.heard(), "the link to fall quiet", 15)
    with LinkClient(gateway.gateway.endpoint, DICT, key=None) as client:
        assert client.ping(5 + PROBE_TIMEOUT_S) < PROBE_TIMEOUT_S
    counters = gateway.gateway.counters
    assert (counters.probes, counters.tc_forwarded, counters.tc_refused) == (1, 1, 0)


def test_out_of_contact_a_tc_waits_for_a_probe_and_is_refused_when_none_comes(tmp_path):
    quiet = ServedLink(tmp_path, contact=False)  # connected, but the satellite is not in view
    running = Running(quiet.endpoint, quiet.harness.key)
    try:
        wait_until(lambda: running.gateway.link is not None, "the gateway to connect", 10)
        with socket.create_connection(("127.0.0.1", running.port)) as client:
            tc = ping_tc(seq_count=3, source_id=0x5151)
            started = time.monotonic()
            client.sendall(tc.pack())
            tm = read_tm(client, 10, lambda t: t.service == 1)
            waited_s = time.monotonic() - started
    finally:
        running.close()
        quiet.close()
    assert (tm.apid, tm.message_subtype, tm.source_data[4]) == (GATEWAY_APID, 2, FAILURE_CODE_NUMBERS["BUSY"])
    assert b"did not answer a probe" in tm.source_data
    assert PROBE_TIMEOUT_S <= waited_s < PROBE_TIMEOUT_S + 3
    counters = running.gateway.counters
    assert (counters.probes, counters.tc_forwarded, counters.tc_refused) == (1, 0, 1)
    assert quiet.harness.link.counters.tc_dropped_no_contact == 1, "only the probe went up, and was dropped"


def test_a_listen_address_off_loopback_says_what_it_exposes():
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    warning = exposure_warning("0.0.0.0")
    assert "anyone who can reach this port commands the satellite with this station's key" in warning


def test_connection_options_go_before_the_verb_as_well(served, capsys):
    assert run("--link", served.endpoint, "--timeout", "3", "ping") == 0
    assert f"TM[17,2] from {served.endpoint}" in capsys.readouterr().out
    # after the verb, an option overrides the one before it
    assert run("--link", f"127.0.0.1:{free_port()}", "ping", "--link", served.endpoint, "--timeout", "3") == 0
    assert run("--link", f"127.0.0.1:{free_port()}", "--timeout", "1", "ping") == 1
    assert "cannot reach the link" in capsys.readouterr().out


def test_watch_shows_utc_as_a_date_and_marks_channels_past_their_limits():
    hal = DICT.components["hal"]
    values = {ch.name: [0.0] * ch.size if ch.size else (False if ch.type == "bool" else 0) for ch in hal.telemetry}
    values.update(utc_unix_s=UTC0 + 3661.5, battery_soc=0.2, battery_temp_c=40.0, coolant_supply_temp_c=20.0)
    view = WatchView("127.0.0.1:1", stale_s=30.0)
    view.add(HkReport(hal, values, UTC0 + 3662))
    out = io.StringIO()
    Console(file=out, width=200).print(view.render())
    rows = {line.split()[1]: line for line in out.getvalue().splitlines() if line.startswith("│ hal.")}
    assert "2026-01-01 01:01:01" in rows["hal.utc_unix_s"] and "UTC" in rows["hal.utc_unix_s"]
    assert "e+09" not in out.getvalue()
    assert "RED" in rows["hal.battery_soc"], "below its red low limit 0.3"
    assert "yellow" in rows["hal.battery_temp_c"] and "RED" not in rows["hal.battery_temp_c"]
    assert "RED" not in rows["hal.coolant_supply_temp_c"] and "yellow" not in rows["hal.coolant_supply_temp_c"]


def test_an_oversize_packet_cuts_its_client_off_and_data_too_large_to_sign_is_refused(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as client:
        # a TC whose data would pass the link's limit once the 26 security bytes are added
        tc = PusTc(service=17, message_subtype=1, apid=TC_APID, app_data=bytes(MAX_TC_APP_DATA + 1), seq_count=9,
                   source_id=0x0B0B)
        client.sendall(tc.pack())
        tm = read_tm(client, 5, lambda t: t.service == 1)
        assert (tm.apid, tm.message_subtype) == (GATEWAY_APID, 2)
        assert tm.source_data[4] == FAILURE_CODE_NUMBERS["FORMAT_ERROR"] and b"exceed 4096" in tm.source_data
        # a TC header announcing 65,536 bytes: not a packet this link takes
        client.sendall(bytes([0x18, 0x04, 0xC0, 0x00, 0xFF, 0xFF]) + bytes(64))
        wait_until(lambda: gateway.gateway.counters.clients_garbage == 1, "the client cut off", 5)
    assert gateway.gateway.counters.tc_forwarded == 0


def test_the_gateway_reconnects_by_itself_when_the_satellite_comes_back(served, tmp_path):
    running = Running(served.endpoint, served.harness.key, tm_keys=served.harness.tm_keys)
    try:
        wait_until(running.gateway.heard, "the gateway to hear the satellite", 10)
        served.close()  # the satellite goes away (a restart; the pass ends)
        wait_until(lambda: not running.gateway.heard(), "the gateway to notice", 10)
        again = ServedLink(tmp_path)  # it comes back, same data and keys (on a port of its own here)
        try:
            running.gateway.link_endpoint = again.endpoint
            wait_until(running.gateway.heard, "the gateway to hear the satellite again", 15)
            with LinkClient(running.gateway.endpoint, DICT, key=None) as client:
                assert client.ping(5) < 5
            assert running.gateway.counters.link_connects == 2 and running.gateway.counters.link_losses == 1
        finally:
            again.close()
    finally:
        running.close()


STORED = [f"stored before any ground {n}" for n in range(3)]


def _through_gateway(served, tmp_path, playback: bool) -> tuple[list[str], Gateway]:
    """The thermal events a tool behind a gateway (``playback`` or not, archiving in
    ``archive-<playback>.sqlite``) receives until it has seen five link housekeeping reports
    (the link sends its backlog in the same ticks, after their real-time TM), and the gateway."""
    running = Running(served.endpoint, served.harness.key, tmp_path / f"archive-{playback}.sqlite",
                      served.harness.tm_keys, playback)
    try:
        wait_until(running.gateway.heard, "the gateway to hear the satellite", 10)
        events, hk = [], 0
        link_id = DICT.components["link"].component_id
        with LinkClient(running.gateway.endpoint, DICT, key=None) as tool:
            deadline = time.monotonic() + 20
            while hk < 5 and time.monotonic() < deadline:
                report = tool.receive(deadline - time.monotonic())
                if isinstance(report, EventReport) and report.name == "thermal.setpoint_changed":
                    events.append(report.message)
                elif isinstance(report, HkReport) and report.component.component_id == link_id:
                    hk += 1
        assert hk == 5, "link housekeeping through the gateway"
        return events, running.gateway
    finally:
        running.close()


def test_the_stored_backlog_reaches_the_tools_only_with_playback(served, tmp_path):
    events = STORE_BY_NAME["events"].store_id

    def record(harness) -> None:  # no ground connected: these wait on board for an archiving one
        for message in STORED:
            harness.publish("ev", "thermal.setpoint_changed", {"severity": "INFO", "message": message, "args": {}})

    served.call(record)
    wait_until(lambda: served.harness.link.downlink.stores.pending_counts[events] >= len(STORED),
               "the events stored on board", 10)

    received, gateway = _through_gateway(served, tmp_path, playback=False)
    assert [m for m in received if m in STORED] == [] and gateway.counters.playbacks == 0
    assert served.harness.link.downlink.stores.pending_counts[events] >= len(STORED)  # still waiting on board

    received, gateway = _through_gateway(served, tmp_path, playback=True)
    assert [m for m in received if m in STORED] == STORED
    assert gateway.counters.playbacks == 1
    with Archive(tmp_path / "archive-True.sqlite", DICT, served.harness.tm_keys) as archive:
        kept = [m for _, _, name, m in archive.events(min_severity="INFO") if name == "thermal.setpoint_changed"]
        acks_as_commands = archive.db.execute("SELECT COUNT(*) FROM commands WHERE service = ?",
                                              (STORAGE_SERVICE,)).fetchone()[0]
    assert kept == STORED  # archived once each
    assert acks_as_commands == 0  # the acknowledgements are the link's bookkeeping, not commands in the history
    wait_until(lambda: served.harness.hk().get("tm_acknowledged", 0) >= len(STORED),
               "the satellite to count them acknowledged", 10)


def test_the_gateway_command_explains_itself_and_refuses_a_bad_listen_address(capsys):
    with pytest.raises(SystemExit) as exit_:
        run("gateway", "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "flight ground gateway --listen 127.0.0.1:52100" in out and "docs/icd.md" in out
    assert "--playback" in out and "stored backlog" in out
    assert run("gateway", "--listen", "no-port-here") == 1
    out = capsys.readouterr().out
    assert "cannot start the gateway: --listen 'no-port-here': link endpoint must be HOST:PORT" in out
