"""PUS-C services 17 and 8 at the link: TC[17,1] (are you alive) answered with TM[17,2], and
TC[8,1] (perform a function) decoded into an internal command sent on board through the
dispatcher and verified by its responses (:mod:`flight.subsystems.link.verification`).

TC[8,1] data that does not decode gets TM[1,2] FORMAT_ERROR or INVALID_OPCODE
(:func:`flight.spacelink.pus8_functions.decode_function`); a TC[17,1] with data FORMAT_ERROR.
"""

from __future__ import annotations

from typing import Any

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Dictionary
from flight.spacelink.pus8_functions import decode_function
from flight.subsystems.link.routing import TcRoute
from flight.subsystems.link.state import LinkState, TcSource
from flight.subsystems.link.verification import Verification

PING = (17, 1)
PERFORM_FUNCTION = (8, 1)


class FunctionService:
    """TC[17,1] and TC[8,1] (see the module)."""

    def __init__(self, dictionary: Dictionary, verification: Verification, state: LinkState) -> None:
        self._dictionary = dictionary
        self._verification = verification
        self._state = state

    def routes(self) -> dict[tuple[int, int], TcRoute]:
        return {PING: TcRoute(self._parse_ping, self._ping),
                PERFORM_FUNCTION: TcRoute(lambda tc, data: decode_function(self._dictionary, data), self._function)}

    @staticmethod
    def _parse_ping(tc: PusTc, data: bytes) -> None:
        if data:
            raise CommandError("FORMAT_ERROR", "TC[17,1] carries no application data")

    def _ping(self, source: TcSource, tc: PusTc, _: None) -> None:
        verification = self._verification
        verification.complete_locally(source, tc, lambda: [verification.tm.ping_reply(
            tc, utc_unix_s=self._state.utc_now())])

    def _function(self, source: TcSource, tc: PusTc, command: tuple[str, dict[str, Any]]) -> None:
        self._verification.dispatch(source, tc, *command)
