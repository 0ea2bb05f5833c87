"""Ground operations against a paced run (5x real time, the pacing an operator's real-time
run uses, housekeeping every 2 s) in lab contact, through the operator CLI as an operator
types it: ping, a command with its verification stages, on-board validation, and
a hostile byte stream on the link port; every TC signed with the key the run created.
Replayed, forged and unsigned commands are refused, counted and change nothing, and a
restarted link still refuses the replay."""

import os
import re
import signal
import socket
import time

import pytest
from fastcrc import crc16

from flight.core.dictionary import full_dictionary
from flight.spacelink import keys
from flight.ground.client import LinkClient
from flight.spacelink.pus1_verification import Verification
from flight.spacelink.pus8_functions import function_tc
from flight.spacelink.sdls import ArsnCounter, StationKey, protect
from tests.support.predicates import PACED, FlightRun, at_least, free_port, within

pytestmark = pytest.mark.slow


def test_ping_command_validation_and_garbage_on_the_link(paced_run):
    run, link = paced_run, paced_run.link

    ping = run.ground("ping", "--link", link, "--timeout", "5")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert float(re.search(r"([\d.]+) ms round trip", ping.stdout).group(1)) < 2000

    sent = run.ground("send", "thermal.set_setpoint", "setpoint_c=30", "--link", link)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert [s for s in ("accepted", "started", "completed") if s in sent.stdout] == ["accepted", "started", "completed"]
    run.await_telemetry("thermal.setpoint_c", within(29.99, 30.01))

    on_ground = run.ground("send", "thermal.set_setpoint", "setpoint_c=99", "--link", link)
    assert on_ground.returncode == 1 and "VALIDATION_ERROR" in on_ground.stdout + on_ground.stderr
    on_board = run.ground("send", "thermal.set_setpoint", "setpoint_c=99", "--no-check", "--link", link)
    assert on_board.returncode == 1 and "VALIDATION_ERROR" in on_board.stdout
    assert "completed" not in on_board.stdout

    pids = run.processes()
    with socket.create_connection(("127.0.0.1", int(link.rpartition(":")[2])), timeout=5) as hostile:
        hostile.sendall(os.urandom(20_000) + b"\x18\x04\xc0\x00\x00\x05" + bytes(range(256)) * 8)
    run.await_telemetry("link.bytes_discarded", at_least(1))
    assert run.ground("ping", "--link", link, "--timeout", "5").returncode == 0, "the link still serves"
    assert run.processes() == pids, "no process died or was restarted"
    assert len(run.events("thermal.setpoint_changed")) == 1, "only the valid command changed anything"
    assert run.await_next_housekeeping("thermal")["setpoint_c"] == 30.0, "the rejected command left it alone"
    assert run.latest("exec.commands_executed") >= 1


def _setpoint(value: float, seq: int):
    return function_tc(full_dictionary(), "thermal.set_setpoint", {"setpoint_c": value}, seq_count=seq,
                       source_id=0x77)


def _with_crc(packet: bytes) -> bytes:
    """``packet`` with its CRC recomputed, so a mutation reaches authentication."""
    return packet[:-2] + crc16.ibm_3740(packet[:-2]).to_bytes(2, "big")


def _verdict(client: LinkClient, packet: bytes) -> Verification:
    """Send ``packet`` and return the final verification report about it."""
    client.sock.sendall(packet)
    request_id = int.from_bytes(packet[:4], "big")  # packet id and sequence control
    deadline = time.monotonic() + 10
    while (report := client.receive(deadline - time.monotonic())) is not None:
        if isinstance(report, Verification) and report.request_id == request_id and report.final:
            return report
    raise AssertionError("no final verdict")


def test_replayed_forged_and_unsigned_commands_change_nothing_even_after_a_link_restart(paced_run):
    run = paced_run
    key = keys.load_key(run.keys)
    arsn = ArsnCounter()
    good = bytes(protect(_setpoint(31.0, 1), key, arsn.next()).pack())
    flipped = bytearray(protect(_setpoint(44.0, 2), key, arsn.next()).pack())
    flipped[-20] ^= 0x01  # one bit of the MAC
    wrong_value = bytearray(good)
    wrong_value[-30] ^= 0x40  # one bit of the setpoint, CRC made good again
    forged = {
        "unsigned": bytes(_setpoint(40.0, 3).pack()),
        "wrong key": bytes(protect(_setpoint(41.0, 4), StationKey("intruder", key.spi, os.urandom(32)),
                                   arsn.next()).pack()),
        "flipped MAC bit": _with_crc(bytes(flipped)),
        "flipped data bit": _with_crc(bytes(wrong_value)),
        "unknown SPI": bytes(protect(_setpoint(42.0, 5), StationKey("x", key.spi + 1, key.key), arsn.next()).pack()),
    }
    with LinkClient(run.link, full_dictionary(), key=None, tm_keys=run.tm_keys) as client:
        assert _verdict(client, good).stage == "completed"
        run.await_telemetry("thermal.setpoint_c", within(30.99, 31.01))
        for what, packet in [*forged.items(), ("replay", good)]:
            report = _verdict(client, packet)
            assert (report.stage, report.code) == ("acceptance failed", "AUTHENTICATION_ERROR"), what
    run.await_telemetry("link.tc_auth_failed", len(forged) + 1)
    assert len(run.events("link.tc_auth_failed")) == len(forged) + 1

    os.kill(run.processes()["link"], signal.SIGKILL)
    run.await_events("link.authenticated", count=2, timeout_s=30)  # each link process says so on its first tick
    with LinkClient(run.link, full_dictionary(), key=None, tm_keys=run.tm_keys) as client:
        report = _verdict(client, good)
    assert (report.code, "replayed" in report.message) == ("AUTHENTICATION_ERROR", True)
    assert run.ground("ping", "--link", run.link, "--timeout", "5").returncode == 0, "a fresh TC still works"
    assert len(run.events("thermal.setpoint_changed")) == 1, "only the one good command changed anything"
    assert run.latest("thermal.setpoint_c") == 31.0


def test_unauthenticated_lab_mode_only_by_its_flag_warns_and_creates_no_key(tmp_path):
    port = free_port()
    link = f"127.0.0.1:{port}"
    with FlightRun(tmp_path, *PACED, "--contact", "always", "--link", link, "--duration", "3000",
                   "--unauthenticated-lab") as run:
        run.await_telemetry("link.contact", True, timeout_s=60)
        assert run.ground("ping", "--link", link, "--timeout", "5", "--unauthenticated").returncode == 0
        assert "UNAUTHENTICATED" in run.await_event("link.lab_mode")
        assert not run.events("link.authenticated")
    assert "WARNING: unauthenticated lab mode" in run.output
    assert not run.keys.exists()
