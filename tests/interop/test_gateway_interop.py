"""A third-party PUS client (:mod:`tests.interop.pus_client`: spacepackets, the standard
library and docs/icd.md, nothing of ``flight/``) flies a default, authenticated satellite
through ``flight ground gateway``: ping, TC[8,1] with its verification stages, an
out-of-range argument refused with VALIDATION_ERROR, housekeeping and events decoded,
sequence counts gap-free per APID. A client sending garbage is cut off while another goes
on, and TCs sent straight to the satellite without the gateway's signature are still refused.

One paced run (5x real time, lab contact) and one gateway serve the whole module."""

import os
import re
import secrets
import signal
import struct
import subprocess
import sys
import time

import pytest

from tests.interop.pus_client import SET_SETPOINT, SETPOINT_CHANGED, THERMAL_APID, PusClient, gaps
from tests.support.predicates import PACED, FlightRun, at_least, free_port, within

pytestmark = pytest.mark.slow

PING = (17, 1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """``(run, gateway process, gateway port)``: a paced authenticated run in lab contact and a
    gateway in front of it, signing with the key the run created."""
    tmp = tmp_path_factory.mktemp("interop")
    with FlightRun(tmp, *PACED, "--contact", "always", "--duration", "3000") as run:
        run.await_telemetry("link.contact", True, timeout_s=60)
        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "flight.cli", "ground", "--link", run.link, "gateway", "--listen",
             f"127.0.0.1:{port}", "--archive", str(tmp / "gateway-archive.sqlite")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run.env, start_new_session=True)
        try:
            yield run, gateway, port
        finally:
            if gateway.poll() is None:
                gateway.send_signal(signal.SIGINT)
                try:
                    gateway.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    gateway.kill()
                    gateway.wait()
            gateway.stdout.close()


def connect(port: int, source_id: int, timeout_s: float = 30) -> PusClient:
    """A client on the gateway once it relays TM (so it hears the satellite)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = PusClient("127.0.0.1", port, source_id)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the gateway process is still starting
    client.wait_for(lambda tm: True, timeout_s, "TM relayed by the gateway")
    return client


def test_a_third_party_client_flies_the_satellite_through_the_gateway(stack):
    run, _, port = stack
    client = connect(port, source_id=0x5A5A)
    try:
        ping = client.send(client.tc(*PING))
        stages = client.verification(ping, 10)
        assert [tm.subtype for tm in stages] == [1, 3, 7], "ping accepted, started, completed"
        assert any(tm.service == 17 and tm.subtype == 2 and tm.dest_id == client.source_id
                   for tm in client.received), "TM[17,2] for this client"

        setpoint = client.send(client.tc(8, 1, struct.pack(">Hd", SET_SETPOINT, 30.0)))
        assert [tm.subtype for tm in client.verification(setpoint, 10)] == [1, 3, 7]

        refused = client.send(client.tc(8, 1, struct.pack(">Hd", SET_SETPOINT, 99.0)))
        (failure,) = client.verification(refused, 10)
        assert (failure.subtype, failure.failure) == (2, "VALIDATION_ERROR"), failure.failure_text
        assert "setpoint_c" in failure.failure_text

        # TM[5,1] thermal.setpoint_changed: event id u16, then u16 length + UTF-8 message
        event = client.wait_for(lambda tm: (tm.apid, tm.service, tm.subtype) == (THERMAL_APID, 5, 1)
                                and struct.unpack_from(">H", tm.data)[0] == SETPOINT_CHANGED, 15, "TM[5,1]")
        (length,) = struct.unpack_from(">H", event.data, 2)
        assert "30.0" in event.data[4:4 + length].decode()
        # TM[3,25] thermal: structure id u16 (3), then its channels in declared order, setpoint_c
        # and coolant_supply_temp_c first (f64 each)
        hk = client.wait_for(lambda tm: (tm.apid, tm.service, tm.subtype) == (THERMAL_APID, 3, 25)
                             and struct.unpack_from(">Hd", tm.data) == (THERMAL_APID, 30.0), 15,
                             "TM[3,25] with setpoint_c 30")
        assert 0.0 < struct.unpack_from(">d", hk.data, 10)[0] < 80.0, "coolant supply in degC"

        client.pump(1.0)
        # Depends on the sequence-count fixes of issue 12 (defects 1 and 2, branch h-pus): on a
        # branch without them a ping's TM[17,2] carries a count below its TM[1,1]'s.
        assert gaps(client.received) == {}, "sequence counts per APID in order, without gaps"
    finally:
        client.close()
    run.await_telemetry("thermal.setpoint_c", within(29.99, 30.01))


def test_a_client_sending_garbage_is_cut_off_while_another_goes_on(stack):
    _, gateway, port = stack
    good = connect(port, source_id=0x1111)
    bad = connect(port, source_id=0x2222)
    try:
        bad.sock.sendall(os.urandom(3000))
        with pytest.raises(ConnectionError):
            bad.wait_for(lambda tm: False, 10, "the gateway to close the connection")
        ping = good.send(good.tc(*PING))
        assert [tm.subtype for tm in good.verification(ping, 10)] == [1, 3, 7]
        # a valid TC with a broken CRC is garbage too
        broken = bytearray(good.tc(*PING).pack())
        broken[-1] ^= 0xFF
        crc = connect(port, source_id=0x3333)
        crc.sock.sendall(bytes(broken))
        with pytest.raises(ConnectionError):
            crc.wait_for(lambda tm: False, 10, "the gateway to close the connection")
        crc.close()
        ping = good.send(good.tc(*PING))
        assert [tm.subtype for tm in good.verification(ping, 10)] == [1, 3, 7], "the good client still flies"
    finally:
        good.close()
        bad.close()
    gateway.send_signal(signal.SIGINT)
    out, _ = gateway.communicate(timeout=15)
    assert gateway.returncode == 0, out
    assert len(re.findall(r"disconnected: \d+ byte\(s\) that are not a PUS-C TC", out)) == 2, out
    assert re.search(r"clients_garbage\s*│\s*2", out), out
    assert re.search(r"tc_forwarded\s*│\s*[1-9]", out), out


def test_tcs_straight_to_the_satellite_without_a_signature_are_refused(stack):
    run, _, _ = stack
    host, port = run.link.rsplit(":", 1)
    direct = PusClient(host, int(port), source_id=0x4444, sealed_tm=True)
    try:
        unsigned = direct.send(direct.tc(*PING))
        (verdict,) = direct.verification(unsigned, 10)
        assert (verdict.subtype, verdict.failure) == (2, "AUTHENTICATION_ERROR")
        # forged: a security header with SPI 1 and an ARSN, and a MAC made of random bytes
        forged_data = struct.pack(">HQ", 1, time.time_ns() // 1000) + struct.pack(">Hd", SET_SETPOINT, 40.0)
        forged = direct.send(direct.tc(8, 1, forged_data + secrets.token_bytes(16)))
        (verdict,) = direct.verification(forged, 10)
        assert (verdict.subtype, verdict.failure) == (2, "AUTHENTICATION_ERROR"), verdict.failure_text
        assert "MAC" in verdict.failure_text
    finally:
        direct.close()
    run.await_telemetry("link.tc_auth_failed", at_least(2))
    assert run.await_next_housekeeping("thermal")["setpoint_c"] == 30.0, "the forged setpoint changed nothing"

