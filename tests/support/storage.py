"""Damage to a data directory's SQLite files, as a torn write or an upset in storage leaves it."""

from pathlib import Path

DAMAGE = b"DAMAGED!" * 8
"""What :func:`damage_header` writes: over SQLite's 100-byte header, so the file is no database."""


def damage_header(path: Path) -> None:
    """Overwrite the start of ``path`` (its SQLite header) with :data:`DAMAGE`."""
    with open(path, "r+b") as f:
        f.write(DAMAGE)
