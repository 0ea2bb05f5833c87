"""A third-party PUS ground client, as an operator with their own ground system would write
it: ``spacepackets``' generic CCSDS/PUS-C classes, the standard library, and the numbers of
the interface control document (docs/icd.md). It imports nothing from ``flight/``.

Transport: a TCP byte stream of CCSDS Space Packets, each framed by its primary header's
packet length field; TCs are plain PUS-C (the gateway adds the security fields).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass

from spacepackets.ccsds import SpacePacketHeader
from spacepackets.ecss import CCSDS_HEADER_LEN, PusTc, PusTm, RequestId

# -- from docs/icd.md ------------------------------------------------------------------------
TC_APID = 4
"""Every TC goes to the link manager's APID; TM[1,x] and TM[17,2] come from it."""
THERMAL_APID = 3
"""The thermal subsystem: its TM[3,25] (structure id 3) and TM[5,x] come from it."""
GATEWAY_APID = 0x7F0
"""The gateway's own TM[1,2] (TCs it refuses itself)."""
TIME_FIELD_LEN = 7
"""TM time field: P-field 0x40 then the CDS T-field (u16 day since 1958-01-01, u32 ms of day)."""
SET_SETPOINT = 0x0301
"""Function id of thermal.set_setpoint (component 3, command 1): TC[8,1] data ``u16 function
id`` then ``setpoint_c`` f64, valid 15..45 degC."""
SETPOINT_CHANGED = 0x0301
"""Event id of thermal.setpoint_changed (TM[5,1], INFO)."""
FAILURE_CODES = {1: "INVALID_OPCODE", 2: "VALIDATION_ERROR", 3: "FORMAT_ERROR", 4: "EXECUTION_ERROR",
                 5: "BUSY", 128: "AUTHENTICATION_ERROR", 129: "RATE_LIMITED", 130: "ILLEGAL_APID",
                 131: "ILLEGAL_SERVICE", 132: "ILLEGAL_SUBTYPE"}
"""TM[1,2/4/6/8] failure code (1 byte after the request id), then the message as UTF-8."""
SEQ_COUNT_MODULO = 1 << 14
TM_SECURITY_HEADER_LEN, TM_MAC_LEN = 10, 16
"""Section 8, Telemetry: straight from the satellite (not through the gateway, which strips
them) a TM's source data is SPI (u16) and SN (u64), the service's data, then a 16-byte MAC."""


@dataclass
class Tm:
    apid: int
    seq_count: int
    service: int
    subtype: int
    dest_id: int
    data: bytes
    raw: bytes

    @property
    def request_id(self) -> int:
        """TM[1,x]: the request id (u32) of the TC it is about."""
        return struct.unpack_from(">I", self.data)[0]

    @property
    def failure(self) -> str:
        """TM[1,even]: the failure code's name."""
        return FAILURE_CODES.get(self.data[4], f"code {self.data[4]}")

    @property
    def failure_text(self) -> str:
        return self.data[5:].decode("utf-8", "replace")


class PusClient:
    """One TCP connection to ``host:port``; every TM received is kept in :attr:`received`.
    ``sealed_tm``: the TM carries the security fields (a connection straight to the
    satellite); this client has no telemetry key, so it skips them unchecked."""

    def __init__(self, host: str, port: int, source_id: int, sealed_tm: bool = False) -> None:
        self.sealed_tm = sealed_tm
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setblocking(False)
        self.source_id = source_id
        self.seq = 0
        self.buf = bytearray()
        self.received: list[Tm] = []
        """Every TM received, in order."""
        self.unread: list[Tm] = []
        """TM received that no :meth:`wait_for` has taken yet."""

    def close(self) -> None:
        self.sock.close()

    def tc(self, service: int, subtype: int, data: bytes = b"", ack_flags: int = 0b1111) -> PusTc:
        self.seq = (self.seq + 1) % SEQ_COUNT_MODULO
        return PusTc(service=service, message_subtype=subtype, apid=TC_APID, app_data=data, seq_count=self.seq,
                     source_id=self.source_id, ack_flags=ack_flags)

    def send(self, tc: PusTc) -> int:
        """Send ``tc``; return its request id (u32)."""
        self.sock.sendall(tc.pack())
        return RequestId.from_sp_header(tc.sp_header).as_u32()

    def pump(self, timeout_s: float) -> list[Tm]:
        """Read what arrives within ``timeout_s``; the new TM, framed by the length field."""
        new: list[Tm] = []
        if select.select([self.sock], [], [], max(0.0, timeout_s))[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buf += chunk
        while len(self.buf) >= CCSDS_HEADER_LEN:
            total = SpacePacketHeader.unpack(bytes(self.buf[:CCSDS_HEADER_LEN])).packet_len
            if len(self.buf) < total:
                break
            raw = bytes(self.buf[:total])
            del self.buf[:total]
            tm = PusTm.unpack(raw, TIME_FIELD_LEN)  # checks the CRC
            data = bytes(tm.source_data)
            if self.sealed_tm:
                data = data[TM_SECURITY_HEADER_LEN:-TM_MAC_LEN]
            new.append(Tm(tm.apid, tm.seq_count, tm.service, tm.message_subtype, tm.pus_tm_sec_header.dest_id,
                          data, raw))
        self.received += new
        self.unread += new
        return new

    def wait_for(self, test, timeout_s: float, what: str) -> Tm:
        """The first unread TM for which ``test(tm)`` (it is read then), waiting for more up
        to ``timeout_s``; AssertionError when none comes."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, tm in enumerate(self.unread):
                if test(tm):
                    del self.unread[i]
                    return tm
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {what} within {timeout_s:g} s")
            self.pump(deadline - time.monotonic())

    def verification(self, request_id: int, timeout_s: float) -> list[Tm]:
        """This client's TM[1,x] about ``request_id`` up to the final one (completion or any failure)."""
        reports: list[Tm] = []
        deadline = time.monotonic() + timeout_s
        while not reports or not (reports[-1].subtype % 2 == 0 or reports[-1].subtype == 7):
            reports.append(self.wait_for(lambda t: t.service == 1 and t.dest_id == self.source_id
                                         and t.request_id == request_id, deadline - time.monotonic(),
                                         f"verification of request 0x{request_id:08x}"))
        return reports


def gaps(received: list[Tm]) -> dict[int, list[tuple[int, int]]]:
    """Per APID, each place where a sequence count is not the previous one + 1 (mod 2^14):
    ``(previous, this)``."""
    last: dict[int, int] = {}
    out: dict[int, list[tuple[int, int]]] = {}
    for tm in received:
        if tm.apid in last and tm.seq_count != (last[tm.apid] + 1) % SEQ_COUNT_MODULO:
            out.setdefault(tm.apid, []).append((last[tm.apid], tm.seq_count))
        last[tm.apid] = tm.seq_count
    return out
