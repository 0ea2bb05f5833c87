"""The Subsystem base class: one flight subsystem's contract and its handlers.

A subsystem declares, in one short class body, what it is (its :class:`Component`:
commands, telemetry channels, events) and which rate groups it runs; it implements each
rate group and each command handler in a few lines. It never touches a socket: everything
it emits goes through the ``emit`` port it was built with, so the same object runs inside
its OS process (:mod:`flight.core.runtime`) or directly in a unit test.

Contract
    inputs   ``hal.frame`` each tick -> :meth:`on_frame` -> rate groups, then
             :meth:`housekeeping` every ``hk_period_ticks`` and on the run's last tick;
             the data products the component declares it consumes, and the topics in
             ``SUBSCRIBE`` -> :meth:`on_message`;
             commands ``<name>.<command>`` -> ``cmd_<command>(**args)``;
             parameters (PUS service 20) -> the attributes they govern, persisted
    outputs  telemetry ``tm/<name>.hk`` (declared channels + framework counters);
             the data products it declares, ``data/<name>.<product>``, for other subsystems;
             events ``ev/<name>.<event>``; ``hw/hal.done`` closing each tick,
             carrying the actuator settings the tick produced
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from flight.core.config import RunConfig
from flight.core.component import Arg, Channel, Command, CommandError, Component, Event, EventArg, Parameter
from flight.core.messages import Message
from flight.core.storage import MovedAside, moved_aside, take_moved_aside

Emit = Callable[[str, str, Any], None]
"""``emit(kind, name, data)``: a subsystem's publish port."""
SendCommand = Callable[[str, str, dict], None]
"""``send_command(command_id, qualified_name, args)``: its port to the command dispatcher."""
Listen = Callable[[bool], None]
"""``listen(on)``: start or stop delivery of the subsystem's ``SUBSCRIBE`` topics."""


def store_moved_aside_event(event_id: int) -> Event:
    """The HIGH event ``store_moved_aside`` (local id ``event_id``) of a process that found a
    store damaged at open (:class:`flight.core.storage.MovedAside`, args :func:`moved_aside_args`)."""
    return Event("store_moved_aside", event_id, "HIGH",
                 "{file} was damaged ({why}): moved aside to {moved_to}; {outcome}",
                 args=(EventArg("file", "str"), EventArg("moved_to", "str"), EventArg("why", "str"),
                       EventArg("outcome", "str")))


def moved_aside_args(moved: MovedAside) -> dict[str, str]:
    """The arguments of :func:`store_moved_aside_event` for ``moved``."""
    return {"file": str(moved.path), "moved_to": moved.moved_to.name, "why": moved.why[:160],
            "outcome": moved.outcome()}


FRAMEWORK_CHANNELS = (
    Channel("cycle_slips", "int", "count", "Ticks missed or overrun since the process started."),
    Channel("decode_errors", "int", "count", "Messages rejected as malformed since the process started."),
)
FRAMEWORK_EVENTS = (
    Event("cycle_slip", 250, "LOW", "{missed} tick(s) missed or overrun before tick {tick}",
          args=(EventArg("missed", "int", "ticks"), EventArg("tick", "int"))),
    Event("decode_error", 251, "LOW", "rejected a malformed message on {topic}: {why}",
          args=(EventArg("topic", "str"), EventArg("why", "str"))),
    Event("command_crashed", 252, "MEDIUM", "handler of {command} raised {why}",
          args=(EventArg("command", "str"), EventArg("why", "str"))),
    Event("parameter_store_failed", 253, "MEDIUM", "cannot persist parameters {names}: {why}",
          args=(EventArg("names", "str"), EventArg("why", "str"))),
    store_moved_aside_event(254),
)
SET_PARAMETER_ID = 250
"""Local id of the framework command ``set_parameter`` of every component with parameters."""


def set_parameter_command(parameters: tuple[Parameter, ...]) -> Command:
    """The framework command that sets one of ``parameters`` (what TC[20,3] becomes on board);
    ``value`` travels as a float and is checked against the parameter's own declaration."""
    return Command("set_parameter", SET_PARAMETER_ID, (
        Arg("name", "str", choices=tuple(p.name for p in parameters), doc="Parameter (unqualified)."),
        Arg("value", "float", doc="New value: a number in the parameter's range; 0/1 for a bool."),
    ), doc="Set a parameter (PUS TC[20,3]); validated against its declaration and persisted.", idempotent=True)


class Subsystem:
    """Base of the four flight subsystems. Subclasses set ``COMPONENT``, ``RATE_GROUPS``
    (``(divisor, method name)`` pairs: the method runs on ticks divisible by ``divisor``),
    optionally ``SUBSCRIBE`` (bus topic prefixes besides the data products the component
    consumes, e.g. ``ctl/mode``) and define ``cmd_<command>``. After class creation
    ``SUBSCRIBE`` holds every topic: ``data/<product>`` of each consumed product first."""

    COMPONENT: Component
    RATE_GROUPS: tuple[tuple[int, str], ...] = ()
    SUBSCRIBE: tuple[bytes, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        comp = cls.__dict__.get("COMPONENT")
        if comp is not None:
            commands = comp.commands + ((set_parameter_command(comp.parameters),) if comp.parameters else ())
            cls.COMPONENT = Component(
                comp.name, comp.component_id, commands, comp.telemetry + FRAMEWORK_CHANNELS,
                comp.events + FRAMEWORK_EVENTS, comp.doc, comp.parameters,
                comp.publishes, comp.consumes, comp.actuates,
            )
            cls.SUBSCRIBE = tuple(f"data/{q}".encode() for q in comp.consumes) + cls.__dict__.get("SUBSCRIBE", ())
            for cmd in comp.commands:
                if not callable(getattr(cls, f"cmd_{cmd.name}", None)):
                    raise TypeError(f"{cls.__name__} declares {cmd.name} but has no cmd_{cmd.name}")

    def __init__(self, config: RunConfig, emit: Emit, send_command: SendCommand | None = None, *,
                 listen: Listen | None = None) -> None:
        self.config = config
        self.name = self.COMPONENT.name
        self._emit = emit
        self._send_command = send_command
        self._listen = listen
        self.actuation: dict[str, Any] = {}
        """Actuator settings made since the last ``hal.done``; the runtime sends and clears them."""
        self._rate_groups = [(d, getattr(self, m)) for d, m in self.RATE_GROUPS]
        self.tick = 0
        self.time_s = 0.0
        self.cycle_slips = 0
        self.decode_errors = 0
        self._parameter_store = None
        self._persisted: dict[str, Any] | None = None
        """Parameter values as last persisted, by unqualified name; ``None`` until loaded."""

    # -- outputs ---------------------------------------------------------------------
    def telemetry(self, **values: Any) -> None:
        """Publish this subsystem's housekeeping packet ``<name>.hk``."""
        values["cycle_slips"] = self.cycle_slips
        values["decode_errors"] = self.decode_errors
        self._emit("tm", f"{self.name}.hk", values)

    def publish_data(self, product: str, **values: Any) -> None:
        """Publish declared data product ``<name>.<product>`` for other subsystems (kind
        ``data``): control inputs that change every tick and that nobody records or downlinks.

        Raises:
            KeyError: ``product`` is not among the component's ``publishes``, or ``values``
                are not exactly its declared fields (a programming error, not bad input).
        """
        declared = self.COMPONENT.product(product)
        if declared is None:
            raise KeyError(f"{self.name}.{product} is not a declared data product")
        if values.keys() != declared.field_names:
            raise KeyError(f"{self.name}.{product}: fields {sorted(values)} are not the declared "
                           f"{sorted(declared.field_names)}")
        self._emit("data", f"{self.name}.{product}", values)

    def event(self, event: str, /, **args: Any) -> None:
        """Publish declared event ``event`` with its format filled from ``args``."""
        self._emit("ev", f"{self.name}.{event}", self.COMPONENT.event_payload(event, args))

    def actuate(self, **fields: Any) -> None:
        """Set actuators (names from :data:`flight.hal.protocol.ACTUATOR_FIELDS`); they travel with
        this tick's ``hal.done`` and the rig applies them from the next tick."""
        self.actuation.update(fields)

    def command(self, command_id: str, qualified: str, args: dict) -> None:
        """Send a command to the dispatcher; its responses come back to :meth:`on_response`."""
        if self._send_command is None:
            raise RuntimeError(f"{self.name} was built without a command port")
        self._send_command(command_id, qualified, args)

    def listen(self, on: bool) -> None:
        """Start or stop receiving the ``SUBSCRIBE`` topics (on at start). A subsystem that
        needs them only some of the time spares every process the cost of delivering them."""
        if self._listen is not None:
            self._listen(on)

    # -- inputs ----------------------------------------------------------------------
    def on_start(self) -> None:
        """Called once, before the first message."""

    def on_frame(self, tick: int, time_s: float, frame: dict[str, Any]) -> None:
        """Handle the sensor frame of ``tick``: run every rate group due on it, then the
        housekeeping group when due."""
        self.tick, self.time_s = tick, time_s
        if self._persisted is None:
            self.load_parameters()
        if moved_aside:
            self.report_moved_aside()
        for divisor, group in self._rate_groups:
            if tick % divisor == 0:
                group(frame)
        if self.config.housekeeping_due(tick):
            self.housekeeping()

    def after_done(self) -> None:
        """Work of the tick no other component waits for (the link's housekeeping downlink):
        it runs once the tick's ``hal.done`` has gone, so the simulator steps meanwhile; in
        process, once the tick has closed. It may send telemetry and events; not actuate, nor
        publish data products or ``ctl`` messages, which would reach the others a tick later
        than in process (:meth:`run_after_done` refuses them)."""

    def run_after_done(self) -> None:
        """Run :meth:`after_done`, refusing what it may not do.

        Raises:
            RuntimeError: it actuated, or published a data product or a ``ctl`` message (a
                programming error: do that in a rate group).
        """
        if type(self).after_done is Subsystem.after_done:
            return  # most components have none: no guard to set up every tick
        emit = self._emit

        def late_emit(kind: str, name: str, data: Any) -> None:
            if kind in ("data", "ctl"):
                raise RuntimeError(f"{self.name}.after_done published {kind}/{name}: do it in a rate group")
            emit(kind, name, data)

        self._emit = late_emit
        try:
            self.after_done()
        finally:
            self._emit = emit
        if self.actuation:
            raise RuntimeError(f"{self.name}.after_done set actuators {sorted(self.actuation)}: do it in a rate group")

    def housekeeping(self) -> None:
        """Publish the housekeeping packet (:meth:`telemetry`). Housekeeping has its own
        slower rate: every packet is recorded, and downlinked in contact."""

    def on_message(self, msg: Message) -> None:
        """Handle a message on one of the ``SUBSCRIBE`` topics."""

    def on_response(self, msg: Message) -> None:
        """Handle a response (``kind == "rsp"``) to a command this subsystem sent."""

    def poll_items(self) -> list[tuple[Any, Callable[[], None]]]:
        """Extra sockets or file descriptors to poll, each with its ready-to-read handler."""
        return []

    def report_moved_aside(self) -> None:
        """Announce each damaged store this process moved aside at open (:mod:`flight.core.storage`)."""
        for moved in take_moved_aside():
            self.event("store_moved_aside", **moved_aside_args(moved))

    def on_stop(self) -> None:
        """Called once when the process shuts down: close what :meth:`on_start` opened."""

    # -- parameters (PUS service 20) -------------------------------------------------
    def load_parameters(self) -> None:
        """Apply the stored value of each declared parameter to the attribute it governs,
        and store the values the subsystem started with for the others. Runs on the first
        tick (after the subclass has set its attributes up) and before the first command.
        A store that cannot be opened or written is reported by event and the subsystem
        flies on with the values it has."""
        self._persisted = {}
        if not self.COMPONENT.parameters:
            return
        from flight.core.parameters import PARAMETERS_FILE, ParameterStore

        qualified = {f"{self.name}.{p.name}": p for p in self.COMPONENT.parameters}
        try:
            self._parameter_store = ParameterStore(self.config.data_path / PARAMETERS_FILE)
            stored = self._parameter_store.load(list(qualified))
        except (sqlite3.Error, OSError) as exc:
            self.event("parameter_store_failed", names=", ".join(qualified), why=str(exc)[:160])
            return
        for qual, par in qualified.items():
            if qual in stored:
                try:
                    setattr(self, par.attr, par.validate(stored[qual]))
                except CommandError:
                    pass  # a value the declaration no longer allows: keep the built-in one, stored below
        self._persist_changed_parameters()

    def _persist_changed_parameters(self) -> None:
        current = {p.name: getattr(self, p.attr) for p in self.COMPONENT.parameters}
        changed = {n: v for n, v in current.items() if self._persisted.get(n, object()) != v}
        if not changed or self._parameter_store is None:
            return
        try:
            self._parameter_store.save({f"{self.name}.{n}": v for n, v in changed.items()}, self.time_s)
        except sqlite3.Error as exc:
            self.event("parameter_store_failed", names=", ".join(changed), why=str(exc)[:160])
            return
        self._persisted.update(changed)

    def cmd_set_parameter(self, name: str, value: float) -> str:
        par = next(p for p in self.COMPONENT.parameters if p.name == name)  # the command's choices
        setattr(self, par.attr, par.validate(int(value) if par.type != "float" and value.is_integer() else value))
        return f"{self.name}.{name} = {getattr(self, par.attr)} {par.units}".rstrip()

    def execute(self, name: str, args: Any) -> str:
        """Validate and run command ``name`` (unqualified); return its completion message.

        Raises:
            CommandError: INVALID_OPCODE, FORMAT_ERROR or VALIDATION_ERROR before anything
                runs; EXECUTION_ERROR (or a handler's own code) when the handler fails.
        """
        cmd = self.COMPONENT.command(name)
        if cmd is None:
            raise CommandError("INVALID_OPCODE", f"{self.name} has no command {name!r}")
        checked = cmd.validate(args)
        if self._persisted is None:
            self.load_parameters()
        try:
            return getattr(self, f"cmd_{name}")(**checked) or "done"
        finally:
            # any command may move a parameter (thermal.set_setpoint moves setpoint_c): the
            # stored value follows before the command's completion goes out
            self._persist_changed_parameters()
