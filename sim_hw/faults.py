"""The fault catalogue and the simulator's fault injector.

Every fault the simulator can be given at run time, from a scenario file or by the
``hal.inject_fault`` telecommand, is declared once in :data:`CATALOGUE`: its name, what its
one number (``value``) means with unit and valid range, what it is aimed at (``target``: a
GPU index, or a sensor), whether it must have a duration, and the physical effect. The
same declaration validates a fault everywhere (:func:`validate`): on board before the
command is sent to the rig, in the rig, and when a scenario file is read.

A fault is identified by ``(fault, target)``: injecting it again replaces it; clearing it
undoes its effect. A fault with ``duration_s > 0`` clears itself that many seconds after it
was injected; ``duration_s = 0`` lasts until cleared.

Effects (the physics they act on, in :mod:`sim_hw.thermal`, :mod:`sim_hw.power`,
:mod:`sim_hw.gpus`, :mod:`sim_hw.radiation`):

``pump_degraded``
    The pump delivers ``value`` × the flow it would at its commanded speed (worn impeller,
    a partly blocked filter or a failed pump of a redundant pair). Electrical draw is
    unchanged (the motor still turns at its speed), so the heat is the same and the flow
    and cold-plate conductance both fall. Clearing restores full flow.
``radiator_area_lost``
    A fraction ``value`` of the radiating panel area no longer rejects heat (a panel
    section lost to debris, a deployment failure). Modelled as every zone's emitting area
    shrinking by that fraction; the fluid path and the panels' heat capacity are kept (a
    simplification: an isolated section would also take its fluid and mass out of the loop).
``battery_capacity_lost``
    The battery management system isolates a fraction ``value`` of the cells (a failed
    module string): capacity and stored energy fall by that fraction, SOC is unchanged.
    The isolated cells keep their energy; the energy ledger's stored term follows the
    connected cells only. Clearing reconnects them with what they held.
``solar_string_lost``
    ``value`` of the array's ``array_strings`` strings are open-circuit (broken harness,
    failed blocking diode, MPPT channel fault); output falls by ``value / array_strings``.
    The lost strings' sunlight becomes panel heat.
``sensor_stuck``
    The reading ``target`` (e.g. ``gpu_temp_c[5]``, ``coolant_supply_temp_c``) freezes
    at its present value while the physics moves on.
``sensor_noisy``
    The reading ``target`` gets Gaussian noise of standard deviation ``value`` (in the
    field's unit) each frame, clipped to the sensor range.
``seu_storm``
    The memory-upset rate is multiplied by ``value`` (a solar particle event: GOES >10 MeV
    proton flux rises by 10²–10⁴ in large events, estimate of the upset-rate rise).
``gpu_dead``
    GPU ``target`` fails: it draws nothing, does no work and reads offline
    (``gpu_online`` False); its die cools to the coolant. Clearing power-cycles it back.
``link_outage``
    No ground contact (ground-segment or transmitter outage) for the duration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flight.hal import protocol as hal
from sim_hw.params import SimParams

if TYPE_CHECKING:
    from sim_hw.satellite import Satellite

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
    FaultKind("solar_string_lost", "array strings open-circuit", "strings lost", "count", 1, SimParams().array_strings,
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


class FaultInjector:
    """The faults active on one :class:`~sim_hw.satellite.Satellite` and their effects.

    Physical effects are set on the satellite's parts when a fault is injected or cleared;
    sensor faults are applied to each frame by :meth:`apply_to_frame`; timed faults end in
    :meth:`expire`, called once per step.

    Args:
        sat: the satellite.
        rng: generator of the sensor noise (separate from the upset generator, so a noisy
            sensor does not change the upsets a seed gives).
    """

    def __init__(self, sat: Satellite, rng: np.random.Generator) -> None:
        self.sat = sat
        self.rng = rng
        self.active: dict[tuple[str, str], tuple[Fault, float]] = {}
        """``(fault, target) -> (fault, end time_s or inf)``."""
        self._stuck: dict[tuple[str, int | None], float] = {}
        self._noisy: dict[tuple[str, int | None], float] = {}
        self._isolated_j = 0.0
        self.ended: list[tuple[str, str]] = []
        """``(fault, target)`` of timed faults that ended, for the rig to report (and empty)."""

    def inject(self, fault: Fault) -> None:
        """Apply a validated fault now (replacing an active one of the same key)."""
        if fault.key in self.active:
            self.clear(*fault.key)
        end = self.sat.time_s + fault.duration_s if fault.duration_s > 0.0 else math.inf
        self.active[fault.key] = (fault, end)
        self._set(fault, on=True)

    def clear(self, fault: str, target: str = "") -> bool:
        """Undo an active fault; return False if no such fault was active (nothing changes)."""
        entry = self.active.pop((fault, target), None)
        if entry is None:
            return False
        self._set(entry[0], on=False)
        return True

    def expire(self) -> None:
        """Clear the timed faults whose duration has passed; note them in :attr:`ended`."""
        now = self.sat.time_s
        for f in [f for f, end in self.active.values() if end <= now]:
            self.clear(*f.key)
            self.ended.append(f.key)

    def apply(self, payload: Any) -> str:
        """Apply a ``hal.fault`` payload (:mod:`flight.hal.protocol`): ``{"action": "inject", "fault",
        "value", "target", "duration_s"}`` or ``{"action": "clear", "fault", "target"}``;
        return what was done.

        Raises:
            FaultError: a malformed payload, a fault that does not validate, or a clear of a
                fault that is not active; nothing changes.
        """
        if not isinstance(payload, dict) or payload.get("action") not in ("inject", "clear"):
            raise FaultError("hal.fault needs action 'inject' or 'clear'")
        if payload["action"] == "inject":
            fault = validate(payload.get("fault"), payload.get("value", 0.0), payload.get("target", ""),
                             payload.get("duration_s", 0.0))
            self.inject(fault)
            return f"{fault.fault} injected"
        name, target = payload.get("fault"), payload.get("target", "")
        if not (isinstance(name, str) and isinstance(target, str) and self.clear(name, target)):
            raise FaultError(f"no active fault {name!r} {target!r}")
        return f"{name} cleared"

    def _set(self, f: Fault, on: bool) -> None:
        sat = self.sat
        name = f.fault
        if name == "pump_degraded":
            sat.thermal.set_flow_capacity(f.value if on else 1.0)
        elif name == "radiator_area_lost":
            sat.thermal.set_radiating_fraction(1.0 - f.value if on else 1.0)
        elif name == "battery_capacity_lost":
            if on:
                self._isolated_j = sat.power.isolate_cells(f.value)
            else:
                sat.power.reconnect_cells(self._isolated_j)
                self._isolated_j = 0.0
        elif name == "solar_string_lost":
            sat.power.array.set_strings_lost(int(f.value) if on else 0)
        elif name == "sensor_stuck":
            key = sensor_target(f.target)
            if on:
                reading = sat.frame(raw=True)[key[0]]
                self._stuck[key] = float(reading if key[1] is None else reading[key[1]])
            else:
                self._stuck.pop(key, None)
        elif name == "sensor_noisy":
            key = sensor_target(f.target)
            if on:
                self._noisy[key] = f.value
            else:
                self._noisy.pop(key, None)
        elif name == "seu_storm":
            sat.radiation.rate_factor = f.value if on else 1.0
        elif name == "gpu_dead":
            sat.gpus.set_dead(int(f.target), on)
        elif name == "link_outage":
            sat.link_outage = on

    def apply_to_frame(self, frame: dict[str, Any]) -> None:
        """Replace stuck readings and add noise to noisy ones, in place (ranges kept)."""
        for key, sigma in self._noisy.items():
            self._put(frame, key, self._read(frame, key) + float(self.rng.normal(0.0, sigma)))
        for key, reading in self._stuck.items():
            self._put(frame, key, reading)

    @staticmethod
    def _read(frame: dict[str, Any], key: tuple[str, int | None]) -> float:
        name, index = key
        return float(frame[name] if index is None else frame[name][index])

    @staticmethod
    def _put(frame: dict[str, Any], key: tuple[str, int | None], reading: float) -> None:
        name, index = key
        f = hal.SENSORS[name]
        reading = min(f.hi, max(f.lo, reading))
        if index is None:
            frame[name] = reading
        else:
            frame[name][index] = reading
