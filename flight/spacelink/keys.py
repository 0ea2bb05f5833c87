"""Ground-station keys for telecommand authentication (:mod:`flight.spacelink.sdls`).

Where
    One directory holds every key, first found of: an explicit directory (``--keys`` /
    ``--dir``), ``$RACKFLIGHT_KEYS_DIR``, ``$XDG_CONFIG_HOME/rackflight/keys``,
    ``~/.config/rackflight/keys`` (:func:`keys_dir`). The directory is created 0700.

Files
    ``<station>.key``, mode 0600, one JSON object: ``{"station": NAME, "spi": N, "key":
    "<64 hex digits>"}`` (a 256-bit key from :func:`secrets.token_bytes`). A station name
    is letters, digits, ``-`` and ``_``. SPIs are unique within a directory; a new key
    takes the next free one. A key file readable by group or others is refused, as ssh
    refuses a private key.

The satellite loads every ``*.key`` of its directory (:func:`load_all`) into its onboard key
store on the mission's first run, where they start active; after that the key store rules and
keys change by telecommand (:mod:`flight.spacelink.pus141_keys`). A ground tool signs with one
key (:func:`load_key`, default station :data:`LOCAL_STATION`). A deployment brings its own
directory of keys.

Key-encryption keys
    ``<name>.kek``, mode 0600: ``{"name": NAME, "kek_id": N, "kek": "<64 hex digits>"}``, a
    256-bit AES key that wraps the station keys uploaded by telecommand (the master key of
    CCSDS 355.1-B-1's OTAR: provisioned out of band, never itself uploaded). ``kek_id`` is
    unique within a directory, from 1. The satellite loads every ``*.kek`` at start
    (:func:`load_keks`); the ground wraps with one (:func:`load_kek`, default
    :data:`LOCAL_KEK`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from dataclasses import dataclass
from typing import Callable, TypeVar

from flight.spacelink.sdls import KEY_LEN, MAX_SPI, StationKey

T = TypeVar("T")

ENV_VAR = "RACKFLIGHT_KEYS_DIR"
LOCAL_STATION = "local"
"""The station ``flight run`` creates a key for when it finds none, and ``flight ground`` signs as."""
SUFFIX = ".key"
KEK_SUFFIX = ".kek"
LOCAL_KEK = "master"
"""The key-encryption key ``flight run`` creates when it finds none, and ``flight ground keys upload`` wraps with."""
STATION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A station (or key-encryption key) name."""


def keys_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The key directory (see the module docstring); not created here."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "rackflight" / "keys"


def key_path(directory: Path, station: str, suffix: str = SUFFIX) -> Path:
    """Path of ``station``'s key file in ``directory`` (``suffix`` :data:`KEK_SUFFIX`: of the
    key-encryption key of that name).

    Raises:
        ValueError: a name that is not 1..64 letters, digits, ``-`` or ``_``.
    """
    if not STATION_NAME.fullmatch(station):
        raise ValueError(f"station name must be 1..64 letters, digits, '-' or '_', got {station!r}")
    return directory / f"{station}{suffix}"


def _read_private(path: Path, what: str, build: Callable[[dict], T]) -> T:
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {path.stat().st_mode & 0o777:o}): chmod 600 it")
    try:
        return build(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a {what} file: {exc}") from None


def _write_new_private(directory: Path, path: Path, fields: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two runs starting at once cannot both create (and overwrite) the same key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(fields) + "\n")


def read_key(path: Path) -> StationKey:
    """One key file.

    Raises:
        OSError: the file cannot be read.
        ValueError: not a key file, or readable by group or others.
    """
    return _read_private(path, "station key", lambda raw: StationKey(str(raw["station"]), int(raw["spi"]),
                                                                     bytes.fromhex(raw["key"])))


def load_all(directory: Path) -> dict[int, StationKey]:
    """Every station key in ``directory``, by SPI.

    Raises:
        OSError: the directory or a key file cannot be read.
        ValueError: a bad key file, or two keys with one SPI.
    """
    return _load_every(directory, SUFFIX, read_key, lambda k: (k.spi, f"the key of station {k.station!r}", "SPI"))


def _load_every(directory: Path, suffix: str, read: Callable[[Path], T],
                ident: Callable[[T], tuple[int, str, str]]) -> dict[int, T]:
    """Every ``*suffix`` file of ``directory`` read by ``read``, by the number ``ident`` gives
    (with what to call the item and its number in the error of a number found twice)."""
    found: dict[int, T] = {}
    for path in sorted(directory.glob(f"*{suffix}")):
        item = read(path)
        number, _, kind = ident(item)
        if number in found:
            raise ValueError(f"{path} and {ident(found[number])[1]} share {kind} {number}")
        found[number] = item
    return found


def load_key(directory: Path, station: str = LOCAL_STATION) -> StationKey:
    """``station``'s key from ``directory``.

    Raises:
        FileNotFoundError: no key for ``station`` there.
        OSError, ValueError: as :func:`read_key`, or a bad station name.
    """
    return read_key(key_path(directory, station))


def create_key(directory: Path, station: str = LOCAL_STATION, spi: int | None = None) -> StationKey:
    """Create a random 256-bit key for ``station`` in ``directory`` (made 0700 if new), file
    mode 0600, with ``spi`` or the next free SPI.

    Raises:
        FileExistsError: ``station`` already has a key there (it is never overwritten).
        ValueError: a bad station name, an SPI outside 1..65535 or already taken, or a bad
            key file already in the directory.
    """
    path = key_path(directory, station)
    taken = load_all(directory) if directory.is_dir() else {}
    spi = spi if spi is not None else max(taken, default=0) + 1
    if not 0 < spi <= MAX_SPI or spi in taken:
        raise ValueError(f"SPI {spi} is outside 1..{MAX_SPI} or already taken in {directory}")
    key = StationKey(station, spi, secrets.token_bytes(KEY_LEN))
    _write_new_private(directory, path, {"station": station, "spi": spi, "key": key.key.hex()})
    return key


def ensure_local_key(directory: Path) -> StationKey | None:
    """Create the :data:`LOCAL_STATION` key when ``directory`` holds no key at all (so
    ``flight run`` works out of the box); return it, or ``None`` when keys were there.

    Raises:
        OSError, ValueError: as :func:`create_key`.
    """
    if directory.is_dir() and any(directory.glob(f"*{SUFFIX}")):
        return None
    try:
        return create_key(directory, LOCAL_STATION)
    except FileExistsError:  # another run created it just now
        return None


KEK_LEN = 32
"""Key-encryption key length in bytes (AES-256)."""
MAX_KEK_ID = 0xFFFF


@dataclass(frozen=True)
class Kek:
    """A key-encryption key: its name, its id (u16, 1..65535) and the 32 AES-256 key bytes."""

    name: str
    kek_id: int
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEK_LEN:
            raise ValueError(f"key-encryption key {self.name!r} has {len(self.key)} bytes, not {KEK_LEN}")
        if not 0 < self.kek_id <= MAX_KEK_ID:
            raise ValueError(f"key-encryption key id {self.kek_id} outside 1..{MAX_KEK_ID}")

    def __repr__(self) -> str:  # never print key material
        return f"Kek(name={self.name!r}, kek_id={self.kek_id})"


def read_kek(path: Path) -> Kek:
    """One key-encryption key file.

    Raises:
        OSError: the file cannot be read.
        ValueError: not a key-encryption key file, or readable by group or others.
    """
    return _read_private(path, "key-encryption key", lambda raw: Kek(str(raw["name"]), int(raw["kek_id"]),
                                                                     bytes.fromhex(raw["kek"])))


def load_keks(directory: Path) -> dict[int, Kek]:
    """Every key-encryption key in ``directory``, by id (none: an empty dict).

    Raises:
        OSError: a file cannot be read. ValueError: a bad file, or two with one id.
    """
    return _load_every(directory, KEK_SUFFIX, read_kek,
                       lambda k: (k.kek_id, f"the key-encryption key {k.name!r}", "id"))


def load_kek(directory: Path, name: str = LOCAL_KEK) -> Kek:
    """The key-encryption key ``name`` from ``directory``.

    Raises:
        FileNotFoundError: none of that name there. OSError, ValueError: as :func:`read_kek`.
    """
    return read_kek(key_path(directory, name, KEK_SUFFIX))


def create_kek(directory: Path, name: str = LOCAL_KEK) -> Kek:
    """Create a random 256-bit key-encryption key ``name`` in ``directory`` (made 0700 if new),
    file mode 0600, with the next free id.

    Raises:
        FileExistsError: ``name`` exists there (never overwritten).
        ValueError: a bad name, no free id, or a bad key-encryption key file already there.
    """
    path = key_path(directory, name, KEK_SUFFIX)
    taken = load_keks(directory) if directory.is_dir() else {}
    kek_id = max(taken, default=0) + 1
    kek = Kek(name, kek_id, secrets.token_bytes(KEK_LEN))
    _write_new_private(directory, path, {"name": name, "kek_id": kek_id, "kek": kek.key.hex()})
    return kek


def ensure_local_kek(directory: Path) -> Kek | None:
    """Create the :data:`LOCAL_KEK` when ``directory`` holds no key-encryption key (so key
    upload works out of the box); return it, or ``None`` when one was there.

    Raises:
        OSError, ValueError: as :func:`create_kek`.
    """
    if directory.is_dir() and any(directory.glob(f"*{KEK_SUFFIX}")):
        return None
    try:
        return create_kek(directory)
    except FileExistsError:  # another run created it just now
        return None
