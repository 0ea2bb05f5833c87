"""10,000 random and mutated packets on the link port of a whole run (a seeded mutation
loop): no process dies, the link process's memory stays bounded, and no unauthenticated
packet executes anything; a client that reconnects while the link is stalled is not refused;
the link still answers a signed ping afterwards."""

import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from fastcrc import crc16

from flight.core.dictionary import full_dictionary
from flight.spacelink import keys
from flight.ground.client import LinkClient
from flight.spacelink.framing import MAX_TC_APP_DATA, build_tc
from flight.spacelink.pus17_test import ping_tc
from flight.spacelink.pus8_functions import function_tc
from flight.spacelink.sdls import ArsnCounter, StationKey, protect
from flight.subsystems.link.connections import MAX_CONNECTIONS
from tests.support.predicates import FlightRun, at_least, free_port

pytestmark = pytest.mark.slow

PACKETS = 10_000
PER_CONNECTION = 100
"""Packets sent on one connection before the next; each connection gets a fresh rate-limit
burst, so thousands of forgeries go all the way to the MAC and replay checks."""
RSS_GROWTH_LIMIT_KB = 4096
STALL_S = 0.5
"""Wall seconds the link process is stopped halfway: the client opens and closes more than
MAX_CONNECTIONS connections meanwhile, and each must be gone before the next is counted."""


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _with_crc(packet: bytes) -> bytes:
    return packet[:-2] + crc16.ibm_3740(packet[:-2]).to_bytes(2, "big")


def _packets(rng: random.Random, key: StationKey, replayable: bytes) -> list[bytes]:
    """Random bytes, unsigned TCs, TCs signed with a wrong key, replays, and signed TCs with
    bits flipped, bytes cut or inserted (CRC made good again half the time)."""
    dictionary = full_dictionary()
    arsn = ArsnCounter()
    intruder = StationKey("intruder", key.spi, rng.randbytes(32))
    out = []
    for i in range(PACKETS):
        kind = rng.randrange(6)
        if kind == 0:
            out.append(rng.randbytes(rng.randint(1, 300)))
            continue
        if kind == 1:
            out.append(replayable)
            continue
        tc = rng.choice([
            ping_tc(seq_count=i, source_id=0x99),
            function_tc(dictionary, "thermal.set_setpoint", {"setpoint_c": 20.0 + i % 20}, seq_count=i,
                        source_id=0x99),
            build_tc(rng.randrange(256), rng.randrange(256), rng.randbytes(rng.randint(0, 64)), seq_count=i,
                     source_id=0x99),
        ])
        if kind == 2:
            out.append(bytes(tc.pack()))  # unsigned
            continue
        if kind == 3:
            out.append(bytes(protect(tc, intruder, arsn.next()).pack()))
            continue
        packet = bytearray(protect(tc, key, arsn.next()).pack())
        if kind == 4:
            for _ in range(rng.randint(1, 4)):
                packet[rng.randrange(len(packet) - 2)] ^= 1 << rng.randrange(8)  # never the CRC alone
        else:
            at = rng.randrange(6, len(packet) - 2)
            if rng.random() < 0.5:
                del packet[at:at + rng.randint(1, 8)]
            else:
                packet[at:at] = rng.randbytes(rng.randint(1, 8))
        out.append(_with_crc(bytes(packet)) if rng.random() < 0.5 else bytes(packet))
    assert max(map(len, out)) < MAX_TC_APP_DATA
    return out


def _stall(pid: int, seconds: float) -> None:
    """Stop ``pid`` now and let it go on after ``seconds``, without blocking the caller."""
    os.kill(pid, signal.SIGSTOP)
    threading.Timer(seconds, os.kill, (pid, signal.SIGCONT)).start()


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass


def test_ten_thousand_hostile_packets_kill_nothing_grow_nothing_and_execute_nothing(tmp_path):
    port = free_port()
    link = f"127.0.0.1:{port}"
    with FlightRun(tmp_path, "--speed", "5", "--contact", "always", "--link", link, "--duration", "3000") as run:
        run.await_telemetry("link.contact", True)
        key = keys.load_key(run.keys)
        with LinkClient(link, full_dictionary(), key=key, tm_keys=run.tm_keys) as client:
            assert [r.stage for r in client.command("thermal.set_setpoint", {"setpoint_c": 31.0}, 10)][-1] == \
                "completed"
            replayable = bytes(protect(function_tc(full_dictionary(), "thermal.set_setpoint", {"setpoint_c": 39.0},
                                                   seq_count=1, source_id=0x99), key, ArsnCounter().next()).pack())
            client.sock.sendall(replayable)  # executed once now; every later copy is a replay
            client.ping(10)
        executed = run.await_telemetry("exec.commands_executed", 2)
        pids = run.processes()
        packets = _packets(random.Random(2026), key, replayable)

        started = time.monotonic()
        rss_before = None
        for n in range(0, PACKETS, PER_CONNECTION):
            if n == PACKETS // 2:  # the link stalls (a slow disk write) while the client keeps reconnecting
                _stall(pids["link"], STALL_S)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.setblocking(False)
                for packet in packets[n:n + PER_CONNECTION]:
                    sock.setblocking(True)
                    sock.sendall(packet)
                    sock.setblocking(False)
                    _drain(sock)
                time.sleep(0.01)  # pacing: the client lingers a moment, as a slow hostile one does
                _drain(sock)
            if rss_before is None:  # after one connection's worth: imports and caches are warm
                rss_before = _rss_kb(pids["link"])
        fuzz_s = time.monotonic() - started

        received = run.await_telemetry("link.tc_received", at_least(PACKETS // 10))
        run.await_steady("link", ["tc_received", "tc_auth_failed", "tc_rate_limited", "bytes_discarded",
                                  "commands_pending"])
        run.await_next_housekeeping("exec")  # its count reported after the link's settled
        assert run.processes() == pids, "no process died or was restarted"
        assert _rss_kb(pids["link"]) - rss_before < RSS_GROWTH_LIMIT_KB
        assert run.latest("exec.commands_executed") == executed, "no forged, replayed or unsigned TC executed"
        assert run.latest("link.tc_accepted") == 3  # the three signed TCs above
        assert run.latest("link.tc_auth_failed") > 1000 and run.latest("link.tc_rate_limited") > 0
        assert run.latest("link.bytes_discarded") > 0 and run.latest("link.commands_pending") == 0
        assert run.latest("link.clients") <= MAX_CONNECTIONS
        assert run.latest("link.connections_refused") == 0, "one connection at a time is never refused"
        assert len(run.events("thermal.setpoint_changed")) == 2
        assert run.latest("thermal.setpoint_c") == 39.0
        with LinkClient(link, full_dictionary(), key=key, tm_keys=run.tm_keys) as client:
            assert client.ping(10) < 5, "the link still serves"
        assert fuzz_s < 30 and received
    assert os.path.exists(run.data / "link_replay.sqlite")
