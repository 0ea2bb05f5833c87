"""The Subsystem base class: one flight subsystem's contract and its handlers.

A subsystem declares, in one short class body, what it is (its :class:`Component`:
commands, telemetry channels, events) and which rate groups it runs; it implements each
rate group and each command handler in a few lines. It never touches a socket: everything
it emits goes through the ``emit`` port it was built with, so the same object runs inside
its OS process (:mod:`flight.process`) or directly in a unit test.

Contract
    inputs   ``hal.frame`` each tick -> :meth:`on_frame` -> rate groups, then
             :meth:`housekeeping` every ``hk_period_ticks`` and on the run's last tick;
             topics in ``SUBSCRIBE`` -> :meth:`on_message`;
             commands ``<name>.<command>`` -> ``cmd_<command>(**args)``
    outputs  telemetry ``tm/<name>.hk`` (declared channels + framework counters);
             per-tick data products ``data/<name>.<product>`` for other subsystems;
             events ``ev/<name>.<event>``; ``hw/hal.done`` closing each tick,
             carrying the actuator settings the tick produced
"""

from __future__ import annotations

from typing import Any, Callable

from flight.config import RunConfig
from flight.dictionary import Channel, CommandError, Component, Event
from flight.messages import Message

Emit = Callable[[str, str, Any], None]
"""``emit(kind, name, data)``: a subsystem's publish port."""
SendCommand = Callable[[str, str, dict], None]
"""``send_command(command_id, qualified_name, args)``: its port to the command dispatcher."""
Listen = Callable[[bool], None]
"""``listen(on)``: start or stop delivery of the subsystem's ``SUBSCRIBE`` topics."""

FRAMEWORK_CHANNELS = (
    Channel("cycle_slips", "int", "count", "Ticks missed or overrun since the process started."),
    Channel("decode_errors", "int", "count", "Messages rejected as malformed since the process started."),
)
FRAMEWORK_EVENTS = (
    Event("cycle_slip", 250, "LOW", "{missed} tick(s) missed or overrun before tick {tick}"),
    Event("decode_error", 251, "LOW", "rejected a malformed message on {topic}: {why}"),
    Event("command_crashed", 252, "MEDIUM", "handler of {command} raised {why}"),
)


class Subsystem:
    """Base of the four flight subsystems. Subclasses set ``COMPONENT``, ``RATE_GROUPS``
    (``(divisor, method name)`` pairs: the method runs on ticks divisible by ``divisor``),
    optionally ``SUBSCRIBE`` (extra bus topic prefixes) and define ``cmd_<command>``."""

    COMPONENT: Component
    RATE_GROUPS: tuple[tuple[int, str], ...] = ()
    SUBSCRIBE: tuple[bytes, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        comp = cls.__dict__.get("COMPONENT")
        if comp is not None:
            cls.COMPONENT = Component(
                comp.name, comp.component_id, comp.commands, comp.telemetry + FRAMEWORK_CHANNELS,
                comp.events + FRAMEWORK_EVENTS, comp.doc,
            )
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

    # -- outputs ---------------------------------------------------------------------
    def telemetry(self, **values: Any) -> None:
        """Publish this subsystem's housekeeping packet ``<name>.hk``."""
        values["cycle_slips"] = self.cycle_slips
        values["decode_errors"] = self.decode_errors
        self._emit("tm", f"{self.name}.hk", values)

    def publish_data(self, product: str, **values: Any) -> None:
        """Publish data product ``<name>.<product>`` for other subsystems (kind ``data``):
        control inputs that change every tick and that nobody records or downlinks."""
        self._emit("data", f"{self.name}.{product}", values)

    def event(self, event: str, /, **args: Any) -> None:
        """Publish declared event ``event`` with its format filled from ``args``."""
        self._emit("ev", f"{self.name}.{event}", self.COMPONENT.event_payload(event, args))

    def actuate(self, **fields: Any) -> None:
        """Set actuators (names from :data:`flight.hal.ACTUATOR_FIELDS`); they travel with
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
        for divisor, group in self._rate_groups:
            if tick % divisor == 0:
                group(frame)
        if self.config.housekeeping_due(tick):
            self.housekeeping()

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

    def on_stop(self) -> None:
        """Called once when the process shuts down: close what :meth:`on_start` opened."""

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
        return getattr(self, f"cmd_{name}")(**checked) or "done"
