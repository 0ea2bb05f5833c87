"""Campaign throughput and in-process speed (issue 15).

    python tools/bench_campaign.py [--json] [--cases N] [--case-duration S]

Measures, on this machine:

* ``inprocess_speedup_rt``: simulated seconds per wall second of one orbit of ``flight run
  --in-process`` defaults (the bundled real element set, seed 0, every GPU offered work),
  flown by :class:`flight.executive.inprocess.InProcessRun` with its recorder (set-up not
  counted); ``inprocess_orbit_wall_s`` the wall seconds of that orbit;
* ``cases_per_min_1w`` / ``cases_per_min_2w``: campaign cases flown per minute by a
  LocalCluster of 1 and of 2 worker processes (one thread each): the first ``--cases`` cases
  of the bundled ``beta0-margins`` campaign, each ``--case-duration`` simulated seconds,
  mapped with ``client.map`` once the workers are up and have each flown a short warm-up
  case (cluster start-up and first imports not counted), timed from submission to the last
  result; ``scaling_2w`` their ratio (2.0 is perfect on two
  free cores).

The machine's load average at the start is reported (``load_avg_1m``): the figures are only
as good as the machine was quiet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from flight.campaign import spec
from flight.campaign.case import fly_case
from flight.campaign.runner import client_for, close_client
from flight.core.tle import DEFAULT_TLE_NAME, DEFAULT_TLE_PATH, load_tle, orbit_period_s
from flight.executive.inprocess import InProcessRun
from flight.hal.inprocess import in_process_config

WARM_UP_S = 30.0
"""Simulated seconds of the case each worker flies before the timing starts."""
CAMPAIGN = Path(__file__).resolve().parents[1] / "flight" / "campaigns" / "beta0-margins.toml"


def inprocess_orbit() -> tuple[float, float]:
    """``(orbit period, wall seconds)`` of one default orbit in-process."""
    tle = load_tle(DEFAULT_TLE_PATH, DEFAULT_TLE_NAME)[1]
    period_s = orbit_period_s(*tle)
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        run = InProcessRun(in_process_config(Path(tmp) / "run", tle), period_s)
        started = time.perf_counter()
        run.run()
        return period_s, time.perf_counter() - started


def cases_per_minute(workers: int, cases: list[spec.Case], warm: spec.Case, limits: spec.Limits) -> float:
    """Cases flown per minute by a LocalCluster of ``workers`` processes, each of which has
    flown ``warm`` first (its imports and first-use set-up are not counted)."""
    client = client_for(workers, None)
    try:
        client.wait_for_workers(workers, timeout=120)
        client.run(fly_case, warm, limits)
        started = time.perf_counter()
        futures = client.map(fly_case, cases, limits=limits, pure=False)
        results = client.gather(futures)
        wall_s = time.perf_counter() - started
        failed = [r["row"]["error"] for r in results if r["row"]["error"]]
        if failed:
            raise RuntimeError(f"{len(failed)} bench cases raised; the first: {failed[0]}")
        return len(cases) / wall_s * 60.0
    finally:
        close_client(client)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--cases", type=int, default=16, help="campaign cases per measurement (default 16)")
    ap.add_argument("--case-duration", type=float, default=900.0, metavar="S",
                    help="simulated seconds of each campaign case (default 900)")
    args = ap.parse_args()
    load_avg = os.getloadavg()[0]
    period_s, orbit_wall_s = inprocess_orbit()
    campaign = dataclasses.replace(spec.load(CAMPAIGN), duration_s=args.case_duration, orbits=None)
    cases = [campaign.case(i) for i in range(args.cases)]
    warm = dataclasses.replace(campaign, duration_s=WARM_UP_S).case(args.cases)
    one = cases_per_minute(1, cases, warm, campaign.limits)
    two = cases_per_minute(2, cases, warm, campaign.limits)
    out = {
        "inprocess_speedup_rt": round(period_s / orbit_wall_s, 1),
        "inprocess_orbit_wall_s": round(orbit_wall_s, 3),
        "cases_per_min_1w": round(one, 2),
        "cases_per_min_2w": round(two, 2),
        "scaling_2w": round(two / one, 3),
        "cases": args.cases,
        "case_duration_s": args.case_duration,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(load_avg, 2),
    }
    if args.json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:24s} {value}")


if __name__ == "__main__":
    main()
