"""What the link manager's parts share: its counters, the onboard clock and contact of the
current tick, the per-tick budget of its own events, and where a TC came from.

Each part (:mod:`~flight.subsystems.link.uplink`, :mod:`~flight.subsystems.link.verification`,
:mod:`~flight.subsystems.link.downlink`, the services) is built with the objects of this
module it needs, by :class:`flight.subsystems.link.manager.LinkManager`, which publishes the
counters in its housekeeping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

EVENT_BUDGET_PER_TICK = 8
ONBOARD = b""
"""Connection identity of TCs released from the onboard schedule: their reports are stored
for the ground, not sent to one connection."""


@dataclass
class LinkCounters:
    """The link's counters since the process started, named as its telemetry channels."""

    tc_received: int = 0
    tc_accepted: int = 0
    tc_rejected: int = 0
    tc_dropped_no_contact: int = 0
    bytes_discarded: int = 0
    tm_sent: int = 0
    tm_dropped: int = 0
    tm_dropped_no_contact: int = 0
    tm_errors: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    connections_refused: int = 0
    buffer_overflows: int = 0
    events_suppressed: int = 0
    tc_auth_failed: int = 0
    tc_key_not_active: int = 0
    tc_rate_limited: int = 0
    tm_backlog_sent: int = 0
    tm_acknowledged: int = 0
    tm_requeued: int = 0
    store_errors: int = 0
    tc_released: int = 0
    events_filtered: int = 0
    tc_rate_limited_unreported: int = 0


class LinkState:
    """Onboard time (simulation s) and contact as of the latest sensor frame, and onboard UTC.

    ``contact`` starts true for ``contact == "always"``.
    """

    def __init__(self, always_in_contact: bool) -> None:
        self.time_s = 0.0
        self.contact = always_in_contact
        self._utc_offset_s: float | None = None
        self.utc_start_s: float | None = None
        """Onboard UTC (Unix s) before the first frame: where the satellite resumes after a
        reboot (the mission record's floor, :mod:`flight.hal.onboard_clock`) or, in a new
        simulated mission, starts (the element-set epoch); ``None`` when unknown."""

    def set_utc(self, utc_unix_s: float) -> None:
        """The frame's UTC (Unix s) at onboard time ``time_s``."""
        self._utc_offset_s = utc_unix_s - self.time_s

    def utc_at(self, time_s: float) -> float:
        """Onboard UTC (Unix s) at simulation time ``time_s``."""
        if self._utc_offset_s is not None:
            return time_s + self._utc_offset_s
        # before the first frame: where onboard time resumes or starts, not the host's clock (years
        # from a simulated mission's, so TM would go back in time at the first frame); the host
        # clock stands in for an RTC only where neither is known (a new mission on an external rig)
        return time.time() if self.utc_start_s is None else self.utc_start_s

    def utc_now(self) -> float:
        return self.utc_at(self.time_s)


class EventBudget:
    """At most :data:`EVENT_BUDGET_PER_TICK` of the link's own events per tick through
    ``event(name, **args)``; the rest are only counted (``events_suppressed``)."""

    def __init__(self, event: Callable[..., None], counters: LinkCounters) -> None:
        self._event = event
        self._counters = counters
        self._left = EVENT_BUDGET_PER_TICK

    def reset(self) -> None:
        """A new tick: the whole budget again."""
        self._left = EVENT_BUDGET_PER_TICK

    def __call__(self, name: str, **args: Any) -> None:
        if self._left > 0:
            self._left -= 1
            self._event(name, **args)
        else:
            self._counters.events_suppressed += 1


class TcSource(Protocol):
    """Where a TC came from: a ground connection, or the onboard schedule (:data:`ONBOARD`)."""

    identity: bytes
    peer: str


@dataclass(frozen=True)
class OnboardSource:
    """Where a released scheduled TC comes from, in place of a ground connection."""

    identity: bytes = ONBOARD
    peer: str = "onboard schedule"
