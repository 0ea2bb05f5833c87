"""A scenario's ``[start]`` table checked by the simulator itself: its parameter overrides
(:class:`sim_hw.params.SimParams`), the start conditions of a run.

The scenario reader (:mod:`flight.scenario`) reaches this module by name, as the executive
starts the simulator, so that flight does not depend on the simulator's code.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from sim_hw.params import SimParams
from sim_hw.satellite import Satellite

SETTABLE = {f.name for f in fields(SimParams)}


def numeric_parameters() -> dict[str, tuple[str, bool]]:
    """The parameters a ``[start]`` table (or a campaign's dispersion) may set to a number:
    name -> (unit as :class:`SimParams` declares it, whether it is an integer)."""
    defaults = SimParams()
    out = {}
    for f in fields(SimParams):
        value = getattr(defaults, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f.name] = (f.metadata["unit"], isinstance(value, int))
    return out


class StartError(ValueError):
    """A ``[start]`` table the simulator cannot fly: ``key`` (``""`` for the table as a whole)
    and why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}" if key else why)
        self.key, self.why = key, why


def check(table: Any, tle_lines: tuple[str, str]) -> dict[str, Any]:
    """The overrides of a ``[start]`` table, checked: known numeric or text parameters of the
    right type, accepted by a :class:`Satellite` built on ``tle_lines``.

    Raises:
        StartError: not a table, an unknown key, a value of the wrong type, a parameter that
            cannot be set from a file (a table, a flag), or a combination the simulator refuses.
    """
    if not isinstance(table, dict):
        raise StartError("", "must be a table")
    unknown = sorted(set(table) - SETTABLE)
    if unknown:
        raise StartError(unknown[0], f"unknown key (allowed: {', '.join(sorted(SETTABLE))})")
    defaults = SimParams()
    overrides: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(defaults, key)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            integer = isinstance(default, int)
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
                raise StartError(key, f"must be {'an integer' if integer else 'a finite number'}, not {value!r}")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise StartError(key, f"must be a string, not {value!r}")
        else:
            raise StartError(key, "cannot be set from a scenario")
        overrides[key] = value
    try:
        Satellite(tle_lines, params=SimParams(**overrides))
    except (TypeError, ValueError) as exc:
        raise StartError("", f"the simulator refuses these start conditions: {exc}") from None
    return overrides
