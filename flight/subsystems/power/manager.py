"""Power manager: turns the power the satellite can spend into 72 per-GPU power limits,
keeps the mode (:mod:`flight.subsystems.power.modes`) and runs onboard monitoring (:mod:`flight.subsystems.power.monitor`).

Each tick:

1. What the platform and the rack's non-GPU IT load draw is measured, not assumed: the
   loads' total is array output, less what the shunt dumps, less battery charging power
   (bus power balance); the non-GPU IT share is that total minus the platform bus load and
   the GPUs' own draw, low-passed over ``OVERHEAD_TAU_S``: that share itself follows how busy
   the GPUs are, so feeding the raw value back into the budget swings the limits tick to tick.
2. The energy plan (:func:`plan_energy`) looks ahead along the orbit to the coming eclipse
   (:class:`flight.subsystems.power.eclipse_forecast.EclipseForecast` from the onboard TLE): in shadow the
   battery may supply the energy above the planning floor spread over the time left to
   sunrise; in sunlight a charge reserve is held back so that the battery reaches its target
   by the time the shadow comes. Both are bounded by the battery's C-rates and temperature
   windows. Penumbra blends the two by the visible fraction of the Sun. Without a TLE the
   plan assumes the worst eclipse of a 550 km orbit (``ECLIPSE_MAX_S``), with an event.
   ``params["power"]["energy_plan"] = "reactive"`` replaces the plan with the naive policy
   of :func:`plan_reactive` (no look-ahead), for comparison only.
3. The GPU budget (what is left after the platform and non-GPU IT loads) goes to the
   batched C allocator (:class:`flight.control.power_alloc.PowerAllocator`): water-filling
   by job priority weight within each GPU's [min, min(max, thermal headroom, mode cap)],
   hysteresis, and the load-shedding ladder that parks the lowest-priority GPUs when even
   minimums don't fit.
4. The mode machine steps on this tick's parameters, then the monitoring table is checked.

This is the mode manager, the one writer of ``ctl/mode``: modes are decided here, on the
lockstep path, because only a process that answers every tick can change them on a tick that
depends on the frames alone (same seed, same modes, same telemetry). A change goes out as
``ctl/mode`` on the bus and inside this tick's ``hal.done``, so every participant has it
before the next frame (:mod:`flight.core.lockstep`). Everyone else orders a mode with the command ``power.set_mode`` (the executive's
``exec.set_mode`` and its SAFE escalation after repeated restarts, a watchpoint's action
here) and only reads ``ctl/mode``; the executive announces each change (``exec.mode_changed``).

Each tick the plan also goes out as the data product ``power.energy_plan``
(:data:`ENERGY_PLAN_PRODUCT`): the job runner's eclipse look-ahead decides on this manager's
floor and eclipse instead of a model of its own.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from flight.control.power_alloc import PowerAllocator
from flight.core.component import (
    SEVERITIES,
    Arg,
    Channel,
    Command,
    CommandError,
    Component,
    DataProduct,
    Event,
    EventArg,
    Parameter,
    ProductField,
)
from flight.subsystems.power.eclipse_forecast import Eclipse, EclipseForecast
from flight.hal.protocol import N_GPUS
from flight.core.messages import Message
from flight.subsystems.power.modes import (
    MODES,
    POWER_SAVE_GPU_MAX_W,
    THERMAL_LIMIT_GPU_MAX_W,
    THERMAL_LIMIT_MARGIN_W,
    ModeMachine,
)
from flight.subsystems.power.monitor import ACTIONS, Monitor, Watchpoint, hottest_online_c
from flight.core.orbit import OrbitError
from flight.core.subsystem import Subsystem
from flight.platform import (
    BATTERY_CHARGE_EFFICIENCY,
    BATTERY_CHARGE_TEMP_C,
    BATTERY_DISCHARGE_EFFICIENCY,
    BATTERY_DISCHARGE_TEMP_C,
    BATTERY_MAX_CHARGE_C,
    BATTERY_MAX_DISCHARGE_C,
    GPU_IDLE_W,
    GPU_MAX_W,
    GPU_MIN_W,
    IT_IDLE_OVERHEAD_W,
    RACK_IDLE_W,
    RUNNING_GPU_EXTRA_W,
    SOC_FLOOR,
)

HYSTERESIS_W = 10.0
ECLIPSE_MAX_S = 2136.0
"""Longest eclipse of a 550 km circular orbit (35.6 min at beta 0, DESIGN.md): the plan's
eclipse when no TLE is on board."""
SUNLIT_MIN_S = 3600.0
"""Shortest sunlit arc of that orbit: the 5739 s period minus the longest eclipse."""
SOC_TARGET = 0.95
PLAN_MARGIN_SOC = 0.02
"""The plan aims this far above the floor (estimate: covers the lag of the measured
overhead and the allocator's hysteresis over one eclipse; seen 0.003..0.006 in sim_hw)."""
CHARGE_WINDOW_MIN_S = 1200.0
"""The charge reserve is spread over at least this long, so a battery that tapers near full
(CC/CV) is not asked for a reserve it cannot take in the last minutes before a shadow."""
HEATER_ON_C, HEATER_OFF_C = 10.0, 15.0
"""Battery heater thermostat (estimate: keeps the pack 5 K above its 5 °C charge limit)."""
OVERHEAD_TAU_S = 20.0
ENERGY_PLANS = ("lookahead", "reactive")
"""Energy policies, ``params["power"]["energy_plan"]``: ``lookahead`` (:func:`plan_energy`,
the flight policy and the default) or ``reactive`` (:func:`plan_reactive`, no look-ahead:
the naive baseline ``tools/bench_goodput.py`` measures the look-ahead against)."""


@dataclass(frozen=True)
class EnergyPlan:
    """One tick's energy plan; powers in W at the bus, energies in J at the bus.

    ``eclipse`` is the one planned for (``None``: none within the forecast horizon);
    ``needed_j`` is the planned eclipse load carried from now (in shadow) or from the eclipse's
    start (in sunlight) to sunrise; ``available_j`` what the battery holds above the planning
    floor now (in shadow) or at the eclipse's start if charged as the reserve plans.
    """

    in_eclipse: bool
    eclipse: Eclipse | None
    time_to_eclipse_s: float
    allowance_w: float
    reserve_w: float
    discharge_max_w: float
    needed_j: float
    available_j: float

    @property
    def margin_j(self) -> float:
        return self.available_j - self.needed_j


def battery_limits_w(capacity_j: float, temp_c: float) -> tuple[float, float]:
    """``(discharge_max_w, charge_max_w)`` from the C-rates and temperature windows above."""
    lo, hi = BATTERY_DISCHARGE_TEMP_C
    discharge = BATTERY_MAX_DISCHARGE_C * capacity_j / 3600.0 if lo <= temp_c <= hi else 0.0
    lo, hi = BATTERY_CHARGE_TEMP_C
    charge = BATTERY_MAX_CHARGE_C * capacity_j / 3600.0 if lo <= temp_c <= hi else 0.0
    return discharge, charge


def plan_energy(t_s: float, soc: float, capacity_j: float, temp_c: float, soc_floor: float,
                eclipse: Eclipse | None, in_shadow: bool, planned_load_w: float) -> EnergyPlan:
    """Battery discharge allowance and charge reserve for this tick.

    Args:
        t_s: time since the run epoch, s.
        soc: state of charge, 0..1; ``capacity_j`` usable capacity, J; ``temp_c`` cell
            temperature, °C.
        soc_floor: lowest planned SOC; the plan aims :data:`PLAN_MARGIN_SOC` above it.
        eclipse: the eclipse under way or next (:meth:`EclipseForecast.next_eclipse`), or
            ``None`` for none ahead; ``in_shadow`` says whether the satellite is in it now
            (from the forecast, or from the sun sensor when planning for the worst case).
        planned_load_w: the load the battery must carry through the eclipse, W.

    In shadow the allowance is the cell energy above the planning floor, times the discharge
    efficiency, over the time to sunrise. In sunlight the reserve brings the SOC to
    ``max(SOC_TARGET, what the planned load needs)`` by the eclipse's start (over no less
    than :data:`CHARGE_WINDOW_MIN_S`). Both are clipped to the C-rate limits, and are 0 when
    the cell temperature is outside its window.
    """
    discharge_max_w, charge_max_w = battery_limits_w(capacity_j, temp_c)
    floor = soc_floor + PLAN_MARGIN_SOC
    above_j = max(0.0, soc - floor) * capacity_j * BATTERY_DISCHARGE_EFFICIENCY
    if eclipse is None:
        return EnergyPlan(False, None, math.inf, 0.0,
                          min(charge_max_w, max(0.0, SOC_TARGET - soc) * capacity_j / SUNLIT_MIN_S),
                          discharge_max_w, 0.0, above_j)
    if in_shadow:
        remaining_s = max(1.0, eclipse.end_s - t_s)
        allowance_w = min(discharge_max_w, above_j / remaining_s)
        return EnergyPlan(True, eclipse, 0.0, allowance_w, 0.0, discharge_max_w,
                          planned_load_w * remaining_s, above_j)
    time_to_s = max(0.0, eclipse.start_s - t_s)
    needed_j = planned_load_w * eclipse.duration_s
    goal_soc = min(1.0, max(SOC_TARGET, floor + needed_j / (capacity_j * BATTERY_DISCHARGE_EFFICIENCY)))
    window_s = max(time_to_s, CHARGE_WINDOW_MIN_S)
    reserve_w = min(charge_max_w, max(0.0, goal_soc - soc) * capacity_j / BATTERY_CHARGE_EFFICIENCY / window_s)
    entry_soc = max(soc, min(goal_soc, soc + reserve_w * time_to_s * BATTERY_CHARGE_EFFICIENCY / capacity_j))
    available_j = max(0.0, entry_soc - floor) * capacity_j * BATTERY_DISCHARGE_EFFICIENCY
    return EnergyPlan(False, eclipse, time_to_s, 0.0, reserve_w, discharge_max_w, needed_j, available_j)


def plan_reactive(soc: float, capacity_j: float, temp_c: float, soc_floor: float, in_shadow: bool) -> EnergyPlan:
    """The naive energy policy: no eclipse forecast, no reserve.

    In shadow (``in_shadow``, from the sun sensor) the battery supplies whatever the load
    asks, up to its C-rate limit, while the state of charge ``soc`` (0..1) is above
    ``soc_floor``, and nothing once it is not; in sunlight nothing is held back for charging:
    the battery charges from whatever the load leaves. This is what a power system without
    an orbit forecast does: the rack runs flat out into the shadow until the floor stops it,
    and the idle rack then drains the battery below the floor until sunrise. ``capacity_j``
    (J) and ``temp_c`` (°C) bound the discharge as in :func:`battery_limits_w`. The plan has
    no eclipse and needs nothing from it, so its margin is the energy above the floor.
    """
    discharge_max_w, _ = battery_limits_w(capacity_j, temp_c)
    above_j = max(0.0, soc - soc_floor) * capacity_j * BATTERY_DISCHARGE_EFFICIENCY
    allowance_w = discharge_max_w if soc > soc_floor else 0.0
    return EnergyPlan(in_shadow, None, math.inf, allowance_w, 0.0, discharge_max_w, 0.0, above_j)


def gpus_carried(soc: float, capacity_j: float, soc_floor: float, remaining_s: float, bus_w: float) -> int:
    """GPUs running at their lowest limit that the battery carries for ``remaining_s`` (s):
    the cell energy above ``soc_floor`` (0..1; ``soc`` now, ``capacity_j`` J) times the
    discharge efficiency, spread over ``remaining_s`` (at least 1 s), less the platform load
    ``bus_w`` (W) and the idle rack (:data:`flight.platform.RACK_IDLE_W`), divided by what one
    running GPU adds (:data:`flight.platform.RUNNING_GPU_EXTRA_W`); 0..N_GPUS."""
    energy_j = max(0.0, soc - soc_floor) * capacity_j * BATTERY_DISCHARGE_EFFICIENCY
    spare_w = energy_j / max(remaining_s, 1.0) - bus_w - RACK_IDLE_W
    return int(np.clip(spare_w // RUNNING_GPU_EXTRA_W, 0, N_GPUS))


ENERGY_PLAN_PRODUCT = DataProduct("energy_plan", (
    ProductField("soc_floor", "float64", "", doc="Lowest planned state of charge, 0..1 (parameter power.soc_floor)."),
    ProductField("forecast", "str", doc="Where the eclipse comes from: tle (the onboard element set), worst_case "
                                        "(assumed: no TLE, or the sun sensor overruled it), none (reactive policy)."),
    ProductField("in_eclipse", "bool", doc="The planned eclipse is under way."),
    ProductField("eclipse_start_s", "float64", "s", doc="Start of the eclipse planned for (NaN: none ahead)."),
    ProductField("eclipse_end_s", "float64", "s", doc="Its end, sunrise (NaN: none ahead)."),
    ProductField("eclipse_energy_available_j", "float64", "J",
                 doc="Battery energy above the planning floor the plan will spend on that eclipse, "
                     "as of the publication (its change alone does not publish)."),
    ProductField("eclipse_gpus", "int64", "count",
                 doc="Running GPUs (at their lowest limit) the battery carries from now to sunrise "
                     "above the floor (gpus_carried); N_GPUS with no eclipse planned."),
), doc="The power manager's energy plan: what the job runner's eclipse look-ahead decides on. Published "
       "when a field other than the energy changes and at every housekeeping tick.")


def _monitor_args() -> tuple[Arg, ...]:
    return (
        Arg("parameter", "str", doc="Sensor-frame field or rack reduction (flight.subsystems.power.monitor.PARAMETERS)."),
        Arg("low", "float", doc="Lowest value within limits."),
        Arg("high", "float", doc="Highest value within limits (> low)."),
        Arg("persistence", "int", "ticks", 1, 3600, doc="Ticks out of limits before the action."),
        Arg("action", "str", choices=ACTIONS, doc="event, mode (enter mode) or command (send command)."),
        Arg("severity", "str", choices=SEVERITIES, doc="Severity of the event reporting it."),
        Arg("mode", "str", choices=("",) + MODES, doc="Mode to enter (action mode), else empty."),
        Arg("command", "str", doc="Qualified command to send (action command), else empty."),
        Arg("command_args", "str", doc="Its arguments as a JSON object (action command), else {}."),
    )


_WP_ID = (Arg("wp_id", "int", "", 1, 1_000_000, doc="Watchpoint id (monitor_list)."),)


class PowerManager(Subsystem):
    COMPONENT = Component(
        "power", 2, doc="Battery protection, per-GPU power limits, modes and onboard monitoring.",
        commands=(
            Command("set_soc_floor", 1, (Arg("soc_floor", "float", "", 0.40, 0.90,
                                             doc="Lowest planned state of charge (0.40 = contingency DoD)."),),
                    doc="Change the state-of-charge floor the discharge allowance protects.", idempotent=True),
            Command("monitor_add", 2, _monitor_args(), doc="Add a watchpoint to the monitoring table."),
            Command("monitor_delete", 3, _WP_ID, doc="Delete a watchpoint."),
            Command("monitor_enable", 4, _WP_ID, doc="Enable a watchpoint."),
            Command("monitor_disable", 5, _WP_ID, doc="Disable a watchpoint."),
            Command("monitor_list", 6, doc="List the monitoring table (JSON, one watchpoint per line).",
                    idempotent=True),
            Command("set_mode", 7, (
                Arg("mode", "str", choices=MODES, doc="Mode to enter."),
                Arg("why", "str", doc="Reason, carried into ctl/mode and exec.mode_changed."),
            ), doc="Enter a mode now (SAFE can be left only by this command); exec.set_mode comes here."),
        ),
        telemetry=(
            Channel("battery_soc", "float", "", "State of charge.", yellow=(0.70, 1.0), red=(0.40, 1.0)),
            Channel("soc_floor", "float", "", "Planned state-of-charge floor."),
            Channel("array_power_w", "float", "W", "Solar array output."),
            Channel("discharge_allowance_w", "float", "W", "Battery power the plan allows."),
            Channel("charge_reserve_w", "float", "W", "Array power held back for charging."),
            Channel("discharge_max_w", "float", "W", "Battery discharge limit (C-rate, temperature)."),
            Channel("it_overhead_w", "float", "W", "Measured non-GPU IT load (CPUs, switches)."),
            Channel("gpu_budget_w", "float", "W", "Power given to the allocator for GPUs."),
            Channel("limit_total_w", "float", "W", "Sum of GPU power limits (parked GPUs at idle)."),
            Channel("gpus_parked", "int", "count", "GPUs parked at idle (shed or too hot).", yellow=(0, 0)),
            Channel("gpus_shed", "int", "count", "GPUs parked by the load-shedding ladder.", yellow=(0, 0)),
            Channel("feasible", "bool", "", "Even minimum limits fit the budget."),
            Channel("gpu_power_limit_w", "float", "W", "Per-GPU limits sent to the HAL.", size=N_GPUS),
            Channel("energy_plan", "str", "", "Energy policy: lookahead (flight), or reactive (naive baseline)."),
            Channel("forecast", "str", "", "Eclipse timing source: tle, or worst_case without one."),
            Channel("eclipse_start_s", "float", "s", "Start of the eclipse planned for (NaN: none ahead)."),
            Channel("eclipse_end_s", "float", "s", "Its end, sunrise (NaN: none ahead)."),
            Channel("eclipse_load_w", "float", "W", "Planned eclipse load: platform, idle IT, online GPUs at minimum."),
            Channel("eclipse_energy_needed_j", "float", "J", "Planned eclipse load to sunrise."),
            Channel("eclipse_energy_available_j", "float", "J", "Battery energy above the planning floor for it."),
            Channel("battery_heater_on", "bool", "", "Battery heater command."),
            Channel("mode", "str", "", "Current mode (flight.subsystems.power.modes)."),
            Channel("mode_time_s", "float", "s", "Simulated seconds in each mode since the process started, "
                    "in the order NOMINAL, POWER_SAVE, THERMAL_LIMIT, SAFE.", size=len(MODES)),
            Channel("watchpoints_enabled", "int", "count", "Enabled watchpoints in the monitoring table."),
            Channel("watchpoints_fired", "int", "count", "Watchpoint firings since the process started."),
        ),
        events=(
            Event("soc_floor_changed", 1, "INFO", "SOC floor {old:.2f} -> {new:.2f}",
                  args=(EventArg("old", "float"), EventArg("new", "float"))),
            Event("load_shed", 2, "MEDIUM", "load shedding: {shed} GPU(s) parked, budget {budget_w:.0f} W",
                  args=(EventArg("shed", "int", "count"), EventArg("budget_w", "float", "W"))),
            Event("load_restored", 3, "INFO", "load shedding over: budget {budget_w:.0f} W",
                  args=(EventArg("budget_w", "float", "W"),)),
            Event("budget_infeasible", 4, "HIGH", "GPU budget {budget_w:.0f} W below even all-idle draw",
                  args=(EventArg("budget_w", "float", "W"),)),
            Event("forecast_unavailable", 5, "MEDIUM", "no eclipse forecast ({why}): planning for the worst eclipse",
                  args=(EventArg("why", "str"),)),
            *(Event(f"watchpoint_{sev.lower()}", 6 + i, sev,
                    "watchpoint {wp_id}: {parameter} = {value:.4g} outside [{low:g}, {high:g}] "
                    "for {persistence} tick(s); action {action}",
                    args=(EventArg("wp_id", "int"), EventArg("parameter", "str"), EventArg("value", "float"),
                          EventArg("low", "float"), EventArg("high", "float"),
                          EventArg("persistence", "int", "ticks"),
                          EventArg("action", "str"))) for i, sev in enumerate(SEVERITIES)),
            Event("watchpoint_cleared", 10, "INFO", "watchpoint {wp_id}: {parameter} = {value:.4g} back within limits",
                  args=(EventArg("wp_id", "int"), EventArg("parameter", "str"), EventArg("value", "float"))),
            Event("monitor_changed", 11, "INFO", "monitoring table: {change}",
                  args=(EventArg("change", "str"),)),
            Event("monitor_command_failed", 12, "MEDIUM", "watchpoint command {command} failed: {code} {message}",
                  args=(EventArg("command", "str"), EventArg("code", "str"), EventArg("message", "str"))),
        ),
        parameters=(
            Parameter("soc_floor", 1, "float", "", 0.40, 0.90, SOC_FLOOR,
                      "Lowest planned state of charge (0.40 = contingency DoD); as set_soc_floor."),
        ),
        publishes=(ENERGY_PLAN_PRODUCT,),
        consumes=("thermal.headroom", "jobs.demand"),
        actuates=("gpu_power_limit_w", "battery_heater_on"),
    )
    RATE_GROUPS = ((1, "control"),)

    def __init__(self, config, emit, send_command=None, **ports) -> None:
        super().__init__(config, emit, send_command, **ports)
        params = config.params.get("power", {})
        self.soc_floor = float(params.get("soc_floor", SOC_FLOOR))
        self.energy_plan = params.get("energy_plan", "lookahead")
        if self.energy_plan not in ENERGY_PLANS:
            raise ValueError(f"energy_plan {self.energy_plan!r} is not one of {ENERGY_PLANS}")
        self.allocator = PowerAllocator(N_GPUS, GPU_MIN_W, GPU_MAX_W, GPU_IDLE_W, HYSTERESIS_W)
        self.cap_w = np.full(N_GPUS, GPU_MAX_W)
        self.mode_cap_w = np.empty(N_GPUS)
        self.weight = np.ones(N_GPUS)
        self.overhead_w: float | None = None
        self.coolant_setpoint_c = math.nan
        self.last: dict = {}
        self.alloc = None
        self.plan: EnergyPlan | None = None
        self.plan_published = ""
        """The fields of the last ``power.energy_plan`` published (its energy aside), as text."""
        self.shedding = False
        self.feasible = True
        self.heater_on: bool | None = None
        self.forecast, self.forecast_why = self._forecast()
        self.modes = ModeMachine()
        self.mode_time_s = np.zeros(len(MODES))
        self.monitor: Monitor | None = None
        self.watchpoints_fired = 0
        self._command_seq = 0

    def _forecast(self) -> tuple[EclipseForecast | None, str]:
        if not self.config.tle_lines:
            return None, "no TLE on board"
        try:
            return EclipseForecast.from_tle(self.config.tle_lines), ""
        except ValueError as exc:
            return None, f"bad TLE: {exc}"

    def on_start(self) -> None:
        path = self.config.data_path / "monitor.sqlite" if self.config.data_dir else None
        self.monitor = Monitor(path, _validate_command)

    def on_stop(self) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def on_message(self, msg: Message) -> None:
        # Values from tick N-1: relayed inside frame N, handed over before it (flight.core.lockstep).
        if msg.name == "thermal.headroom":
            self.cap_w[:] = msg.data["gpu_headroom_w"]
            self.coolant_setpoint_c = float(msg.data.get("setpoint_c", math.nan))
        elif msg.name == "jobs.demand":
            self.weight[:] = msg.data["gpu_weight"]

    # -- commands -------------------------------------------------------------------------
    def cmd_set_soc_floor(self, soc_floor: float) -> str:
        self.event("soc_floor_changed", old=self.soc_floor, new=soc_floor)
        self.soc_floor = soc_floor
        return f"SOC floor {soc_floor:.2f}"

    def cmd_set_mode(self, mode: str, why: str) -> str:
        self._enter(self.modes.command(mode, why or "commanded"))
        return f"mode {self.modes.mode}"

    def cmd_monitor_add(self, **args) -> str:
        wp = self._monitor().add(Watchpoint(0, enabled=True, **args))
        self.event("monitor_changed", change=f"added {wp.wp_id} ({wp.parameter})")
        return f"watchpoint {wp.wp_id} added"

    def cmd_monitor_delete(self, wp_id: int) -> str:
        self._monitor().delete(wp_id)
        self.event("monitor_changed", change=f"deleted {wp_id}")
        return f"watchpoint {wp_id} deleted"

    def cmd_monitor_enable(self, wp_id: int) -> str:
        self._monitor().enable(wp_id, True)
        self.event("monitor_changed", change=f"enabled {wp_id}")
        return f"watchpoint {wp_id} enabled"

    def cmd_monitor_disable(self, wp_id: int) -> str:
        self._monitor().enable(wp_id, False)
        self.event("monitor_changed", change=f"disabled {wp_id}")
        return f"watchpoint {wp_id} disabled"

    def cmd_monitor_list(self) -> str:
        return "\n".join(json.dumps(asdict(wp)) for wp in self._monitor().table.values())

    def _monitor(self) -> Monitor:
        if self.monitor is None:
            raise CommandError("EXECUTION_ERROR", "the monitor is not open yet")
        return self.monitor

    def on_response(self, msg: Message) -> None:
        d = msg.data if isinstance(msg.data, dict) else {}
        if d.get("stage") == "failed":
            self.event("monitor_command_failed", command=msg.name, code=d.get("code", ""),
                       message=str(d.get("message", ""))[:160])

    # -- the tick -------------------------------------------------------------------------
    def control(self, frame: dict) -> None:
        soc = frame["battery_soc"]
        capacity_j = frame["battery_capacity_j"]
        array_w = frame["solar_array_power_w"]
        bus_w = frame["bus_load_w"]
        battery_w = frame["battery_voltage_v"] * frame["battery_current_a"]
        gpu_w = float(frame["gpu_power_w"].sum())
        measured_w = max(0.0, array_w - frame["shunt_power_w"] - battery_w - bus_w - gpu_w)
        dt_s = self.config.tick_s
        if self.overhead_w is None:
            self.overhead_w = measured_w
        self.overhead_w += (measured_w - self.overhead_w) * dt_s / (OVERHEAD_TAU_S + dt_s)
        overhead_w = self.overhead_w
        sun = frame["sun_fraction"]
        t_s = self.time_s
        online = int(frame["gpu_online"].sum())
        # the idle rack's overhead, not the measured one: that follows how busy the GPUs are
        # now and would make the plan (and POWER_SAVE) depend on the load it sheds
        eclipse_load_w = bus_w + IT_IDLE_OVERHEAD_W + online * GPU_MIN_W
        if self.energy_plan == "reactive":
            plan = plan_reactive(soc, capacity_j, frame["battery_temp_c"], self.soc_floor, sun < 1.0)
            source = "none"
        else:
            eclipse, in_shadow, source = self._eclipse(t_s, sun)
            plan = plan_energy(t_s, soc, capacity_j, frame["battery_temp_c"], self.soc_floor, eclipse, in_shadow,
                               eclipse_load_w)
        self._publish_plan(plan, source, soc, capacity_j, bus_w)
        budget_w = array_w + (1.0 - sun) * plan.allowance_w - sun * plan.reserve_w - bus_w - overhead_w
        alloc = self.allocator.allocate(budget_w, self.weight, self._mode_cap())
        self.actuate(gpu_power_limit_w=alloc.limits_w)
        self._heater(frame["battery_temp_c"])
        self._announce(alloc, budget_w)
        self.last = {"battery_soc": soc, "array_power_w": array_w, "discharge_allowance_w": plan.allowance_w,
                     "charge_reserve_w": plan.reserve_w, "it_overhead_w": overhead_w, "gpu_budget_w": budget_w,
                     "eclipse_load_w": eclipse_load_w}
        self.alloc, self.plan = alloc, plan
        self.mode_time_s[MODES.index(self.modes.mode)] += dt_s
        hottest_c = hottest_online_c(frame)
        self._enter(self.modes.step(t_s, {
            "battery_soc": soc, "soc_above_floor": soc - self.soc_floor, "sun_fraction": sun,
            "eclipse_energy_margin_j": plan.margin_j, "gpu_temp_max_c": hottest_c,
            "coolant_supply_error_c": frame["coolant_supply_temp_c"] - self.coolant_setpoint_c,
        }))
        if self.monitor is not None:
            for firing in self.monitor.check(frame, {"gpu_temp_max_c": hottest_c}):
                self._act(firing)

    def _eclipse(self, t_s: float, sun: float) -> tuple[Eclipse | None, bool, str]:
        """The eclipse to plan for, whether it is under way and where it comes from (``tle``
        or ``worst_case``); the worst case without a forecast. The sun sensor overrules a
        forecast that has the satellite in sunlight while the Sun is hidden (a stale element
        set, or an edge within the forecast's tolerance): the battery then carries the load
        as in the worst eclipse rather than not at all."""
        if self.forecast is not None:
            try:
                eclipse = self.forecast.next_eclipse(t_s)
            except OrbitError as exc:
                self.forecast, self.forecast_why = None, f"propagation failed: {exc}"
            else:
                in_shadow = eclipse is not None and eclipse.start_s <= t_s
                if in_shadow or sun >= 1.0:
                    return eclipse, in_shadow, "tle"
                return Eclipse(t_s, t_s + ECLIPSE_MAX_S), True, "worst_case"
        if self.forecast_why:
            self.event("forecast_unavailable", why=self.forecast_why)
            self.forecast_why = ""
        if sun < 1.0:
            return Eclipse(t_s, t_s + ECLIPSE_MAX_S), True, "worst_case"
        return Eclipse(t_s + SUNLIT_MIN_S, t_s + SUNLIT_MIN_S + ECLIPSE_MAX_S), False, "worst_case"

    def _publish_plan(self, plan: EnergyPlan, source: str, soc: float, capacity_j: float, bus_w: float) -> None:
        """The energy plan as data product ``power.energy_plan``, by exception: when any field
        but the energy changes (about 80 times an orbit, not 5700), and at every housekeeping
        tick so a restarted job runner catches up. The job runner's look-ahead plans on the
        same floor and eclipse as this manager, one tick later."""
        eclipse = plan.eclipse
        values = {
            "soc_floor": self.soc_floor, "forecast": source, "in_eclipse": plan.in_eclipse,
            "eclipse_start_s": eclipse.start_s if eclipse else math.nan,
            "eclipse_end_s": eclipse.end_s if eclipse else math.nan,
            "eclipse_gpus": gpus_carried(soc, capacity_j, self.soc_floor, eclipse.end_s - self.time_s, bus_w)
            if eclipse else N_GPUS,
        }
        # NaN != NaN: compare the plan's fields as their text
        key = repr(tuple(values.values()))
        if key != self.plan_published or self.config.housekeeping_due(self.tick):
            self.publish_data("energy_plan", eclipse_energy_available_j=plan.available_j, **values)
            self.plan_published = key

    def _mode_cap(self) -> np.ndarray:
        """Per-GPU caps: the thermal headroom, further limited by the mode."""
        mode, cap = self.modes.mode, self.mode_cap_w
        if mode == "SAFE":
            cap[:] = 0.0
        elif mode == "THERMAL_LIMIT":
            np.minimum(self.cap_w - THERMAL_LIMIT_MARGIN_W, THERMAL_LIMIT_GPU_MAX_W, out=cap)
        elif mode == "POWER_SAVE":
            np.minimum(self.cap_w, POWER_SAVE_GPU_MAX_W, out=cap)
        else:
            cap[:] = self.cap_w
        return cap

    def _heater(self, temp_c: float) -> None:
        on = temp_c < HEATER_ON_C or (bool(self.heater_on) and temp_c < HEATER_OFF_C)
        if on != self.heater_on:
            self.actuate(battery_heater_on=on)
            self.heater_on = on

    def _enter(self, change: tuple[str, str] | None) -> None:
        """Announce a mode change to every process before this tick's ``hal.done``."""
        if change is None:
            return
        mode, why = change
        self._emit("ctl", "mode", {"mode": mode, "why": why[:200]})

    def _act(self, firing) -> None:
        wp = firing.wp
        if firing.cleared:
            self.event("watchpoint_cleared", wp_id=wp.wp_id, parameter=wp.parameter, value=firing.value)
            return
        self.watchpoints_fired += 1
        self.event(f"watchpoint_{wp.severity.lower()}", wp_id=wp.wp_id, parameter=wp.parameter,
                   value=firing.value, low=wp.low, high=wp.high, persistence=wp.persistence, action=wp.action)
        if wp.action == "mode":
            self._enter(self.modes.command(wp.mode, f"watchpoint {wp.wp_id}: {wp.parameter} = {firing.value:.4g}"))
        elif wp.action == "command" and self._send_command is not None:
            self._command_seq += 1
            self.command(f"power-wp{wp.wp_id}-{self._command_seq}", wp.command, json.loads(wp.command_args))

    def housekeeping(self) -> None:
        alloc, plan = self.alloc, self.plan
        limits_total = float(np.sum(np.where(alloc.limits_w > 0, alloc.limits_w, GPU_IDLE_W)))
        eclipse = plan.eclipse
        monitor = self.monitor
        self.telemetry(
            **self.last, soc_floor=self.soc_floor, limit_total_w=limits_total, gpus_parked=alloc.n_parked,
            gpus_shed=alloc.n_shed, feasible=alloc.feasible, gpu_power_limit_w=alloc.limits_w,
            discharge_max_w=plan.discharge_max_w, energy_plan=self.energy_plan,
            forecast="tle" if self.forecast is not None else "worst_case",
            eclipse_start_s=eclipse.start_s if eclipse else math.nan,
            eclipse_end_s=eclipse.end_s if eclipse else math.nan,
            eclipse_energy_needed_j=plan.needed_j, eclipse_energy_available_j=plan.available_j,
            battery_heater_on=bool(self.heater_on), mode=self.modes.mode, mode_time_s=self.mode_time_s.copy(),
            watchpoints_enabled=monitor.enabled_count if monitor else 0, watchpoints_fired=self.watchpoints_fired,
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


def _validate_command(qualified: str, args) -> dict:
    """A watchpoint's telecommand checked against the whole dictionary (imported on first
    use: only adding a ``command`` watchpoint needs every subsystem's declarations)."""
    from flight.core.dictionary import full_dictionary

    return full_dictionary().validate_command(qualified, args)
