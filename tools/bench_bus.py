"""Bus benchmark: framework telemetry throughput against raw pyzmq, and one lockstep orbit.

Measured side by side in one run, so the ratio holds on a noisy shared machine:

* ``framework_msgs_per_s``: housekeeping packets (a ``thermal.hk``-sized payload: scalars and
  a 72-value array) encoded with :class:`flight.core.messages.Encoder`, published through the
  executive's XSUB/XPUB proxy (:class:`flight.core.bus.Broker`) over ipc://, received and
  validated with :func:`flight.core.messages.decode`;
* ``raw_msgs_per_s``: the same payload with bare ``msgpack.packb``/``unpackb`` over a direct
  pyzmq PUB -> SUB on ipc:// (no proxy, no envelope, no validation);
* ``telemetry_ratio`` = framework / raw (target >= 0.5);
* ``orbit_wall_s``: wall seconds of ``flight run --orbits 1 --speed max`` (target <= 10 on 2 cores),
  the median of ``--orbit-runs`` runs (each one in ``orbit_runs_wall_s``): on a shared machine
  one run can be a third slower than the next.
* ``tick_overhead_ratio`` = ``full_stack_tick_ms`` / ``in_process_tick_ms`` (target <= 3), the
  two measured alternately in this run over the same ticks (one orbit of the default element
  set, seed 0, default workload), each as (median one-orbit wall time - median wall time of a
  :data:`SHORT_RUN_S` run) / the ticks between, so start-up and shutdown are taken out:

  - ``full_stack_tick_ms``: ``flight run``: the simulator and the HAL bridge in one process,
    power, thermal, jobs and link each in its own, the executive's proxy, recorder and
    supervisor, and every bus and lockstep hop between them;
  - ``in_process_tick_ms``: ``flight run --in-process`` (:mod:`flight.executive.inprocess`):
    the same components (link and recorder included) in the same lockstep order in one
    process, no bus. ``same_telemetry`` says both runs recorded the same
    ``telemetry_sha256``, i.e. did the same work;
  - ``tick_overhead_ratio_runs``: the same ratio from each round's own four runs alone (the
    spread a shared machine puts around the median);
  - ``rack_tick_ms``: for reference, :class:`flight.hal.inprocess.InProcessRack` alone flying
    as many ticks: the simulator step and the power, thermal and job runner code, without the
    link, the bridge's housekeeping and the recorder.

The publisher runs in its own process in both cases, as in flight.

    python tools/bench_bus.py [--messages N] [--repeats R] [--orbit-runs K] [--no-orbit] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from flight.core import bus
from flight.core.messages import Encoder, decode
from flight.core.tle import DEFAULT_TLE_NAME, DEFAULT_TLE_PATH, load_tle, orbit_period_s
from flight.hal.inprocess import InProcessRack
from sim_hw.local import SimRig

SHORT_RUN_S = 60.0
"""Simulated seconds of the run whose wall time is taken as the full stack's start-up and
shutdown cost."""


def payload() -> dict:
    return {"setpoint_c": 25.0, "coolant_supply_temp_c": 25.3, "supply_error_c": 0.3,
            "valve_cmd_frac": np.full(4, 0.5), "pump_cmd_frac": 0.6, "gpu_target_c": 80.0,
            "gpu_temp_max_c": 71.2, "headroom_total_w": 70000.0, "gpu_headroom_w": np.full(72, 990.0),
            "cycle_slips": 0, "decode_errors": 0}


def _raw_payload() -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in payload().items()}


def _publish(kind: str, endpoint: str, n: int, ready: mp.Event) -> None:
    ctx = zmq.Context()
    if kind == "framework":
        sock = bus.publisher(ctx, bus.BusAddress(endpoint, "", ""))
        enc = Encoder("thermal")
        send = lambda i: sock.send_multipart(enc.encode("tm", "thermal.hk", payload(), i, float(i)))  # noqa: E731
    else:
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, bus.PUB_HWM)
        sock.connect(endpoint)
        send = lambda i: sock.send_multipart([b"tm/thermal.hk", msgpack.packb(  # noqa: E731
            {"seq": i, "data": _raw_payload()}, use_bin_type=True)])
    ready.wait()
    time.sleep(0.3)  # let the subscription reach the publisher
    for i in range(1, n + 1):
        send(i)
    time.sleep(0.5)
    ctx.destroy(linger=2000)


def measure(kind: str, n: int) -> float:
    """Messages per second received and decoded by one subscriber."""
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory(prefix="rf-bench-", dir="/tmp") as tmp:
        addr = bus.BusAddress.in_dir(Path(tmp))
        broker = None
        if kind == "framework":
            broker = bus.Broker(ctx, addr)
            sub = bus.subscriber(ctx, addr, (b"tm/",))
            pub_endpoint = addr.pub
            recv = lambda: decode(sub.recv_multipart()[1]).seq  # noqa: E731
        else:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, bus.PUB_HWM)
            sub.setsockopt(zmq.SUBSCRIBE, b"tm/")
            sub.bind(addr.sub)
            pub_endpoint = addr.sub
            recv = lambda: msgpack.unpackb(sub.recv_multipart()[1], raw=False)["seq"]  # noqa: E731
        ready = mp.Event()
        proc = mp.Process(target=_publish, args=(kind, pub_endpoint, n, ready))
        proc.start()
        ready.set()
        got, start = 0, None
        while sub.poll(5000):
            seq = recv()
            if start is None:
                start = time.perf_counter()
            got += 1
            if seq == n:
                break
        elapsed = time.perf_counter() - start
        proc.join()
        if broker:
            broker.close()
        ctx.destroy(linger=0)
    return (got - 1) / elapsed if got > 1 else 0.0


def run_summary(*args: str) -> dict:
    """The summary of one lockstep ``flight run`` with ``args`` (a length: ``--orbits N`` or
    ``--duration S``; ``--in-process``)."""
    with tempfile.TemporaryDirectory(prefix="rf-orbit-") as tmp:
        summary = Path(tmp) / "s.json"
        subprocess.run([sys.executable, "-m", "flight.cli", "run", *args, "--speed", "max", "--no-progress",
                        "--data", str(Path(tmp) / "run"), "--summary-json", str(summary)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(summary.read_text())


def in_process_wall_s(ticks: int) -> float:
    """Wall seconds of :class:`InProcessRack` flying ``ticks`` one-second ticks."""
    tle_lines = load_tle(DEFAULT_TLE_PATH, DEFAULT_TLE_NAME)[1]
    with tempfile.TemporaryDirectory(prefix="rf-inproc-") as tmp:
        rack = InProcessRack(Path(tmp), SimRig.lockstep(tle_lines), tle_lines)
        try:
            started = time.perf_counter()
            rack.fly(float(ticks))
            return time.perf_counter() - started
        finally:
            rack.close()


def tick_overhead(runs: int) -> dict:
    """One-orbit and short runs of the full stack and in process, and in-process rack
    flights, alternated; their figures."""
    ticks = round(orbit_period_s(*load_tle(DEFAULT_TLE_PATH, DEFAULT_TLE_NAME)[1]))
    walls: dict[str, list[float]] = {"orbit": [], "short": [], "inproc_orbit": [], "inproc_short": [], "rack": []}
    hashes = set()
    for _ in range(runs):
        for key, mode in (("orbit", ()), ("inproc_orbit", ("--in-process",))):
            summary = run_summary("--orbits", "1", *mode)
            walls[key].append(round(summary["wall_time_s"], 2))
            hashes.add(summary["telemetry_sha256"])
        walls["short"].append(round(run_summary("--duration", f"{SHORT_RUN_S:g}")["wall_time_s"], 2))
        walls["inproc_short"].append(round(run_summary("--duration", f"{SHORT_RUN_S:g}", "--in-process")["wall_time_s"], 3))
        walls["rack"].append(in_process_wall_s(ticks))
    med = {key: statistics.median(values) for key, values in walls.items()}
    full_ms = (med["orbit"] - med["short"]) / (ticks - SHORT_RUN_S) * 1e3
    inproc_ms = (med["inproc_orbit"] - med["inproc_short"]) / (ticks - SHORT_RUN_S) * 1e3
    # each round's own ratio, so a reader sees the spread a shared machine puts around the median
    per_round = [round((o - s) / (io - i_s), 2) for o, s, io, i_s in
                 zip(walls["orbit"], walls["short"], walls["inproc_orbit"], walls["inproc_short"])]
    return {"orbit_wall_s": med["orbit"], "orbit_runs_wall_s": walls["orbit"],
            "short_run_wall_s": med["short"], "in_process_orbit_wall_s": med["inproc_orbit"],
            "full_stack_tick_ms": round(full_ms, 3), "in_process_tick_ms": round(inproc_ms, 3),
            "rack_tick_ms": round(med["rack"] / ticks * 1e3, 3), "same_telemetry": len(hashes) == 1,
            "tick_overhead_ratio": round(full_ms / inproc_ms, 2), "tick_overhead_ratio_runs": per_round}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=50_000, help="messages per measurement (default 50000)")
    p.add_argument("--repeats", type=int, default=3, help="alternating measurements of each, best kept")
    p.add_argument("--orbit-runs", type=int, default=3, help="one-orbit runs, median reported (default 3)")
    p.add_argument("--no-orbit", action="store_true", help="skip the one-orbit lockstep runs and the tick overhead")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    framework = raw = 0.0
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
        framework = max(framework, measure("framework", args.messages))
        raw = max(raw, measure("raw", args.messages))
    result = {"framework_msgs_per_s": round(framework), "raw_msgs_per_s": round(raw),
              "telemetry_ratio": round(framework / raw, 3) if raw else 0.0}
    if not args.no_orbit:
        result.update(tick_overhead(args.orbit_runs))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:22s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
