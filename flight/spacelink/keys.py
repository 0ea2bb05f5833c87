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

The satellite loads every ``*.key`` of its directory (:func:`load_all`) and accepts TCs
signed with any of them; a ground tool signs with one (:func:`load_key`, default station
:data:`LOCAL_STATION`). A deployment brings its own directory of keys.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from flight.spacelink.sdls import KEY_LEN, MAX_SPI, StationKey

ENV_VAR = "RACKFLIGHT_KEYS_DIR"
LOCAL_STATION = "local"
"""The station ``flight run`` creates a key for when it finds none, and ``flight ground`` signs as."""
SUFFIX = ".key"
_STATION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def keys_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The key directory (see the module docstring); not created here."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "rackflight" / "keys"


def key_path(directory: Path, station: str) -> Path:
    """Path of ``station``'s key file in ``directory``.

    Raises:
        ValueError: a station name that is not 1..64 letters, digits, ``-`` or ``_``.
    """
    if not _STATION_NAME.fullmatch(station):
        raise ValueError(f"station name must be 1..64 letters, digits, '-' or '_', got {station!r}")
    return directory / f"{station}{SUFFIX}"


def read_key(path: Path) -> StationKey:
    """One key file.

    Raises:
        OSError: the file cannot be read.
        ValueError: not a key file, or readable by group or others.
    """
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {path.stat().st_mode & 0o777:o}): chmod 600 it")
    try:
        raw = json.loads(path.read_text())
        key = StationKey(str(raw["station"]), int(raw["spi"]), bytes.fromhex(raw["key"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a station key file: {exc}") from None
    return key


def load_all(directory: Path) -> dict[int, StationKey]:
    """Every station key in ``directory``, by SPI.

    Raises:
        OSError: the directory or a key file cannot be read.
        ValueError: a bad key file, or two keys with one SPI.
    """
    keys: dict[int, StationKey] = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        key = read_key(path)
        if key.spi in keys:
            raise ValueError(f"{path} and the key of station {keys[key.spi].station!r} share SPI {key.spi}")
        keys[key.spi] = key
    return keys


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
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    taken = load_all(directory)
    spi = spi if spi is not None else max(taken, default=0) + 1
    if not 0 < spi <= MAX_SPI or spi in taken:
        raise ValueError(f"SPI {spi} is outside 1..{MAX_SPI} or already taken in {directory}")
    key = StationKey(station, spi, secrets.token_bytes(KEY_LEN))
    text = json.dumps({"station": station, "spi": spi, "key": key.key.hex()}) + "\n"
    # O_EXCL: two runs starting at once cannot both create (and overwrite) the same key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
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
