"""Telecommand authentication in the manner of CCSDS SDLS (CCSDS 355.0-B-2, Space Data Link
Security, authentication-only service): a security header and a security trailer around
the data of every PUS-C TC, a per-ground-station key selected by a Security Parameter
Index, and an anti-replay sequence number. Used by the ground to sign
(:func:`protect`) and by the link manager to check (:func:`unprotect`, :class:`ReplayGuard`).

Layout (the TC's PUS-C application data field; all integers big-endian)
    ==============  =======  ==============================================================
    SPI             u16      Security Parameter Index: which station key signed it
    ARSN            u64      anti-replay sequence number, strictly new per SPI
    TC data         n bytes  the service's own application data (may be empty)
    MAC             16 B     HMAC-SHA256 (FIPS 198-1) truncated to its leftmost 128 bits
    ==============  =======  ==============================================================

    SDLS puts the header and trailer around a TC transfer frame's data field; this link
    carries Space Packets over TCP with no frames, so they sit around the packet's data
    instead, and the CCSDS/PUS packet error control (CRC-16) still closes the packet.

MAC input
    Every byte of the packet before the MAC: the CCSDS primary header (APID, sequence
    count, and the packet data length, which already counts the MAC and the 2-byte CRC
    after it), the PUS-C secondary header (ack flags, service, subtype, source
    id), SPI, ARSN and TC data. The satellite recomputes it over ``spacepackets``' encoding
    of the TC it parsed, so what it acts on is exactly what was signed. The MAC is
    truncated to 16 bytes as FIPS 198-1 section 5 allows (and SDLS's own baseline does for
    its MACs); comparison is constant-time (:func:`hmac.compare_digest`).

Keys
    32 random bytes per ground station (:data:`KEY_LEN`), files managed by
    :mod:`flight.spacelink.keys`. The link accepts a TC signed with any configured station key.

Anti-replay
    The ARSN is an unsigned 64-bit number. The ground uses its clock in microseconds since
    the Unix epoch, made strictly increasing per process (:class:`ArsnCounter`), so it needs
    no state of its own. The satellite (:class:`ReplayGuard`) accepts an ARSN once: it must
    be above a floor and not among the last :data:`REPLAY_WINDOW` accepted; so TCs from two
    ground clients of one station may arrive slightly out of order. The highest accepted
    ARSN per SPI is stored (SQLite) before the TC is acted on, and after a restart becomes
    the floor, so a restart never reopens old numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from spacepackets.ecss.tc import PusTc

from flight.core.storage import MirroredStore
from flight.spacelink.layout import Field, fixed_struct

KEY_LEN = 32
"""Station key length in bytes (256 bits)."""
MAC_LEN = 16
"""Transmitted MAC length in bytes: HMAC-SHA256 truncated to 128 bits."""
SECURITY_HEADER = (Field("spi", "u16", "Security Parameter Index: which station key signed the TC"),
                   Field("arsn", "u64", "anti-replay sequence number, 1..2**64-1, new per SPI"))
"""The security header, first in a TC's application data."""
_HEADER = fixed_struct(SECURITY_HEADER)
SECURITY_HEADER_LEN = _HEADER.size
SECURITY_OVERHEAD = SECURITY_HEADER_LEN + MAC_LEN
"""Bytes the security header and trailer add to a TC's application data (26)."""
CRC_LEN = 2
MAX_SPI = 0xFFFF
MAX_ARSN = (1 << 64) - 1
REPLAY_WINDOW = 64
"""Accepted ARSNs remembered per SPI, below the highest, for out-of-order arrival."""


class AuthenticationError(ValueError):
    """A TC that fails authentication; ``str()`` says why (missing security fields,
    unknown SPI, MAC mismatch, replayed or stale ARSN)."""

    code = "AUTHENTICATION_ERROR"
    """The failure code of the TM[1,2] that refuses the TC (a subclass may be more precise)."""


@dataclass(frozen=True)
class StationKey:
    """One ground station's key: its name, its SPI and the 32 key bytes."""

    station: str
    spi: int
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN:
            raise ValueError(f"station key {self.station!r} has {len(self.key)} bytes, not {KEY_LEN}")
        if not 0 <= self.spi <= MAX_SPI:
            raise ValueError(f"SPI {self.spi} outside 0..{MAX_SPI}")

    def __repr__(self) -> str:  # never print key material
        return f"StationKey(station={self.station!r}, spi={self.spi})"


def _mac(key: bytes, covered: bytes) -> bytes:
    return hmac.new(key, covered, hashlib.sha256).digest()[:MAC_LEN]


def _with_data(tc: PusTc, app_data: bytes) -> PusTc:
    return PusTc(service=tc.service, message_subtype=tc.message_subtype, apid=tc.apid, app_data=app_data,
                 seq_count=tc.seq_count, source_id=tc.source_id, ack_flags=tc.pus_tc_sec_header.ack_flags)


def protect(tc: PusTc, key: StationKey, arsn: int) -> PusTc:
    """``tc`` with its application data wrapped in the security header and MAC trailer;
    same headers, so the same PUS request id.

    Raises:
        ValueError: an ARSN outside 1..2**64-1.
    """
    if not 0 < arsn <= MAX_ARSN:
        raise ValueError(f"ARSN {arsn} outside 1..{MAX_ARSN}")
    body = _HEADER.pack(key.spi, arsn) + bytes(tc.app_data)
    # the MAC covers the packet headers, whose length field already counts the trailer:
    # pack once with a placeholder MAC to get the covered bytes, then with the real one
    draft = bytes(_with_data(tc, body + bytes(MAC_LEN)).pack())
    return _with_data(tc, body + _mac(key.key, draft[:-(MAC_LEN + CRC_LEN)]))


@dataclass(frozen=True)
class Authenticated:
    """What :func:`unprotect` found in a TC whose MAC checks."""

    spi: int
    arsn: int
    data: bytes
    """The service's own application data, between the security header and trailer."""


def unprotect(tc: PusTc, keys: dict[int, StationKey]) -> Authenticated:
    """Check the security header and MAC of ``tc`` against the station ``keys`` (by SPI).
    Replay is not checked here: see :class:`ReplayGuard`.

    Raises:
        AuthenticationError: application data too short for the security fields, an SPI
            with no key, or a MAC that does not match.
    """
    app_data = bytes(tc.app_data)
    if len(app_data) < SECURITY_OVERHEAD:
        raise AuthenticationError(f"no security header and MAC: {len(app_data)} bytes of data, "
                                  f"need at least {SECURITY_OVERHEAD}")
    spi, arsn = _HEADER.unpack_from(app_data)
    key = keys.get(spi)
    if key is None:
        raise AuthenticationError(f"no key for SPI {spi}")
    packed = bytes(tc.pack())
    if not hmac.compare_digest(_mac(key.key, packed[:-(MAC_LEN + CRC_LEN)]), app_data[-MAC_LEN:]):
        raise AuthenticationError(f"MAC mismatch for SPI {spi} ({key.station})")
    return Authenticated(spi, arsn, app_data[SECURITY_HEADER_LEN:-MAC_LEN])


class ArsnCounter:
    """Ground-side ARSNs: microseconds since the Unix epoch, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


class ReplayGuard:
    """Satellite-side anti-replay state per SPI, stored in SQLite at ``path`` and its mirror
    (:class:`flight.core.storage.MirroredStore`: a damaged copy is rebuilt from the other, as a
    fresh state would take every old TC again).

    Per SPI: a *floor* (no ARSN at or below it is accepted) and the set of the last
    :data:`REPLAY_WINDOW` accepted ARSNs above it. When the set is full, its lowest entry
    becomes the floor. After a restart the floor is the highest ARSN ever accepted.

    Attributes:
        store: the state's two copies (``arsn``: per SPI, the highest ARSN accepted, as text).

    Raises:
        sqlite3.Error: the state file cannot be opened or read.
    """

    def __init__(self, path: Path) -> None:
        # one thread at a time uses a guard, though not always the one that opened it
        # TEXT: SQLite integers are signed 64-bit, an ARSN is unsigned
        self.store = MirroredStore(path, ("CREATE TABLE IF NOT EXISTS arsn (spi INTEGER PRIMARY KEY, "
                                           "highest TEXT NOT NULL)",))
        self._floor = {int(spi): int(highest)
                       for spi, highest in self.store.db.execute("SELECT spi, highest FROM arsn")}
        self._seen: dict[int, set[int]] = {}

    def highest(self, spi: int) -> int:
        """The highest ARSN accepted for ``spi`` (0: none)."""
        return max(self._seen.get(spi) or {self._floor.get(spi, 0)})

    def admit(self, spi: int, arsn: int) -> None:
        """Accept ``arsn`` for ``spi`` once, storing the new highest before returning. Call
        only for a TC whose MAC checked, so no forged number can move the window.

        Raises:
            AuthenticationError: an ARSN at or below the floor, or already accepted.
            sqlite3.Error: the new highest could not be stored (nothing was accepted).
        """
        floor = self._floor.get(spi, 0)
        seen = self._seen.setdefault(spi, set())
        if arsn <= floor or arsn in seen:
            raise AuthenticationError(f"replayed or stale sequence number {arsn} for SPI {spi} "
                                      f"(highest accepted {self.highest(spi)})")
        if arsn > self.highest(spi):
            self.store.write("INSERT INTO arsn (spi, highest) VALUES (?, ?) "
                              "ON CONFLICT(spi) DO UPDATE SET highest = excluded.highest", (spi, str(arsn)))
        seen.add(arsn)
        if len(seen) > REPLAY_WINDOW:
            lowest = min(seen)
            seen.discard(lowest)
            self._floor[spi] = lowest

    @property
    def mirror_failures(self) -> int:
        """New highest numbers the file took and its mirror could not
        (:class:`flight.core.storage.MirroredStore`)."""
        return self.store.mirror_failures

    def close(self) -> None:
        self.store.close()
