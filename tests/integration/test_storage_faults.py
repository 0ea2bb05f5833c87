"""Storage faults, full stack: a damaged SQLite file found at start, and a full disk.

* Every store of the data directory damaged between two runs (its header overwritten): the next
  run moves each aside (``<name>.corrupt-<time>``), announces it with a ``store_moved_aside``
  event naming the file, creates a fresh one and flies to its end; with both copies of the key
  store damaged, the link says the key files are active again (``keys_reprovisioned``).
* The data directory on a small tmpfs filled up mid-run (ENOSPC): the recorder holds what it
  cannot write and says so (``exec.recording_failed``, counted in ``exec.hk``), the link's packet
  stores report their failures, commanding still works, and once space returns everything
  recovers by itself (``exec.recording_recovered``) and the run ends normally. Needs ``mount``
  (root); skipped where it is not allowed.
"""

import errno
import json
import os
import sqlite3
import subprocess

import pytest

from flight.core.dictionary import full_dictionary
from flight.ground.client import LinkClient
from flight.spacelink.pus1_verification import Verification
from flight.spacelink.pus5_events import EventReport
from tests.support.predicates import FlightRun, wait_until
from tests.support.storage import DAMAGE, damage_header

pytestmark = pytest.mark.slow
STORES = ("telemetry.sqlite", "jobs.sqlite", "packet_stores.sqlite", "schedule.sqlite", "parameters.sqlite",
          "link_settings.sqlite", "link_replay.sqlite", "link_replay.mirror.sqlite", "link_keys.sqlite",
          "link_keys.mirror.sqlite", "monitor.sqlite", "pending_tcs.sqlite", "tm_security.sqlite")
"""Every SQLite file a run keeps in its data directory (the security state twice: a file and its
mirror)."""


def fly(tmp_path, *args: str) -> tuple[int, str]:
    with FlightRun(tmp_path, *args) as run:
        code = run.wait(timeout_s=120)
    return code, run.output


def test_every_damaged_store_is_moved_aside_with_an_event_and_the_run_goes_on(tmp_path):
    code, out = fly(tmp_path, "--duration", "30")
    assert code == 0, out
    data = tmp_path / "run"
    assert {p.name for p in data.glob("*.sqlite")} == set(STORES)
    for name in STORES:
        damage_header(data / name)
    code, out = fly(tmp_path, "--duration", "30")
    assert code == 0, out
    assert "Traceback" not in "".join(p.read_text(errors="replace") for p in (data / "logs").glob("*.log"))
    db = sqlite3.connect(f"file:{data / 'telemetry.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT src, severity, message, args FROM ev WHERE name LIKE '%.store_moved_aside'").fetchall()
        reprovisioned = db.execute("SELECT severity FROM ev WHERE name = 'link.keys_reprovisioned'").fetchall()
    finally:
        db.close()
    announced = {os.path.basename(json.loads(a)["file"]): (src, sev, msg) for src, sev, msg, a in rows}
    assert set(announced) == set(STORES), announced
    assert reprovisioned == [("HIGH",)]  # both copies of the key store were damaged
    for name, (_, severity, message) in announced.items():
        assert severity == "HIGH" and name in message and "moved aside" in message
        assert "a fresh one was created; what it held is lost" in message  # no copy survived
        (aside,) = data.glob(f"{name}.corrupt-*[0-9]Z")
        assert aside.read_bytes().startswith(DAMAGE)
        sqlite3.connect(data / name).execute("SELECT count(*) FROM sqlite_master")  # a fresh, sound file


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**16)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def events_seen(client: LinkClient, names: set[str], timeout_s: float) -> set[str]:
    seen: set[str] = set()

    def look():
        while (report := client.receive(0.2)) is not None:
            if isinstance(report, EventReport) and report.name in names:
                seen.add(report.name)
        return seen >= names
    wait_until(look, lambda: f"events {sorted(names - seen)}", timeout_s)
    return seen


def command(client: LinkClient, qualified: str, args: dict) -> Verification:
    return [r for r in client.command(qualified, args, timeout_s=30)][-1]


def test_a_full_disk_degrades_storage_with_events_commanding_works_and_it_recovers(small_disk):
    with FlightRun(small_disk, "--unauthenticated-lab", "--contact", "always", "--speed", "10",
                   "--duration", "250") as run:
        def attempt():
            try:
                c = LinkClient(run.link, full_dictionary(), key=None, connect_timeout_s=1.0)
            except OSError:
                return None
            try:
                c.ping(timeout_s=1.0)
            except TimeoutError:
                c.close()
                return None
            return c
        client = wait_until(attempt, "the link in contact", 60)
        assert command(client, "thermal.set_setpoint", {"setpoint_c": 30.0}).subtype == 7
        filler = small_disk / "filler"
        fill(filler)
        events_seen(client, {"exec.recording_failed"}, 60)
        report = command(client, "thermal.set_setpoint", {"setpoint_c": 32.0})
        assert report.subtype == 7, report  # commanding still works on a full disk
        filler.unlink()
        events_seen(client, {"exec.recording_recovered"}, 60)
        assert command(client, "thermal.set_setpoint", {"setpoint_c": 33.0}).subtype == 7
        client.close()
        code = run.wait(timeout_s=300)
    assert code == 0, run.output
    summary = run.summary()
    assert summary["end"] == "completed"
    assert summary["telemetry_rows_dropped"] == 0  # held while the disk was full, written once it was not
    logs = "".join(p.read_text(errors="replace") for p in (run.data / "logs").glob("*.log"))
    assert "Traceback" not in logs, logs[-4000:]
