"""A scenario's timed telecommands, sent by the HAL bridge at their simulated time.

``config.params["hal"]["schedule"]`` (written from a scenario file, :mod:`flight.scenario`)
lists ``{"at_s", "command", "args"}`` entries. They go out through the dispatcher like any
ground command once the bridge's time reaches ``at_s``; in lockstep the next tick waits until
each has completed or failed, so a scenario run stays reproducible. Times are onboard time
since the run epoch: a run that resumes a mission after a reboot goes on with the commands
timed after the moment it resumed (:meth:`TimedCommands.skip_through`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SendCommand = Callable[[str, str, dict], None]
"""``send(command_id, qualified_name, args)``: the bridge's port to the dispatcher."""


class TimedCommands:
    """The timed telecommands of one run, by time, and those sent and not yet final.

    Args:
        entries: ``{"at_s": s >= 0, "command": qualified name, "args": map}`` dicts, any order.
    """

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = sorted(((float(c["at_s"]), str(c["command"]), dict(c["args"])) for c in entries),
                              key=lambda c: c[0])
        """``(at_s, qualified name, args)`` by time."""
        self.next = 0
        self.pending: dict[str, tuple[float, str]] = {}
        """``command id -> (at_s, qualified name)`` of the commands sent and not yet final."""

    def issue_due(self, now_s: float, send: SendCommand) -> bool:
        """Send the commands due by ``now_s`` (simulated s); return whether any sent command
        is still waiting for its final answer."""
        while self.next < len(self.entries) and self.entries[self.next][0] <= now_s + 1e-9:
            at_s, name, args = self.entries[self.next]
            command_id = f"scenario-{self.next}"
            self.next += 1
            self.pending[command_id] = (at_s, name)
            send(command_id, name, args)
        return bool(self.pending)

    def skip_through(self, time_s: float) -> None:
        """Never send the commands timed at or before ``time_s`` (simulated s): the run resumed
        there after a reboot, and they were the previous run's to send."""
        while self.next < len(self.entries) and self.entries[self.next][0] <= time_s:
            self.next += 1

    def on_response(self, data: dict) -> tuple[float, str] | None:
        """Follow one command response (``{"id", "stage", ...}``); return ``(at_s, name)`` of
        a timed command that has just failed, else ``None``."""
        entry = self.pending.get(data.get("id"))
        if entry is None or data.get("stage") not in ("completed", "failed"):
            return None
        del self.pending[data["id"]]
        return entry if data["stage"] == "failed" else None
