"""Mission service 141, key management by telecommand (services from 128 are the mission's,
ECSS-E-ST-70-41C 7.1), in the manner of the key management procedures of the SDLS Extended
Procedures (CCSDS 355.1-B-1): over-the-air rekeying (OTAR), key activation, key
deactivation, key verification and key inventory, on the onboard key store of the station
keys that authenticate telecommands (:mod:`flight.spacelink.sdls`). Integers big-endian; TM
from :data:`~flight.spacelink.framing.TC_APID`, addressed to the TC's source.

    ==========  ===============================================================================
    TC[141,1]   OTAR: ``kek_id u16``, ``wrapped bytes48``, ``name str8``
    TC[141,2]   key activation: ``spi u16``
    TC[141,3]   key deactivation: ``spi u16``
    TC[141,4]   key verification: ``spi u16``, ``challenge bytes16``
    TM[141,132] key verification reply: ``spi u16``, ``response bytes16``
    TC[141,7]   key inventory: ``first_spi u16``, ``last_spi u16``
    TM[141,135] key inventory reply: ``N u16``, N × (``spi u16``, ``state u8``, ``name str8``)
    ==========  ===============================================================================

What is taken from CCSDS 355.1-B-1, and what differs
    * The subtypes are the Extended Procedures PDU tags (its 5.3, procedure identifiers of its
      table 5-1, numbered as NASA CryptoLib's ``crypto_config.h`` does: service group 0 key
      management, OTAR 1, activation 2, deactivation 3, verification 4, inventory 7; a reply
      sets the tag's top bit: 0x84, 0x87). The PUS packet carries what the PDU would, so the
      PDU's own tag and 16-bit length field are not repeated in the data.
    * Key states (:class:`KeyState`) as CryptoLib numbers them: pre-active 0, active 1,
      deactivated 2. Only active keys authenticate a TC. OTAR enters a key pre-active,
      activation takes pre-active to active, deactivation takes active or pre-active to
      deactivated, for good: a deactivated key never authenticates again, and its SPI is never
      reused. Destruction (procedure 6) is not served: a deactivated key's material stays in
      the store (so a TC still correctly signed with it is recognised as the use of a revoked
      key, not a mere forgery).
    * OTAR wraps under a key-encryption key (the procedure's master key, provisioned out of
      band, :mod:`flight.spacelink.keys`) with AES key wrap with padding (RFC 5649, NIST SP
      800-38F KWP, by ``cryptography``) instead of the baseline's AES-GCM: the plaintext is
      ``spi u16 ‖ key 32 B`` (the key id travels encrypted with its key, as in OTAR), 34
      bytes wrapped into 48; the wrap's integrity check refuses a wrong KEK or altered bytes.
      One key per TC, so each TC's verification speaks for one key. The TC itself is
      authenticated like every TC, so only a holder of an active station key can upload.
    * Key verification is the procedure's challenge and response: the satellite answers a
      16-byte challenge (annex D's size) with ``HMAC-SHA256(key, "rackflight key verification"
      ‖ 0x00 ‖ spi u16 ‖ challenge)`` cut to 16 bytes (the key is an HMAC key, so it MACs where the baseline
      encrypts); the label keeps a response from ever being a TC's MAC. Pre-active and active
      keys can be verified, so a key is checked before it is activated.
    * Inventory answers for an inclusive SPI range, as the procedure does, listing only the
      SPIs that hold a key, each with its state and name (a label, not secret).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding, \
    aes_key_wrap_with_padding

from flight.core.component import CommandError
from flight.spacelink.codec import Reader, decode_tc_data, pack_value, unpack_value
from flight.spacelink.keys import STATION_NAME, Kek
from flight.spacelink.layout import Field, Message, Repeat, fixed_struct
from flight.spacelink.sdls import KEY_LEN, MAC_LEN, MAX_SPI, StationKey

KEY_SERVICE = 141
OTAR, ACTIVATE, DEACTIVATE, VERIFY, INVENTORY = 1, 2, 3, 4, 7
VERIFY_REPLY, INVENTORY_REPLY = 0x84, 0x87
KEY_TCS = {(KEY_SERVICE, s) for s in (OTAR, ACTIVATE, DEACTIVATE, VERIFY, INVENTORY)}
"""(service, subtype) of every service 141 TC the satellite serves."""
CHALLENGE_LEN = 16
"""Key verification challenge, bytes (CCSDS 355.1-B-1 annex D's 128 bits)."""
WRAPPED_LEN = 48
"""``spi u16 ‖ key`` (34 bytes) after RFC 5649 key wrap with padding."""
VERIFY_LABEL = b"rackflight key verification\x00"
MAX_KEYS = 200
"""Keys the onboard store holds, every state counted (their inventory fits one TM)."""


class KeyState(IntEnum):
    """A key's state on board (u8 on the wire)."""

    PRE_ACTIVE = 0
    ACTIVE = 1
    DEACTIVATED = 2


_SPI = Field("spi", "u16", "Security Parameter Index of the key, 1..65535")
_LINK, _TO_SOURCE = "link (APID 4)", "the TC's source id; sent on every connection"
_OTAR_FIELDS = (Field("kek_id", "u16", "the key-encryption key that wrapped it"),
                Field("wrapped", "bytes48", "RFC 5649 AES key wrap with padding of spi u16 ‖ the 32-byte key"),
                Field("name", "str8", "the key's name (its station): 1..64 letters, digits, - or _"))
_VERIFY_FIELDS = (_SPI, Field("challenge", "bytes16", "random bytes from the ground"))
_REPLY_FIELDS = (_SPI, Field("response", "bytes16", "HMAC-SHA256(key, label ‖ spi ‖ challenge), first 16 bytes"))
_RANGE_FIELDS = (Field("first_spi", "u16"), Field("last_spi", "u16", ">= first_spi"))
MESSAGES = (
    Message("TC", KEY_SERVICE, OTAR, "upload a key (OTAR), wrapped under a key-encryption key", _OTAR_FIELDS,
            "ground", _LINK, "the key enters the store pre-active; its SPI must be new"),
    Message("TC", KEY_SERVICE, ACTIVATE, "activate a key", (_SPI,), "ground", _LINK,
            "pre-active -> active: TCs signed with it are accepted from now on"),
    Message("TC", KEY_SERVICE, DEACTIVATE, "deactivate (revoke) a key", (_SPI,), "ground", _LINK,
            "active or pre-active -> deactivated, for good; refused for the last active key"),
    Message("TC", KEY_SERVICE, VERIFY, "verify a key (challenge and response)", _VERIFY_FIELDS, "ground", _LINK,
            "a pre-active or active key; answered by TM[141,132]"),
    Message("TM", KEY_SERVICE, VERIFY_REPLY, "key verification reply", _REPLY_FIELDS, _LINK, _TO_SOURCE),
    Message("TC", KEY_SERVICE, INVENTORY, "report the keys of an SPI range (key inventory)", _RANGE_FIELDS,
            "ground", _LINK, "answered by TM[141,135]"),
    Message("TM", KEY_SERVICE, INVENTORY_REPLY, "key inventory reply",
            (Field("N", "u16"), Repeat("N", (_SPI, Field("state", "u8", "0 pre-active, 1 active, 2 deactivated"),
                                             Field("name", "str8")))),
            _LINK, _TO_SOURCE, "the SPIs of the range that hold a key, ascending"),
)
_OTAR_HEAD = fixed_struct(_OTAR_FIELDS[:2])
_VERIFY = fixed_struct(_VERIFY_FIELDS)
_REPLY = fixed_struct(_REPLY_FIELDS)
_RANGE = fixed_struct(_RANGE_FIELDS)
_KEY_BLOCK = struct.Struct(">H32s")


# -- the cryptography ----------------------------------------------------------------------------
def wrap_key(kek: Kek, key: StationKey) -> bytes:
    """``spi u16 ‖ key`` wrapped under ``kek`` (RFC 5649): :data:`WRAPPED_LEN` bytes."""
    return aes_key_wrap_with_padding(kek.key, _KEY_BLOCK.pack(key.spi, key.key))


def unwrap_key(kek: Kek, wrapped: bytes) -> tuple[int, bytes]:
    """The SPI and key bytes that ``wrapped`` holds.

    Raises:
        ValueError: the wrap's integrity check fails (another KEK, altered bytes) or it does
            not hold ``spi u16`` and a 32-byte key.
    """
    try:
        block = aes_key_unwrap_with_padding(kek.key, wrapped)
    except (InvalidUnwrap, ValueError):
        raise ValueError(f"does not unwrap under key-encryption key {kek.kek_id} ({kek.name}): "
                         "another KEK, or altered") from None
    if len(block) != _KEY_BLOCK.size:
        raise ValueError(f"unwraps to {len(block)} bytes, not an SPI and a {KEY_LEN}-byte key")
    return _KEY_BLOCK.unpack(block)


def verification_response(key: bytes, spi: int, challenge: bytes) -> bytes:
    """The answer to a key verification ``challenge`` for the key ``key`` of ``spi``."""
    return hmac.new(key, VERIFY_LABEL + struct.pack(">H", spi) + challenge, hashlib.sha256).digest()[:MAC_LEN]


# -- TC data, ground side -------------------------------------------------------------------------
def otar_data(kek: Kek, key: StationKey) -> bytes:
    """Data of TC[141,1] uploading ``key`` (named after its station) wrapped under ``kek``.

    Raises:
        ValueError: a station name that is not a key name.
    """
    if not STATION_NAME.fullmatch(key.station):
        raise ValueError(f"key name must be 1..64 letters, digits, '-' or '_', got {key.station!r}")
    return _OTAR_HEAD.pack(kek.kek_id, wrap_key(kek, key)) + pack_value("str", key.station)


def spi_data(spi: int) -> bytes:
    """Data of TC[141,2] or TC[141,3]."""
    return struct.pack(">H", spi)


def verify_data(spi: int, challenge: bytes) -> bytes:
    """Data of TC[141,4]. Raises ValueError: a challenge not of :data:`CHALLENGE_LEN` bytes."""
    if len(challenge) != CHALLENGE_LEN:
        raise ValueError(f"challenge of {len(challenge)} bytes, not {CHALLENGE_LEN}")
    return _VERIFY.pack(spi, challenge)


def inventory_data(first_spi: int = 1, last_spi: int = MAX_SPI) -> bytes:
    """Data of TC[141,7]."""
    return _RANGE.pack(first_spi, last_spi)


# -- TC data, satellite side -----------------------------------------------------------------------
@dataclass(frozen=True)
class Otar:
    """TC[141,1] as parsed: still wrapped (which KEK unwraps it is the key store's to know)."""

    kek_id: int
    wrapped: bytes
    name: str

    def __repr__(self) -> str:
        return f"Otar(kek_id={self.kek_id}, name={self.name!r})"


def _spi(spi: int) -> int:
    if spi == 0:
        raise CommandError("VALIDATION_ERROR", f"SPI 0 holds no key (SPIs are 1..{MAX_SPI})")
    return spi


def parse_otar(data: bytes) -> Otar:
    """TC[141,1] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for a name that is
            not a key name.
    """
    def read(r: Reader) -> Otar:
        kek_id, wrapped = _OTAR_HEAD.unpack(r.take(_OTAR_HEAD.size))
        return Otar(kek_id, wrapped, unpack_value("str", r))

    otar = decode_tc_data(KEY_SERVICE, OTAR, read, data)
    if not STATION_NAME.fullmatch(otar.name):
        raise CommandError("VALIDATION_ERROR", f"key name must be 1..64 letters, digits, '-' or '_', "
                                               f"got {otar.name[:80]!r}")
    return otar


def parse_spi(subtype: int, data: bytes) -> int:
    """The SPI of TC[141,2] or TC[141,3] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for SPI 0.
    """
    return _spi(decode_tc_data(KEY_SERVICE, subtype, lambda r: r.unpack(">H"), data))


def parse_verify(data: bytes) -> tuple[int, bytes]:
    """SPI and challenge of TC[141,4] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for SPI 0.
    """
    spi, challenge = decode_tc_data(KEY_SERVICE, VERIFY, lambda r: _VERIFY.unpack(r.take(_VERIFY.size)), data)
    return _spi(spi), challenge


def parse_inventory(data: bytes) -> tuple[int, int]:
    """The inclusive SPI range of TC[141,7] data.

    Raises:
        CommandError: FORMAT_ERROR for malformed data; VALIDATION_ERROR for a reversed range.
    """
    first, last = decode_tc_data(KEY_SERVICE, INVENTORY, lambda r: _RANGE.unpack(r.take(_RANGE.size)), data)
    if first > last:
        raise CommandError("VALIDATION_ERROR", f"SPI range {first}..{last} is reversed")
    return first, last


# -- TM -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyEntry:
    """One key of an inventory: SPI, state, name."""

    spi: int
    state: KeyState
    name: str


def verify_reply_data(spi: int, response: bytes) -> bytes:
    """Source data of TM[141,132]."""
    return _REPLY.pack(spi, response)


def inventory_reply_data(entries: list[KeyEntry]) -> bytes:
    """Source data of TM[141,135] (at most :data:`MAX_KEYS` entries fit one packet)."""
    return struct.pack(">H", len(entries)) + b"".join(
        struct.pack(">HB", e.spi, e.state) + pack_value("str", e.name) for e in entries)


@dataclass(frozen=True)
class KeyVerificationReport:
    """TM[141,132]: the satellite's answer to a key verification challenge."""

    spi: int
    response: bytes
    utc_unix_s: float
    dest_id: int = 0
    """The source id of the TC it answers (:func:`flight.spacelink.services.decode_tm` sets it)."""


@dataclass(frozen=True)
class KeyInventoryReport:
    """TM[141,135]: the keys on board in the SPI range asked for."""

    keys: tuple[KeyEntry, ...]
    utc_unix_s: float
    dest_id: int = 0
    """The source id of the TC it answers (:func:`flight.spacelink.services.decode_tm` sets it)."""


def decode_report(subtype: int, data: bytes, utc_unix_s: float) -> KeyVerificationReport | KeyInventoryReport | None:
    """The report of TM[141,132] or TM[141,135] source ``data``; ``None`` for another subtype.

    Raises:
        ValueError: malformed data, an unknown key state or a name that is not UTF-8.
    """
    reader = Reader(bytes(data))
    if subtype == VERIFY_REPLY:
        spi, response = _REPLY.unpack(reader.take(_REPLY.size))
        reader.end()
        return KeyVerificationReport(spi, response, utc_unix_s)
    if subtype != INVENTORY_REPLY:
        return None
    entries = []
    for _ in range(reader.unpack(">H")):
        spi, state = reader.unpack(">H"), reader.unpack(">B")
        entries.append(KeyEntry(spi, KeyState(state), unpack_value("str", reader)))
    reader.end()
    return KeyInventoryReport(tuple(entries), utc_unix_s)
