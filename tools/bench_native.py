"""Benchmark the native control loops against their pure-Python references.

For one rack (72 GPUs / 72 PID loops) it times, in the same run and with ``timeit``
best-of-N:

- the bare C call through cffi (``lib.rf_pid_step`` / ``lib.rf_power_allocate``) on buffers
  wrapped once,
- the Python wrapper (:meth:`ThermalPid.step`, :meth:`PowerAllocator.allocate`), i.e. what
  the subsystems pay per tick,
- the pure-Python reference (:func:`pid_step_reference`, :func:`allocate_reference`),

and reports µs per step and the speedups ``reference / C call``. The power case is the
expensive one: a budget between everyone-at-minimum and everyone-at-maximum, so the water
level is solved by bisection every tick. Target: C call >= 20x faster than the reference.

Usage: ``python tools/bench_native.py [--json] [--n 72] [--repeat 7]`` with the package
installed (``pip install -e .``), or ``PYTHONPATH=. python tools/bench_native.py`` after an
in-place build (``python native/build_native.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import timeit
from collections.abc import Callable

import numpy as np

from flight._native import lib
from flight.control.power_alloc import PowerAllocator, allocate_reference
from flight.platform import GPU_IDLE_W, GPU_MAX_W, GPU_MIN_W
from flight.control.thermal_pid import (
    PID_PARAM_NAMES,
    ThermalPid,
    pid_reset_reference,
    pid_step_reference,
    thermal_headroom_w,
)

TARGET_SPEEDUP = 20.0


def best_us(fn: Callable[[], object], repeat: int, min_time_s: float = 0.05) -> float:
    """Best-of-``repeat`` time per call, µs, with enough calls per sample to be measurable."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * min_time_s / 0.2))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def bench_thermal(n: int, repeat: int, rng: np.random.Generator) -> dict[str, float]:
    pid = ThermalPid(n)
    pid.kp, pid.ki, pid.kd = 0.1, 0.005, 0.5
    pid.derivative_tau_s, pid.slew_per_s = 5.0, 0.05
    pid.direction = -1.0
    pid.reset(0.5)
    setpoint = np.full(n, 25.0)
    measurement = 25.0 + rng.normal(0.0, 0.5, n)
    dt = 1.0

    params = {name: getattr(pid, name).tolist() for name in PID_PARAM_NAMES}
    ref_state = pid_reset_reference([0.5] * n, params["out_min"], params["out_max"])
    sp_list, y_list = setpoint.tolist(), measurement.tolist()

    pid.step(dt, setpoint, measurement)
    c_args = (n, dt, pid._c_setpoint, pid._c_measurement, pid._params, pid._state)
    c_us = best_us(lambda: lib.rf_pid_step(*c_args), repeat)
    wrapper_us = best_us(lambda: pid.step(dt, setpoint, measurement), repeat)
    ref_us = best_us(lambda: pid_step_reference(dt, sp_list, y_list, ref_state, **params), repeat)

    temp = 70.0 + rng.normal(0.0, 5.0, n)
    power = 800.0 + rng.normal(0.0, 50.0, n)
    out = np.empty(n)
    headroom_us = best_us(lambda: thermal_headroom_w(temp, power, 85.0, 0.05, out=out), repeat)
    return {
        "thermal_c_us": c_us,
        "thermal_wrapper_us": wrapper_us,
        "thermal_ref_us": ref_us,
        "thermal_speedup": ref_us / c_us,
        "thermal_wrapper_speedup": ref_us / wrapper_us,
        "headroom_wrapper_us": headroom_us,
    }


def bench_power(n: int, repeat: int, rng: np.random.Generator) -> dict[str, float]:
    alloc = PowerAllocator(n, GPU_MIN_W, GPU_MAX_W, GPU_IDLE_W, hysteresis_w=0.0)
    weight = rng.uniform(0.5, 4.0, n)
    cap = np.where(rng.random(n) < 0.2, rng.uniform(600.0, 1000.0, n), math.inf)
    budget = n * 650.0  # between n * GPU_MIN_W and n * GPU_MAX_W: the water level is bisected

    res = alloc.allocate(budget, weight, cap)
    c_args = (n, budget, alloc._c_weight, alloc._c_cap, alloc._cfg, alloc._work,
              alloc._c_limits, alloc._result)
    c_us = best_us(lambda: lib.rf_power_allocate(*c_args), repeat)
    wrapper_us = best_us(lambda: alloc.allocate(budget, weight, cap), repeat)

    ref_args = (
        budget,
        weight.tolist(),
        cap.tolist(),
        [GPU_MIN_W] * n,
        [GPU_MAX_W] * n,
        [GPU_IDLE_W] * n,
        res.limits_w.tolist(),
        0.0,
    )
    ref_us = best_us(lambda: allocate_reference(*ref_args), repeat)
    return {
        "power_c_us": c_us,
        "power_wrapper_us": wrapper_us,
        "power_ref_us": ref_us,
        "power_speedup": ref_us / c_us,
        "power_wrapper_speedup": ref_us / wrapper_us,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--n", type=int, default=72, help="GPUs / PID loops (default 72)")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats, best taken")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    result: dict[str, float | int | bool] = {"n": args.n}
    result.update(bench_thermal(args.n, args.repeat, rng))
    result.update(bench_power(args.n, args.repeat, rng))
    result["target_speedup"] = TARGET_SPEEDUP
    result["meets_target"] = bool(
        result["thermal_speedup"] >= TARGET_SPEEDUP and result["power_speedup"] >= TARGET_SPEEDUP
    )

    if args.json:
        print(json.dumps(result))
        return 0
    print(f"native control loops, n = {args.n}, best of {args.repeat}, µs per step")
    print(f"{'loop':<10}{'C call':>10}{'wrapper':>10}{'Python ref':>12}{'speedup':>10}{'wrapper x':>11}")
    for name in ("thermal", "power"):
        print(
            f"{name:<10}{result[f'{name}_c_us']:>10.2f}{result[f'{name}_wrapper_us']:>10.2f}"
            f"{result[f'{name}_ref_us']:>12.1f}{result[f'{name}_speedup']:>9.0f}x"
            f"{result[f'{name}_wrapper_speedup']:>10.0f}x"
        )
    print(f"headroom wrapper: {result['headroom_wrapper_us']:.2f} µs")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"target: C >= {TARGET_SPEEDUP:.0f}x faster than the reference -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
