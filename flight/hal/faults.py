"""The fault catalogue: the HAL protocol's part of fault injection (:mod:`flight.hal.protocol`).

Every fault a rig can be given at run time, from a scenario file or by the
``hal.inject_fault`` telecommand, is declared once in :data:`CATALOGUE`: its name, what its
one number (``value``) means with unit and valid range, what it is aimed at (``target``: a
GPU index, or a sensor) and whether it must have a duration. The same declaration validates
a fault everywhere (:func:`validate`): on board before the command is sent to the rig, in
the rig, and when a scenario file is read. The physical effects are the simulator's
(:mod:`sim_hw.faults`); a real rig may refuse any fault.

A fault is identified by ``(fault, target)``: injecting it again replaces it; clearing it
undoes its effect. A fault with ``duration_s > 0`` clears itself that many seconds after it
was injected; ``duration_s = 0`` lasts until cleared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from flight.hal import protocol as hal

ARRAY_STRINGS = 24
"""Independently switched solar-array strings of the rack-satellite (estimate: series cells to
the bus voltage, each through its own shunt/MPPT channel, 26.7 m² each); the simulator's array
has as many (``sim_hw.params.SimParams.array_strings``)."""

MAX_DURATION_S = 30 * 86400.0
"""Longest fault duration accepted (a month of simulated time)."""


class FaultError(ValueError):
    """A fault request that does not fit the catalogue; nothing was changed."""


@dataclass(frozen=True)
class FaultKind:
    """One entry of the catalogue.

    ``value_doc``/``unit``/``lo``/``hi`` describe the fault's number (``None`` bounds: the
    fault takes no number, its value must be 0); ``target`` is ``""`` (none), ``"gpu"``
    (a GPU index 0..71) or ``"sensor"`` (a numeric sensor field, an array one indexed as
    ``name[k]``); ``needs_duration``: ``duration_s`` must be > 0.
    """

    name: str
    doc: str
    value_doc: str = ""
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    target: str = ""
    needs_duration: bool = False

    def describe(self) -> str:
        """One line: name, value range, target and duration rule."""
        parts = [self.name]
        if self.lo is not None:
            parts.append(f"value={self.value_doc} [{self.lo:g}..{self.hi:g}] {self.unit}".rstrip())
        if self.target == "gpu":
            parts.append("target=GPU index 0..71")
        elif self.target == "sensor":
            parts.append("target=sensor, e.g. gpu_temp_c[5] or coolant_supply_temp_c")
        if self.needs_duration:
            parts.append("duration_s>0")
        return "  ".join(parts)


CATALOGUE: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("pump_degraded", "pump delivers a fraction of its flow", "flow fraction kept", "1", 0.0, 1.0),
    FaultKind("radiator_area_lost", "radiating area lost", "area fraction lost", "1", 0.0, 1.0),
    FaultKind("battery_capacity_lost", "battery cells isolated", "capacity fraction lost", "1", 0.0, 0.9),
    FaultKind("solar_string_lost", "array strings open-circuit", "strings lost", "count", 1, ARRAY_STRINGS,
              integer=True),
    FaultKind("sensor_stuck", "a sensor reading frozen", target="sensor"),
    FaultKind("sensor_noisy", "Gaussian noise on a sensor reading", "noise standard deviation", "field unit",
              0.0, 100.0, target="sensor"),
    FaultKind("seu_storm", "memory-upset rate multiplied", "rate multiplier", "1", 1.0, 1e4, needs_duration=True),
    FaultKind("gpu_dead", "a GPU fails: no power, no work, offline", target="gpu"),
    FaultKind("link_outage", "no ground contact", needs_duration=True),
)}

_SENSOR_TARGET = re.compile(r"^([a-z_]+)(?:\[(\d+)\])?$")


@dataclass(frozen=True)
class Fault:
    """A validated fault request: catalogue name, number, target and duration (s, 0: until cleared)."""

    fault: str
    value: float = 0.0
    target: str = ""
    duration_s: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.fault, self.target

    def as_dict(self) -> dict[str, Any]:
        return {"fault": self.fault, "value": self.value, "target": self.target, "duration_s": self.duration_s}


def sensor_target(target: str) -> tuple[str, int | None]:
    """Parse a sensor target ``name`` or ``name[k]`` into ``(field, index or None)``.

    Raises:
        FaultError: not a numeric sensor field of :data:`flight.hal.protocol.SENSOR_FIELDS`, an array
            field without an index or with one out of range, or a scalar one with an index.
    """
    m = _SENSOR_TARGET.match(target)
    field = hal.SENSORS.get(m.group(1)) if m else None
    if field is None or field.dtype != "f8":
        raise FaultError(f"target {target!r} is not a numeric HAL sensor (e.g. gpu_temp_c[5], coolant_supply_temp_c)")
    index = None if m.group(2) is None else int(m.group(2))
    if field.shape == () and index is not None:
        raise FaultError(f"sensor {field.name} is a scalar: no index")
    if field.shape != () and (index is None or not 0 <= index < field.shape[0]):
        raise FaultError(f"sensor {field.name} needs an index in 0..{field.shape[0] - 1}")
    return field.name, index


def validate(fault: Any, value: Any = 0.0, target: Any = "", duration_s: Any = 0.0) -> Fault:
    """Check a fault request against the catalogue; return it normalised.

    Raises:
        FaultError: unknown fault, a value out of its range (or given to a fault that takes
            none), a missing or bad target, a duration missing, negative or over
            :data:`MAX_DURATION_S`.
    """
    kind = CATALOGUE.get(fault) if isinstance(fault, str) else None
    if kind is None:
        raise FaultError(f"unknown fault {fault!r}; known: {', '.join(CATALOGUE)}")
    for what, x in (("value", value), ("duration_s", duration_s)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise FaultError(f"{kind.name}: {what} must be a finite number")
    value, duration_s = float(value), float(duration_s)
    if kind.lo is None:
        if value != 0.0:
            raise FaultError(f"{kind.name} takes no value")
    elif not kind.lo <= value <= kind.hi or (kind.integer and not value.is_integer()):
        integer = " integer" if kind.integer else ""
        raise FaultError(f"{kind.name}: value {value:g} is not a{integer} {kind.value_doc} in "
                         f"[{kind.lo:g}, {kind.hi:g}]")
    if not isinstance(target, str):
        raise FaultError(f"{kind.name}: target must be a string")
    if kind.target == "gpu":
        if not (target.isdigit() and 0 <= int(target) < hal.N_GPUS):
            raise FaultError(f"{kind.name}: target {target!r} is not a GPU index 0..{hal.N_GPUS - 1}")
        target = str(int(target))
    elif kind.target == "sensor":
        name, index = sensor_target(target)
        target = name if index is None else f"{name}[{index}]"
    elif target:
        raise FaultError(f"{kind.name} takes no target")
    if not 0.0 <= duration_s <= MAX_DURATION_S:
        raise FaultError(f"{kind.name}: duration_s {duration_s:g} outside [0, {MAX_DURATION_S:g}]")
    if kind.needs_duration and duration_s <= 0.0:
        raise FaultError(f"{kind.name} needs duration_s > 0")
    return Fault(kind.name, value, target, duration_s)
