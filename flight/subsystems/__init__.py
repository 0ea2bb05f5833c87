"""The flight subsystems, one OS process each.

Imported lazily by name so that each process loads only its own module.
"""

from __future__ import annotations

import importlib

from flight.core.config import SUBSYSTEMS

_CLASSES = {
    "power": "flight.subsystems.power.manager:PowerManager",
    "thermal": "flight.subsystems.thermal.controller:ThermalController",
    "jobs": "flight.subsystems.jobs.runner:JobRunner",
    "link": "flight.subsystems.link.manager:LinkManager",
}
assert tuple(_CLASSES) == SUBSYSTEMS


def subsystem_class(name: str):
    """The Subsystem class of subsystem ``name``; KeyError for an unknown name."""
    module, _, cls = _CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def all_subsystem_classes() -> list:
    return [subsystem_class(n) for n in SUBSYSTEMS]
