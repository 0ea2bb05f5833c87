"""Operating modes of the rack-satellite and the rules that move between them.

Modes, most protective last; each has an effect the power manager applies to the GPUs'
power limits (:mod:`flight.subsystems.power.manager`) and the job runner reacts to (``ctl/mode``):

============== ======================================================================
mode           effect
============== ======================================================================
NOMINAL        every watt the energy plan and thermal headroom allow
POWER_SAVE     GPU limits capped at :data:`POWER_SAVE_GPU_MAX_W`
THERMAL_LIMIT  GPU limits capped at :data:`THERMAL_LIMIT_GPU_MAX_W` and at the thermal
               headroom less :data:`THERMAL_LIMIT_MARGIN_W`
SAFE           every GPU parked at idle; battery heater, coolant loop and link stay on,
               so the rack survives with no ground contact
============== ======================================================================

Automatic transitions (the one table, :data:`RULES`; parameters are computed each tick by
the power manager from the sensor frame and its energy plan):

============== ============================================ ======== ============================================ =======
mode           enter when any holds                         persist  leave when all hold                          dwell
============== ============================================ ======== ============================================ =======
SAFE           ``battery_soc < 0.40`` (contingency, 60 %    5 s      never: only by command                       --
               DoD, DESIGN.md); also by command, a
               monitoring action, or repeated process
               restarts (the executive)
THERMAL_LIMIT  ``gpu_temp_max_c > 85`` (slowdown is 89,     30 s     ``gpu_temp_max_c < 82`` and                  600 s
               shutdown 92), ``coolant_supply_error_c > 3``           ``coolant_supply_error_c < 1.5``
POWER_SAVE     ``soc_above_floor < 0.01`` (the energy plan  10 s     ``soc_above_floor > 0.10``,                  300 s
               aims 0.02 above the floor, so this is the             ``sun_fraction >= 1`` and
               plan failing), ``eclipse_energy_margin_j              ``eclipse_energy_margin_j >= 0``
               < -1 kJ`` (the battery cannot carry the
               planned eclipse load to sunrise)
NOMINAL        none of the above
============== ============================================ ======== ============================================ =======

Each automatic mode is a latch: it sets after its entry condition has held for ``persist``
seconds and clears after its exit condition has held for ``dwell`` seconds; between the
entry and exit thresholds nothing changes, so a parameter sitting on a threshold cannot make
the mode chatter. The dwells are long against the persistences because leaving a mode restores
the load that brought it on (with a quarter of the radiator area lost, a 120 s THERMAL_LIMIT
dwell cycled twice an orbit in sim_hw). When several latches are set the most protective mode wins (SAFE, then
THERMAL_LIMIT, then POWER_SAVE). SAFE is left only by command. Thresholds are estimates
chosen against the simulator (sim_hw) unless a source is given.

The machine is a pure function of its inputs and their times, so in lockstep the same
frames give the same modes on the same ticks.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from flight.platform import SOC_CONTINGENCY

MODES = ("NOMINAL", "POWER_SAVE", "THERMAL_LIMIT", "SAFE")
"""Every mode, least protective first."""
POWER_SAVE_GPU_MAX_W = 600.0
"""Per-GPU limit in POWER_SAVE (estimate: ~55 % of full power for ~85 % of the clock)."""
THERMAL_LIMIT_GPU_MAX_W = 800.0
"""Per-GPU limit in THERMAL_LIMIT (estimate)."""
THERMAL_LIMIT_MARGIN_W = 100.0
"""Headroom kept back in THERMAL_LIMIT: ~3.5 K of die temperature at 0.035 K/W
(:data:`flight.subsystems.thermal.controller.R_TH_C_PER_W`)."""

_OPS = {"<": operator.lt, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Condition:
    """``parameter op limit``; a missing or NaN parameter never satisfies a condition."""

    parameter: str
    op: str
    limit: float

    def holds(self, values: dict[str, float]) -> bool:
        v = values.get(self.parameter, math.nan)
        return not math.isnan(v) and _OPS[self.op](v, self.limit)

    def __str__(self) -> str:
        return f"{self.parameter} {self.op} {self.limit:g}"


@dataclass(frozen=True)
class Rule:
    """Entry and exit of one automatic mode: enter when any of ``enter`` has held for
    ``persist_s``; leave when all of ``leave`` have held for ``dwell_s`` (``leave`` empty:
    only by command)."""

    mode: str
    enter: tuple[Condition, ...]
    persist_s: float
    leave: tuple[Condition, ...]
    dwell_s: float


MARGIN_ROUNDING_J = 1e3
"""In shadow the energy plan spends exactly what the battery holds above its floor, so the
eclipse margin sits at 0 give or take the rounding of gigajoule sums (-1.5e-8 J was seen
for 10 s, which put a healthy run in POWER_SAVE); a shortfall counts from a kilojoule,
about one second of one GPU."""

RULES = (
    Rule("SAFE", (Condition("battery_soc", "<", SOC_CONTINGENCY),), 5.0, (), math.inf),
    Rule("THERMAL_LIMIT",
         (Condition("gpu_temp_max_c", ">", 85.0), Condition("coolant_supply_error_c", ">", 3.0)), 30.0,
         (Condition("gpu_temp_max_c", "<", 82.0), Condition("coolant_supply_error_c", "<", 1.5)), 600.0),
    Rule("POWER_SAVE",
         (Condition("soc_above_floor", "<", 0.01), Condition("eclipse_energy_margin_j", "<", -MARGIN_ROUNDING_J)), 10.0,
         (Condition("soc_above_floor", ">", 0.10), Condition("sun_fraction", ">=", 1.0),
          Condition("eclipse_energy_margin_j", ">=", 0.0)), 300.0),
)
"""The transition table (see the module docstring), most protective first."""


class _Latch:
    """One rule's state: set or not, and since when its pending change has held."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.on = False
        self.since_s: float | None = None
        self.why = ""

    def step(self, time_s: float, values: dict[str, float]) -> bool:
        """Advance to ``time_s``; return True when the latch changed."""
        rule = self.rule
        if self.on:
            pending = bool(rule.leave) and all(c.holds(values) for c in rule.leave)
        else:
            pending = any(c.holds(values) for c in rule.enter)
        if not pending:
            self.since_s = None
            return False
        if self.since_s is None:
            self.since_s = time_s
        hold_s = rule.dwell_s if self.on else rule.persist_s
        if time_s - self.since_s < hold_s:
            return False
        if self.on:
            why = "; ".join(map(str, rule.leave))
        else:
            why = "; ".join(f"{c} ({values[c.parameter]:.4g})" for c in rule.enter if c.holds(values))
        self.on = not self.on
        self.since_s = None
        self.why = f"{why} for {hold_s:g} s"
        return True


class ModeMachine:
    """The mode and its automatic transitions (:data:`RULES`).

    :meth:`step` is called once per tick with the parameters the rules name; :meth:`command`
    applies a mode ordered by the ground, a monitoring action or the supervisor. Both return
    ``(new_mode, why)`` on a change, else ``None``.
    """

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.latches = {r.mode: _Latch(r) for r in rules}
        self.mode = "NOMINAL"

    def step(self, time_s: float, values: dict[str, float]) -> tuple[str, str] | None:
        """Advance every latch to ``time_s`` (s, non-decreasing) with this tick's ``values``."""
        changes = [f"{'entering' if latch.on else 'leaving'} {mode}: {latch.why}"
                   for mode, latch in self.latches.items() if latch.step(time_s, values)]
        return self._settle("; ".join(changes))

    def command(self, mode: str, why: str) -> tuple[str, str] | None:
        """Enter ``mode`` now. Commanding an automatic mode sets its latch (it then leaves by
        its own rule); NOMINAL clears every latch, SAFE included.

        Raises:
            ValueError: ``mode`` is not one of :data:`MODES`.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes are {MODES}")
        for name, latch in self.latches.items():
            latch.since_s = None
            if MODES.index(name) > MODES.index(mode):
                latch.on = False
        if mode in self.latches:
            self.latches[mode].on = True
        return self._settle(why)

    def _settle(self, why: str) -> tuple[str, str] | None:
        on = [m for m, latch in self.latches.items() if latch.on]
        mode = max(on, key=MODES.index) if on else "NOMINAL"
        if mode == self.mode:
            return None
        self.mode = mode
        return mode, why
