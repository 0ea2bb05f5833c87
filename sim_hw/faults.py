"""The simulator's fault injector: the physical effect of each fault of the catalogue.

What a fault is called, its argument ranges and its validation are the HAL protocol's
(:mod:`flight.hal.faults`); this module makes them happen on a simulated
:class:`~sim_hw.satellite.Satellite`.

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
from typing import Any

import numpy as np

from flight.hal import protocol as hal
from flight.hal.faults import Fault, FaultError, sensor_target, validate


class FaultInjector:
    """The faults active on one :class:`~sim_hw.satellite.Satellite` and their effects.

    Physical effects are set on the satellite's parts when a fault is injected or cleared;
    sensor faults are applied to each frame by :meth:`apply_to_frame`; timed faults end in
    :meth:`expire`, called once per step.

    Args:
        sat: the :class:`~sim_hw.satellite.Satellite` (not imported: it imports this module).
        rng: generator of the sensor noise (separate from the upset generator, so a noisy
            sensor does not change the upsets a seed gives).
    """

    def __init__(self, sat: Any, rng: np.random.Generator) -> None:
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

    def state(self) -> dict[str, Any]:
        """What a reboot keeps (:mod:`sim_hw.persist`), JSON-ready: each active fault with its
        end (``end_s``, simulated s since the epoch; ``None`` until cleared), the frozen reading of
        each stuck sensor, the sigma of each noisy one, the energy of isolated battery cells and
        the noise generator's state. The physical effects themselves live in the parts' state."""
        return {
            "active": [{**f.as_dict(), "end_s": None if math.isinf(end) else end} for f, end in self.active.values()],
            "stuck": [[name, index, reading] for (name, index), reading in self._stuck.items()],
            "noisy": [[name, index, sigma] for (name, index), sigma in self._noisy.items()],
            "isolated_j": self._isolated_j,
            "rng": self.rng.bit_generator.state,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state` (effects not re-applied: the parts carry them).

        Raises:
            KeyError, TypeError, ValueError: a malformed state.
        """
        active = {}
        for f in state["active"]:
            fault = Fault(f["fault"], float(f["value"]), f["target"], float(f["duration_s"]))
            active[fault.key] = (fault, math.inf if f["end_s"] is None else float(f["end_s"]))
        self.active = active
        self._stuck = {(n, i): float(r) for n, i, r in state["stuck"]}
        self._noisy = {(n, i): float(s) for n, i, s in state["noisy"]}
        self._isolated_j = float(state["isolated_j"])
        self.rng.bit_generator.state = state["rng"]

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
