"""The job runner in a test's own process: a ``Harness`` that feeds it frames and captures
what it says, a valid submit (``GOOD``), reading its database (``rows``), ticking it until a
condition holds (``tick_until``), and running a real program to its end (``finish``; matmul
for ``STEPS`` steps is the reference run)."""

import sqlite3

import numpy as np

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.hal.protocol import N_GPUS
from flight.subsystems.jobs.model import GPU_MAX_CLOCK_MHZ
from flight.subsystems.jobs.runner import JobRunner
from tests.support.predicates import wait_until

GOOD = {"gpus_min": 4, "gpus_max": 8, "work_gpu_s": 1000.0, "priority": 5, "checkpoint_interval_s": 20.0,
        "checkpoint_cost_s": 2.0, "deadline_s": 0.0, "critical": False, "kind": "synthetic"}
STEPS = 5000


class Harness:
    """A JobRunner on ``data_dir`` with its outputs captured; ``tick()`` feeds one frame."""

    def __init__(self, data_dir, workload="none", tle_lines=(), **params):
        self.config = RunConfig(bus=BusAddress("inproc://p", "inproc://s", "inproc://c"), data_dir=str(data_dir),
                                hk_period_ticks=10, params={"jobs": {"workload": workload, **params}},
                                tle_lines=tuple(tle_lines))
        self.out = []
        self.runner = JobRunner(self.config, lambda kind, name, data: self.out.append((kind, name, data)))
        self.runner.on_start()
        self.clock = np.full(N_GPUS, GPU_MAX_CLOCK_MHZ)
        self.online = np.ones(N_GPUS, dtype=bool)
        self.unc = np.zeros(N_GPUS)
        self.cor = np.zeros(N_GPUS)
        self.limit_w = np.full(N_GPUS, 1000.0)
        self.soc = 0.95

    def tick(self, n=1, start=None):
        r = self.runner
        for _ in range(n):
            t = (start if start is not None else r.tick) + 1
            start = None
            r.on_frame(t, float(t), {"gpu_clock_mhz": self.clock, "gpu_util": np.ones(N_GPUS),
                                     "gpu_online": self.online.copy(), "gpu_ecc_corrected": self.cor.copy(),
                                     "gpu_ecc_uncorrected": self.unc.copy(), "gpu_power_limit_w": self.limit_w.copy(),
                                     "battery_soc": self.soc, "battery_capacity_j": 160e3 * 3600,
                                     "bus_load_w": 5300.0})

    def events(self, name):
        return [d for kind, n, d in self.out if kind == "ev" and n == f"jobs.{name}"]

    def hk(self):
        return [d for kind, n, d in self.out if kind == "tm"][-1]


def rows(path, sql):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def finish(run, timeout_s=60.0):
    """Everything ``run`` says until it exits."""
    said = []
    wait_until(lambda: said.extend(run.poll()) or run.exited, lambda: f"the program's exit; said {said[-3:]}",
               timeout_s, 0.01)
    return said


def tick_until(h, predicate, timeout_s=60.0):
    def ticked_until() -> bool:
        if predicate():
            return True
        h.tick()
        return False

    wait_until(ticked_until, "the condition, ticking the runner", timeout_s, 0.005)
