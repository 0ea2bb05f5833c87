"""PUS service 15, on-board storage and retrieval (ECSS-E-ST-70-41C 6.15): the packet stores
of :mod:`flight.subsystems.link.packet_stores`, commanded from the ground (integers
big-endian, store ids u8, times CDS short; TM from :data:`~flight.spacelink.framing.TC_APID`,
addressed to the TC's source).

    =========  ==========================================================================
    TC[15,1/2] enable / disable storage: ``N u8`` then N store ids
    TC[15,9]   retrieve by time range: ``store_id u8``, start time, end time (inclusive)
    TC[15,11]  delete up to: time, then ``N u8`` and N store ids
    TC[15,12]  report store status: ``N u8`` and N store ids (N = 0: every store)
    TM[15,13]  packet store status report (:class:`StoreStatusReport`)
    TC[15,130] mission downlink acknowledgement: ``received u64``
    =========  ==========================================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from spacepackets.ecss.defs import PusService
from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError
from flight.spacelink.framing import ACK_ALL, TC_APID, TIMESTAMP_LEN, TmFramer, build_tc, cds_timestamp, \
    unix_from_cds
from flight.spacelink.codec import Reader, decode_tc_data
from flight.spacelink.layout import Field, Message, Repeat, fixed_struct


@dataclass(frozen=True)
class StoreSpec:
    """An onboard packet store: ``store_id`` (the u8 that TC[15,x] and TM[15,x] name it by),
    downlink ``priority`` (1 first)."""

    name: str
    store_id: int
    priority: int


STORES = (
    StoreSpec("hk", 1, 3),
    StoreSpec("events", 2, 1),
    StoreSpec("results", 3, 4),
    StoreSpec("verification", 4, 2),
)
STORE_BY_NAME = {s.name: s for s in STORES}
STORE_BY_ID = {s.store_id: s for s in STORES}

STORAGE_SERVICE = PusService.S15_TM_STORAGE
ENABLE_STORAGE, DISABLE_STORAGE = 1, 2
RETRIEVE_BY_TIME_RANGE = 9
DELETE_UP_TO = 11
REPORT_STORE_STATUS, STORE_STATUS_REPORT = 12, 13
DOWNLINK_ACK = 130
"""Mission-specific TC[15,130] (ECSS-E-ST-70-41C leaves subtypes from 128 to the mission):
the ground has received this connection's first ``u64`` TM packets
(:mod:`flight.subsystems.link.packet_stores`)."""
STORAGE_TC_SUBTYPES = (ENABLE_STORAGE, DISABLE_STORAGE, RETRIEVE_BY_TIME_RANGE, DELETE_UP_TO, REPORT_STORE_STATUS,
                       DOWNLINK_ACK)
STATUS_ENTRY = (
    Field("store_id", "u8"), Field("enabled", "u8", "1: storage enabled"), Field("count", "u32", "packets held"),
    Field("unacknowledged", "u32", "packets the ground has not acknowledged"),
    Field("oldest", "cds", "UTC of the oldest packet (Unix time 0 when empty)"),
    Field("newest", "cds", "UTC of the newest packet (Unix time 0 when empty)"),
    Field("dropped", "u32", "unacknowledged packets deleted by retention"),
    Field("expired", "u32", "acknowledged packets deleted by retention"),
    Field("deleted", "u32", "packets deleted by TC[15,11]"),
    Field("not_stored", "u32", "packets not stored while storage was disabled"))
"""One store's entry in TM[15,13]."""
_STATUS_ENTRY = fixed_struct(STATUS_ENTRY)
_STORE_LIST = (Field("N", "u8"), Repeat("N", (Field("store_id", "u8", "see Packet stores"),)))
_LINK, _TO_SOURCE = "link (APID 4)", "the TC's source id; sent on every connection"
MESSAGES = (
    Message("TC", STORAGE_SERVICE, ENABLE_STORAGE, "enable storage in packet stores", _STORE_LIST, "ground", _LINK,
            "N >= 1"),
    Message("TC", STORAGE_SERVICE, DISABLE_STORAGE, "disable storage in packet stores", _STORE_LIST, "ground",
            _LINK, "N >= 1"),
    Message("TC", STORAGE_SERVICE, RETRIEVE_BY_TIME_RANGE, "retrieve packets by time range",
            (Field("store_id", "u8"), Field("start", "cds"), Field("end", "cds", "inclusive; not before start")),
            "ground", _LINK, "queues them for downlink again (as playback)"),
    Message("TC", STORAGE_SERVICE, DELETE_UP_TO, "delete packets up to a time",
            (Field("up_to", "cds"), *_STORE_LIST), "ground", _LINK, "N >= 1"),
    Message("TC", STORAGE_SERVICE, REPORT_STORE_STATUS, "report packet store status", _STORE_LIST, "ground", _LINK,
            "N = 0: every store"),
    Message("TM", STORAGE_SERVICE, STORE_STATUS_REPORT, "packet store status report",
            (Field("N", "u8"), Repeat("N", STATUS_ENTRY)), _LINK, _TO_SOURCE),
    Message("TC", STORAGE_SERVICE, DOWNLINK_ACK, "downlink acknowledgement (mission)",
            (Field("received", "u64", "TM packets this connection has received since it opened"),), "ground",
            _LINK, "makes the connection an archiving one (sent the playback; see Sequence counts)"),
)


def _store_list(store_ids: list[int]) -> bytes:
    if not 1 <= len(store_ids) <= 255 or not all(0 <= i <= 255 for i in store_ids):
        raise ValueError(f"1..255 store ids of 0..255 each, got {store_ids!r}")
    return bytes([len(store_ids), *store_ids])


def _read_store_list(reader: Reader) -> list[int]:
    n = reader.unpack(">B")
    if n == 0:
        raise ValueError("an empty packet store list")
    return list(reader.take(n))


def storage_tc(subtype: int, *, store_ids: list[int] = (), from_utc_unix_s: float = 0.0,
               to_utc_unix_s: float = 0.0, received: int = 0, seq_count: int, source_id: int,
               ack_flags: int = ACK_ALL) -> PusTc:
    """A TC[15,subtype] with the data of :func:`storage_data`."""
    data = storage_data(subtype, store_ids=store_ids, from_utc_unix_s=from_utc_unix_s, to_utc_unix_s=to_utc_unix_s,
                        received=received)
    return build_tc(STORAGE_SERVICE, subtype, data, seq_count=seq_count, source_id=source_id, ack_flags=ack_flags)


def storage_data(subtype: int, *, store_ids: list[int] = (), from_utc_unix_s: float = 0.0,
                 to_utc_unix_s: float = 0.0, received: int = 0) -> bytes:
    """Application data of TC[15,subtype] (see the module table).

    Raises:
        ValueError: an unknown subtype, a missing or out-of-range field.
    """
    if subtype in (ENABLE_STORAGE, DISABLE_STORAGE):
        data = _store_list(list(store_ids))
    elif subtype == RETRIEVE_BY_TIME_RANGE:
        (store_id,) = store_ids
        data = bytes([store_id]) + cds_timestamp(from_utc_unix_s) + cds_timestamp(to_utc_unix_s)
    elif subtype == DELETE_UP_TO:
        data = cds_timestamp(to_utc_unix_s) + _store_list(list(store_ids))
    elif subtype == REPORT_STORE_STATUS:
        data = _store_list(list(store_ids)) if store_ids else b"\x00"
    elif subtype == DOWNLINK_ACK:
        data = struct.pack(">Q", received)
    else:
        raise ValueError(f"no TC[15,{subtype}]")
    return data


@dataclass(frozen=True)
class StorageRequest:
    """A decoded TC[15,x]: the fields its subtype carries (see :func:`storage_tc`)."""

    subtype: int
    store_ids: tuple[int, ...] = ()
    from_utc_unix_s: float = 0.0
    to_utc_unix_s: float = 0.0
    received: int = 0


def _read_storage_request(subtype: int, reader: Reader) -> StorageRequest:
    if subtype in (ENABLE_STORAGE, DISABLE_STORAGE):
        return StorageRequest(subtype, tuple(_read_store_list(reader)))
    if subtype == RETRIEVE_BY_TIME_RANGE:
        store_id = reader.unpack(">B")
        start, end = unix_from_cds(reader.take(TIMESTAMP_LEN)), unix_from_cds(reader.take(TIMESTAMP_LEN))
        if start > end:
            raise ValueError("start time after end time")
        return StorageRequest(subtype, (store_id,), start, end)
    if subtype == DELETE_UP_TO:
        up_to = unix_from_cds(reader.take(TIMESTAMP_LEN))
        return StorageRequest(subtype, tuple(_read_store_list(reader)), to_utc_unix_s=up_to)
    if subtype == REPORT_STORE_STATUS:
        return StorageRequest(subtype, tuple(reader.take(reader.unpack(">B"))))
    return StorageRequest(subtype, received=reader.unpack(">Q"))


def decode_storage_tc(subtype: int, data: bytes) -> StorageRequest:
    """Read the application data of TC[15,subtype] (store ids not yet checked to exist).

    Raises:
        CommandError: INVALID_OPCODE for a subtype this satellite does not serve;
            FORMAT_ERROR for short, long or malformed data (a bad time code, an empty store
            list where one is needed, a start time after the end time).
    """
    if subtype not in STORAGE_TC_SUBTYPES:
        raise CommandError("INVALID_OPCODE", f"TC[15,{subtype}] is not served")
    return decode_tc_data(STORAGE_SERVICE, subtype, lambda r: _read_storage_request(subtype, r), data)


@dataclass(frozen=True)
class StoreStatusEntry:
    """One packet store in TM[15,13]: times are UTC (Unix s), ``None`` for an empty store;
    ``unacknowledged`` counts packets the ground has not acknowledged; ``dropped`` and
    ``expired`` are retention deletions of unacknowledged and acknowledged packets;
    ``deleted`` by TC[15,11]; ``not_stored`` while storage was disabled."""

    store_id: int
    enabled: bool
    count: int
    unacknowledged: int
    oldest_utc_unix_s: float | None
    newest_utc_unix_s: float | None
    dropped: int
    expired: int
    deleted: int
    not_stored: int


@dataclass(frozen=True)
class StoreStatusReport:
    """TM[15,13]: ``N u8`` then per store ``store_id u8, enabled u8, count u32,
    unacknowledged u32, oldest CDS, newest CDS, dropped u32, expired u32, deleted u32,
    not_stored u32`` (an empty store's times are the CDS code of Unix time 0)."""

    stores: tuple[StoreStatusEntry, ...]
    dest_id: int
    utc_unix_s: float


def store_status_report(framer: TmFramer, entries: list[StoreStatusEntry], *, dest_id: int,
                        utc_unix_s: float) -> bytes:
    """TM[15,13] from the link's APID (see :class:`StoreStatusReport`)."""
    out = bytearray([len(entries)])
    for e in entries:
        empty = e.oldest_utc_unix_s is None
        out += _STATUS_ENTRY.pack(e.store_id, int(e.enabled), e.count, e.unacknowledged,
                                  cds_timestamp(0.0 if empty else e.oldest_utc_unix_s),
                                  cds_timestamp(0.0 if empty else e.newest_utc_unix_s),
                                  e.dropped, e.expired, e.deleted, e.not_stored)
    return framer.packet(TC_APID, STORAGE_SERVICE, STORE_STATUS_REPORT, bytes(out), utc_unix_s=utc_unix_s,
                         dest_id=dest_id)


def decode_report(subtype: int, data: bytes, dest_id: int, utc_unix_s: float) -> StoreStatusReport | None:
    """The report of TM[15,13] source ``data``; ``None`` for another subtype.

    Raises:
        ValueError: malformed data.
    """
    if subtype != STORE_STATUS_REPORT:
        return None
    reader = Reader(bytes(data))
    entries = []
    for _ in range(reader.unpack(">B")):
        (store_id, enabled, count, unacked, oldest, newest, dropped, expired, deleted,
         not_stored) = _STATUS_ENTRY.unpack(reader.take(_STATUS_ENTRY.size))
        times = (None, None) if count == 0 else (unix_from_cds(oldest), unix_from_cds(newest))
        entries.append(StoreStatusEntry(store_id, bool(enabled), count, unacked, *times, dropped, expired,
                                        deleted, not_stored))
    reader.end()
    return StoreStatusReport(tuple(entries), dest_id, utc_unix_s)
