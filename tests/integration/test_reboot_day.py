"""Reboots at random instants (issue 14, item 3): the whole flight computer SIGKILLed at seeded
random onboard times and ``flight run`` started again on the same data each time, while a ground
client sends telecommands (coolant setpoints, job submissions), schedules time-tagged job
submissions (TC[11,4]) and archives every TM it receives in a real ground archive
(:class:`flight.ground.archive.Archive`), acknowledging the downlink (TC[15,130]) after each commit.

Checked at the end:

* onboard time never went backwards: each reboot resumes at a later UTC than the one before
  (``hal.rebooted``), none was refused (``hal.clock_backwards``), and every TM archived is
  stamped within the mission's onboard time (none with the host's clock);
* every TC that got TM[1,1] has exactly one final report (TM[1,7] or TM[1,8]), whichever run
  sent it (reports of TCs in flight at a kill, and of scheduled TCs, come from the verification
  packet store). A report that a kill caught between leaving and its record's removal comes again
  after the reboot as the same packet (:mod:`flight.subsystems.link.pending`), which the ground
  archive keeps once: reports are told apart by their content (verdict and onboard time);
* every time-tagged command the satellite took (its TC[11,4] completed) ran exactly once (one
  job with its marker in ``jobs.sqlite``, one final report, one ``link.tc_released``), at its
  onboard time (released within :data:`RELEASE_LATE_S` after it; accepted no earlier, executed
  no earlier than the job runner's previous tick), none lost, and none the satellite refused ran;
* no acknowledged job is lost (every submit that completed is in ``jobs.sqlite``) or completed
  twice (``jobs.job_completed`` once per job at most, one TM[140,1] per job in the archive), and
  every job ``jobs.sqlite`` has finished has its TM[140,1] archived or still on board: in a
  packet store, or, for a job finished in the last run's last :data:`RESULT_STORED_WITHIN_S`,
  still unacknowledged in ``jobs.sqlite`` (the link stores results with its housekeeping
  reports; the job runner offers it again at the next start);
* every TM packet the packet stores hold at the end is in the ground archive, or still waiting
  on board (stored in the run's last moments), and none the ground acknowledged is missing;
  none was delivered twice as two different packets (the same report built again after a
  reboot, which the archive, keeping packets by their bytes, would keep twice), and no
  housekeeping sample (APID, structure, onboard time) comes twice; retention dropped none
  (``dropped`` is counted and printed);
* the coolant setpoint is the one last set (``parameters.sqlite``).

Its length is ``RACKFLIGHT_REBOOT_DAY_S`` simulated seconds (default 7,200) with
``RACKFLIGHT_REBOOTS`` kills (default 10), seeded by ``RACKFLIGHT_REBOOT_SEED`` (default 14).
"""

import hashlib
import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from datetime import datetime

import pytest
from spacepackets.ccsds.spacepacket import CCSDS_HEADER_LEN

from flight.core.dictionary import full_dictionary
from flight.ground.archive import Archive
from flight.ground.client import LinkClient
from flight.spacelink import pus11_scheduling as pus11
from flight.spacelink.framing import request_id
from flight.spacelink.services import decode_tm
from flight.spacelink.pus140_results import JobResultReport
from flight.spacelink.pus1_verification import Verification
from flight.spacelink.pus3_housekeeping import HkReport
from flight.subsystems.link.manager import DEFAULT_HK_INTERVAL_S
from flight.subsystems.link.packet_stores import KEY_SHIFT, PENDING, IN_FLIGHT, ACKED
from tests.support.predicates import FlightRun, wait_until

pytestmark = pytest.mark.slow
DAY_S = float(os.environ.get("RACKFLIGHT_REBOOT_DAY_S", "7200"))
REBOOTS = int(os.environ.get("RACKFLIGHT_REBOOTS", "10"))
SEED = int(os.environ.get("RACKFLIGHT_REBOOT_SEED", "14"))
RUN = ("--unauthenticated-lab", "--contact", "always", "--speed", "300")
DICT = full_dictionary()
SCHEDULE_EVERY = 3
"""One time-tagged command per this many rounds of ground TCs."""
RELEASE_IN_S = (30.0, 900.0)
"""Onboard seconds from the latest onboard time seen to a scheduled command's release: some run
in the run that scheduled them, some after one or more reboots."""
RELEASE_LATE_S = 1.0
"""Most onboard seconds a scheduled command may be released after its time (``link.tc_released``,
where the recorder kept it): the link releases at its first tick at or after it."""
TICK_S = 1.0
"""A tick: the job runner stamps a job with the time of the last frame it took, which may be one
tick behind the link's, which released it."""
RESULT_STORED_WITHIN_S = DEFAULT_HK_INTERVAL_S + 3 * TICK_S
"""Onboard seconds from a job's end to its result in a packet store at the latest: the offer
reaches the link a tick after the job ends, the link stores the results it holds when its
housekeeping reports are next due (at most one interval), and commits them within a tick."""
GROUND_JOB_S, SCHEDULED_JOB_S = 480.0, 100.0
"""Work (GPU s) of a job the ground submits and of one it schedules; the thousandths are a
marker that names the job (``round(work_gpu_s * 1000)``)."""


def job_marker(work_gpu_s: float) -> int:
    return round(work_gpu_s * 1000)


def content_key(packet: bytes) -> bytes:
    """A TM without what a rebuild of the same report changes (its packet sequence count, its
    message counter and its CRC): two archived packets with one key are one report delivered
    twice. Layout: CCSDS primary header (sequence count at bytes 2-3), PUS-C TM secondary header
    (message counter at bytes 3-4 of it)."""
    sec = CCSDS_HEADER_LEN
    return packet[:2] + packet[4:sec + 3] + packet[sec + 5:-2]


def hk_sample(packet: bytes) -> tuple[int, bytes, bytes]:
    """What names a TM[3,25] sample: its APID, its structure id (the first two bytes of the source
    data) and its time code."""
    time_at = CCSDS_HEADER_LEN + 7
    return int.from_bytes(packet[:2], "big") & 0x7FF, packet[time_at + 7:time_at + 9], packet[time_at:time_at + 7]


class Ground:
    """The ground across every run: what it sent, what was accepted, each final report seen."""

    def __init__(self, archive_path) -> None:
        self.archive_path = archive_path
        self.sent: dict[tuple[int, int], tuple[str, dict, int]] = {}
        """TC -> (command, arguments, the run that sent it). A TC is named by its client's source
        id and its request id: each run's client numbers its TCs from a random count, so request
        ids alone may repeat across runs."""
        self.scheduled: dict[tuple[int, int], tuple[int, float]] = {}
        """TC[11,4] -> (the job marker of the TC it embeds, its release time, UTC s)."""
        self.inner: dict[tuple[int, int], tuple[int, int]] = {}
        """TC[11,4] -> the TC it embeds."""
        self.accepted: dict[tuple[int, int], float] = {}
        """TC -> onboard UTC of its TM[1,1]."""
        self.finals: dict[tuple[int, int], set[tuple[int, float]]] = defaultdict(set)
        """TC -> distinct final reports (subtype, onboard UTC): a packet sent again after a
        restart is the same report, a second verdict is not."""
        self.latest_utc = 0.0
        """The latest onboard UTC seen in this run's TM."""
        self.latest_by_run: list[float] = []
        self.client: LinkClient | None = None

    def connect(self, run: FlightRun) -> None:
        def attempt():
            try:
                client = LinkClient(run.link, DICT, key=None, connect_timeout_s=1.0)
            except OSError:
                return None
            try:
                client.ping(timeout_s=1.0)
            except (TimeoutError, ConnectionError):
                client.close()
                return None
            return client
        self.client = wait_until(attempt, "the link in contact", 60)
        self.client.keep_in(Archive(self.archive_path, DICT))
        self.latest_utc = 0.0
        self.client.acknowledge()  # archiving: the stored backlog comes too

    def take(self, wait_s: float = 0.2) -> None:
        """Take the reports that arrive within ``wait_s`` (it paces the ground's TCs too)."""
        deadline = time.monotonic() + wait_s
        try:
            while (r := self.client.receive(deadline - time.monotonic())) is not None:
                if isinstance(r, HkReport):  # sampled onboard: a TC answered before the first frame has host time
                    self.latest_utc = max(self.latest_utc, r.utc_unix_s)
                if isinstance(r, Verification):
                    if r.subtype == 1:
                        self.accepted.setdefault((r.dest_id, r.request_id), r.utc_unix_s)
                    elif r.final:
                        self.finals[(r.dest_id, r.request_id)].add((r.subtype, r.utc_unix_s))
            self.client.archive.commit()  # what is acknowledged is on disk here first
            self.client.acknowledge()
        except (ConnectionError, OSError):
            pass  # the run was killed under us

    def send(self, qualified: str, args: dict, segment: int) -> None:
        try:
            req = self.client.send(self.client.function(qualified, args))
        except OSError:
            return
        self.sent[(self.client.source_id, req)] = (qualified, args, segment)

    def schedule(self, qualified: str, args: dict, release_utc_s: float, segment: int) -> None:
        """TC[11,4] of one ``qualified(**args)`` released at ``release_utc_s``."""
        inner = self.client.signed(self.client.function(qualified, args))
        data = pus11.insert_data([(release_utc_s, bytes(inner.pack()))])
        try:
            req = self.client.send(self.client.tc(pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT, data))
        except OSError:
            return
        key, inner_key = (self.client.source_id, req), (self.client.source_id, request_id(inner))
        self.sent[key] = ("TC[11,4]", {}, segment)
        self.sent[inner_key] = (qualified, args, segment)
        self.scheduled[key] = (job_marker(args["work_gpu_s"]), release_utc_s)
        self.inner[key] = inner_key

    def close(self) -> None:
        if self.client is not None:
            self.latest_by_run.append(self.latest_utc)
            self.client.close()
            self.client = None


def mission_time(run: FlightRun) -> float:
    rows = run._rows("SELECT time_s FROM tm WHERE name = 'hal.hk' ORDER BY rowid DESC LIMIT 1", ())
    return rows[0][0] if rows else 0.0


def stored_packets(data) -> tuple[list[tuple[int, bytes]], int]:
    """Every packet the packet stores hold (state, bytes) and how many retention dropped."""
    db = sqlite3.connect(f"file:{data / 'packet_stores.sqlite'}?mode=ro", uri=True)
    rows = [(state, bytes(packet)) for state, packet in db.execute(
        f"SELECT state, packet FROM packets JOIN packet_bytes ON packet_bytes.key = "
        f"(packets.store_id << {KEY_SHIFT}) | packets.seq")]
    dropped = db.execute("SELECT SUM(dropped) FROM stores").fetchone()[0]
    db.close()
    return rows, dropped


def archived(path) -> set[bytes]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    digests = {bytes(d) for (d,) in db.execute("SELECT digest FROM packets")}
    db.close()
    return digests


def job_args(work_gpu_s: float, gpus: int) -> dict:
    return {"gpus_min": gpus, "gpus_max": gpus, "work_gpu_s": work_gpu_s, "priority": 5,
            "checkpoint_interval_s": 60.0, "checkpoint_cost_s": 1.0, "deadline_s": 0.0, "critical": False,
            "kind": "synthetic"}


def test_reboots_at_random_instants_lose_nothing_acknowledged(tmp_path):
    rng = random.Random(SEED)
    kills = sorted(rng.uniform(0.05, 0.95) * DAY_S for _ in range(REBOOTS))
    archive_path = tmp_path / "ground.sqlite"
    ground = Ground(archive_path)
    data = tmp_path / "run"
    n = 0
    for segment, kill_at in enumerate([*kills, None]):
        # a killed run is flown long enough to reach its kill; the last one to the day's end, with
        # time for the reports of what was in flight at the last kill and the scheduled commands
        # still to run (it sends nothing new)
        with FlightRun(tmp_path, *RUN, "--duration", f"{DAY_S if kill_at else max(DAY_S - kills[-1], 3000):g}") as run:
            ground.connect(run)
            wait_until(lambda: run._rows("SELECT COUNT(*) FROM ev WHERE name = 'hal.rebooted'", ())[0][0] >= segment,
                       "this run's hal.rebooted recorded", 60)
            while kill_at is not None and mission_time(run) < kill_at:
                n += 1
                setpoint = 25.0 + (n % 17)
                ground.send("thermal.set_setpoint", {"setpoint_c": setpoint}, segment)
                ground.send("jobs.submit", job_args(GROUND_JOB_S + n / 1000, 8), segment)
                if n % SCHEDULE_EVERY == 0 and ground.latest_utc:
                    ground.schedule("jobs.submit", job_args(SCHEDULED_JOB_S + n / 1000, 1),
                                    ground.latest_utc + rng.uniform(*RELEASE_IN_S), segment)
                ground.take(0.3)
            if kill_at is not None:
                os.killpg(run.proc.pid, signal.SIGKILL)  # power loss: every process at once
                run.proc.wait()
            else:
                def unreported():
                    ground.take(0.5)
                    due = [ground.inner[r] for r in ground.scheduled if any(s == 7 for s, _ in ground.finals.get(r, ()))]
                    return [r for r in [*ground.accepted, *due] if not ground.finals.get(r)]
                wait_until(lambda: not unreported(), lambda: f"a final report of {unreported()}", 120)
                # the backlog: every packet stored (and committed) so far reaches the archive
                wait_until(lambda: (ground.take(0.5), not {hashlib.sha256(p).digest() for _, p in stored_packets(data)[0]}
                                    - archived(archive_path))[1], "the stored backlog archived", 120)
                wait_until(lambda: ground.take(0.5) or run.proc.poll() is not None, "the day's end", 600)
                assert run.wait(timeout_s=60) == 0, run.output
            ground.take(0.2)
            ground.close()

    db = sqlite3.connect(f"file:{data / 'telemetry.sqlite'}?mode=ro", uri=True)
    rebooted = [json.loads(a) for (a,) in
                db.execute("SELECT args FROM ev WHERE name = 'hal.rebooted' ORDER BY rowid")]
    backwards = db.execute("SELECT COUNT(*) FROM ev WHERE name = 'hal.clock_backwards'").fetchone()[0]
    completed = Counter(json.loads(a)["job_id"] for (a,) in
                        db.execute("SELECT args FROM ev WHERE name = 'jobs.job_completed'"))
    releases = [json.loads(a) for (a,) in db.execute("SELECT args FROM ev WHERE name = 'link.tc_released'")]
    db.close()
    rebooted_utc = [r["utc_unix_s"] for r in rebooted]
    assert len(rebooted) == REBOOTS and rebooted_utc == sorted(rebooted_utc) and backwards == 0
    epoch_utc = rebooted[0]["utc_unix_s"] - rebooted[0]["time_s"]
    rewind_s = [max(0.0, seen - r) for seen, r in zip(ground.latest_by_run, rebooted_utc)]
    utc_end = datetime.fromisoformat(json.loads((data / "summary.json").read_text())["utc_end"]).timestamp()

    # every accepted TC: one final report
    assert ground.accepted, "no TC was accepted"
    missing = [(r, ground.sent.get(r)) for r in ground.accepted if not ground.finals.get(r)]
    twice = {r: f for r, f in ground.finals.items() if len(f) > 1}
    assert not missing and not twice, (missing, twice)

    # jobs: none acknowledged lost, none completed twice, every result down once
    jobs = sqlite3.connect(f"file:{data / 'jobs.sqlite'}?mode=ro", uri=True)
    job_rows = jobs.execute("SELECT job_id, work_gpu_s, submitted_s, state FROM jobs").fetchall()
    finished = {job_id for (job_id,) in jobs.execute("SELECT job_id FROM results")}
    unacknowledged = jobs.execute("SELECT job_id, time_s FROM results"
                                  " WHERE job_id NOT IN (SELECT job_id FROM results_acknowledged)").fetchall()
    jobs.close()
    by_marker = defaultdict(list)
    for job_id, work, submitted_s, _ in job_rows:
        by_marker[job_marker(work)].append((job_id, submitted_s))
    submitted_ok = {job_marker(args["work_gpu_s"]) for req, (q, args, _) in ground.sent.items()
                    if q == "jobs.submit" and any(subtype == 7 for subtype, _ in ground.finals.get(req, ()))}
    assert submitted_ok <= set(by_marker), submitted_ok - set(by_marker)
    assert all(count == 1 for count in completed.values()), completed
    adb = sqlite3.connect(f"file:{archive_path}?mode=ro", uri=True)
    results = Counter(job_id for (job_id,) in adb.execute("SELECT job_id FROM results"))
    packets = [bytes(p) for (p,) in adb.execute("SELECT packet FROM packets")]
    stamped = [utc for (utc,) in adb.execute("SELECT utc_unix_s FROM packets")]
    resent = dict(adb.execute("SELECT name, value FROM counters"))
    adb.close()
    assert all(count == 1 for count in results.values()), {j: c for j, c in results.items() if c > 1}
    stored, dropped = stored_packets(data)
    in_archive = {hashlib.sha256(p).digest() for p in packets}
    on_board = [p for state, p in stored if state in (PENDING, IN_FLIGHT) and hashlib.sha256(p).digest() not in in_archive]
    results_on_board = {r.job_id for r in (decode_tm(DICT, p) for p in on_board) if isinstance(r, JobResultReport)}
    end_s = utc_end - epoch_utc
    results_waiting = {job_id for job_id, time_s in unacknowledged if time_s >= end_s - RESULT_STORED_WITHIN_S}
    down_or_on_board = set(results) | results_on_board | results_waiting
    assert finished <= down_or_on_board, (finished - down_or_on_board, end_s, unacknowledged)

    # time-tagged commands: each taken one ran once, at its time
    released = {e["request_id"]: e["late_s"] for e in releases}
    assert len(released) == len(releases), Counter(e["request_id"] for e in releases).most_common(3)
    taken = {r: ground.scheduled[r] for r in ground.scheduled if any(s == 7 for s, _ in ground.finals.get(r, ()))}
    runs = {r: by_marker.get(marker, []) for r, (marker, _) in taken.items()}
    ran_twice = {r: jobs_ for r, jobs_ in runs.items() if len(jobs_) > 1}
    lost = [r for r, jobs_ in runs.items() if not jobs_ and not any(s == 8 for s, _ in ground.finals[ground.inner[r]])]
    late_s = {r: released[ground.inner[r][1]] for r in taken if ground.inner[r][1] in released}
    wrong_time = {r: (release, ground.accepted.get(ground.inner[r]), runs[r][0][1] + epoch_utc, late_s.get(r))
                  for r, (_, release) in taken.items() if runs[r]
                  and not (release <= ground.accepted.get(ground.inner[r], -1)
                           and release - TICK_S <= runs[r][0][1] + epoch_utc
                           and 0 <= late_s.get(r, 0) <= RELEASE_LATE_S)}
    assert taken, "no command was scheduled"
    assert not ran_twice and not lost and not wrong_time, (ran_twice, lost, wrong_time)
    # ...and none ran that the satellite did not take
    untaken = {marker for r, (marker, _) in ground.scheduled.items() if r not in taken}
    assert not untaken & set(by_marker), untaken & set(by_marker)

    # every TM stamped with onboard time, none with another clock's (a reboot's first moments)
    off_clock = [utc for utc in stamped if not epoch_utc - 1e-3 <= utc <= utc_end]  # CDS: milliseconds
    assert not off_clock, f"{len(off_clock)} TM stamped outside the mission's time, e.g. {off_clock[:3]}"

    # ...and none sampled twice: housekeeping of one structure once per onboard time (a clock that
    # went back after a reboot would sample the same times again)
    hk_twice = [k for k, c in Counter(hk_sample(p) for p in packets if p[7] == 3).items() if c > 1]
    assert not hk_twice, f"{len(hk_twice)} housekeeping samples (APID, SID, UTC) archived twice, e.g. {hk_twice[:3]}"

    # stored TM: delivered exactly once, or still on board, or counted dropped
    acked_lost = [p for state, p in stored if state == ACKED and hashlib.sha256(p).digest() not in in_archive]
    assert not acked_lost, f"{len(acked_lost)} stored packets acknowledged and not in the archive"
    keys = Counter(content_key(p) for p in packets)
    delivered_twice = [k for k, c in keys.items() if c > 1]
    assert not delivered_twice, f"{len(delivered_twice)} reports archived twice as different packets"

    last_set = [args["setpoint_c"] for req, (q, args, _) in ground.sent.items()
                if q == "thermal.set_setpoint" and req in ground.accepted][-1]
    params = sqlite3.connect(f"file:{data / 'parameters.sqlite'}?mode=ro", uri=True)
    (value,), = params.execute("SELECT value FROM parameter WHERE name = 'thermal.setpoint_c'").fetchall()
    params.close()
    assert json.loads(value) == last_set
    print(f"reboots {len(rebooted)}, UTC monotonic at every reboot (rewind behind the latest TM seen: "
          f"max {max(rewind_s):.1f} s), TCs sent {len(ground.sent)}, accepted {len(ground.accepted)}, "
          f"final reports {sum(len(f) for f in ground.finals.values())}, duplicates {len(twice)}, "
          f"interrupted {sum(1 for f in ground.finals.values() if any(s == 8 for s, _ in f))}; "
          f"scheduled {len(ground.scheduled)}, taken {len(taken)}, released {len(released)}, ran once "
          f"{sum(1 for j in runs.values() if len(j) == 1)}, interrupted {len(taken) - sum(1 for j in runs.values() if j)}; "
          f"jobs acknowledged {len(submitted_ok)}, stored {len(by_marker)}, finished {len(finished)}, "
          f"completed events {len(completed)}, results archived {len(results)}; stored packets {len(stored)}, "
          f"archived {len(stored) - len(on_board)}, on board {len(on_board)}, dropped {dropped}, "
          f"archive packets {len(packets)} (copies received again {resent.get('duplicates')})")
