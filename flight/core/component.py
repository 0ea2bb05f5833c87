"""The dictionary: every command, telemetry channel, event, parameter and port, declared once.

Each subsystem declares its own entries next to its code (F Prime's FPP model, expressed
in Python). From those declarations come on-board argument validation, the ground CLI's
validation and help, the space-link opcodes and ``flight dict --json``.

Ports (F Prime's typed ports, expressed in Python): each component declares the data
products it publishes (:class:`DataProduct`: fields with type, units and shape), the ones
it consumes (qualified names) and the actuator fields it owns (names from
:data:`flight.hal.protocol.ACTUATOR_FIELDS`). :class:`Dictionary` checks the wiring once
for the whole stack: every consumed product has a publisher, every actuator at most one owner.

Command lifecycle and failure codes follow PUS service 1 and F Prime's command response
codes: accepted -> started -> (progress) -> completed, or failed with one of
:data:`FAILURE_CODES`.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

from flight.hal.protocol import ACTUATORS

SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH")
"""Event severities; they map onto PUS service 5 reports TM[5,1] .. TM[5,4]."""

STAGES = ("accepted", "started", "progress", "completed", "failed")
FINAL_STAGES = frozenset({"completed", "failed"})
FAILURE_CODES = ("INVALID_OPCODE", "VALIDATION_ERROR", "FORMAT_ERROR", "EXECUTION_ERROR", "BUSY", "INTERRUPTED")
"""INTERRUPTED: the command was accepted but a restart (its owner's, the link's, the whole flight
computer's) came before its final answer; it may or may not have taken effect."""

_ARG_TYPES = {"float": float, "int": int, "bool": bool, "str": str}
MAX_STR_ARG = 256


class CommandError(Exception):
    """A command that failed; ``code`` is one of :data:`FAILURE_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        if code not in FAILURE_CODES:
            raise ValueError(f"unknown failure code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Arg:
    """A typed command argument. ``type`` is ``float``, ``int``, ``bool`` or ``str``;
    ``lo``/``hi`` bound numbers (inclusive), ``choices`` restricts strings."""

    name: str
    type: str
    units: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in _ARG_TYPES:
            raise ValueError(f"argument type {self.type!r} is not one of {sorted(_ARG_TYPES)}")

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to the declared type.

        Raises:
            CommandError: FORMAT_ERROR for a value of the wrong type, VALIDATION_ERROR for
                one out of range or not among ``choices``.
        """
        if self.type == "bool":
            if not isinstance(value, bool):
                raise CommandError("FORMAT_ERROR", f"{self.name} must be a bool")
            return value
        if self.type == "str":
            if not isinstance(value, str) or len(value) > MAX_STR_ARG:
                raise CommandError("FORMAT_ERROR", f"{self.name} must be a string of <= {MAX_STR_ARG} chars")
            if self.choices is not None and value not in self.choices:
                raise CommandError("VALIDATION_ERROR", f"{self.name}={value!r} is not one of {list(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CommandError("FORMAT_ERROR", f"{self.name} must be a number")
        if self.type == "int" and not (isinstance(value, int) or float(value).is_integer()):
            raise CommandError("FORMAT_ERROR", f"{self.name} must be an integer")
        if not math.isfinite(value):
            raise CommandError("VALIDATION_ERROR", f"{self.name} must be finite")
        value = int(value) if self.type == "int" else float(value)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise CommandError(
                "VALIDATION_ERROR", f"{self.name}={value:g} {self.units} outside [{self.lo:g}, {self.hi:g}]"
            )
        return value

    def parse(self, text: str) -> Any:
        """Convert a ``key=value`` string from the command line to the declared type.

        Raises:
            CommandError: FORMAT_ERROR when ``text`` does not parse as the type.
        """
        try:
            if self.type == "bool":
                if text.lower() not in ("true", "false", "1", "0", "on", "off"):
                    raise ValueError(text)
                return text.lower() in ("true", "1", "on")
            return _ARG_TYPES[self.type](text)
        except ValueError:
            raise CommandError("FORMAT_ERROR", f"{self.name}={text!r} is not a {self.type}") from None

    def describe(self) -> str:
        rng = f" [{self.lo:g}..{self.hi:g}]" if self.lo is not None and self.hi is not None else ""
        ch = f" one of {list(self.choices)}" if self.choices else ""
        return f"{self.name}:{self.type}{rng}{ch} {self.units}".rstrip()


@dataclass(frozen=True)
class Command:
    """A command a subsystem accepts. ``local_id`` (1..255) makes the link opcode.
    ``idempotent``: running it twice with the same arguments leaves the same state as once (a
    setting, a query), so a TC of it accepted before a restart is executed again after it
    (:mod:`flight.subsystems.link.pending`); any other is reported INTERRUPTED instead."""

    name: str
    local_id: int
    args: tuple[Arg, ...] = ()
    doc: str = ""
    idempotent: bool = False

    def validate(self, args: Any) -> dict[str, Any]:
        """Check a full argument map; return it with values converted.

        Raises:
            CommandError: FORMAT_ERROR for a non-map, a missing or unknown argument or a
                wrongly typed value; VALIDATION_ERROR for a value out of range.
        """
        if not isinstance(args, dict):
            raise CommandError("FORMAT_ERROR", "arguments must be a map")
        expected = {a.name for a in self.args}
        unknown = sorted(set(args) - expected, key=str)
        missing = sorted(expected - set(args))
        if unknown or missing:
            raise CommandError("FORMAT_ERROR", f"{self.name}: unknown {unknown}, missing {missing}")
        return {a.name: a.validate(args[a.name]) for a in self.args}


@dataclass(frozen=True)
class Channel:
    """A telemetry channel: ``type`` is ``float``, ``int``, ``bool`` or ``str``; ``size`` is 0 for a
    scalar or the length of an array channel (per-GPU values); limits are inclusive
    ``(lo, hi)`` pairs of the safe (yellow) and hard (red) ranges."""

    name: str
    type: str
    units: str = ""
    doc: str = ""
    size: int = 0
    yellow: tuple[float, float] | None = None
    red: tuple[float, float] | None = None

    def limit_state(self, value: float) -> str:
        """``"red"``, ``"yellow"`` or ``"ok"`` for a value of this channel."""
        if self.red and not (self.red[0] <= value <= self.red[1]):
            return "red"
        if self.yellow and not (self.yellow[0] <= value <= self.yellow[1]):
            return "yellow"
        return "ok"


EVENT_ARG_TYPES = ("float", "int", "bool", "str")
"""Types an event argument may have; each is a JSON scalar in the recorded ``args``."""

STRICT_EVENTS_ENV = "RACKFLIGHT_STRICT_EVENTS"
"""Environment variable: ``1`` makes :meth:`Component.event_payload` raise :class:`EventArgError`
on arguments that do not match their declaration (the test suite sets it); otherwise the event
still goes out, flagged, so a flight process never dies of a malformed event."""

_SAMPLE_VALUES = {"float": 0.0, "int": 0, "bool": False, "str": ""}


class EventArgError(TypeError):
    """An event emitted with arguments that do not match its declaration: a programming error."""


@dataclass(frozen=True)
class EventArg:
    """A typed event argument: ``type`` from :data:`EVENT_ARG_TYPES`. A ``float`` takes any
    real number but a bool, an ``int`` any integer but a bool (numpy scalars included)."""

    name: str
    type: str
    units: str = ""
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in EVENT_ARG_TYPES:
            raise ValueError(f"event argument type {self.type!r} is not one of {EVENT_ARG_TYPES}")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit this argument, or None when it does."""
        if self.type == "str":
            ok = isinstance(value, str)
        elif self.type == "bool":
            ok = isinstance(value, bool)
        elif isinstance(value, bool):
            ok = False
        else:
            ok = isinstance(value, numbers.Integral if self.type == "int" else numbers.Real)
        return None if ok else f"{self.name} must be {self.type}, not {type(value).__name__}"


@dataclass(frozen=True)
class Event:
    """An event: ``severity`` from :data:`SEVERITIES`; ``format`` is a ``str.format``
    template filled from the event's arguments ``args``, each declared with its type and units.
    ``local_id`` (1..255) makes the event id.

    Raises:
        ValueError: an unknown severity, a duplicate argument name, or a ``format`` that names
            an undeclared argument or formats one against its type (``{n:x}`` of a float).
    """

    name: str
    local_id: int
    severity: str
    format: str
    doc: str = ""
    args: tuple[EventArg, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")
        names = [a.name for a in self.args]
        if len(set(names)) != len(names):
            raise ValueError(f"event {self.name}: duplicate argument names {names}")
        try:
            self.format.format(**{a.name: _SAMPLE_VALUES[a.type] for a in self.args})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"event {self.name}: format {self.format!r} does not fit args {names}: "
                             f"{type(exc).__name__} {exc}") from None

    def problems(self, args: dict[str, Any]) -> list[str]:
        """What is wrong with ``args`` against the declaration: missing, undeclared or wrongly
        typed arguments; empty when they match."""
        declared = {a.name: a for a in self.args}
        out = [f"{name} missing" for name in declared if name not in args]
        out += [f"{name} not declared" for name in args if name not in declared]
        out += [p for name, value in args.items() if name in declared
                and (p := declared[name].problem(value)) is not None]
        return out


PRODUCT_TYPES = ("float64", "int64", "bool", "str")
"""Types of a data product's field (a numpy dtype name, or ``str`` for a short text)."""


@dataclass(frozen=True)
class ProductField:
    """One field of a data product: ``type`` from :data:`PRODUCT_TYPES`, ``units``, and
    ``shape`` (``()`` for a scalar, ``(72,)`` for one value per GPU, ``(-1,)`` for a list of
    any length)."""

    name: str
    type: str
    units: str = ""
    shape: tuple[int, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in PRODUCT_TYPES:
            raise ValueError(f"field {self.name}: type {self.type!r} is not one of {PRODUCT_TYPES}")

    def describe(self) -> str:
        shape = f"[{','.join('n' if n < 0 else str(n) for n in self.shape)}]" if self.shape else ""
        return f"{self.name}:{self.type}{shape} {self.units}".rstrip()


@dataclass(frozen=True)
class DataProduct:
    """A data product a component publishes each tick (or on change) for other components,
    on topic ``data/<component>.<name>``: control inputs that nobody records or downlinks.
    Values of tick N reach every consumer before the frame of tick N+1."""

    name: str
    fields: tuple[ProductField, ...]
    doc: str = ""

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


PARAMETER_TYPES = ("float", "int", "bool")
"""Types a parameter may have: each has a fixed-size value on the space link (PUS service 20)."""


@dataclass(frozen=True)
class Parameter:
    """An onboard parameter operators read and set (PUS service 20), declared next to its
    owner: ``type`` from :data:`PARAMETER_TYPES`, inclusive range ``lo``..``hi`` in ``units``
    (for a bool: 0..1), ``default`` the value the owner starts with. It governs the owner
    object's attribute ``attribute`` (default: ``name``); the owner applies a set and
    persists it (:mod:`flight.core.parameters`). ``local_id`` (1..255) makes the parameter id
    ``component_id << 8 | local_id``."""

    name: str
    local_id: int
    type: str
    units: str
    lo: float
    hi: float
    default: float | int | bool
    doc: str = ""
    attribute: str = ""

    def __post_init__(self) -> None:
        if self.type not in PARAMETER_TYPES:
            raise ValueError(f"parameter type {self.type!r} is not one of {PARAMETER_TYPES}")
        if not 1 <= self.local_id <= 255:
            raise ValueError(f"parameter {self.name}: local id {self.local_id} outside 1..255")
        self.validate(self.default)

    @property
    def attr(self) -> str:
        """Name of the owner's attribute this parameter governs."""
        return self.attribute or self.name

    def as_arg(self) -> Arg:
        return Arg(self.name, self.type, self.units, None if self.type == "bool" else self.lo,
                   None if self.type == "bool" else self.hi, doc=self.doc)

    def validate(self, value: Any) -> Any:
        """``value`` converted to the declared type.

        Raises:
            CommandError: FORMAT_ERROR for a value of the wrong type (a bool must be a bool
                or 0/1), VALIDATION_ERROR for one outside ``lo``..``hi``.
        """
        if self.type == "bool" and not isinstance(value, bool) and value in (0, 1):
            value = bool(value)
        return self.as_arg().validate(value)

    def describe(self) -> str:
        rng = "" if self.type == "bool" else f" [{self.lo:g}..{self.hi:g}]"
        return f"{self.type}{rng} {self.units}".rstrip() + f" default {self.default}"


@dataclass
class Component:
    """What one component (subsystem) declares. ``component_id`` (1..127) is the high
    byte of its opcodes and event ids, and its space-link APID offset."""

    name: str
    component_id: int
    commands: tuple[Command, ...] = ()
    telemetry: tuple[Channel, ...] = ()
    events: tuple[Event, ...] = ()
    doc: str = ""
    parameters: tuple[Parameter, ...] = ()
    publishes: tuple[DataProduct, ...] = ()
    """Data products this component publishes."""
    consumes: tuple[str, ...] = ()
    """Qualified names (``thermal.headroom``) of the data products it reads."""
    actuates: tuple[str, ...] = ()
    """Actuator fields (:data:`flight.hal.protocol.ACTUATOR_FIELDS`) it alone sets."""
    _by_name: dict[str, Command] = field(default_factory=dict, repr=False)
    _products: dict[str, DataProduct] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {c.name: c for c in self.commands}
        self._products = {p.name: p for p in self.publishes}
        for what, items in (("command", self.commands), ("event", self.events), ("parameter", self.parameters)):
            ids = [i.local_id for i in items]
            if len(set(ids)) != len(ids) or not all(1 <= i <= 255 for i in ids):
                raise ValueError(f"{self.name}: {what} local ids must be unique in 1..255")

    def command(self, name: str) -> Command | None:
        return self._by_name.get(name)

    def product(self, name: str) -> DataProduct | None:
        """The declared data product ``name`` (unqualified), or ``None``."""
        return self._products.get(name)

    def event_payload(self, event: str, args: dict[str, Any]) -> dict[str, Any]:
        """The bus payload of declared event ``event``: ``severity``, the formatted ``message``
        and ``args`` (name -> value, as declared).

        Arguments that do not match the declaration are a programming error. With
        :data:`STRICT_EVENTS_ENV` set (tests) that raises; in flight the event still goes out,
        flagged rather than lost or fatal: ``args`` keeps only the arguments that match,
        ``message`` is the template with what was wrong, and ``arg_errors`` counts the problems
        (the recorder sums them into the run summary's ``event_arg_errors``).

        Raises:
            KeyError: ``event`` is not declared by this component.
            EventArgError: the arguments do not match, with :data:`STRICT_EVENTS_ENV` set.
        """
        ev = next((e for e in self.events if e.name == event), None)
        if ev is None:
            raise KeyError(f"{self.name}.{event} is not a declared event")
        problems = ev.problems(args)
        if not problems:
            return {"severity": ev.severity, "message": ev.format.format(**args), "args": args}
        what = f"{self.name}.{event}: " + "; ".join(problems)
        if os.environ.get(STRICT_EVENTS_ENV) == "1":
            raise EventArgError(what)
        declared = {a.name: a for a in ev.args}
        good = {k: v for k, v in args.items() if k in declared and declared[k].problem(v) is None}
        return {"severity": ev.severity, "message": f"{ev.format} [malformed arguments: {what}]"[:400],
                "args": good, "arg_errors": len(problems)}


def actuator_owners(components) -> dict[str, str]:
    """Actuator field -> name of the component that owns it, from ``components``' declarations.

    Raises:
        ValueError: a field owned by two components, or one that is not a HAL actuator.
    """
    owners: dict[str, str] = {}
    for comp in components:
        for name in comp.actuates:
            if name not in ACTUATORS:
                raise ValueError(f"{comp.name} owns {name!r}, which is not a HAL actuator field")
            if name in owners:
                raise ValueError(f"actuator field {name} is owned by both {owners[name]} and {comp.name}")
            owners[name] = comp.name
    return owners


def owned_settings(owners: dict[str, str], src: str, settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split one component's actuator settings into those it owns and the names of those it
    does not (``owners`` from :func:`actuator_owners`; a field nobody owns is refused too).
    The HAL bridge and the in-process stack both merge actuation through this."""
    mine = {k: v for k, v in settings.items() if owners.get(k) == src}
    return mine, [k for k in settings if k not in mine]


class Dictionary:
    """All components' declarations, indexed by qualified name and by numeric id, and their
    wiring: :attr:`products` (qualified name -> declaration), :attr:`publisher` and
    :attr:`readers` of each product, :attr:`owners` of the actuator fields.

    ``partial=True`` builds a dictionary of some components only (a test of one subsystem),
    whose consumed products may be published by a component left out.

    Raises:
        ValueError: duplicate component ids, a consumed product nobody publishes (unless
            ``partial``), or an actuator field owned twice (or not a HAL actuator).
    """

    def __init__(self, components: list[Component], *, partial: bool = False) -> None:
        self.components = {c.name: c for c in components}
        ids = [c.component_id for c in components]
        if len(set(ids)) != len(ids):
            raise ValueError("component ids must be unique")
        self.commands: dict[str, Command] = {}
        self.opcodes: dict[int, str] = {}
        self.channels: dict[str, Channel] = {}
        self.events: dict[str, Event] = {}
        self.event_ids: dict[int, str] = {}
        self.parameters: dict[str, Parameter] = {}
        self.parameter_ids: dict[int, str] = {}
        for comp in components:
            for cmd in comp.commands:
                qual = f"{comp.name}.{cmd.name}"
                self.commands[qual] = cmd
                self.opcodes[comp.component_id << 8 | cmd.local_id] = qual
            for ch in comp.telemetry:
                self.channels[f"{comp.name}.{ch.name}"] = ch
            for ev in comp.events:
                qual = f"{comp.name}.{ev.name}"
                self.events[qual] = ev
                self.event_ids[comp.component_id << 8 | ev.local_id] = qual
            for par in comp.parameters:
                qual = f"{comp.name}.{par.name}"
                self.parameters[qual] = par
                self.parameter_ids[comp.component_id << 8 | par.local_id] = qual
        self.products: dict[str, DataProduct] = {}
        self.publisher: dict[str, str] = {}
        for comp in components:
            for prod in comp.publishes:
                self.products[f"{comp.name}.{prod.name}"] = prod
                self.publisher[f"{comp.name}.{prod.name}"] = comp.name
        self.readers: dict[str, list[str]] = {q: [] for q in self.products}
        for comp in components:
            for qual in comp.consumes:
                if qual in self.readers:
                    self.readers[qual].append(comp.name)
                elif not partial:
                    raise ValueError(f"{comp.name} consumes {qual}, which no component publishes")
        self.owners = actuator_owners(components)

    def opcode(self, qualified: str) -> int:
        comp, _, name = qualified.partition(".")
        return self.components[comp].component_id << 8 | self.components[comp].command(name).local_id

    def event_id(self, qualified: str) -> int:
        comp, _, _ = qualified.partition(".")
        return self.components[comp].component_id << 8 | self.events[qualified].local_id

    def parameter_id(self, qualified: str) -> int:
        comp, _, _ = qualified.partition(".")
        return self.components[comp].component_id << 8 | self.parameters[qualified].local_id

    def validate_command(self, qualified: str, args: Any) -> dict[str, Any]:
        """Validate a command by qualified name (``thermal.set_setpoint``).

        Raises:
            CommandError: INVALID_OPCODE for an unknown command, else as :meth:`Command.validate`.
        """
        cmd = self.commands.get(qualified) if isinstance(qualified, str) else None
        if cmd is None:
            raise CommandError("INVALID_OPCODE", f"no command {qualified!r}")
        return cmd.validate(args)

    def to_json(self) -> dict[str, Any]:
        """The whole dictionary as JSON-ready data (``flight dict --json``)."""
        out: dict[str, Any] = {"components": {}}
        for comp in self.components.values():
            out["components"][comp.name] = {
                "id": comp.component_id,
                "doc": comp.doc,
                "commands": [
                    {"name": f"{comp.name}.{c.name}", "opcode": comp.component_id << 8 | c.local_id,
                     "doc": c.doc, "idempotent": c.idempotent,
                     "args": [{"name": a.name, "type": a.type, "units": a.units, "min": a.lo, "max": a.hi,
                               "choices": list(a.choices) if a.choices else None, "doc": a.doc} for a in c.args]}
                    for c in comp.commands
                ],
                "telemetry": [
                    {"name": f"{comp.name}.{t.name}", "type": t.type, "size": t.size, "units": t.units,
                     "doc": t.doc,
                     "yellow": list(t.yellow) if t.yellow else None, "red": list(t.red) if t.red else None}
                    for t in comp.telemetry
                ],
                "events": [
                    {"name": f"{comp.name}.{e.name}", "id": comp.component_id << 8 | e.local_id,
                     "severity": e.severity, "format": e.format, "doc": e.doc,
                     "args": [{"name": a.name, "type": a.type, "units": a.units, "doc": a.doc} for a in e.args]}
                    for e in comp.events
                ],
                "parameters": [
                    {"name": f"{comp.name}.{p.name}", "id": comp.component_id << 8 | p.local_id, "type": p.type,
                     "units": p.units, "min": p.lo, "max": p.hi, "default": p.default, "doc": p.doc}
                    for p in comp.parameters
                ],
                "publishes": [f"{comp.name}.{p.name}" for p in comp.publishes],
                "consumes": list(comp.consumes),
                "actuates": list(comp.actuates),
            }
        out["wiring"] = self.wiring_json()
        return out

    def wiring_json(self) -> dict[str, Any]:
        """Who feeds whom: each data product with its fields, publisher and readers, and the
        owner of each actuator field (every setting goes to the HAL)."""
        return {
            "products": [
                {"name": qual, "publisher": self.publisher[qual], "readers": self.readers[qual], "doc": prod.doc,
                 "fields": [{"name": f.name, "type": f.type, "units": f.units, "shape": list(f.shape), "doc": f.doc}
                            for f in prod.fields]}
                for qual, prod in self.products.items()
            ],
            "actuators": [{"field": name, "owner": owner} for name, owner in self.owners.items()],
        }

    def wiring_dot(self) -> str:
        """The wiring as a Graphviz DOT digraph: an edge from each product's publisher to each
        reader, labelled with the product, and from each actuator owner to ``hal``."""
        lines = ["digraph wiring {", "  rankdir=LR;", "  node [shape=box];"]
        for qual in self.products:
            for reader in self.readers[qual] or ["(nobody)"]:
                lines.append(f'  "{self.publisher[qual]}" -> "{reader}" [label="{qual}"];')
        for name, owner in self.owners.items():
            lines.append(f'  "{owner}" -> "hal" [label="{name}", style=dashed];')
        lines.append("}")
        return "\n".join(lines) + "\n"
