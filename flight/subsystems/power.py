"""Power manager: turns the power the satellite can spend into 72 per-GPU power limits.

Each tick:

1. What the platform and the rack's non-GPU IT load draw is measured, not assumed: the
   loads' total is array output, less what the shunt dumps, less battery charging power
   (bus power balance); the non-GPU IT share is that total minus the platform bus load and
   the GPUs' own draw, low-passed over ``OVERHEAD_TAU_S``: that share itself follows how busy
   the GPUs are, so feeding the raw value back into the budget swings the limits tick to tick.
2. The battery may supply ``(SOC - floor) * capacity / ECLIPSE_MAX_S`` while in shadow: the
   energy above the state-of-charge floor spread over the longest eclipse of a 550 km orbit,
   so the battery approaches the floor no faster than the longest night ends. In sunlight a
   charge reserve, ``(target - SOC) * capacity / SUNLIT_MIN_S``, is held back for the battery.
   Penumbra blends the two by the visible fraction of the Sun.
3. The GPU budget (what is left after the platform and non-GPU IT loads) goes to the
   batched C allocator (:class:`flight.control.power_alloc.PowerAllocator`): water-filling
   by job priority weight within each GPU's [min, min(max, thermal headroom)], hysteresis,
   and the load-shedding ladder that parks the lowest-priority GPUs when even minimums
   don't fit.

Eclipse timing here is the worst case, not the orbit's own; look-ahead from the orbit is
a later refinement (issue: power and thermal).
"""

from __future__ import annotations

import numpy as np

from flight.control.power_alloc import PowerAllocator
from flight.dictionary import Arg, Channel, Command, Component, Event
from flight.hal import N_GPUS
from flight.messages import Message
from flight.subsystem import Subsystem

GPU_MIN_W, GPU_MAX_W, GPU_IDLE_W = 400.0, 1000.0, 150.0
"""B200-class power limits and idle draw (DESIGN.md; nvidia-smi limits, estimate)."""
HYSTERESIS_W = 10.0
ECLIPSE_MAX_S = 2136.0
"""Longest eclipse of a 550 km circular orbit (35.6 min at beta 0, DESIGN.md)."""
SUNLIT_MIN_S = 3600.0
"""Shortest sunlit arc of that orbit: the 5739 s period minus the longest eclipse."""
SOC_FLOOR = 0.70
"""Normal depth of discharge 30 % (DESIGN.md); contingency is 60 %."""
SOC_TARGET = 0.95
OVERHEAD_TAU_S = 20.0


class PowerManager(Subsystem):
    COMPONENT = Component(
        "power", 2, doc="Battery protection and per-GPU power limits.",
        commands=(
            Command("set_soc_floor", 1, (Arg("soc_floor", "float", "", 0.40, 0.90,
                                             doc="Lowest planned state of charge (0.40 = contingency DoD)."),),
                    doc="Change the state-of-charge floor the discharge allowance protects."),
        ),
        telemetry=(
            Channel("battery_soc", "float", "", "State of charge.", yellow=(0.70, 1.0), red=(0.40, 1.0)),
            Channel("soc_floor", "float", "", "Planned state-of-charge floor."),
            Channel("array_power_w", "float", "W", "Solar array output."),
            Channel("discharge_allowance_w", "float", "W", "Battery power the plan allows."),
            Channel("charge_reserve_w", "float", "W", "Array power held back for charging."),
            Channel("it_overhead_w", "float", "W", "Measured non-GPU IT load (CPUs, switches)."),
            Channel("gpu_budget_w", "float", "W", "Power given to the allocator for GPUs."),
            Channel("limit_total_w", "float", "W", "Sum of GPU power limits (parked GPUs at idle)."),
            Channel("gpus_parked", "int", "count", "GPUs parked at idle (shed or too hot).", yellow=(0, 0)),
            Channel("gpus_shed", "int", "count", "GPUs parked by the load-shedding ladder.", yellow=(0, 0)),
            Channel("feasible", "bool", "", "Even minimum limits fit the budget."),
            Channel("gpu_power_limit_w", "float", "W", "Per-GPU limits sent to the HAL.", size=N_GPUS),
        ),
        events=(
            Event("soc_floor_changed", 1, "INFO", "SOC floor {old:.2f} -> {new:.2f}"),
            Event("load_shed", 2, "MEDIUM", "load shedding: {shed} GPU(s) parked, budget {budget_w:.0f} W"),
            Event("load_restored", 3, "INFO", "load shedding over: budget {budget_w:.0f} W"),
            Event("budget_infeasible", 4, "HIGH", "GPU budget {budget_w:.0f} W below even all-idle draw"),
        ),
    )
    RATE_GROUPS = ((1, "control"),)
    SUBSCRIBE = (b"data/thermal.headroom", b"data/jobs.demand")

    def __init__(self, config, emit, send_command=None, **ports) -> None:
        super().__init__(config, emit, send_command, **ports)
        self.soc_floor = float(config.params.get("power", {}).get("soc_floor", SOC_FLOOR))
        self.allocator = PowerAllocator(N_GPUS, GPU_MIN_W, GPU_MAX_W, GPU_IDLE_W, HYSTERESIS_W)
        self.cap_w = np.full(N_GPUS, GPU_MAX_W)
        self.weight = np.ones(N_GPUS)
        self.overhead_w: float | None = None
        self.last: dict = {}
        self.alloc = None
        self.shedding = False
        self.feasible = True

    def on_message(self, msg: Message) -> None:
        # Values from tick N-1: the one proxy orders them before frame N for this process.
        if msg.name == "thermal.headroom":
            self.cap_w[:] = msg.data["gpu_headroom_w"]
        elif msg.name == "jobs.demand":
            self.weight[:] = msg.data["gpu_weight"]

    def cmd_set_soc_floor(self, soc_floor: float) -> str:
        self.event("soc_floor_changed", old=self.soc_floor, new=soc_floor)
        self.soc_floor = soc_floor
        return f"SOC floor {soc_floor:.2f}"

    def control(self, frame: dict) -> None:
        soc = frame["battery_soc"]
        capacity_j = frame["battery_capacity_j"]
        array_w = frame["solar_array_power_w"]
        battery_w = frame["battery_voltage_v"] * frame["battery_current_a"]
        gpu_w = float(np.sum(frame["gpu_power_w"]))
        measured_w = max(0.0, array_w - frame["shunt_power_w"] - battery_w - frame["bus_load_w"] - gpu_w)
        dt_s = self.config.tick_s
        if self.overhead_w is None:
            self.overhead_w = measured_w
        self.overhead_w += (measured_w - self.overhead_w) * dt_s / (OVERHEAD_TAU_S + dt_s)
        overhead_w = self.overhead_w
        sun = frame["sun_fraction"]
        allowance_w = max(0.0, soc - self.soc_floor) * capacity_j / ECLIPSE_MAX_S
        reserve_w = max(0.0, SOC_TARGET - soc) * capacity_j / SUNLIT_MIN_S
        budget_w = array_w + (1.0 - sun) * allowance_w - sun * reserve_w - frame["bus_load_w"] - overhead_w
        alloc = self.allocator.allocate(budget_w, self.weight, self.cap_w)
        self.actuate(gpu_power_limit_w=alloc.limits_w)
        self._announce(alloc, budget_w)
        self.last = dict(battery_soc=soc, array_power_w=array_w, discharge_allowance_w=allowance_w,
                         charge_reserve_w=reserve_w, it_overhead_w=overhead_w, gpu_budget_w=budget_w)
        self.alloc = alloc

    def housekeeping(self) -> None:
        alloc = self.alloc
        limits_total = float(np.sum(np.where(alloc.limits_w > 0, alloc.limits_w, GPU_IDLE_W)))
        self.telemetry(
            **self.last, soc_floor=self.soc_floor, limit_total_w=limits_total, gpus_parked=alloc.n_parked,
            gpus_shed=alloc.n_shed, feasible=alloc.feasible, gpu_power_limit_w=alloc.limits_w,
        )

    def _announce(self, alloc, budget_w: float) -> None:
        """Events on transitions only, so a long shed is one event, not one per tick."""
        if alloc.n_shed and not self.shedding:
            self.event("load_shed", shed=alloc.n_shed, budget_w=budget_w)
        elif self.shedding and not alloc.n_shed:
            self.event("load_restored", budget_w=budget_w)
        if self.feasible and not alloc.feasible:
            self.event("budget_infeasible", budget_w=budget_w)
        self.shedding, self.feasible = bool(alloc.n_shed), alloc.feasible
