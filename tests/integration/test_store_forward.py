"""Store and forward, full stack: ``flight run`` in lockstep with passes from the bundled
ground stations and ``flight ground listen`` archiving every pass. Every housekeeping and
event packet the satellite stored before its last pass ended is in the ground archive
exactly once, or counted as dropped by retention; nothing reaches the archive that was not
stored on board; what was stored after the last pass waits on board (a housekeeping packet
is timed at its sample, up to ``STORE_LAG_S`` before it is stored).

The simulated duration is ``RACKFLIGHT_STORE_FORWARD_S`` (default 5,000 s: the first pass of
the default TLE is at ~4,890-5,050 s, so CI sees one pass in ~10-40 s of wall time); the
24 h check is the same test with ``RACKFLIGHT_STORE_FORWARD_S=86400`` (~150 s of wall time
on an idle machine, run by hand)."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from flight.core.config import RunConfig
from flight.spacelink import keys, tm_sdls
from flight.spacelink.pus15_storage import STORE_BY_NAME
from flight.subsystems.link.packet_stores import STORE_FILE
from flight.subsystems.link.manager import DEFAULT_HK_INTERVAL_S
from tests.support.predicates import FlightRun, free_port

pytestmark = pytest.mark.slow
DURATION_S = float(os.environ.get("RACKFLIGHT_STORE_FORWARD_S", "5000"))
CHECKED = (STORE_BY_NAME["hk"].store_id, STORE_BY_NAME["events"].store_id)
STORE_LAG_S = DEFAULT_HK_INTERVAL_S + RunConfig.hk_period_ticks * RunConfig.tick_s + 1
"""Most onboard seconds between a housekeeping sample's time (a packet's ``time_s``) and
its storing: the link stores the latest sample every hk interval, and components publish
every hk period."""


def _passes(run: FlightRun) -> list[tuple[float, float]]:
    """(start, end) onboard seconds of each pass the link saw (an open pass ends at the run's end)."""
    db = sqlite3.connect(f"file:{run.data / 'telemetry.sqlite'}?mode=ro", uri=True)
    edges = db.execute("SELECT time_s, name FROM ev WHERE name IN ('link.contact_acquired', 'link.contact_lost') "
                       "ORDER BY time_s").fetchall()
    db.close()
    passes, start = [], None
    for t, name in edges:
        if name == "link.contact_acquired":
            start = t
        elif start is not None:
            passes.append((start, t))
            start = None
    if start is not None:
        passes.append((start, DURATION_S))
    return passes


def test_every_stored_packet_reaches_the_archive_once_or_is_counted_dropped(tmp_path, ground_archive):
    port = free_port()
    keys.create_key(tmp_path / "keys")  # the listener signs with it from the start; the run finds it there
    tm_sdls.ensure_tm_key(tmp_path / "keys")  # and verifies with this one
    with FlightRun(tmp_path, "--duration", f"{DURATION_S:g}", "--link", f"127.0.0.1:{port}") as run:
        listener = subprocess.Popen(
            [sys.executable, "-m", "flight.cli", "ground", "listen", "--link", f"127.0.0.1:{port}", "--archive",
             str(ground_archive)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=run.env,
            start_new_session=True)
        try:
            assert run.wait(timeout_s=max(600.0, DURATION_S / 20)) == 0
        finally:
            os.killpg(listener.pid, signal.SIGINT)
            out = listener.communicate(timeout=30)[0].decode()
    assert listener.returncode == 0, out
    passes = _passes(run)
    assert passes, "no pass in the run: nothing could be downlinked"
    last_pass_end = passes[-1][1]

    onboard = sqlite3.connect(f"file:{run.data / STORE_FILE}?mode=ro", uri=True)
    stored = onboard.execute(f"SELECT time_s, packet FROM packets JOIN packet_bytes ON key = (store_id << 40) | seq "
                             f"WHERE store_id IN {CHECKED}").fetchall()
    dropped, expired, deleted = onboard.execute(f"SELECT SUM(dropped), SUM(expired), SUM(deleted) FROM stores "
                                                f"WHERE store_id IN {CHECKED}").fetchone()
    (next_seq,) = onboard.execute(f"SELECT SUM(next_seq - 1) FROM stores WHERE store_id IN {CHECKED}").fetchone()
    onboard.close()
    archive = sqlite3.connect(ground_archive)
    archived = [bytes(p) for (p,) in archive.execute("SELECT packet FROM packets WHERE store IN ('hk', 'events')")]
    duplicates = archive.execute("SELECT value FROM counters WHERE name = 'duplicates'").fetchone()[0]
    forged = archive.execute("SELECT value FROM counters WHERE name = 'forged'").fetchone()[0]
    archive.close()

    digests = [hashlib.sha256(p).digest() for p in archived]
    assert forged == 0, "every stored packet played back verifies with the telemetry key"
    assert len(digests) == len(set(digests))  # exactly once: no packet archived twice
    # the archive keeps each TM verified and stripped of its security fields: compare it so
    stored = [(t, tm_sdls.strip(p)) for t, p in stored]
    onboard_digests = {hashlib.sha256(p).digest() for _, p in stored}
    assert set(digests) <= onboard_digests  # nothing archived that was not stored on board
    due = {hashlib.sha256(p).digest() for t, p in stored if t < last_pass_end - STORE_LAG_S}
    missing = due - set(digests)
    assert not missing, f"{len(missing)} of {len(due)} packets stored before the last pass ended never arrived"
    # every packet ever stored is still on board, or counted: dropped unacknowledged, expired once acknowledged
    assert next_seq == len(stored) + dropped + expired + deleted
    print(f"{DURATION_S:g} s, {len(passes)} passes, {len(stored)} hk+event packets stored, {len(due)} due, "
          f"{len(digests)} archived once, {duplicates} duplicate receptions dropped, retention dropped "
          f"{dropped}; listener: {out.strip().splitlines()[-1]}")
