"""Link benchmark: housekeeping packets per second through the link manager into the ground
archive, against raw ``spacepackets`` encode + socket send, in the same run.

* ``link_pkts_per_s``: every component's housekeeping (the flight dictionary's channels,
  per-GPU arrays included) handed to a :class:`~flight.subsystems.link.LinkManager` as the
  bus delivers it, one hk interval per tick in contact: encoded as TM[3,25], stored in its
  packet store (SQLite), sent over TCP (ZeroMQ STREAM) to a
  :class:`~flight.ground.client.LinkClient` that frames, CRC-checks and decodes it and keeps
  it in a :class:`~flight.ground.archive.Archive` (SQLite), acknowledging with a signed
  TC[15,130] every 0.5 s; timed until the last packet is archived and committed.
* ``raw_pkts_per_s``: the same source data built into the same TM[3,25] with spacepackets'
  ``PusTm(...).pack()`` and written to a loopback TCP socket, read back as bytes.
* ``link_ratio`` = link / raw (target >= 0.5).

Both run in this one process, one right after the other, ``--repeats`` times; each pair
gives a ratio, and the median pair is reported (on a shared machine the load changes from
one second to the next, so a ratio is only fair within a pair). ``link_ratios`` lists all.

    python tools/bench_link.py [--ticks N] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

import zmq
from spacepackets.ecss.tm import PusTm

from flight.bus import BusAddress
from flight.config import RunConfig
from flight.executive import full_dictionary
from flight.ground import keys
from flight.ground.archive import Archive
from flight.ground.client import LinkClient
from flight.ground.pus import cds_timestamp, encode_hk
from flight.messages import Encoder, decode
from flight.subsystems.link import LinkManager

UTC0 = 1_767_225_600.0
ACK_INTERVAL_S = 0.5


def _hk_values(component) -> dict:
    return {ch.name: [0.5 * i for i in range(ch.size)] if ch.size else
            {"float": 1.25 + k, "int": k, "bool": k % 2 == 0, "str": f"s{k}"}[ch.type]
            for k, ch in enumerate(component.telemetry)}


def _frame(tick: int) -> dict:
    return {"ground_contact": True, "utc_unix_s": UTC0 + tick, "transmitter_on": True, "downlink_rate_bps": 2e9,
            "ground_station_id": 0.0, "ground_elevation_deg": 45.0}


def bench_link(ticks: int, workdir: Path) -> tuple[int, float]:
    """(packets archived, wall seconds) through the link manager into the ground archive."""
    dictionary = full_dictionary()
    components = [c for c in dictionary.components.values() if c.name != "link"]
    key = keys.create_key(workdir / "keys")
    config = RunConfig(bus=BusAddress("inproc://a", "inproc://b", "inproc://c"), data_dir=str(workdir / "run"),
                       contact="always", link_endpoint="127.0.0.1:0",
                       keys_dir=str(workdir / "keys"))
    link = LinkManager(config, lambda kind, name, data: None, lambda *a: None, dictionary=dictionary)
    link.on_start()
    link.hk_interval_s = 1.0
    ((sock, on_readable),) = link.poll_items()
    encoder = Encoder("bench")
    # the bus's work (envelope encode/decode) is done before the clock starts
    inbox = [[decode(encoder.encode("tm", f"{c.name}.hk", _hk_values(c), tick, tick - 0.5)[1]) for c in components]
             for tick in range(1, ticks + 1)]
    frames = [decode(encoder.encode("hw", "hal.frame", _frame(tick), tick, float(tick))[1]).data
              for tick in range(1, ticks + 1)]
    archive = Archive(workdir / "archive.sqlite", dictionary)
    client = LinkClient(link.endpoint, dictionary, key=key)
    client.keep_in(archive)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    client.acknowledge()  # an archiving ground, as `flight ground listen` is: sent the backlog, holds what it gets
    while not any(conn.archiving for conn in link._conns.values()):  # known to the link before the clock starts
        if poller.poll(100):
            on_readable()
    started = last_ack = time.perf_counter()
    for tick in range(1, ticks + 1):
        for msg in inbox[tick - 1]:
            link.on_message(msg)
        link.on_frame(tick, float(tick), frames[tick - 1])
        link.actuation = {}
        if poller.poll(0):
            on_readable()  # acknowledgements
        while client.read(0):
            pass
        if time.perf_counter() - last_ack > ACK_INTERVAL_S:
            archive.commit()
            client.acknowledge()
            last_ack = time.perf_counter()
    expected = ticks * len(components)
    deadline = time.monotonic() + 60
    while _archived_hk(archive) < expected and time.monotonic() < deadline:
        client.read(0.05)
    archive.commit()
    elapsed = time.perf_counter() - started
    got = _archived_hk(archive)
    client.close()
    link.on_stop()
    return got, elapsed


def _archived_hk(archive: Archive) -> int:
    archive.commit()
    return archive.db.execute("SELECT COUNT(*) FROM packets WHERE service = 3 AND subtype = 25").fetchone()[0]


def bench_raw(ticks: int) -> tuple[int, float]:
    """(packets, wall seconds) of spacepackets encode + send over loopback TCP + read back."""
    dictionary = full_dictionary()
    components = [c for c in dictionary.components.values() if c.name != "link"]
    values = {c.name: _hk_values(c) for c in components}
    server = socket.create_server(("127.0.0.1", 0))
    tx = socket.create_connection(server.getsockname())
    rx, _ = server.accept()
    rx.setblocking(False)
    received = 0
    seq = 0
    started = time.perf_counter()
    for tick in range(1, ticks + 1):
        for c in components:
            packet = PusTm(service=3, message_subtype=25, timestamp=cds_timestamp(UTC0 + tick - 0.5),
                           source_data=encode_hk(c, values[c.name]), apid=c.component_id, seq_count=seq).pack()
            seq = (seq + 1) % 16384
            tx.sendall(packet)
        try:
            while True:
                chunk = rx.recv(1 << 20)
                received += len(chunk)
        except BlockingIOError:
            pass
    tx.shutdown(socket.SHUT_WR)
    rx.setblocking(True)
    while chunk := rx.recv(1 << 20):
        received += len(chunk)
    elapsed = time.perf_counter() - started
    for s in (tx, rx, server):
        s.close()
    return ticks * len(components), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=500, help="hk intervals (each: every component's TM[3,25])")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pairs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
            link_pkts, link_s = bench_link(args.ticks, Path(tmp))
        raw_pkts, raw_s = bench_raw(args.ticks)
        pairs.append(((link_pkts / link_s) / (raw_pkts / raw_s), link_pkts, link_s, raw_pkts, raw_s))
    pairs.sort()
    ratio, link_pkts, link_s, raw_pkts, raw_s = pairs[len(pairs) // 2]
    result = {
        "packets": raw_pkts,
        "link_archived": link_pkts,
        "link_pkts_per_s": link_pkts / link_s,
        "raw_pkts_per_s": raw_pkts / raw_s,
        "link_ratio": ratio,
        "link_ratios": [round(p[0], 3) for p in pairs],
        "link_us_per_pkt": 1e6 * link_s / max(link_pkts, 1),
        "raw_us_per_pkt": 1e6 * raw_s / raw_pkts,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'':28s}{'link -> archive':>18s}{'raw spacepackets':>18s}")
    print(f"{'packets':28s}{link_pkts:18d}{raw_pkts:18d}")
    print(f"{'packets per second':28s}{result['link_pkts_per_s']:18.0f}{result['raw_pkts_per_s']:18.0f}")
    print(f"{'microseconds per packet':28s}{result['link_us_per_pkt']:18.1f}{result['raw_us_per_pkt']:18.1f}")
    print(f"link_ratio {result['link_ratio']:.2f} (target >= 0.5), median of {result['link_ratios']}")


if __name__ == "__main__":
    main()
