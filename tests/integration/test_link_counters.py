"""The whole stack's downlink as a third-party ground sees it: two plain TCP listeners (only
spacepackets' readers) while `flight ground` commands the satellite on a third connection.
Per APID the sequence counts run without gaps on both listeners, both get every report
(addressed by destination id to the commanding ground), and housekeeping's message type
counter steps by one per APID (issue 12, defects 1, 2 and 5, end to end)."""

import socket
import time
from collections import defaultdict

import pytest
from spacepackets.ccsds.spacepacket import parse_space_packets
from spacepackets.ecss.tm import PusTm

from flight.core.dictionary import full_dictionary
from flight.spacelink.framing import SEQ_COUNT_MODULO, TIMESTAMP_LEN, parse_endpoint, tm_packet_ids

pytestmark = pytest.mark.slow
LISTEN_S = 8.0


class Listener:
    """A TCP connection to the link that only reads, and the TMs it got."""

    def __init__(self, endpoint: str) -> None:
        self.sock = socket.create_connection(parse_endpoint(endpoint), timeout=5)
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.tms: list[PusTm] = []

    def poll(self) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        self.buf += chunk
        result = parse_space_packets(bytes(self.buf), tm_packet_ids(full_dictionary()))
        del self.buf[:result.scanned_bytes]
        assert not result.skipped_ranges
        self.tms += [PusTm.unpack(p, timestamp_len=TIMESTAMP_LEN) for p in result.tm_list]


def test_two_listeners_see_one_gap_free_downlink_while_a_third_ground_commands(paced_run):
    run = paced_run
    listeners = [Listener(run.link), Listener(run.link)]
    try:
        pinged = run.ground("ping", "--link", run.link, "--timeout", "10")
        sent = run.ground("send", "thermal.set_setpoint", "setpoint_c=31", "--link", run.link)
        assert pinged.returncode == 0 and sent.returncode == 0, pinged.stdout + sent.stdout
        deadline = time.monotonic() + LISTEN_S
        while time.monotonic() < deadline:
            for listener in listeners:
                listener.poll()
            time.sleep(0.02)
    finally:
        for listener in listeners:
            listener.sock.close()
    hk_counters: dict[int, list[int]] = defaultdict(list)
    for listener in listeners:
        by_apid = defaultdict(list)
        for tm in listener.tms:
            by_apid[tm.apid].append(tm.seq_count)
        for apid, counts in by_apid.items():
            steps = {(b - a) % SEQ_COUNT_MODULO for a, b in zip(counts, counts[1:])}
            assert steps <= {1}, f"APID {apid}: {counts}"
        kinds = [(tm.service, tm.message_subtype) for tm in listener.tms if tm.pus_tm_sec_header.dest_id != 0]
        assert (17, 2) in kinds and [k for k in kinds if k[0] == 1][-3:] == [(1, 1), (1, 3), (1, 7)]
    for tm in listeners[0].tms:
        if (tm.service, tm.message_subtype) == (3, 25):
            hk_counters[tm.apid].append(tm.pus_tm_sec_header.message_counter)
    assert len(hk_counters) >= 4
    for apid, values in hk_counters.items():
        assert len(values) >= 2 and values == list(range(values[0], values[0] + len(values))), (apid, values)
