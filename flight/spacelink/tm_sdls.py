"""Telemetry authentication in the manner of CCSDS SDLS (CCSDS 355.0-B-2, Space Data Link
Security, authentication-only service; applied to TM as CCSDS 132.0-B-3 section 6 applies it
to a TM transfer frame): every TM carries a security header and a MAC trailer, under a
telemetry key of its own, distinct from the station keys that sign telecommands
(:mod:`flight.spacelink.sdls`). The satellite seals (:class:`TmSealer`, used by
:class:`flight.spacelink.framing.TmFramer`), the ground checks (:class:`TmVerifier`,
:class:`SequenceWindow`) and hands plain PUS packets on (:func:`strip`).

Layout (the TM's PUS-C source data field; all integers big-endian)
    ==============  =======  ==============================================================
    SPI             u16      Security Parameter Index of the telemetry key (355.0-B-2
                             Security Header, SPI field)
    SN              u64      sequence number, one per TM, never reused (355.0-B-2 Security
                             Header, Sequence Number field)
    source data     n bytes  the service's own source data (may be empty)
    MAC             16 B     HMAC-SHA256 (FIPS 198-1) truncated to its leftmost 128 bits
                             (355.0-B-2 Security Trailer, MAC field)
    ==============  =======  ==============================================================

    SDLS puts the header and trailer around a frame's data field; this link carries Space
    Packets over TCP with no frames, so they sit inside the PUS source data, as on the TC
    side. The primary and secondary headers stay where every PUS tool reads them (APID,
    sequence count, service, subtype, time), and the packet error control (CRC-16) still
    closes the packet: a tool that knows no SDLS frames and checks every packet, and sees
    26 more bytes of source data. The ground gateway strips the fields (:func:`strip`) from
    the TM it has verified before relaying it, so its clients get plain PUS.

MAC input
    Every byte of the packet before the MAC: the CCSDS primary header (APID, sequence count,
    packet data length, which counts the MAC and the CRC after it), the PUS-C secondary
    header (service, subtype, message type counter, destination id, time code), SPI, SN
    and the source data. So a bit changed anywhere but the CRC breaks the MAC, and the
    CRC is checked as well. Comparison is constant-time.

Sequence number
    Onboard, one counter per telemetry key: +1 for every TM built (:class:`SnCounter`). It
    survives restarts: numbers are reserved in blocks (:data:`SN_BLOCK`) stored durably
    (SQLite) before the first of them is used, so a restart (or a crash) skips to the next
    block and never reuses a number. A key with no reservation yet (a new mission, or a
    reservation file found damaged, moved aside and started afresh) starts just above the
    host clock in nanoseconds since 1970, so even a lost file does not bring old numbers
    back: a restart reserves at most 2**20 numbers and takes far more than 2**20 ns, and
    fewer than 10**9 TM go out a second (the clock stays below 2**64 until the year 2554). A packet kept in a packet
    store keeps the number it was built with, so store-and-forward playback verifies as it
    was built, and arrives with a number below those already seen.

On the ground (:class:`SequenceWindow`, per connection and per SPI)
    A verified TM is *new* (number above every one seen), *late* (below, not seen before:
    playback from a packet store, or reordering) or a *repeat* (a number already seen: the
    satellite re-sending an unacknowledged stored packet, or someone replaying a recorded
    one). New and late are delivered; a repeat is counted and not delivered again (the
    archive keeps one copy of a packet anyway, by its digest). A recorded genuine TM replayed
    to a ground that never saw it is late: it is what the satellite said, with the time code
    it said it at, as playback is. A TM that fails (no security fields, an SPI with no key,
    MAC mismatch) is forged or altered: counted, reported, never delivered or archived as
    genuine.

Keys
    A key file of :mod:`flight.spacelink.keys`'s format, kept apart from the station keys in
    the subdirectory ``tm/`` of the key directory (so the link never takes it for a station
    key): ``<keys>/tm/telemetry.key`` seals on board (:func:`signing_key`); the ground
    verifies with every key there, by SPI (:func:`verifying_keys`). Telemetry SPIs are
    numbered on their own, from 1: an SPI names a key within its direction, TC or TM.
    ``flight run`` creates the key when the directory has none, as it does the local
    station's; ``flight keys init --telemetry`` creates it by hand. Every ground that reads
    TM needs a copy.
"""

from __future__ import annotations

import hmac
import sqlite3
import struct
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastcrc import crc16
from spacepackets.ccsds.spacepacket import CCSDS_HEADER_LEN
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.tm import PusTmSecondaryHeader

from flight.core.storage import open_durable
from flight.spacelink import keys
from flight.spacelink.layout import Field, fixed_struct
from flight.spacelink.sdls import CRC_LEN, MAC_LEN, StationKey

SECURITY_HEADER = (Field("spi", "u16", "Security Parameter Index of the telemetry key that sealed the TM"),
                   Field("sn", "u64", "sequence number, 1..2**64-1, +1 for every TM built on board"))
"""The TM security header, first in a TM's source data."""
_HEADER = fixed_struct(SECURITY_HEADER)
SECURITY_HEADER_LEN = _HEADER.size
SECURITY_OVERHEAD = SECURITY_HEADER_LEN + MAC_LEN
"""Bytes the security header and trailer add to every TM (26)."""
PRIMARY_HEADER_LEN = CCSDS_HEADER_LEN
SOURCE_DATA_AT = CCSDS_HEADER_LEN + PusTmSecondaryHeader.MIN_LEN + CdsShortTimestamp.TIMESTAMP_SIZE
"""Packet byte where a TM's source data (here: the security header) starts."""
MAX_SN = (1 << 64) - 1
SN_BLOCK = 1 << 20
"""Sequence numbers reserved per durable write on board: a restart skips at most this many
(of 2**64). A reservation is a SQLite commit with fsync, a few ms on a VM's disk: a block
of 4096 cost ~20 us a TM at full simulation speed, a block of 2**20 costs nothing measurable."""
SN_FILE = "tm_security.sqlite"
"""The onboard sequence-number reservation, in the link's data directory."""
TM_KEYS_SUBDIR = "tm"
TM_KEY_NAME = "telemetry"
"""The telemetry key the satellite seals with: ``<keys>/tm/telemetry.key``."""


class TmAuthenticationError(ValueError):
    """A TM that fails authentication; ``str()`` says why."""


class SealError(ValueError):
    """A TM that could not be sealed on board (no sequence number); ``str()`` says why."""


def _mac(key: bytes, packet: bytes | bytearray) -> bytes:
    """The MAC over every byte of ``packet`` before its MAC and CRC."""
    # the one-shot hmac.digest and a view, not a copy: a third of the cost of hmac.new per TM
    with memoryview(packet) as view:
        return hmac.digest(key, view[:-(MAC_LEN + CRC_LEN)], "sha256")[:MAC_LEN]


def _set_crc(packet: bytearray) -> None:
    with memoryview(packet) as view:
        crc = crc16.ibm_3740(bytes(view[:-CRC_LEN]))
    packet[-CRC_LEN:] = crc.to_bytes(CRC_LEN, "big")


class SnCounter:
    """The onboard sequence numbers of one telemetry key (see the module), reserved in
    blocks in the SQLite file at ``path``; a key with no reservation starts above
    ``clock_ns()`` (default the host clock, ns since 1970).

    Raises:
        sqlite3.Error: the file cannot be opened or read.
    """

    def __init__(self, path: Path, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        """Where a key with no reservation starts (see the module: Sequence number)."""
        self._db = open_durable(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS sn (spi INTEGER PRIMARY KEY, reserved TEXT NOT NULL)")
        # TEXT: SQLite integers are signed 64-bit, a sequence number is unsigned
        self._reserved = {int(spi): int(top) for spi, top in self._db.execute("SELECT spi, reserved FROM sn")}
        self._next: dict[int, int] = {}

    def next(self, spi: int) -> int:
        """The next number for ``spi``, reserving a new block first when the last is used up.

        Raises:
            SealError: a new block could not be stored (no number is handed out: the TM is
                not built, and counted as a TM error by its builder), or every number of the
                key is used (it must be replaced).
        """
        if spi not in self._reserved:
            self._reserved[spi] = self._clock_ns()  # nothing reserved: nothing at or below it handed out
        n = self._next.get(spi, self._reserved[spi] + 1)
        if n > self._reserved[spi]:
            top = n + SN_BLOCK - 1
            if top > MAX_SN:
                raise SealError(f"telemetry key SPI {spi} has used every sequence number")
            try:
                self._db.execute("INSERT INTO sn (spi, reserved) VALUES (?, ?) "
                                 "ON CONFLICT(spi) DO UPDATE SET reserved = excluded.reserved", (spi, str(top)))
            except sqlite3.Error as exc:
                raise SealError(f"no telemetry sequence numbers reserved: {exc}") from None
            self._reserved[spi] = top
        self._next[spi] = n + 1
        return n

    def close(self) -> None:
        self._db.close()


class TmSealer:
    """Seals the TM a :class:`flight.spacelink.framing.TmFramer` builds with the telemetry
    ``key``: :meth:`wrap` the source data before the packet is built, :meth:`seal` the built
    packet. The sequence numbers come from an :class:`SnCounter` in the directory given to
    :meth:`open`."""

    overhead = SECURITY_OVERHEAD

    def __init__(self, key: StationKey) -> None:
        self.key = key
        self._counter: SnCounter | None = None

    def open(self, data_path: Path, clock_ns: Callable[[], int] = time.time_ns) -> None:
        """Open the sequence-number reservation in ``data_path`` (:data:`SN_FILE`);
        ``clock_ns`` as :class:`SnCounter`'s.

        Raises:
            sqlite3.Error: the file cannot be opened or read.
        """
        self._counter = SnCounter(data_path / SN_FILE, clock_ns)

    def close(self) -> None:
        if self._counter is not None:
            self._counter.close()
            self._counter = None

    def wrap(self, source_data: bytes) -> bytes:
        """Security header, ``source_data`` and a zero MAC (filled in by :meth:`seal`).

        Raises:
            SealError: as :meth:`SnCounter.next`.
            RuntimeError: not opened.
        """
        if self._counter is None:
            raise RuntimeError("telemetry sealer used before open()")
        return _HEADER.pack(self.key.spi, self._counter.next(self.key.spi)) + source_data + bytes(MAC_LEN)

    def seal(self, packet: bytearray) -> None:
        """Put the MAC over every byte before it in place, then the CRC again."""
        packet[-(MAC_LEN + CRC_LEN):-CRC_LEN] = _mac(self.key.key, packet)
        _set_crc(packet)


def seal_packet(packet: bytes, key: StationKey, sn: int) -> bytes:
    """A plain PUS-C TM ``packet`` with its source data wrapped in the security fields and
    sealed with ``key`` and ``sn`` (the inverse of :func:`strip`; for tests and the ICD's
    worked example: the satellite seals as it builds, :class:`TmSealer`).

    Raises:
        ValueError: not a whole TM packet, or a sequence number outside 1..2**64-1.
    """
    if not 0 < sn <= MAX_SN:
        raise ValueError(f"sequence number {sn} outside 1..{MAX_SN}")
    _check_shape(packet, 0)
    out = bytearray(packet[:SOURCE_DATA_AT] + _HEADER.pack(key.spi, sn) + packet[SOURCE_DATA_AT:-CRC_LEN]
                    + bytes(MAC_LEN + CRC_LEN))
    out[4:6] = struct.pack(">H", len(out) - PRIMARY_HEADER_LEN - 1)
    out[-(MAC_LEN + CRC_LEN):-CRC_LEN] = _mac(key.key, out)
    _set_crc(out)
    return bytes(out)


def _check_shape(packet: bytes, overhead: int) -> None:
    if len(packet) < SOURCE_DATA_AT + overhead + CRC_LEN:
        raise TmAuthenticationError(f"{len(packet)} bytes: too short for a TM with security fields"
                                    if overhead else f"{len(packet)} bytes: too short for a TM")
    if len(packet) != PRIMARY_HEADER_LEN + 1 + (packet[4] << 8 | packet[5]):
        raise TmAuthenticationError(f"{len(packet)} bytes do not match the packet's length field")


@dataclass(frozen=True)
class Verified:
    """What :meth:`TmVerifier.verify` found in a TM whose MAC checks."""

    spi: int
    sn: int


class TmVerifier:
    """Checks TM against the telemetry ``keys`` (by SPI). Stateless: replay is
    :class:`SequenceWindow`'s."""

    def __init__(self, keys_by_spi: dict[int, StationKey]) -> None:
        self.keys = dict(keys_by_spi)

    def verify(self, packet: bytes) -> Verified:
        """The SPI and sequence number of ``packet`` if its MAC checks with the key of its SPI.

        Raises:
            TmAuthenticationError: too short for the security fields, a length field that
                does not match, an SPI with no key, a MAC or CRC mismatch.
        """
        _check_shape(packet, SECURITY_OVERHEAD)
        spi, sn = _HEADER.unpack_from(packet, SOURCE_DATA_AT)
        key = self.keys.get(spi)
        if key is None:
            raise TmAuthenticationError(f"no telemetry key for SPI {spi}")
        if not hmac.compare_digest(_mac(key.key, packet), packet[-(MAC_LEN + CRC_LEN):-CRC_LEN]):
            raise TmAuthenticationError(f"MAC mismatch for SPI {spi}")
        if crc16.ibm_3740(packet) != 0:  # the MAC checked: only the CRC itself was changed
            raise TmAuthenticationError("bad CRC")
        return Verified(spi, sn)


def strip(packet: bytes) -> bytes:
    """The plain PUS-C TM inside a secured one: same headers (length field less
    :data:`SECURITY_OVERHEAD`), the service's source data, a new CRC. Call it on a verified
    packet: it checks nothing.

    Raises:
        TmAuthenticationError: too short for the security fields or a length field that does
            not match.
    """
    _check_shape(packet, SECURITY_OVERHEAD)
    out = bytearray(packet[:SOURCE_DATA_AT] + packet[SOURCE_DATA_AT + SECURITY_HEADER_LEN:-(MAC_LEN + CRC_LEN)]
                    + bytes(CRC_LEN))
    out[4:6] = struct.pack(">H", len(out) - PRIMARY_HEADER_LEN - 1)
    _set_crc(out)
    return bytes(out)


def describe(packet: bytes) -> str:
    """``APID a, seq count s`` (and ``SN n`` when the packet is long enough) of a received
    TM, read from its headers without trusting them: for warnings about a forged one."""
    if len(packet) < PRIMARY_HEADER_LEN:
        return f"{len(packet)}-byte fragment"
    text = f"APID {(packet[0] & 0x07) << 8 | packet[1]}, seq count {(packet[2] & 0x3F) << 8 | packet[3]}"
    if len(packet) >= SOURCE_DATA_AT + SECURITY_HEADER_LEN:
        text += f", SN {_HEADER.unpack_from(packet, SOURCE_DATA_AT)[1]}"
    return text


NEW, LATE, REPEAT = "new", "late", "repeat"


class SequenceWindow:
    """Which verified sequence numbers a ground has seen, per SPI, as merged ranges (so a
    long pass of consecutive numbers with a few gaps takes a few entries)."""

    def __init__(self) -> None:
        self._ranges: dict[int, list[list[int]]] = {}

    def admit(self, spi: int, sn: int) -> str:
        """Classify ``sn`` (:data:`NEW`, :data:`LATE` or :data:`REPEAT`, see the module) and
        remember it. Call only for a TM whose MAC checked."""
        ranges = self._ranges.setdefault(spi, [])
        i = bisect_right(ranges, [sn, MAX_SN + 1]) - 1  # the last range starting at or below sn
        if i >= 0 and ranges[i][1] >= sn:
            return REPEAT
        verdict = NEW if not ranges or sn > ranges[-1][1] else LATE
        joins_left = i >= 0 and ranges[i][1] == sn - 1
        joins_right = i + 1 < len(ranges) and ranges[i + 1][0] == sn + 1
        if joins_left and joins_right:
            ranges[i][1] = ranges.pop(i + 1)[1]
        elif joins_left:
            ranges[i][1] = sn
        elif joins_right:
            ranges[i + 1][0] = sn
        else:
            ranges.insert(i + 1, [sn, sn])
        return verdict

    def highest(self, spi: int) -> int:
        """The highest number seen for ``spi`` (0: none)."""
        ranges = self._ranges.get(spi)
        return ranges[-1][1] if ranges else 0


# -- key files ------------------------------------------------------------------------------------
def tm_keys_dir(directory: Path) -> Path:
    """Where the telemetry keys of the key directory ``directory`` are."""
    return directory / TM_KEYS_SUBDIR


def signing_key(directory: Path) -> StationKey:
    """The telemetry key the satellite seals with, from the key directory ``directory``.

    Raises:
        FileNotFoundError: there is none (``flight keys init --telemetry`` creates it).
        OSError, ValueError: as :func:`flight.spacelink.keys.read_key`.
    """
    return keys.load_key(tm_keys_dir(directory), TM_KEY_NAME)


def verifying_keys(directory: Path) -> dict[int, StationKey]:
    """Every telemetry key of the key directory ``directory``, by SPI (empty: none).

    Raises:
        OSError, ValueError: as :func:`flight.spacelink.keys.load_all`.
    """
    where = tm_keys_dir(directory)
    return keys.load_all(where) if where.is_dir() else {}


def ensure_tm_key(directory: Path) -> StationKey | None:
    """Create the telemetry key in the key directory ``directory`` when it has none (so
    ``flight run`` works out of the box, as with the local station key); return it, or
    ``None`` when it was there.

    Raises:
        OSError, ValueError: as :func:`flight.spacelink.keys.create_key`.
    """
    where = tm_keys_dir(directory)
    if keys.key_path(where, TM_KEY_NAME).exists():
        return None
    try:
        return keys.create_key(where, TM_KEY_NAME)
    except FileExistsError:  # another run created it just now
        return None

