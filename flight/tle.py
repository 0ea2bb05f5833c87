"""Two-line element sets: reading them from a file and the orbit period they imply.

Format: NORAD two-line elements, optionally preceded by a name line (CelesTrak's 3LE);
see Vallado, Crawford, Hujsak & Kelso, "Revisiting Spacetrack Report #3", AIAA 2006-6753.
The bundled file holds real public TLEs (Starlink-1007, Sentinel-1A, the ISS).
"""

from __future__ import annotations

import math
from pathlib import Path

from sgp4.api import Satrec

DEFAULT_TLE_PATH = Path(__file__).resolve().parent.parent / "sim_hw" / "data" / "tle-real.txt"
DEFAULT_TLE_NAME = "STARLINK-1007"


def load_tle(path: Path, name: str | None = None) -> tuple[str, str, str]:
    """Return ``(name, line1, line2)`` of the set called ``name`` in ``path`` (the only set
    when the file holds one; the first when ``name`` is None).

    Raises:
        OSError: the file cannot be read.
        ValueError: no valid set, ``name`` not found, or a set that sgp4 rejects.
    """
    lines = [ln.rstrip() for ln in path.read_text().splitlines() if ln.strip()]
    sets: list[tuple[str, str, str]] = []
    for i, line in enumerate(lines):
        if line.startswith("1 ") and i + 1 < len(lines) and lines[i + 1].startswith("2 "):
            title = lines[i - 1].strip() if i > 0 and not lines[i - 1][:2] in ("1 ", "2 ") else line[2:7].strip()
            sets.append((title, line, lines[i + 1]))
    if not sets:
        raise ValueError(f"no two-line element set in {path}")
    if len(sets) == 1 or name is None:
        chosen = sets[0]
    else:
        matches = [s for s in sets if s[0].upper() == name.upper()]
        if not matches:
            raise ValueError(f"no set named {name!r} in {path}; have {[s[0] for s in sets]}")
        chosen = matches[0]
    sat = Satrec.twoline2rv(chosen[1], chosen[2])
    if sat.error:
        raise ValueError(f"sgp4 rejects {chosen[0]}: error {sat.error}")
    return chosen


def orbit_period_s(line1: str, line2: str) -> float:
    """Orbit period in seconds from the TLE's mean motion (un-Kozai'd, rad/min)."""
    return 2.0 * math.pi / Satrec.twoline2rv(line1, line2).no_kozai * 60.0
