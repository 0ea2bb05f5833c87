"""Link benchmark: housekeeping packets per second through the link manager into the ground
archive, against raw ``spacepackets`` encode + socket send, in the same run.

* ``link_pkts_per_s``: every component's housekeeping (the flight dictionary's channels,
  per-GPU arrays included as the numpy arrays of their channel's type that the subsystems
  publish, scalars of theirs) handed to a
  :class:`~flight.subsystems.link.manager.LinkManager` as the bus delivers it, one hk interval per
  tick in contact: encoded as TM[3,25], stored in its packet store (SQLite), sent over TCP
  (:mod:`flight.subsystems.link.stream_server`) to a ground station in its own process, as in
  operations (``flight ground listen`` on the station's computer): a
  :class:`~flight.ground.client.LinkClient` that frames, verifies (the telemetry MAC,
  :mod:`flight.spacelink.tm_sdls`), CRC-checks and keeps each packet in an
  :class:`~flight.ground.archive.Archive` (SQLite, which checks the MAC again), acknowledging with a signed
  TC[15,130] every 0.5 s. Timed from the first packet handed to the link until the ground
  has archived and committed the last.
* ``raw_pkts_per_s``: the same source data built into the same TM[3,25] with spacepackets'
  ``PusTm(...).pack()`` and written to a loopback TCP socket, read back to EOF by a reader
  in its own process. Timed from the first packet until the reader has every byte.
* ``link_ratio`` = link / raw (target >= 0.5).

The two ends of each pipeline run concurrently, each in its own process, so its rate is that
of its slower end. Where the time goes is reported beside the ratio: the CPU
microseconds per packet of the sending process (``link_cpu_us_per_pkt``, the onboard cost;
``raw_cpu_us_per_pkt``) and of the far end (``ground_cpu_us_per_pkt``,
``raw_reader_cpu_us_per_pkt``).

The two pipelines run one right after the other, ``--repeats`` times (default 15), in
alternating order; each pair gives a ratio, and the median pair is reported (on a shared
machine the load changes from one second to the next, so a ratio is only fair within a
pair). ``link_ratios`` lists all: on a shared 2-core VM they spread from about 0.4 to 1.0
within one run.

    python tools/bench_link.py [--ticks N] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq
from spacepackets.ecss.tm import PusTm

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.dictionary import full_dictionary
from flight.spacelink import keys, tm_sdls
from flight.ground.archive import Archive
from flight.ground.client import LinkClient
from flight.spacelink.framing import cds_timestamp
from flight.spacelink.pus3_housekeeping import encode_hk
from flight.core.messages import Encoder, decode
from flight.subsystems.link.manager import LinkManager

UTC0 = 1_767_225_600.0
ACK_INTERVAL_S = 0.5
SPAWN = multiprocessing.get_context("spawn")
"""The far ends are fresh interpreters: forking a process that holds ZeroMQ sockets is unsafe."""


@dataclass
class Side:
    """One side's run: packets through, wall seconds from the first packet handed in until
    the far end had them all, and CPU seconds spent by the sending and the receiving process."""

    packets: int
    wall_s: float
    sender_cpu_s: float
    receiver_cpu_s: float


_ARRAY_DTYPES = {"float": np.float64, "int": np.int64, "bool": np.bool_}
"""What the subsystems publish an array channel as (numpy arrays travel the bus as such)."""


def _hk_values(component) -> dict:
    """A value for every channel of ``component``, each of its channel's type; arrays as the
    subsystems publish them, numpy arrays of :data:`_ARRAY_DTYPES`."""
    return {ch.name: (np.arange(ch.size) % (2 if ch.type == "bool" else ch.size)).astype(_ARRAY_DTYPES[ch.type])
            if ch.size else {"float": 1.25 + k, "int": k, "bool": k % 2 == 0, "str": f"s{k}"}[ch.type]
            for k, ch in enumerate(component.telemetry)}


def _frame(tick: int) -> dict:
    return {"ground_contact": True, "utc_unix_s": UTC0 + tick, "transmitter_on": True, "downlink_rate_bps": 2e9,
            "ground_station_id": 0.0, "ground_elevation_deg": 45.0}


def _ground(endpoint: str, keys_dir: str, archive_path: str, expected: int, pipe) -> None:
    """The ground station, in its own process as in operations: connect, ask for the
    downlink (TC[15,130]), then archive until ``expected`` packets are in and committed,
    acknowledging every :data:`ACK_INTERVAL_S`; sends its CPU seconds, then the number of
    housekeeping packets in the archive."""
    dictionary = full_dictionary()
    tm_keys = tm_sdls.verifying_keys(Path(keys_dir))
    archive = Archive(Path(archive_path), dictionary, tm_keys)
    client = LinkClient(endpoint, dictionary, key=keys.load_key(Path(keys_dir)), tm_keys=tm_keys)
    client.keep_in(archive)
    client.acknowledge()
    pipe.send("ready")
    framed, last_ack = 0, time.monotonic()
    cpu_started = None
    while framed < expected:
        got = client.read(0.05)
        if got and cpu_started is None:
            cpu_started = time.process_time()
        framed += got
        if time.monotonic() - last_ack > ACK_INTERVAL_S:
            archive.commit()
            client.acknowledge()
            last_ack = time.monotonic()
    archive.commit()
    cpu_s = time.process_time() - (cpu_started or time.process_time())
    pipe.send(cpu_s)  # the clock stops here; counting what was archived is not part of the run
    pipe.send(_archived_hk(archive))
    client.close()


def bench_link(ticks: int, workdir: Path) -> Side:
    """Housekeeping through the link manager into the ground archive (in its own process)."""
    dictionary = full_dictionary()
    components = [c for c in dictionary.components.values() if c.name != "link"]
    keys.create_key(workdir / "keys")
    tm_sdls.ensure_tm_key(workdir / "keys")
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
    expected = ticks * len(components)
    here, there = SPAWN.Pipe()
    ground = SPAWN.Process(target=_ground, args=(link.endpoint, str(workdir / "keys"), str(workdir / "archive.sqlite"),
                                                 expected, there))
    ground.start()
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(here, zmq.POLLIN)  # the ground's word that it is done wakes the link at once
    assert here.poll(60) and here.recv() == "ready", "the ground process did not start"
    while not any(conn.archiving for conn in link.connections.table.values()):  # known to the link before the clock starts
        if sock in dict(poller.poll(100)):
            on_readable()
    started, cpu_started = time.perf_counter(), time.process_time()
    for tick in range(1, ticks + 1):
        for msg in inbox[tick - 1]:
            link.on_message(msg)
        link.on_frame(tick, float(tick), frames[tick - 1])
        link.actuation = {}
        link.run_after_done()
        if sock in dict(poller.poll(0)):
            on_readable()  # acknowledgements
    cpu_s = time.process_time() - cpu_started
    while not here.poll(0):  # the link keeps serving acknowledgements while the ground catches up
        if sock in dict(poller.poll(1000)):
            on_readable()
    ground_cpu_s = here.recv()
    elapsed = time.perf_counter() - started
    got = here.recv()
    ground.join(10)
    link.on_stop()
    return Side(got, elapsed, cpu_s, ground_cpu_s)


def _archived_hk(archive: Archive) -> int:
    archive.commit()
    return archive.db.execute("SELECT COUNT(*) FROM packets WHERE service = 3 AND subtype = 25").fetchone()[0]


def _drain(port: int, pipe) -> None:
    """The raw baseline's reader, in its own process: bytes until EOF; sends ``(bytes, CPU s)``."""
    rx = socket.create_connection(("127.0.0.1", port))
    pipe.send("ready")
    received, cpu_started = 0, None
    while chunk := rx.recv(1 << 20):
        if cpu_started is None:
            cpu_started = time.process_time()
        received += len(chunk)
    pipe.send((received, time.process_time() - (cpu_started or time.process_time())))
    rx.close()


def bench_raw(ticks: int) -> Side:
    """spacepackets encode + send over loopback TCP to a reader in its own process."""
    dictionary = full_dictionary()
    components = [c for c in dictionary.components.values() if c.name != "link"]
    values = {c.name: _hk_values(c) for c in components}
    server = socket.create_server(("127.0.0.1", 0))
    here, there = SPAWN.Pipe()
    reader = SPAWN.Process(target=_drain, args=(server.getsockname()[1], there))
    reader.start()
    tx, _ = server.accept()
    assert here.poll(60) and here.recv() == "ready", "the reader process did not start"
    sent = seq = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for tick in range(1, ticks + 1):
        for c in components:
            packet = PusTm(service=3, message_subtype=25, timestamp=cds_timestamp(UTC0 + tick - 0.5),
                           source_data=encode_hk(c, values[c.name]), apid=c.component_id, seq_count=seq).pack()
            seq = (seq + 1) % 16384
            tx.sendall(packet)
            sent += len(packet)
    cpu_s = time.process_time() - cpu_started
    tx.shutdown(socket.SHUT_WR)
    received, reader_cpu_s = here.recv()
    elapsed = time.perf_counter() - started
    assert received == sent, f"the reader got {received} of {sent} bytes"
    reader.join(10)
    for s in (tx, server):
        s.close()
    return Side(ticks * len(components), elapsed, cpu_s, reader_cpu_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=2000, help="hk intervals (each: every component's TM[3,25])")
    parser.add_argument("--repeats", type=int, default=15, help="link/raw pairs; the median pair is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.ticks < 1 or args.repeats < 1:
        parser.error("--ticks and --repeats must be at least 1")
    pairs = []
    for repeat in range(args.repeats):
        if repeat % 2:  # half the pairs run the baseline first, so a drift in load favours neither
            raw = bench_raw(args.ticks)
        with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
            link = bench_link(args.ticks, Path(tmp))
        if not repeat % 2:
            raw = bench_raw(args.ticks)
        pairs.append(((link.packets / link.wall_s) / (raw.packets / raw.wall_s), link, raw))
    pairs.sort(key=lambda p: p[0])
    ratio, link, raw = pairs[len(pairs) // 2]

    def us(seconds: float, packets: int) -> float:
        return 1e6 * seconds / max(packets, 1)

    result = {
        "packets": raw.packets,
        "link_archived": link.packets,
        "link_pkts_per_s": link.packets / link.wall_s,
        "raw_pkts_per_s": raw.packets / raw.wall_s,
        "link_ratio": ratio,
        "link_ratios": [round(p[0], 3) for p in pairs],
        "link_us_per_pkt": us(link.wall_s, link.packets),
        "raw_us_per_pkt": us(raw.wall_s, raw.packets),
        "link_cpu_us_per_pkt": us(link.sender_cpu_s, link.packets),
        "ground_cpu_us_per_pkt": us(link.receiver_cpu_s, link.packets),
        "raw_cpu_us_per_pkt": us(raw.sender_cpu_s, raw.packets),
        "raw_reader_cpu_us_per_pkt": us(raw.receiver_cpu_s, raw.packets),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'':34s}{'link -> archive':>18s}{'raw spacepackets':>18s}")
    print(f"{'packets':34s}{link.packets:18d}{raw.packets:18d}")
    print(f"{'packets per second':34s}{result['link_pkts_per_s']:18.0f}{result['raw_pkts_per_s']:18.0f}")
    print(f"{'wall microseconds per packet':34s}{result['link_us_per_pkt']:18.1f}{result['raw_us_per_pkt']:18.1f}")
    print(f"{'sender CPU microseconds per packet':34s}{result['link_cpu_us_per_pkt']:18.1f}"
          f"{result['raw_cpu_us_per_pkt']:18.1f}")
    print(f"{'far end CPU microseconds per packet':34s}{result['ground_cpu_us_per_pkt']:18.1f}"
          f"{result['raw_reader_cpu_us_per_pkt']:18.1f}")
    print(f"link_ratio {result['link_ratio']:.2f} (target >= 0.5), median of {result['link_ratios']}")


if __name__ == "__main__":
    main()
