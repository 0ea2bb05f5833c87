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

VERIFICATION_SERVICE = PusService.S1_VERIFICATION

LINK_FAILURE_CODES = ("AUTHENTICATION_ERROR",)
"""Failure codes only the link manager reports, in TM[1,2] before a TC becomes an internal
command (so they are not among the internal dictionary's ``FAILURE_CODES``):
AUTHENTICATION_ERROR is a TC without a valid security header and MAC, or with a replayed
sequence number (:mod:`flight.spacelink.sdls`)."""
FAILURE_CODE_NUMBERS = {
    "INVALID_OPCODE": 1,
    "VALIDATION_ERROR": 2,
    "FORMAT_ERROR": 3,
    "EXECUTION_ERROR": 4,
    "BUSY": 5,
    "INTERRUPTED": 6,
    "AUTHENTICATION_ERROR": 128,
}
"""Failure code of TM[1,2/4/6/8] (1 byte) for each dictionary failure code (from 1) and each
link failure code (from 128, so the two lists can grow apart). Part of the wire format:
never renumber, only add."""
FAILURE_CODE_NAMES = {number: name for name, number in FAILURE_CODE_NUMBERS.items()}
if set(FAILURE_CODE_NUMBERS) != set(FAILURE_CODES) | set(LINK_FAILURE_CODES):
    raise ImportError("FAILURE_CODE_NUMBERS must number every flight.core.component.FAILURE_CODES entry "
                      "and every LINK_FAILURE_CODES entry")

_VERIF_PARAMS = ManagedParamsVerification(bytes_step_id=1, bytes_err_code=1)


def verification_report(framer: TmFramer, subtype: int, tc: PusTc, *, utc_unix_s: float, code: str | None = None,
                        message: str = "", step: int | None = None) -> bytes:
    """TM[1,subtype] about ``tc``: success (odd subtypes) or failure with dictionary failure
    ``code`` and ``message`` (even subtypes); ``step`` (u8) for the step reports 5 and 6.

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
    return framer.packet(TC_APID, VERIFICATION_SERVICE, subtype, bytes(params.pack()),
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
