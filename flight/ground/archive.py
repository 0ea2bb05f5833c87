"""The ground archive: every TM packet a ground tool receives and every TC it sends, kept in
SQLite so an operator can look back after the pass (``flight ground dump``, ``history``,
``events``), and the listener that stays connected across passes (``flight ground listen``).

File
    ``--archive PATH``, else ``$RACKFLIGHT_ARCHIVE``, else
    ``~/.local/share/rackflight/ground-archive.sqlite`` (:func:`archive_path`); WAL,
    ``synchronous=NORMAL``, 16 KiB pages (:func:`flight.core.storage.open_batched`). The
    listener commits before it acknowledges a downlink to the satellite (TC[15,130]), so a
    packet the satellite deletes as delivered is on disk here.

Exactly once
    A packet is identified by the SHA-256 of its bytes (CRC-protected, they hold the APID,
    sequence count, PUS message counter and time code): the satellite re-sends a stored
    packet byte for byte when it cannot tell that it arrived, so a second copy is counted
    (``duplicates``) and not kept. Two different packets with the same bytes would need the
    same APID, counters and millisecond time code.

Authenticated telemetry
    An archive given the telemetry keys (:mod:`flight.spacelink.tm_sdls`) checks every TM's
    MAC itself, whoever hands it the packet. A genuine one is kept as plain PUS: its security
    fields are checked, then stripped (:func:`flight.spacelink.tm_sdls.strip`), so every
    reader sees the packets a third-party PUS tool would. A forged or altered one (or an
    unsealed one, when keys are given) is never kept as genuine: it goes, raw and with the
    reason, to the table ``forged`` only, and is counted (``forged``); ``dump``, ``events`` and
    ``history`` never read it. Without keys (lab mode) packets are kept as they come.

Tables
    ``packets`` (every genuine TM: time, APID, service, subtype, store, bytes), ``hk`` (channel
    values as JSON, for packets a caller decoded; the listener keeps housekeeping raw only,
    which is what lets it keep up with a pass), ``events``, ``verification`` (TM[1,x] stages by request id),
    ``results`` (TM[140,1]), ``commands`` (TCs sent: request id, source id, name, arguments),
    ``forged`` (TM that failed verification: received time, APID and sequence count as the
    header claims, why, raw bytes), ``counters``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from spacepackets.ccsds.spacepacket import CCSDS_HEADER_LEN
from spacepackets.ecss import PusVersion, check_pus_crc
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import PusTmSecondaryHeader

from flight.core.component import SEVERITIES, CommandError, Dictionary
from flight.spacelink.framing import TIMESTAMP_LEN, unix_from_cds
from flight.spacelink.pus140_results import JobResultReport
from flight.spacelink.pus1_verification import Verification
from flight.spacelink.pus3_housekeeping import HkReport
from flight.spacelink.pus5_events import EventReport
from flight.spacelink.pus8_functions import decode_function, is_function
from flight.spacelink.services import Report, decode_tm
from flight.spacelink.sdls import StationKey
from flight.spacelink.tm_sdls import TmAuthenticationError, TmVerifier, describe, strip
from flight.core.storage import BatchedWrites, insert_rows, open_batched

ENV_VAR = "RACKFLIGHT_ARCHIVE"
DEFAULT_PATH = Path("~/.local/share/rackflight/ground-archive.sqlite")
STORE_OF_SERVICE = {3: "hk", 5: "events", 140: "results", 1: "verification"}
"""The onboard packet store (:mod:`flight.subsystems.link.packet_stores`) each downlinked service comes from."""
ACK_INTERVAL_S = 0.5
"""Wall seconds between the listener's commits and downlink acknowledgements."""
COMMIT_INTERVAL_S = 1.0
"""Most wall seconds a received packet waits uncommitted while more arrive."""
HK_SERVICE = 3
RAW_BATCH = 512
"""Raw housekeeping packets written in one statement."""
RECONNECT_S = 1.0
"""Wall seconds the listener waits before connecting again after the link went away."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, received_unix_s REAL NOT NULL, utc_unix_s REAL,
    apid INTEGER, service INTEGER, subtype INTEGER, store TEXT, packet BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hk (packet_id INTEGER PRIMARY KEY, utc_unix_s REAL NOT NULL, component TEXT NOT NULL,
    channel_values TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (packet_id INTEGER PRIMARY KEY, utc_unix_s REAL NOT NULL, name TEXT NOT NULL,
    severity TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events(utc_unix_s);
CREATE TABLE IF NOT EXISTS verification (packet_id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL,
    dest_id INTEGER NOT NULL, utc_unix_s REAL NOT NULL, stage TEXT NOT NULL, code TEXT, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verification_request ON verification(request_id, dest_id);
CREATE TABLE IF NOT EXISTS results (packet_id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, outcome TEXT NOT NULL,
    utc_unix_s REAL NOT NULL, work_gpu_s REAL NOT NULL, done_gpu_s REAL NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, source_id INTEGER NOT NULL,
    sent_unix_s REAL NOT NULL, service INTEGER NOT NULL, subtype INTEGER NOT NULL, name TEXT NOT NULL,
    args TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS forged (id INTEGER PRIMARY KEY, received_unix_s REAL NOT NULL, apid INTEGER,
    seq_count INTEGER, why TEXT NOT NULL, packet BLOB NOT NULL);
"""
_TIME_AT = CCSDS_HEADER_LEN + PusTmSecondaryHeader.MIN_LEN
"""Offset of a PUS-C TM's time code: after the primary header and the secondary header's
version, service, subtype, message counter and destination id."""
_MIN_TM_LEN = _TIME_AT + TIMESTAMP_LEN + 2
_INSERT_PACKETS = ("INSERT OR IGNORE INTO packets (digest, received_unix_s, utc_unix_s, apid, service, subtype, store, "
                   "packet) VALUES")
_INSERT_PACKET = f"{_INSERT_PACKETS} (?, ?, ?, ?, ?, ?, ?, ?)"


def archive_path(explicit: str | os.PathLike | None = None) -> Path:
    """Where the archive is: ``explicit``, else ``$RACKFLIGHT_ARCHIVE``, else the default."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return DEFAULT_PATH.expanduser()


@dataclass(frozen=True)
class CommandHistory:
    """A TC sent and the verification stages the satellite reported for it, in order
    (``(utc_unix_s, stage, code, message)``)."""

    sent_unix_s: float
    request_id: int
    name: str
    args: dict
    stages: list[tuple[float, str, str | None, str]]


class Archive(BatchedWrites):
    """The archive at ``path`` (created with its directory if missing), verifying TM with the
    telemetry keys ``tm_keys`` by SPI (``None``: lab mode, kept as they come). One writer at a time.

    Raises:
        sqlite3.Error: the file cannot be opened or is not an archive.
    """

    def __init__(self, path: Path, dictionary: Dictionary, tm_keys: dict[int, StationKey] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dictionary = dictionary
        self.verifier = None if tm_keys is None else TmVerifier(tm_keys)
        self.db = open_batched(path, timeout=10)
        self.db.executescript(_SCHEMA)
        self.counters = {name: value for name, value in self.db.execute("SELECT name, value FROM counters")}
        for name in ("received", "duplicates", "undecodable", "forged"):
            self.counters.setdefault(name, 0)
        self._committed = time.monotonic()
        self._raw_hk: list[tuple] = []
        """Housekeeping rows waiting to be written in one batch (:meth:`_flush`)."""
        self._time_code = (b"", 0.0)
        """The last time code read and its UTC: a tick's reports share one."""

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def commit(self) -> None:
        """Make what was added durable (before acknowledging it to the satellite)."""
        super().commit()
        self._committed = time.monotonic()

    def _before_commit(self) -> None:
        self.db.executemany("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", self.counters.items())

    def _flush(self) -> None:
        if self._raw_hk:
            before = self.db.total_changes
            insert_rows(self.db, _INSERT_PACKETS, 8, self._raw_hk)
            self.counters["duplicates"] += len(self._raw_hk) - (self.db.total_changes - before)
            self._raw_hk.clear()

    # -- writing ---------------------------------------------------------------------------
    def add(self, packet: bytes, report: Report | None = None) -> bool:
        """Keep a received TM packet and what it decoded to, if the caller decoded it; return
        whether it was new (``False``: a duplicate, counted; or forged: kept apart, counted,
        see the module). With keys the packet is verified and stripped first. Without a report the archive
        checks the CRC and reads the header itself, and decodes everything but housekeeping,
        which is kept raw (``dump`` decodes it when asked) and written with the next batch
        (duplicates among it are counted then, and it returns ``True``). Commits at least
        every :data:`COMMIT_INTERVAL_S` while packets arrive."""
        if time.monotonic() - self._committed > COMMIT_INTERVAL_S:
            self.commit()
        if self.verifier is not None:
            try:
                self.verifier.verify(packet)
            except TmAuthenticationError as exc:
                self.add_forged(packet, f"{describe(packet)}: {exc}")
                return False
            packet = strip(packet)
        self._begin()
        self.counters["received"] += 1
        apid = service = subtype = utc = None
        try:
            # the fields at their fixed offsets in the primary and PUS-C TM secondary headers, the
            # CRC by spacepackets: its header objects took a third of the time to keep a packet
            if len(packet) < _MIN_TM_LEN or len(packet) != CCSDS_HEADER_LEN + 1 + (packet[4] << 8 | packet[5]):
                raise ValueError(f"{len(packet)} bytes do not hold the PUS-C TM their header announces")
            if not check_pus_crc(packet):
                raise ValueError("bad CRC")
            if packet[CCSDS_HEADER_LEN] >> 4 != PusVersion.PUS_C:
                raise ValueError("not PUS-C")
            apid, service, subtype = ((packet[0] & 0x07) << 8) | packet[1], packet[7], packet[8]
            stamp = bytes(packet[_TIME_AT:_TIME_AT + TIMESTAMP_LEN])
            if stamp != self._time_code[0]:
                self._time_code = (stamp, unix_from_cds(stamp))
            utc = self._time_code[1]
            if report is None:
                if service == HK_SERVICE:
                    self._raw_hk.append((hashlib.sha256(packet).digest(), time.time(), utc, apid, service, subtype,
                                         STORE_OF_SERVICE[service], packet))
                    if len(self._raw_hk) >= RAW_BATCH:
                        self._flush()
                    return True
                report = decode_tm(self.dictionary, packet)
        except ValueError:  # bad CRC, short, not PUS-C or not known here: kept raw, counted
            report = None
            self.counters["undecodable"] += 1
        cursor = self.db.execute(_INSERT_PACKET, (hashlib.sha256(packet).digest(), time.time(), utc, apid, service,
                                                  subtype, STORE_OF_SERVICE.get(service), packet))
        if not cursor.rowcount:
            self.counters["duplicates"] += 1
            return False
        row = cursor.lastrowid
        if isinstance(report, HkReport):
            self.db.execute("INSERT INTO hk VALUES (?, ?, ?, ?)",
                            (row, utc, report.component.name, json.dumps(report.values, allow_nan=True)))
        elif isinstance(report, EventReport):
            self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                            (row, utc, report.name, report.severity, report.message))
        elif isinstance(report, Verification):
            self.db.execute("INSERT INTO verification VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (row, report.request_id, report.dest_id, utc, report.stage, report.code, report.message))
        elif isinstance(report, JobResultReport):
            self.db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (row, report.job_id, report.outcome, utc, report.work_gpu_s, report.done_gpu_s,
                             report.detail))
        return True

    def add_forged(self, packet: bytes, why: str) -> None:
        """Keep a TM that failed verification apart from the genuine ones (table ``forged``,
        counter ``forged``), with ``why``; the APID and sequence count are what its header
        claims, when it has one."""
        if time.monotonic() - self._committed > COMMIT_INTERVAL_S:
            self.commit()
        self._begin()
        self.counters["forged"] += 1
        apid = seq = None
        if len(packet) >= CCSDS_HEADER_LEN:
            apid, seq = (packet[0] & 0x07) << 8 | packet[1], (packet[2] & 0x3F) << 8 | packet[3]
        self.db.execute("INSERT INTO forged (received_unix_s, apid, seq_count, why, packet) VALUES (?, ?, ?, ?, ?)",
                        (time.time(), apid, seq, why[:400], packet))

    def forged(self) -> list[tuple[float, int | None, int | None, str]]:
        """``(received_unix_s, apid, seq_count, why)`` of every TM kept as forged, oldest first."""
        return self.db.execute("SELECT received_unix_s, apid, seq_count, why FROM forged ORDER BY id").fetchall()

    def command_sent(self, tc: PusTc, request_id: int) -> None:
        """Record a TC as sent (``tc`` before signing: its own application data)."""
        name, args = f"TC[{tc.service},{tc.message_subtype}]", {}
        if is_function(tc):
            try:
                name, args = decode_function(self.dictionary, bytes(tc.app_data))
            except CommandError:
                pass  # sent on purpose malformed: kept under its service name
        self._begin()
        self.db.execute("INSERT INTO commands (request_id, source_id, sent_unix_s, service, subtype, name, args) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (request_id, tc.source_id, time.time(), tc.service, tc.message_subtype, name,
                         json.dumps(args, default=str)))
        self.commit()

    # -- reading ---------------------------------------------------------------------------
    def packets(self, from_utc_unix_s: float = -math.inf, to_utc_unix_s: float = math.inf,
                store: str | None = None) -> list[tuple[float, int, int, int, bytes]]:
        """``(utc_unix_s, apid, service, subtype, packet)`` of every packet timed in
        ``[from, to]`` (from ``store`` only, when given), oldest first."""
        self._flush()
        sql = ("SELECT utc_unix_s, apid, service, subtype, packet FROM packets "
               "WHERE utc_unix_s BETWEEN ? AND ?")
        params: list[Any] = [max(from_utc_unix_s, -1e300), min(to_utc_unix_s, 1e300)]
        if store is not None:
            sql += " AND store = ?"
            params.append(store)
        return [(u, a, s, t, bytes(p)) for u, a, s, t, p in self.db.execute(sql + " ORDER BY utc_unix_s, id", params)]

    def events(self, from_utc_unix_s: float = -math.inf, to_utc_unix_s: float = math.inf,
               min_severity: str = SEVERITIES[0]) -> list[tuple[float, str, str, str]]:
        """``(utc_unix_s, severity, name, message)`` of the events in ``[from, to]`` at or
        above ``min_severity`` (one of INFO, LOW, MEDIUM, HIGH), oldest first.

        Raises:
            ValueError: an unknown severity.
        """
        if min_severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {min_severity!r}")
        wanted = SEVERITIES[SEVERITIES.index(min_severity):]
        return self.db.execute(
            f"SELECT utc_unix_s, severity, name, message FROM events WHERE utc_unix_s BETWEEN ? AND ? "
            f"AND severity IN ({', '.join('?' * len(wanted))}) ORDER BY utc_unix_s, packet_id",
            (max(from_utc_unix_s, -1e300), min(to_utc_unix_s, 1e300), *wanted)).fetchall()

    def history(self, limit: int = 50) -> list[CommandHistory]:
        """The last ``limit`` TCs sent, oldest first, each with its reported stages."""
        out = []
        for request_id, source_id, sent, name, args in reversed(self.db.execute(
                "SELECT request_id, source_id, sent_unix_s, name, args FROM commands ORDER BY id DESC LIMIT ?",
                (limit,)).fetchall()):
            stages = self.db.execute(
                "SELECT utc_unix_s, stage, code, message FROM verification WHERE request_id = ? AND dest_id = ? "
                "ORDER BY packet_id", (request_id, source_id)).fetchall()
            out.append(CommandHistory(sent, request_id, name, json.loads(args), stages))
        return out


class DownlinkAcknowledger:
    """Makes ``client``'s connection an *archiving* one and keeps it acknowledged
    (TC[15,130], :mod:`flight.spacelink.pus15_storage`): :meth:`start` sends the first
    acknowledgement (received 0), which asks the link for the stored backlog
    (:mod:`flight.subsystems.link.downlink`); :meth:`due` acknowledges what arrived since, at
    most every :data:`ACK_INTERVAL_S`; :meth:`finish` acknowledges the rest. ``archive`` (or
    ``None``: nothing to keep first) is committed before every acknowledgement, so a packet the
    satellite counts as delivered is on disk here. One per connection; used by the listener
    and by the gateway's ``--playback``.

    Each method raises OSError when the connection is broken.
    """

    def __init__(self, client: Any, archive: Archive | None) -> None:
        self.client = client
        self.archive = archive
        self._acked = 0
        self._last_ack = -math.inf

    def start(self) -> None:
        """Acknowledge received 0: the connection asks for the backlog from now on."""
        self._acknowledge()

    def due(self) -> None:
        """Acknowledge what arrived since the last time, if :data:`ACK_INTERVAL_S` has passed."""
        if self.client.tm_received != self._acked and time.monotonic() - self._last_ack >= ACK_INTERVAL_S:
            self._acknowledge()

    def finish(self) -> None:
        """Commit, and acknowledge what arrived since the last time (before closing)."""
        if self.archive is not None:
            self.archive.commit()
        if self.client.tm_received != self._acked:
            self._acknowledge()

    def _acknowledge(self) -> None:
        if self.archive is not None:
            self.archive.commit()
        self._acked = self.client.tm_received
        self.client.acknowledge()
        self._last_ack = time.monotonic()


def listen(connect: Callable[[], Any], archive: Archive, *, stop: Callable[[], bool],
           on_report: Callable[[Report | None], None] | None = None) -> Iterator[str]:
    """Stay connected to the link and archive everything it sends, acknowledging each
    :data:`ACK_INTERVAL_S` and on stopping (commit first, :class:`DownlinkAcknowledger`);
    connect again :data:`RECONNECT_S` after the link went away or could not be reached, until
    ``stop()``. ``connect()`` returns a :class:`~flight.ground.client.LinkClient`. Yields a line
    for each connection change and a warning for each TM that fails verification
    (:func:`forged_warning`).
    """
    while not stop():
        try:
            client = connect()
        except OSError as exc:
            yield f"link not reachable: {exc}"
            _pause(RECONNECT_S, stop)
            continue
        client.on_packet = _archiver(archive, on_report)
        forged: list[str] = []
        client.on_forged = lambda packet, why: (archive.add_forged(packet, why), forged.append(why))
        yield f"connected to {client.endpoint}"
        try:
            with client:
                acks = DownlinkAcknowledger(client, archive)
                acks.start()  # marks this connection as archiving, so the backlog comes here
                while not stop():
                    client.read(0.1)
                    while forged:
                        yield forged_warning(forged.pop(0))
                    acks.due()
                while client.read(0.05):
                    pass  # what is on its way when stopping is archived too
                acks.finish()
        except (ConnectionError, OSError) as exc:
            archive.commit()
            yield f"link went away: {exc}"
            _pause(RECONNECT_S, stop)


def forged_warning(why: str) -> str:
    """The line a ground tool prints about a TM that failed verification (``why`` names its
    APID, sequence count and SN, :func:`flight.spacelink.tm_sdls.describe`)."""
    return f"WARNING: forged or altered TM refused, not archived as genuine ({why})"


def _archiver(archive: Archive, on_report: Callable[[Report | None], None] | None) -> Callable:
    def take(packet: bytes, report: Report | None) -> None:
        archive.add(packet, report)
        if on_report is not None:
            on_report(report)
    return take


def _pause(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop():
        time.sleep(0.05)
