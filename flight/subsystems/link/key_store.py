"""The onboard key store: every station key the link knows, with its SPI, name and state
(:class:`~flight.spacelink.pus141_keys.KeyState`), in :data:`KEYS_FILE` of the run data
directory.

Kept twice: in :data:`KEYS_FILE` and its mirror (:class:`flight.core.storage.MirroredStore`),
so that a damaged file is rebuilt from the other copy and a revoked key stays revoked (a fresh
store would be provisioned again from the key files, revoked keys included).

Private: both files (mode 0600, with their ``-wal`` and ``-shm``, which SQLite creates with
the file's mode) hold key material, like a key file. Durable and atomic: each change is one
SQLite transaction on each copy (:func:`flight.core.storage.open_durable`: committed means on
disk, with room kept for a full disk), made before the TC that asked for it completes, and the
in-memory copy changes only once it is committed. So a key deactivated before a reboot (a new
``flight run`` on the same data directory) is still deactivated after it, and one uploaded is
still there.

Where keys come from
    On the mission's first run (an empty store) the key files of the keys directory
    (:func:`flight.spacelink.keys.load_all`) are the keys provisioned before launch: they
    enter the store active (:meth:`KeyStore.seed`). So they do again if no copy of the store
    survives damage found at start (:attr:`KeyStore.lost`), which the link reports with the HIGH
    event ``keys_reprovisioned``: every key change since launch is then gone. From then on
    the store rules: keys change only by telecommand (service 141), and a key file added to
    the directory later is not taken (the link says so by event); one deleted from it stays
    on board.
Rules (the transitions of CCSDS 355.1-B-1's key management)
    A key is uploaded pre-active under a new SPI (an SPI is never reused, so the replay
    state of a deactivated key can never be reopened); only a pre-active key can be
    activated; an active or pre-active key can be deactivated, for good; the last active key
    cannot be deactivated (the satellite would never take a TC again). At most
    :data:`~flight.spacelink.pus141_keys.MAX_KEYS` keys, every state counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flight.core.component import CommandError
from flight.core.storage import MirroredStore, mirror_path
from flight.spacelink.pus141_keys import MAX_KEYS, KeyEntry, KeyState
from flight.spacelink.sdls import AuthenticationError, StationKey

KEYS_FILE = "link_keys.sqlite"
"""The onboard key store in the run data directory."""


class KeyNotActive(AuthenticationError):
    """A TC whose MAC checks under a key that is not active: pre-active (uploaded, not yet
    activated) or deactivated (revoked). Refused with its own failure code."""

    code = "KEY_NOT_ACTIVE"


@dataclass(frozen=True)
class StoredKey:
    """One key of the store: its material (``key.station`` is its name) and state."""

    key: StationKey
    state: KeyState


class KeyStore:
    """The key store in the SQLite file at ``path`` (see the module).

    Raises:
        sqlite3.Error: the file cannot be opened or read.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        copies = (path, mirror_path(path))
        for copy in copies:
            os.close(os.open(copy, os.O_WRONLY | os.O_CREAT, 0o600))  # key material: as private as a key file
        self._store = MirroredStore(path, ("CREATE TABLE IF NOT EXISTS keys (spi INTEGER PRIMARY KEY, "
                                           "name TEXT NOT NULL, key BLOB NOT NULL, state INTEGER NOT NULL)",))
        for copy in copies:
            for file in (copy, copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
                if file.exists():  # a fresh file after a damaged one was moved aside, or one from before
                    file.chmod(0o600)
        self._keys = {int(spi): StoredKey(StationKey(name, int(spi), bytes(key)), KeyState(state))
                      for spi, name, key, state in self._store.db.execute("SELECT spi, name, key, state FROM keys")}

    def close(self) -> None:
        self._store.close()

    @property
    def lost(self) -> bool:
        """No copy of the store survived the damage found at this open: every key change since
        the mission's first run is gone (:meth:`seed` provisions the key files again)."""
        return self._store.lost

    @property
    def mirror_failures(self) -> int:
        """Changes the file took and its mirror could not (:class:`flight.core.storage.MirroredStore`)."""
        return self._store.mirror_failures

    def seed(self, keys: dict[int, StationKey]) -> bool:
        """On an empty store, store ``keys`` active (the keys provisioned before launch);
        whether it did.

        Raises:
            sqlite3.Error: not stored (the store stays empty).
        """
        if self._keys:
            return False
        self._store.write("INSERT INTO keys VALUES (?, ?, ?, ?)", [
            (k.spi, k.station, k.key, int(KeyState.ACTIVE)) for k in keys.values()], many=True)
        self._keys = {spi: StoredKey(k, KeyState.ACTIVE) for spi, k in keys.items()}
        return True

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def get(self, spi: int) -> StoredKey | None:
        """The key of ``spi``; ``None``: none."""
        return self._keys.get(spi)

    @property
    def material(self) -> dict[int, StationKey]:
        """Every key, any state, by SPI: what a MAC is checked against (its state after)."""
        return {spi: s.key for spi, s in self._keys.items()}

    def active(self) -> list[StationKey]:
        """The active keys, by SPI."""
        return [s.key for _, s in sorted(self._keys.items()) if s.state == KeyState.ACTIVE]

    def inventory(self, first_spi: int, last_spi: int) -> list[KeyEntry]:
        """The keys whose SPI is in ``first_spi..last_spi``, ascending."""
        return [KeyEntry(spi, s.state, s.key.station) for spi, s in sorted(self._keys.items())
                if first_spi <= spi <= last_spi]

    def check_active(self, spi: int) -> None:
        """Raises:
            KeyNotActive: the key of ``spi`` (whose MAC checked) is not active.
        """
        stored = self._keys[spi]
        if stored.state != KeyState.ACTIVE:
            why = ("deactivated (revoked): it may be compromised" if stored.state == KeyState.DEACTIVATED
                   else "pre-active: uploaded, not yet activated (TC[141,2])")
            raise KeyNotActive(f"signed with the key of SPI {spi} ({stored.key.station}), which is {why}")

    # -- changes (each durable before it returns) ----------------------------------------------------
    def add(self, key: StationKey) -> None:
        """Store ``key`` pre-active.

        Raises:
            CommandError: VALIDATION_ERROR for an SPI that holds a key, or a full store.
            sqlite3.Error: not stored (nothing changed).
        """
        held = self._keys.get(key.spi)
        if held is not None:
            raise CommandError("VALIDATION_ERROR", f"SPI {key.spi} already holds a key ({held.key.station}, "
                                                   f"{held.state.name}): a new key takes a new SPI")
        if len(self._keys) >= MAX_KEYS:
            raise CommandError("VALIDATION_ERROR", f"the key store is full ({MAX_KEYS} keys, deactivated ones "
                                                   "counted)")
        self._store.write("INSERT INTO keys VALUES (?, ?, ?, ?)",
                          (key.spi, key.station, key.key, int(KeyState.PRE_ACTIVE)))
        self._keys[key.spi] = StoredKey(key, KeyState.PRE_ACTIVE)

    def activate(self, spi: int) -> StoredKey:
        """Pre-active -> active; the key as it is now.

        Raises:
            CommandError: VALIDATION_ERROR for an SPI without a key or a key not pre-active.
            sqlite3.Error: not stored (nothing changed).
        """
        return self._change(spi, (KeyState.PRE_ACTIVE,), KeyState.ACTIVE)

    def deactivate(self, spi: int) -> StoredKey:
        """Active or pre-active -> deactivated; the key as it is now.

        Raises:
            CommandError: VALIDATION_ERROR for an SPI without a key, a key already
                deactivated, or the last active key.
            sqlite3.Error: not stored (nothing changed).
        """
        stored = self._keys.get(spi)
        if stored is not None and stored.state == KeyState.ACTIVE and len(self.active()) == 1:
            raise CommandError("VALIDATION_ERROR", f"the key of SPI {spi} ({stored.key.station}) is the only "
                                                   "active key: without it no TC would ever be accepted again "
                                                   "(activate another first)")
        return self._change(spi, (KeyState.PRE_ACTIVE, KeyState.ACTIVE), KeyState.DEACTIVATED)

    def _change(self, spi: int, sources: tuple[KeyState, ...], target: KeyState) -> StoredKey:
        stored = self._keys.get(spi)
        if stored is None:
            raise CommandError("VALIDATION_ERROR", f"no key with SPI {spi} on board")
        if stored.state not in sources:
            raise CommandError("VALIDATION_ERROR", f"the key of SPI {spi} ({stored.key.station}) is "
                                                   f"{stored.state.name}, not {' or '.join(s.name for s in sources)}")
        self._store.write("UPDATE keys SET state = ? WHERE spi = ?", (int(target), spi))
        self._keys[spi] = StoredKey(stored.key, target)
        return self._keys[spi]
