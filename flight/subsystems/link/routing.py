"""Routing of authenticated TCs to the services that serve them.

A service registers a :class:`TcRoute` per ``(service, subtype)`` (or per whole service): a
``parse(tc, data)`` that decodes and checks the TC's service data completely, raising
:class:`~flight.core.component.CommandError` with the failure code (or
:class:`~flight.spacelink.sdls.AuthenticationError` for a TC it embeds) before anything changes,
and an ``act`` that serves the parsed request and sends its verification reports. A TC for
another APID or without a route gets TM[1,2] INVALID_OPCODE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError
from flight.spacelink.framing import TC_APID
from flight.spacelink.sdls import AuthenticationError
from flight.subsystems.link.state import TcSource

Reject = Callable[[TcSource, PusTc, str, str], None]
"""``reject(source, tc, code, why)``: TM[1,2] with a failure code, counted and reported."""


@dataclass(frozen=True)
class TcRoute:
    parse: Callable[[PusTc, bytes], Any]
    """``(tc, its service data)`` → the request; raises CommandError or AuthenticationError
    (nothing changed)."""
    act: Callable[[TcSource, PusTc, Any], None]
    """Serve ``(source, tc, request)``."""


class Router:
    """The routes of every TC the link serves; ``reject`` answers those it cannot."""

    def __init__(self, reject: Reject) -> None:
        self.routes: dict[tuple[int, int] | int, TcRoute] = {}
        self._reject = reject

    def add(self, routes: dict[tuple[int, int] | int, TcRoute]) -> None:
        """Register routes by ``(service, subtype)``, or by service for all its subtypes.

        Raises:
            ValueError: a key already routed.
        """
        taken = set(routes) & set(self.routes)
        if taken:
            raise ValueError(f"TCs routed twice: {sorted(taken, key=str)}")
        self.routes.update(routes)

    def route(self, source: TcSource, tc: PusTc, data: bytes) -> None:
        """Serve an authenticated TC (from a ground connection or released from the schedule)
        whose service data is ``data``."""
        if tc.apid != TC_APID:
            self._reject(source, tc, "INVALID_OPCODE", f"no application process at APID {tc.apid}")
            return
        route = self.routes.get((tc.service, tc.message_subtype)) or self.routes.get(tc.service)
        if route is None:
            self._reject(source, tc, "INVALID_OPCODE", "service not supported")
            return
        try:
            request = route.parse(tc, data)
        except CommandError as exc:
            self._reject(source, tc, exc.code, exc.message)
            return
        except AuthenticationError as exc:
            self._reject(source, tc, "AUTHENTICATION_ERROR", str(exc))
            return
        route.act(source, tc, request)
