"""The PUS services of the space link together: the operations TCs the satellite serves
(:data:`OPS_TCS`), the :class:`TmEncoder` the link builds its reports with, and
:func:`decode_tm`, which reads any downlinked TM into its service's report.

Each service's TCs, TMs and data fields are in its own module: ``pus1_verification``,
``pus3_housekeeping``, ``pus5_events``, ``pus8_functions``, ``pus11_scheduling``,
``pus15_storage``, ``pus17_test``, ``pus20_parameters``, ``pus140_results``, ``pus141_keys``; the packets
around them are :mod:`flight.spacelink.framing`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Union

from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import InvalidTmCrc16Error, PusTm

from flight.core.component import Component, Dictionary
from flight.spacelink import (
    pus1_verification as pus1,
    pus3_housekeeping as pus3,
    pus5_events as pus5,
    pus11_scheduling as pus11,
    pus15_storage as pus15,
    pus17_test as pus17,
    pus20_parameters as pus20,
    pus140_results as pus140,
    pus141_keys as pus141,
)
from flight.spacelink.framing import TIMESTAMP_LEN, TmDecodeError, TmFramer, unix_from_cds

OPS_TCS = pus3.HK_TCS | pus5.EVENT_TCS | pus11.SCHEDULE_TCS | pus20.PARAMETER_TCS
"""(service, subtype) of every operations TC the satellite serves (services 3, 5, 11, 20)."""

Report = Union[pus17.PingReply, pus1.Verification, pus3.HkReport, pus3.HkStructureReport, pus5.EventReport,
               pus5.DisabledEventsReport, pus11.ScheduleReport, pus15.StoreStatusReport, pus20.ParameterReport,
               pus140.JobResultReport, pus141.KeyVerificationReport, pus141.KeyInventoryReport]
"""Every report :func:`decode_tm` returns."""
_ANSWERS = (pus3.HkStructureReport, pus5.DisabledEventsReport, pus11.ScheduleReport, pus20.ParameterReport,
            pus141.KeyVerificationReport, pus141.KeyInventoryReport)
"""Reports answering one TC whose service module reads no header: their destination id is set here."""


class TmEncoder(TmFramer):
    """The TM the link sends on every tick, built on one set of sequence counters: the
    service modules' report builders bound to this framer."""

    def ping_reply(self, tc: PusTc, *, utc_unix_s: float) -> bytes:
        """TM[17,2] (:func:`flight.spacelink.pus17_test.ping_reply`)."""
        return pus17.ping_reply(self, tc, utc_unix_s=utc_unix_s)

    def verification(self, subtype: int, tc: PusTc, *, utc_unix_s: float, code: str | None = None,
                     message: str = "", step: int | None = None) -> bytes:
        """TM[1,subtype] (:func:`flight.spacelink.pus1_verification.verification_report`)."""
        return pus1.verification_report(self, subtype, tc, utc_unix_s=utc_unix_s, code=code, message=message,
                                        step=step)

    def hk_report(self, component: Component, values: Mapping[str, Any], *, utc_unix_s: float) -> bytes:
        """TM[3,25] (:func:`flight.spacelink.pus3_housekeeping.hk_report`)."""
        return pus3.hk_report(self, component, values, utc_unix_s=utc_unix_s)

    def event_report(self, dictionary: Dictionary, qualified: str, message: str, *, utc_unix_s: float,
                     args: Mapping[str, Any] | None = None) -> bytes:
        """TM[5,1..4] (:func:`flight.spacelink.pus5_events.event_report`)."""
        return pus5.event_report(self, dictionary, qualified, message, utc_unix_s=utc_unix_s, args=args)


def decode_tm(dictionary: Dictionary, packet: bytes) -> Report:
    """Read one downlinked packet into its service's report.

    Raises:
        TmDecodeError: bad CRC, malformed packet, or a service, subtype, structure or event
            this ground does not know.
    """
    try:
        tm = PusTm.unpack(packet, timestamp_len=TIMESTAMP_LEN)
        utc = unix_from_cds(tm.timestamp)
        service, subtype, data = tm.service, tm.message_subtype, tm.source_data
        report: Report | None = None
        if service == pus17.TEST_SERVICE and subtype == pus17.PING_REPLY:
            report = pus17.PingReply(tm.pus_tm_sec_header.dest_id, utc)
        elif service == pus1.VERIFICATION_SERVICE:
            report = pus1.decode_report(tm, utc)
        elif service == pus3.HK_SERVICE:
            report = pus3.decode_report(dictionary, subtype, data, utc)
        elif service == pus5.EVENT_SERVICE:
            report = pus5.decode_report(dictionary, subtype, data, utc)
        elif service == pus11.SCHEDULE_SERVICE:
            report = pus11.decode_report(dictionary, subtype, data, utc)
        elif service == pus15.STORAGE_SERVICE:
            report = pus15.decode_report(subtype, data, tm.pus_tm_sec_header.dest_id, utc)
        elif service == pus20.PARAMETER_SERVICE:
            report = pus20.decode_report(dictionary, subtype, data, utc)
        elif service == pus140.JOB_RESULT_SERVICE:
            report = pus140.decode_report(subtype, data, utc)
        elif service == pus141.KEY_SERVICE:
            report = pus141.decode_report(subtype, data, utc)
    except (ValueError, InvalidTmCrc16Error) as exc:  # BytesTooShortError is a ValueError
        raise TmDecodeError(f"{type(exc).__name__}: {exc}") from None
    if report is None:
        raise TmDecodeError(f"unexpected TM[{service},{subtype}]")
    if isinstance(report, _ANSWERS):
        report = dataclasses.replace(report, dest_id=tm.pus_tm_sec_header.dest_id)
    return report
