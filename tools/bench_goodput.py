"""Goodput of the job scheduler against a naive baseline (FIFO, no eclipse look-ahead, no
checkpoints), over a simulated day.

    python tools/bench_goodput.py [--hours 24] [--seed 1] [--json]

Three flights, the same day of the eclipse-heavy case (``flight/data/tle-beta0.txt``,
|β| ≤ 2.1°: 35.6-min eclipses every 95.7 min) with the same seeded mixed job load:

* batch: priority 0–3, 8 or 16 GPUs (half as few at least), 0.5–1.5 h each, no deadline;
* deadline: priority 4–6, 4–8 GPUs, 10–30 min, due three times its run time after it arrives;
* critical: priority 8, 2 GPUs per replica, 15–30 min.

Jobs asking for twice the rack's GPUs wait at the start and the rest arrive uniformly at
random over the run, offering about 1.3× what the rack could do at full clock all run, so
the queue never runs dry over a day (a run of a few hours offers only a few jobs: use a day
for the numbers). A submission the runner refuses as BUSY, its queue full, is counted and
dropped. The flights:

* this scheduler (``goodput``): the job runner (:class:`flight.subsystems.jobs.runner.JobRunner`)
  with ``policy=priority`` (priorities, EDF, preemption, eclipse look-ahead, checkpoints
  every 600 s costing 10 s) under the power manager's eclipse look-ahead energy plan
  (:func:`flight.subsystems.power.manager.plan_energy`), as flight runs them;
* the naive baseline (``baseline_goodput``): no eclipse look-ahead and no checkpointing
  anywhere. The runner runs ``policy=fifo`` (submission order, no backfill, no preemption,
  no look-ahead) with jobs submitted with a checkpoint interval of a day, i.e. never (an
  uncorrectable ECC error throws the job's work away), and the power manager the reactive
  policy (:func:`flight.subsystems.power.manager.plan_reactive`: the battery gives what the load asks
  until the SOC floor, nothing is held back for charging). The rack runs flat out into the
  shadow, reaches the floor before sunrise (the idle rack then takes the battery below the
  floor the bound keeps to, to ~0.66: energy the bound does not count), and the mode
  machine's POWER_SAVE (GPUs capped, only critical and high-priority jobs kept) holds until
  the battery is back above 0.80 in sunlight. The mode machine, load shedding and thermal
  control are flight's in every flight;
* FIFO under the flight energy plan (``fifo_planned_goodput``): the baseline's runner and
  jobs under the look-ahead plan. It is not the baseline the target is set against: it
  shows how much of ``ratio`` (this scheduler against the naive baseline) the job scheduler
  earns on its own (``ratio_fifo_planned``) and how much the energy look-ahead does.

Where the GPU time went is reported beside the goodput: ``delivered_gpu_s`` (what the GPUs
computed at all, every replica and checkpoint included), ``done_gpu_s`` (job progress, one
replica counted, including progress later lost), ``replica_gpu_s`` (the second replicas of
completed critical jobs) and ``in_flight_gpu_s`` (progress of jobs still unfinished when the
run ends; ``checkpointed_gpu_s`` the part of it a checkpoint keeps). The end of the window
cuts jobs short: ``goodput_with_checkpointed`` also counts that checkpointed progress as
useful (the run summary's ``gpu_work_useful_s`` in the same sense); ``goodput`` does not.

``goodput`` = GPU-s of completed jobs (each job's ``work_gpu_s`` once; the second replica of
a critical job is overhead, not goodput) ÷ the bound: the full-clock GPU-s an ideal
controller with perfect foresight could have run on the same run's physics —

* energy: the array output the run saw (potential, before the shunt), less the bus load it
  measured, with the battery between the flight plan's SOC floor (0.70) and full, at the
  simulator's charge/discharge efficiencies; in sunlight the whole rack runs at full clock
  and the surplus charges the battery; through each stretch where the array cannot carry
  the full rack, the highest constant work rate the battery holds above the floor. The
  rack's draw at a work rate is the simulator's GPU model (idle + dynamic ∝ clock³ above
  the voltage floor, spread evenly; below the lowest limit's clock, fewer GPUs at that
  limit) plus the host/fabric load that follows throughput;
* radiators: at each tick the heat the radiators could reject with every panel at the
  coolant's trip temperature (``rack_trip_return_c``) against that tick's Earth IR, albedo
  and Sun loading; the rack's heat may not exceed it.

How this differs from ``flight run``: it flies :class:`flight.hal.inprocess.InProcessRack`:
the simulator, the thermal controller, the power manager (with its mode machine, so
``ctl/mode`` reaches the job runner) and the job runner are the real classes, stepped in
one process in lockstep order (data products and ``ctl`` messages of tick N delivered
before frame N+1) without the bus, the executive, the link or the recorder; submissions are
handed to the runner's command handler directly, and the job store lives in a temporary
directory. A day takes well under a minute per flight where the full stack takes ~150 s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from flight.core.component import CommandError
from flight.hal.protocol import N_GPUS
from flight.platform import SOC_FLOOR
from flight.subsystems.jobs.model import gpu_speed
from flight.subsystems.power.modes import MODES
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from sim_hw.params import SimParams
from sim_hw.thermal import (
    KELVIN,
    SIGMA,
    absorbed_environment_w_m2,
    earth_view_factor_vertical_plate,
)

from flight.hal.inprocess import InProcessRack
from sim_hw.local import SimRig

BETA0_TLE = DEFAULT_TLE_PATH.parent / "tle-beta0.txt"
OFFERED_LOAD = 1.3
"""Offered work over what the rack could do at full clock all run."""
CHECKPOINT_INTERVAL_S, CHECKPOINT_COST_S = 600.0, 10.0
STARTING_BACKLOG_GPUS = 2 * N_GPUS
"""The jobs waiting at the start ask for this many GPUs together, so the rack starts full."""
NO_CHECKPOINT_INTERVAL_S = 86400.0
"""The baseline's interval: longer than any job, so it never checkpoints."""


@dataclass
class Arrival:
    time_s: float
    args: dict


def workload(hours: float, seed: int) -> list[Arrival]:
    """The seeded mixed job load (see the module docstring), sorted by arrival time."""
    rng = np.random.default_rng(seed)
    duration_s = hours * 3600.0
    offered_gpu_s = OFFERED_LOAD * N_GPUS * duration_s
    jobs, total = [], 0.0
    while total < offered_gpu_s:
        kind = rng.choice(["batch", "batch", "deadline", "critical"])
        if kind == "batch":
            gpus = int(rng.choice((8, 16)))
            run_s = rng.uniform(1800.0, 5400.0)
            args = {"priority": int(rng.integers(0, 4)), "gpus_min": gpus // 2, "gpus_max": gpus, "critical": False}
        elif kind == "deadline":
            gpus = int(rng.integers(4, 9))
            run_s = rng.uniform(600.0, 1800.0)
            args = {"priority": int(rng.integers(4, 7)), "gpus_min": gpus, "gpus_max": gpus, "critical": False}
        else:
            gpus, run_s = 2, rng.uniform(900.0, 1800.0)
            args = {"priority": 8, "gpus_min": gpus, "gpus_max": gpus, "critical": True}
        jobs.append((kind, run_s, dict(args, work_gpu_s=gpus * run_s, kind="synthetic")))
        total += gpus * run_s * (2 if kind == "critical" else 1)
    # a starting backlog asking for twice the rack's GPUs, the rest arriving uniformly over the run
    gpus_asked = np.cumsum([args["gpus_max"] * (2 if args["critical"] else 1) for _, _, args in jobs])
    backlog = int(np.searchsorted(gpus_asked, STARTING_BACKLOG_GPUS)) + 1
    times = np.concatenate([np.zeros(backlog),
                            np.sort(rng.uniform(0.0, duration_s - 1.0, max(0, len(jobs) - backlog)))])
    arrivals = []
    for t, (kind, run_s, args) in zip(times.tolist(), jobs):
        deadline_s = t + 3.0 * run_s + 1.0 if kind == "deadline" else 0.0
        arrivals.append(Arrival(t, dict(args, deadline_s=deadline_s)))
    return arrivals


@dataclass(frozen=True)
class Setup:
    """One flight's software: the job runner's ``policy``, the power manager's
    ``energy_plan``, whether jobs checkpoint, and the prefix of its keys in the result."""

    key: str
    label: str
    policy: str
    energy_plan: str
    checkpoints: bool


SETUPS = (
    Setup("", "this scheduler", "priority", "lookahead", True),
    Setup("baseline_", "naive baseline", "fifo", "reactive", False),
    Setup("fifo_planned_", "FIFO, energy plan", "fifo", "lookahead", False),
)


@dataclass
class Flight:
    """What one flight's day produced."""

    setup: Setup
    finished_gpu_s: float = 0.0
    delivered_gpu_s: float = 0.0
    """Full-clock GPU-s the GPUs delivered (every replica, checkpoints included)."""
    done_gpu_s: float = 0.0
    """Job progress made, including progress later lost (one replica counted)."""
    replica_gpu_s: float = 0.0
    """The second replicas' share of completed critical jobs: redundancy, not goodput."""
    in_flight_gpu_s: float = 0.0
    """Progress of jobs unfinished at the end (kept by checkpoints or not)."""
    checkpointed_gpu_s: float = 0.0
    """The part of that progress kept by a checkpoint (what a crash at the end would keep)."""
    completed: int = 0
    failed: int = 0
    rollbacks: int = 0
    preempted: int = 0
    sdc_detected: int = 0
    refused: int = 0
    soc_min: float = 1.0
    mode_time_s: dict = field(default_factory=dict)
    array_w: list[float] = field(default_factory=list)
    bus_w: list[float] = field(default_factory=list)
    reject_cap_w: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def fly(setup: Setup, hours: float, seed: int, arrivals: list[Arrival], progress: Progress | None) -> Flight:
    """One simulated day of ``setup``."""
    tle = load_tle(BETA0_TLE)[1]
    n_ticks = int(hours * 3600)
    out = Flight(setup)
    with tempfile.TemporaryDirectory(prefix="bench-goodput-") as data_dir:
        rack = InProcessRack(Path(data_dir), SimRig.lockstep(tle, seed=seed), tle, seed=seed,
                             params={"jobs": {"workload": "none", "policy": setup.policy},
                                     "power": {"energy_plan": setup.energy_plan}})
        runner, sat = rack.subsystem("jobs"), rack.rig.sat
        p = sat.params
        view = earth_view_factor_vertical_plate(sat.orbit.at(0.0).altitude_km, p.earth_radius_km)
        emit_area_m2 = p.radiator_area_m2 * p.radiator_sides * p.radiator_fin_efficiency
        hot_k4 = (p.rack_trip_return_c + KELVIN) ** 4
        task = progress.add_task(f"{setup.label:>24}", total=n_ticks) if progress else None
        pending = list(arrivals)

        def on_frame(frame: dict) -> None:
            while pending and pending[0].time_s <= frame["time_s"]:
                args = dict(pending.pop(0).args)
                if setup.checkpoints:
                    args.update(checkpoint_interval_s=CHECKPOINT_INTERVAL_S, checkpoint_cost_s=CHECKPOINT_COST_S)
                else:
                    args.update(checkpoint_interval_s=NO_CHECKPOINT_INTERVAL_S, checkpoint_cost_s=0.0)
                runner.time_s = frame["time_s"]
                try:
                    runner.execute("submit", args)
                except CommandError:
                    out.refused += 1
            env = sat.orbit.at(frame["time_s"])
            solar = p.solar_constant_w_m2 / (env.sun_distance_au ** 2)
            absorbed = absorbed_environment_w_m2(p, view, p.radiator_absorptance, p.radiator_emittance,
                                                 env.sun_fraction, env.cos_sun_zenith, solar,
                                                 p.radiator_sun_cos / p.radiator_sides)
            out.delivered_gpu_s += float(gpu_speed(frame).sum()) * rack.config.tick_s
            out.array_w.append(frame["solar_array_power_w"])
            out.bus_w.append(frame["bus_load_w"])
            out.soc_min = min(out.soc_min, frame["battery_soc"])
            out.reject_cap_w.append(emit_area_m2 * (p.radiator_emittance * SIGMA * hot_k4 - absorbed))
            if task is not None and len(out.array_w) % 600 == 0:
                progress.update(task, completed=len(out.array_w))

        started = time.perf_counter()
        rack.fly(n_ticks * rack.config.tick_s, on_frame)
        out.wall_s = time.perf_counter() - started
        out.finished_gpu_s = runner.finished_gpu_s
        out.done_gpu_s = runner.work_done_gpu_s
        out.in_flight_gpu_s = sum(j.done_gpu_s for j in runner.jobs.values())
        out.checkpointed_gpu_s = sum(j.checkpoint_gpu_s for j in runner.jobs.values())
        out.replica_gpu_s = runner.store.db.execute(
            "SELECT COALESCE(SUM(r.work_gpu_s), 0) FROM results r JOIN jobs j USING (job_id) "
            "WHERE j.critical = 1 AND j.kind = 'synthetic' AND r.outcome = 'completed'").fetchone()[0]
        out.completed, out.failed, out.rollbacks = runner.completed, runner.failed, runner.rolled_back
        out.preempted, out.sdc_detected = runner.preempted, runner.sdc_detected
        _, seconds = rack.series("power.hk", "mode_time_s")
        out.mode_time_s = dict(zip(MODES, seconds[-1].tolist())) if len(seconds) else {}
        rack.close()
    if task is not None:
        progress.update(task, completed=n_ticks)
    return out


def rack_power_w(rate: float, p: SimParams) -> float:
    """The rack's least IT draw, W, delivering ``rate`` full-clock GPU-s per second (0..72):
    the simulator's GPU model at the best spread (even clocks; below the lowest limit's
    clock, fewer GPUs at that limit, the rest idle) plus the host/fabric load that follows
    throughput (:mod:`sim_hw.gpus`)."""
    dyn_w = p.gpu_max_limit_w - p.gpu_idle_w
    xv = p.gpu_voltage_floor_frac
    x_min = ((p.gpu_min_limit_w - p.gpu_idle_w) / dyn_w) ** (1 / 3)
    x = rate / N_GPUS
    if x >= x_min:
        gpus_dyn = N_GPUS * dyn_w * (x ** 3 if x >= xv else x * xv * xv)
    else:
        gpus_dyn = (rate / x_min) * dyn_w * x_min ** 3
    other = p.other_it_idle_w + (p.other_it_max_w - p.other_it_idle_w) * x
    return N_GPUS * p.gpu_idle_w + gpus_dyn + other


def _rate_for_power(power_w: float, p: SimParams) -> float:
    """Inverse of :func:`rack_power_w` (monotonic), by bisection; 0 when even idle does not fit."""
    if power_w <= rack_power_w(0.0, p):
        return 0.0
    lo, hi = 0.0, float(N_GPUS)
    if rack_power_w(hi, p) <= power_w:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rack_power_w(mid, p) <= power_w else (lo, mid)
    return lo


def _battery_after(energy_j: float, spare_w: np.ndarray, rate: float, p: SimParams) -> float:
    """Battery energy, J, after running the rack at ``rate`` through the 1 s ticks whose
    array power left for the rack is ``spare_w``; -1 if it would pass the SOC floor."""
    draw_w = rack_power_w(rate, p)
    e_min, e_max = SOC_FLOOR * p.battery_capacity_j, p.battery_capacity_j
    for s in spare_w.tolist():
        energy_j = (min(e_max, energy_j + (s - draw_w) * p.battery_charge_efficiency) if s >= draw_w
                    else energy_j - (draw_w - s) / p.battery_discharge_efficiency)
        if energy_j < e_min:
            return -1.0
    return energy_j


def bound_gpu_s(flight: Flight, p: SimParams) -> tuple[float, float, float]:
    """The ideal controller's full-clock GPU-s on ``flight``'s physics (module docstring).

    Returns ``(bound GPU-s, energy-only bound GPU-s, seconds where the radiators bound)``.
    """
    array = np.asarray(flight.array_w)
    bus = np.asarray(flight.bus_w)
    cap_rate = np.array([_rate_for_power(q, p) for q in flight.reject_cap_w])
    full = rack_power_w(N_GPUS, p)
    spare = array - bus  # what the rack could take from the array
    e_max = p.battery_capacity_j
    energy = p.battery_initial_soc * e_max
    rates = np.zeros(array.size)
    t = 0
    while t < array.size:
        if spare[t] >= full:
            rates[t] = N_GPUS
            energy = min(e_max, energy + (spare[t] - full) * p.battery_charge_efficiency)
            t += 1
            continue
        end = t
        while end < array.size and spare[end] < full:
            end += 1
        seg = spare[t:end]
        lo, hi = 0.0, float(N_GPUS)
        if _battery_after(energy, seg, lo, p) < 0:
            rates[t:end] = [_rate_for_power(max(0.0, s), p) for s in seg]  # no battery left: array only
        else:
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if _battery_after(energy, seg, mid, p) >= 0 else (lo, mid)
            rates[t:end] = lo
            energy = _battery_after(energy, seg, lo, p)
        t = end
    energy_only = float(rates.sum())
    bounded = np.minimum(rates, cap_rate)
    return float(bounded.sum()), energy_only, float(np.count_nonzero(cap_rate < rates))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the job load and the radiation")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    if not 0 < args.hours <= 48:
        ap.error("--hours must be in (0, 48]")
    arrivals = workload(args.hours, args.seed)
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=args.json) as progress:
        flights = [fly(setup, args.hours, args.seed, arrivals, progress) for setup in SETUPS]
    p = SimParams()
    result = {"hours": args.hours, "seed": args.seed, "tle": BETA0_TLE.name, "jobs_offered": len(arrivals)}
    for f in flights:
        bound, energy_only, rad_s = bound_gpu_s(f, p)
        key = f.setup.key
        result.update({
            f"{key}goodput": f.finished_gpu_s / bound if bound > 0 else math.nan,
            f"{key}goodput_with_checkpointed": (f.finished_gpu_s + f.checkpointed_gpu_s) / bound if bound > 0
            else math.nan,
            f"{key}finished_gpu_s": f.finished_gpu_s, f"{key}bound_gpu_s": bound,
            f"{key}delivered_gpu_s": f.delivered_gpu_s, f"{key}done_gpu_s": f.done_gpu_s,
            f"{key}replica_gpu_s": f.replica_gpu_s, f"{key}in_flight_gpu_s": f.in_flight_gpu_s,
            f"{key}checkpointed_gpu_s": f.checkpointed_gpu_s,
            f"{key}energy_bound_gpu_s": energy_only, f"{key}radiator_bound_s": rad_s,
            f"{key}jobs_completed": f.completed, f"{key}jobs_failed": f.failed,
            f"{key}rollbacks": f.rollbacks, f"{key}preempted": f.preempted, f"{key}submits_refused": f.refused,
            f"{key}sdc_detected": f.sdc_detected, f"{key}soc_min": f.soc_min, f"{key}mode_time_s": f.mode_time_s,
            f"{key}power_save_s": f.mode_time_s.get("POWER_SAVE", 0.0), f"{key}wall_s": f.wall_s,
        })
    for name, key in (("ratio", "baseline_"), ("ratio_fifo_planned", "fifo_planned_")):
        result[name] = result["goodput"] / result[f"{key}goodput"] if result[f"{key}goodput"] else math.inf
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(title=f"goodput over {args.hours:g} h, {BETA0_TLE.name}, seed {args.seed}")
    table.add_column("")
    for setup in SETUPS:
        table.add_column(setup.label, justify="right")
    for label, key, fmt in (("goodput", "goodput", "{:.3f}"),
                            ("goodput with checkpointed", "goodput_with_checkpointed", "{:.3f}"),
                            ("finished GPU-s", "finished_gpu_s", "{:,.0f}"),
                            ("bound GPU-s", "bound_gpu_s", "{:,.0f}"),
                            ("delivered GPU-s", "delivered_gpu_s", "{:,.0f}"), ("progress GPU-s", "done_gpu_s", "{:,.0f}"),
                            ("2nd replicas GPU-s", "replica_gpu_s", "{:,.0f}"),
                            ("unfinished at end GPU-s", "in_flight_gpu_s", "{:,.0f}"),
                            ("jobs completed", "jobs_completed", "{}"),
                            ("jobs failed", "jobs_failed", "{}"), ("rollbacks", "rollbacks", "{}"),
                            ("preemptions", "preempted", "{}"), ("lowest SOC", "soc_min", "{:.3f}"),
                            ("POWER_SAVE s", "power_save_s", "{:,.0f}"), ("wall s", "wall_s", "{:.0f}")):
        table.add_row(label, *(fmt.format(result[f"{s.key}{key}"]) for s in SETUPS))
    Console().print(table)
    Console().print(f"ratio {result['ratio']:.2f} against the naive baseline, {result['ratio_fifo_planned']:.2f} "
                    f"against FIFO under the flight energy plan (targets: goodput >= 0.85, ratio >= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
