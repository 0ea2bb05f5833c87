"""PUS service 1, request verification (ECSS-E-ST-70-41C 6.1): the TM[1,1..8] reports the
satellite sends about each TC, from :data:`~flight.spacelink.framing.TC_APID` to the TC's
source.

TM[1,1..8] data (spacepackets ``VerificationParams``): the TC's 4-byte request id; step
reports (5, 6) add a 1-byte step id; failure reports (even subtypes) add a 1-byte failure
code (:data:`FAILURE_CODE_NUMBERS`) and the failure message as UTF-8 failure data (cut to
:data:`~flight.spacelink.codec.MAX_TEXT_BYTES`).
"""

from __future__ import annotations

from dataclasses import dataclass

from spacepackets.ecss.defs import PusService
from spacepackets.ecss.fields import PacketFieldEnum
from spacepackets.ecss.pus_1_verification import (
    FailureNotice,
    ManagedParamsVerification,
    MessageSubtype as VerifSubtype,
    Service1Tm,
    VerificationParams,
)
from spacepackets.ecss.req_id import RequestId
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import PusTm

from flight.core.component import FAILURE_CODES
from flight.spacelink.framing import TC_APID, TmFramer
from flight.spacelink.codec import cut_utf8
from flight.spacelink.layout import Field, Message

VERIFICATION_SERVICE = PusService.S1_VERIFICATION

LINK_FAILURE_CODES = ("AUTHENTICATION_ERROR", "RATE_LIMITED", "ILLEGAL_APID", "ILLEGAL_SERVICE",
                      "ILLEGAL_SUBTYPE", "KEY_NOT_ACTIVE")
"""Failure codes only the link manager reports, in TM[1,2] before a TC becomes an internal
command (so they are not among the internal dictionary's ``FAILURE_CODES``). The three
ILLEGAL_ ones are ECSS-E-ST-70-41C's distinct acceptance checks of a request (5.4.11.2.2,
reported by TM[1,2] as 6.1.4.3 says): the APID is not an application process that takes
TCs, the service type is not one it serves, the subtype is not one it serves of a service
type it does serve."""
FAILURE_CODE_NUMBERS = {
    "INVALID_OPCODE": 1,
    "VALIDATION_ERROR": 2,
    "FORMAT_ERROR": 3,
    "EXECUTION_ERROR": 4,
    "BUSY": 5,
    "INTERRUPTED": 6,
    "AUTHENTICATION_ERROR": 128,
    "RATE_LIMITED": 129,
    "ILLEGAL_APID": 130,
    "ILLEGAL_SERVICE": 131,
    "ILLEGAL_SUBTYPE": 132,
    "KEY_NOT_ACTIVE": 133,
}
"""Failure code of TM[1,2/4/6/8] (1 byte) for each dictionary failure code (from 1) and each
link failure code (from 128, so the two lists can grow apart). Part of the wire format:
never renumber, only add."""
FAILURE_CODE_MEANINGS = {
    "INVALID_OPCODE": "no such command: a TC[8,1] function id that no component declares, or a TC that "
                      "cannot be scheduled",
    "VALIDATION_ERROR": "a value outside its declared range or choices, or an id (structure, event, parameter, "
                        "packet store, request) that does not exist",
    "FORMAT_ERROR": "application data that does not decode: too short, trailing bytes, a bad count, a value "
                    "not of its type",
    "EXECUTION_ERROR": "accepted, then failed on board (the owner's error, a storage error, or no final answer "
                       "in time)",
    "BUSY": "too many telecommands in flight; send it again later",
    "INTERRUPTED": "accepted, then a restart (of its owner, the link or the flight computer) came before its "
                   "final answer: it may have taken effect; check before sending it again",
    "AUTHENTICATION_ERROR": "no valid security header and MAC, an unknown SPI, or a replayed or stale ARSN; "
                            "nothing of the TC was executed",
    "RATE_LIMITED": "over the connection's telecommand rate; nothing of the TC was executed",
    "ILLEGAL_APID": "the TC's APID is not the one application process that takes telecommands",
    "ILLEGAL_SERVICE": "a service type the satellite does not serve",
    "ILLEGAL_SUBTYPE": "a subtype the satellite does not serve, of a service type it serves",
    "KEY_NOT_ACTIVE": "correctly signed, with a key that is not active on board: deactivated (revoked, so it may "
                      "be compromised) or pre-active (uploaded, not yet activated); nothing of the TC was executed",
}
"""What each failure code means (the failure data adds the particulars)."""
FAILURE_CODE_NAMES = {number: name for name, number in FAILURE_CODE_NUMBERS.items()}
if not set(FAILURE_CODE_NUMBERS) == set(FAILURE_CODE_MEANINGS) == set(FAILURE_CODES) | set(LINK_FAILURE_CODES):
    raise ImportError("FAILURE_CODE_NUMBERS and FAILURE_CODE_MEANINGS must cover every "
                      "flight.core.component.FAILURE_CODES entry and every LINK_FAILURE_CODES entry")

_VERIF_PARAMS = ManagedParamsVerification(bytes_step_id=1, bytes_err_code=1)

_REQUEST_ID = Field("request_id", "u32", "the TC's packet id (first 2 bytes of its primary header) and packet "
                                         "sequence control (next 2 bytes)")
_STEP = Field("step", "u8", "progress step, counted from 1 per TC")
_FAILURE = (Field("failure_code", "u8", "see Failure codes"), Field("failure_data", "text", "why, in words"))
_FROM = "link (APID 4)"
_TO = "the TC's source id; sent on every connection"
MESSAGES = tuple(
    Message("TM", VERIFICATION_SERVICE, subtype, name, fields, _FROM, _TO)
    for subtype, name, fields in (
        (1, "successful acceptance verification report", (_REQUEST_ID,)),
        (2, "failed acceptance verification report", (_REQUEST_ID, *_FAILURE)),
        (3, "successful start of execution verification report", (_REQUEST_ID,)),
        (4, "failed start of execution verification report", (_REQUEST_ID, *_FAILURE)),
        (5, "successful progress of execution verification report", (_REQUEST_ID, _STEP)),
        (6, "failed progress of execution verification report", (_REQUEST_ID, _STEP, *_FAILURE)),
        (7, "successful completion of execution verification report", (_REQUEST_ID,)),
        (8, "failed completion of execution verification report", (_REQUEST_ID, *_FAILURE)),
    ))
"""TM[1,1..8] (ECSS-E-ST-70-41C 6.1)."""


def verification_report(framer: TmFramer, subtype: int, tc: PusTc, *, utc_unix_s: float, code: str | None = None,
                        message: str = "", step: int | None = None, apid: int = TC_APID) -> bytes:
    """TM[1,subtype] about ``tc`` from ``apid``: success (odd subtypes) or failure with
    dictionary failure ``code`` and ``message`` (even subtypes); ``step`` (u8) for the step
    reports 5 and 6.

    Raises:
        KeyError: an unknown failure code.
        spacepackets.ecss.pus_1_verification.InvalidVerifParamsError: fields that do not
            match the subtype.
    """
    notice = None if code is None else FailureNotice(
        PacketFieldEnum.with_byte_size(1, FAILURE_CODE_NUMBERS[code]), cut_utf8(message))
    params = VerificationParams(RequestId.from_sp_header(tc.sp_header),
                                None if step is None else PacketFieldEnum.with_byte_size(1, step & 0xFF),
                                notice)
    params.verify_against_message_subtype(VerifSubtype(subtype))
    return framer.packet(apid, VERIFICATION_SERVICE, subtype, bytes(params.pack()),
                         utc_unix_s=utc_unix_s, dest_id=tc.source_id)


@dataclass(frozen=True)
class Verification:
    """TM[1,subtype] about the TC with ``request_id``; ``code`` and ``message`` for failures."""

    subtype: int
    request_id: int
    dest_id: int
    utc_unix_s: float
    code: str | None = None
    message: str = ""
    step: int | None = None

    STAGES = {1: "accepted", 2: "acceptance failed", 3: "started", 4: "start failed",
              5: "progress", 6: "progress failed", 7: "completed", 8: "completion failed"}

    @property
    def ok(self) -> bool:
        return self.subtype % 2 == 1

    @property
    def final(self) -> bool:
        """No further report about this TC will follow."""
        return not self.ok or self.subtype == VerifSubtype.TM_COMPLETION_SUCCESS

    @property
    def stage(self) -> str:
        return self.STAGES[self.subtype]


def decode_report(tm: PusTm, utc_unix_s: float) -> Verification:
    """The :class:`Verification` a TM[1,x] carries.

    Raises:
        ValueError: malformed verification data.
    """
    s1 = Service1Tm.from_tm(tm, _VERIF_PARAMS)
    code = message = None
    if s1.failure_notice is not None:
        code = FAILURE_CODE_NAMES.get(s1.failure_notice.code.val, f"code {s1.failure_notice.code.val}")
        message = s1.failure_notice.data.decode("utf-8", "replace")
    step = None if s1.step_id is None else s1.step_id.val
    return Verification(tm.message_subtype, s1.tc_req_id.as_u32(), tm.pus_tm_sec_header.dest_id, utc_unix_s, code,
                        message or "", step)
