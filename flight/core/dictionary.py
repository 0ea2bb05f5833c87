"""The registry of every component of the flight software: the executive, the HAL bridge and
the four subsystems, whose declarations (:class:`flight.core.component.Component`: commands,
telemetry, events, parameters, ports) make up the one dictionary that on-board validation, the
ground CLI, ``flight dict`` and the link's TM/TC encoding all read.

Components are found by module name, so that this bottom layer imports none of them and a
process that needs only its own subsystem never loads the others: :func:`full_dictionary`
loads them all.
"""

from __future__ import annotations

import importlib

from flight.core.component import Component, Dictionary
from flight.core.config import SUBSYSTEMS

COMPONENTS = (
    ("exec", "flight.executive.supervisor:COMPONENT"),
    ("hal", "flight.hal.bridge:HalBridge"),
    ("power", "flight.subsystems.power.manager:PowerManager"),
    ("thermal", "flight.subsystems.thermal.controller:ThermalController"),
    ("jobs", "flight.subsystems.jobs.runner:JobRunner"),
    ("link", "flight.subsystems.link.manager:LinkManager"),
)
"""``(component name, "module:attribute")``: the attribute is the Component or the class that
declares it (``COMPONENT``). Subsystems in :data:`flight.core.config.SUBSYSTEMS` order."""
assert tuple(n for n, _ in COMPONENTS[2:]) == SUBSYSTEMS


def load(where: str):
    """The object at ``"module:attribute"`` (imported on first use).

    Raises:
        ImportError, AttributeError: no such module or attribute.
    """
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr)


def subsystem_class(name: str):
    """The Subsystem class of subsystem ``name`` (one of SUBSYSTEMS).

    Raises:
        KeyError: an unknown name.
    """
    if name not in SUBSYSTEMS:
        raise KeyError(name)
    return load(dict(COMPONENTS)[name])


def all_subsystem_classes() -> list:
    """The Subsystem classes of SUBSYSTEMS, in that order."""
    return [subsystem_class(n) for n in SUBSYSTEMS]


def full_dictionary() -> Dictionary:
    """Every component's declarations, checked together (wiring of data products and actuator
    ownership: :class:`flight.core.component.Dictionary`).

    Raises:
        ValueError: the declarations disagree (a product nobody publishes, an actuator owned twice).
    """
    comps = [load(where) for _, where in COMPONENTS]
    return Dictionary([c if isinstance(c, Component) else c.COMPONENT for c in comps])
