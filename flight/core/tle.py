"""Two-line element sets: reading them from a file and the orbit period they imply.

Format: NORAD two-line elements, optionally preceded by a name line (CelesTrak's 3LE);
see Vallado, Crawford, Hujsak & Kelso, "Revisiting Spacetrack Report #3", AIAA 2006-6753.
The bundled file holds real public TLEs (Starlink-1007, Sentinel-1A, the ISS).
"""

from __future__ import annotations

import math
from pathlib import Path

from sgp4.api import Satrec

DEFAULT_TLE_PATH = Path(__file__).resolve().parent.parent / "data" / "tle-real.txt"
DEFAULT_TLE_NAME = "STARLINK-1007"


def load_tle(path: str | Path, name: str | None = None) -> tuple[str, tuple[str, str]]:
    """Read a TLE file (optional name line before each ``1 ...``/``2 ...`` pair).

    Returns:
        ``(name, (line1, line2))`` of the first set, or of the set called ``name``
        (compared case-insensitively; a set without a name line is called by its
        catalogue number).

    Raises:
        OSError: the file cannot be read.
        ValueError: no complete element set (or none called ``name``) in the file, or a
            set that sgp4 rejects.
    """
    lines = [ln.rstrip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    for i, ln in enumerate(lines[:-1]):
        if ln.startswith("1 ") and lines[i + 1].startswith("2 "):
            label = lines[i - 1].strip() if i > 0 and not lines[i - 1].startswith(("1 ", "2 ")) else ln[2:7].strip()
            if name is None or label.upper() == name.upper():
                if Satrec.twoline2rv(ln, lines[i + 1]).error:
                    raise ValueError(f"sgp4 rejects the element set {label!r}")
                return label, (ln, lines[i + 1])
    raise ValueError(f"no TLE {'named ' + repr(name) + ' ' if name else ''}in {path}")


def orbit_period_s(line1: str, line2: str) -> float:
    """Orbit period in seconds from the TLE's mean motion (un-Kozai'd, rad/min)."""
    return 2.0 * math.pi / Satrec.twoline2rv(line1, line2).no_kozai * 60.0
