"""PUS service 17, test (ECSS-E-ST-70-41C 6.17): TC[17,1] are-you-alive and its TM[17,2]
report, from :data:`~flight.spacelink.framing.TC_APID` to the TC's source. Neither carries
data.
"""

from __future__ import annotations

from dataclasses import dataclass

from spacepackets.ecss.defs import PusService
from spacepackets.ecss.tc import PusTc

from flight.spacelink.framing import ACK_NONE, TC_APID, TmFramer, build_tc
from flight.spacelink.layout import Message

TEST_SERVICE, PING, PING_REPLY = PusService.S17_TEST, 1, 2
MESSAGES = (
    Message("TC", TEST_SERVICE, PING, "are-you-alive connection test", (), "ground", "link (APID 4)"),
    Message("TM", TEST_SERVICE, PING_REPLY, "are-you-alive connection test report", (), "link (APID 4)",
            "the TC's source id; sent on every connection"),
)


def ping_tc(*, seq_count: int, source_id: int, ack_flags: int = ACK_NONE) -> PusTc:
    """TC[17,1] are-you-alive."""
    return build_tc(TEST_SERVICE, PING, seq_count=seq_count, source_id=source_id, ack_flags=ack_flags)


def is_ping(tc: PusTc) -> bool:
    """Whether ``tc`` is a TC[17,1]."""
    return (tc.service, tc.message_subtype) == (TEST_SERVICE, PING)


def ping_reply(framer: TmFramer, tc: PusTc, *, utc_unix_s: float) -> bytes:
    """TM[17,2] answering ``tc``, addressed to its source."""
    return framer.packet(TC_APID, TEST_SERVICE, PING_REPLY, b"", utc_unix_s=utc_unix_s, dest_id=tc.source_id)


@dataclass(frozen=True)
class PingReply:
    """TM[17,2]."""

    dest_id: int
    utc_unix_s: float
