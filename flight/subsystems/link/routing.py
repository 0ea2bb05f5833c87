"""Routing of authenticated TCs to the services that serve them.

A service registers a :class:`TcRoute` per ``(service, subtype)``: a ``parse(tc, data)``
that decodes and checks the TC's service data completely, raising
:class:`~flight.core.component.CommandError` with the failure code (or
:class:`~flight.spacelink.sdls.AuthenticationError` for a TC it embeds) before anything changes,
and an ``act`` that serves the parsed request and sends its verification reports.

A TC without a route fails its acceptance (TM[1,2]) with the first of ECSS-E-ST-70-41C's
acceptance checks (5.4.11.2.2) it fails: ILLEGAL_APID for an APID other than
:data:`~flight.spacelink.framing.TC_APID`, ILLEGAL_SERVICE for a service type with no route
at all, ILLEGAL_SUBTYPE for a subtype with no route of a service type that has some.
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
        self.routes: dict[tuple[int, int], TcRoute] = {}
        self._reject = reject

    def add(self, routes: dict[tuple[int, int], TcRoute]) -> None:
        """Register routes by ``(service, subtype)``.

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
            self._reject(source, tc, "ILLEGAL_APID", f"no application process takes TCs at APID {tc.apid} "
                                                     f"(only at {TC_APID})")
            return
        route = self.routes.get((tc.service, tc.message_subtype))
        if route is None:
            served = sorted(subtype for service, subtype in self.routes if service == tc.service)
            if served:
                self._reject(source, tc, "ILLEGAL_SUBTYPE", f"service {tc.service} has no subtype "
                                                            f"{tc.message_subtype} (served: {served})")
            else:
                self._reject(source, tc, "ILLEGAL_SERVICE", f"service type {tc.service} is not served")
            return
        try:
            request = route.parse(tc, data)
        except CommandError as exc:
            self._reject(source, tc, exc.code, exc.message)
            return
        except AuthenticationError as exc:
            self._reject(source, tc, exc.code, str(exc))
            return
        route.act(source, tc, request)
