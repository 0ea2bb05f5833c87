"""Mission service 140, job results (services from 128 are the mission's, ECSS-E-ST-70-41C
7.1): TM[140,1], one finished job's result, from the job runner's APID and timed at the
job's finish.

TM[140,1] data (integers big-endian): ``job_id u32``, ``outcome`` (u8 length + UTF-8),
``work_gpu_s f64``, ``done_gpu_s f64``, ``detail`` (u16 length + UTF-8, cut to
:data:`~flight.spacelink.codec.MAX_TEXT_BYTES`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from flight.core.component import Component
from flight.spacelink.framing import TmFramer
from flight.spacelink.codec import Reader, cut_utf8, pack_value, unpack_value
from flight.spacelink.layout import Field, Message

JOB_RESULT_SERVICE, JOB_RESULT_REPORT = 140, 1
RESULT_COMPONENT = "jobs"
"""The component whose APID TM[140,1] carries: the job runner."""
MESSAGES = (
    Message("TM", JOB_RESULT_SERVICE, JOB_RESULT_REPORT, "job result report (mission)",
            (Field("job_id", "u32"), Field("outcome", "str8"), Field("work_gpu_s", "f64", "GPU-seconds of work"),
             Field("done_gpu_s", "f64", "GPU-seconds done"), Field("detail", "text16")),
            "the job runner (APID = the jobs component id)", "every connection (destination id 0)",
            "one per finished job, timed at its finish; stored until acknowledged"),
)


@dataclass(frozen=True)
class JobResultReport:
    """TM[140,1]: one job's result (see the module docstring)."""

    job_id: int
    outcome: str
    work_gpu_s: float
    done_gpu_s: float
    detail: str
    utc_unix_s: float


def job_result_report(framer: TmFramer, component: Component, job_id: int, outcome: str, work_gpu_s: float,
                      done_gpu_s: float, detail: str, *, utc_unix_s: float) -> bytes:
    """TM[140,1] from ``component``'s APID (see :class:`JobResultReport`).

    Raises:
        ValueError: a job id outside u32 or an outcome over 255 UTF-8 bytes.
    """
    detail_raw = cut_utf8(detail)
    try:
        data = (struct.pack(">I", job_id) + pack_value("str", outcome)
                + struct.pack(">ddH", work_gpu_s, done_gpu_s, len(detail_raw)) + detail_raw)
    except struct.error as exc:
        raise ValueError(f"job result {job_id!r}: {exc}") from None
    return framer.packet(component.component_id, JOB_RESULT_SERVICE, JOB_RESULT_REPORT, data,
                         utc_unix_s=utc_unix_s)


def decode_report(subtype: int, data: bytes, utc_unix_s: float) -> JobResultReport | None:
    """The report of TM[140,1] source ``data``; ``None`` for another subtype.

    Raises:
        ValueError: malformed data or a text that is not UTF-8.
    """
    if subtype != JOB_RESULT_REPORT:
        return None
    reader = Reader(bytes(data))
    job_id = reader.unpack(">I")
    outcome = unpack_value("str", reader)
    work, done = reader.unpack(">d"), reader.unpack(">d")
    detail = reader.take(reader.unpack(">H")).decode("utf-8")
    reader.end()
    return JobResultReport(job_id, outcome, work, done, detail, utc_unix_s)
