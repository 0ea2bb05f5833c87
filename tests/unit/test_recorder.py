"""The run recorder: the telemetry hash ignores publisher interleaving within a tick,
cumulative counters survive process restarts, and events keep their typed arguments as fields
that SQL can query."""

import math
import sqlite3

import pytest

from flight.core.component import STRICT_EVENTS_ENV, EventArgError
from flight.core.messages import Encoder, decode
from flight.executive.recorder import Cumulative, Recorder, RunStats, event_args
from flight.hal.bridge import HalBridge
from flight.subsystems.jobs.runner import JobRunner


def tm(src, name, tick, data):
    body = Encoder(src).encode("tm", name, data, tick, float(tick))[1]
    return decode(body), body


def test_hash_is_independent_of_arrival_order_within_a_tick(tmp_path):
    msgs = [tm("power", "power.hk", 1, {"a": 1}), tm("thermal", "thermal.hk", 1, {"b": 2}),
            tm("power", "power.hk", 2, {"a": 3}), tm("exec", "exec.hk", 2, {"uptime_s": 9.0})]
    hashes = []
    for i, order in enumerate((msgs, [msgs[1], msgs[0], msgs[3], msgs[2]])):
        rec = Recorder(tmp_path / f"r{i}.sqlite")
        for m in order:
            rec.record(*m)
        hashes.append(rec.telemetry_sha256(2))
        rec.close()
    assert hashes[0] == hashes[1]
    rec = Recorder(tmp_path / "other.sqlite")
    rec.record(*tm("power", "power.hk", 1, {"a": 999}))
    assert rec.telemetry_sha256(2) != hashes[0]


def test_cumulative_counter_adds_up_across_a_restart():
    c = Cumulative()
    for v in (1.0, 5.0, 2.0, 4.0):  # process restarted after 5.0
        c.feed("jobs", v)
    assert c.total == 9.0


def test_run_stats_combine_the_bridge_statistics_across_a_bridge_restart():
    stats = RunStats(last_tick=30)
    reports = [  # tick, eclipse_time_s, energy_harvested_j, battery_soc_low, gpu_temp_peak_c
        (10, 5.0, 1000.0, 0.9, 60.0), (20, 10.0, 2000.0, 0.8, 70.0),
        (25, 2.0, 300.0, 0.85, 65.0),  # the bridge restarted after tick 20
        (30, 4.0, 500.0, 0.7, 66.0), (40, 9.0, 900.0, 0.1, 99.0)]  # tick 40 is past the run
    for tick, ecl, energy, soc, temp in reports:
        stats.observe(tm("hal", "hal.hk", tick, {"time_s": float(tick), "eclipse_time_s": ecl,
                                                "energy_harvested_j": energy, "battery_soc_low": soc,
                                                "gpu_temp_peak_c": temp})[0])
    s = stats.summary()
    assert s["sim_time_s"] == 30.0 and s["eclipse_time_s"] == 14.0 and s["energy_harvested_j"] == 2500.0
    assert s["battery_soc_min"] == 0.7 and s["gpu_temp_max_c"] == 70.0


def ev(component, src, event, tick, args):
    body = Encoder(src).encode("ev", f"{src}.{event}", component.event_payload(event, args), tick, float(tick))[1]
    return decode(body), body


def test_event_arguments_are_recorded_as_fields_queryable_without_parsing_text(tmp_path):
    rec = Recorder(tmp_path / "telemetry.sqlite")
    for tick, fault, value in ((5, "pump_degraded", 0.5), (9, "radiator_loss", 0.25), (12, "pump_degraded", 0.75)):
        rec.record(*ev(HalBridge.COMPONENT, "hal", "fault_injected", tick,
                       {"fault": fault, "value": value, "target": "", "duration_s": 60.0}))
    rec.record(*ev(JobRunner.COMPONENT, "jobs", "job_completed", 13, {"job_id": 7, "work_gpu_s": 1200.0}))
    rec.close()
    db = sqlite3.connect(tmp_path / "telemetry.sqlite")
    rows = db.execute("SELECT tick, json_extract(args, '$.value') FROM ev WHERE name = 'hal.fault_injected' "
                      "AND json_extract(args, '$.fault') = 'pump_degraded' ORDER BY tick").fetchall()
    assert rows == [(5, 0.5), (12, 0.75)]
    assert db.execute("SELECT json_extract(args, '$.job_id'), message FROM ev WHERE name = 'jobs.job_completed'"
                      ).fetchall() == [(7, "job 7 completed: 1200 GPU-s")]
    assert event_args(db, "jobs.job_completed", "hal.fault_injected")[-2:] == [
        (12.0, "hal.fault_injected", {"fault": "pump_degraded", "value": 0.75, "target": "", "duration_s": 60.0}),
        (13.0, "jobs.job_completed", {"job_id": 7, "work_gpu_s": 1200.0})]
    db.close()


def test_a_non_finite_argument_is_recorded_as_null_so_every_row_stays_json(tmp_path):
    rec = Recorder(tmp_path / "telemetry.sqlite")
    rec.record(*ev(HalBridge.COMPONENT, "hal", "fault_injected", 1,
                   {"fault": "f", "value": math.nan, "target": "", "duration_s": math.inf}))
    nested = Encoder("hal").encode("ev", "hal.odd", {"severity": "INFO", "message": "odd", "args": {"x": [math.nan]}},
                                   2, 2.0)[1]
    rec.record(decode(nested), nested)  # not from a declaration: kept by its text, not fatal
    rec.close()
    db = sqlite3.connect(tmp_path / "telemetry.sqlite")
    assert db.execute("SELECT json_extract(args, '$.value'), json_extract(args, '$.fault'), message FROM ev "
                      "ORDER BY tick").fetchall() == [(None, "f", "FAULT INJECTION: f value=nan target='' duration inf s"),
                                                      (None, None, "odd")]
    db.close()


def test_a_database_recorded_before_event_fields_gains_the_column(tmp_path):
    path = tmp_path / "telemetry.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE ev (tick INTEGER, time_s REAL, src TEXT, name TEXT, severity TEXT, message TEXT)")
    old.execute("INSERT INTO ev VALUES (1, 1.0, 'jobs', 'jobs.job_completed', 'INFO', 'job 1 completed: 5 GPU-s')")
    old.commit()
    old.close()
    rec = Recorder(path)
    rec.record(*ev(JobRunner.COMPONENT, "jobs", "job_completed", 2, {"job_id": 2, "work_gpu_s": 9.0}))
    rec.close()
    db = sqlite3.connect(path)
    assert event_args(db, "jobs.job_completed") == [(1.0, "jobs.job_completed", {}),
                                                     (2.0, "jobs.job_completed", {"job_id": 2, "work_gpu_s": 9.0})]
    db.close()


def test_run_stats_count_events_emitted_against_their_declaration(monkeypatch):
    monkeypatch.delenv(STRICT_EVENTS_ENV)  # as in flight: the event goes out flagged
    stats = RunStats(last_tick=10)
    stats.observe(ev(JobRunner.COMPONENT, "jobs", "job_completed", 3, {"job_id": "7"})[0])
    stats.observe(ev(JobRunner.COMPONENT, "jobs", "job_completed", 4, {"job_id": 8, "work_gpu_s": 1.0})[0])
    s = stats.summary()
    assert s["event_arg_errors"] == 2 and s["events"]["INFO"] == 2
    monkeypatch.setenv(STRICT_EVENTS_ENV, "1")
    with pytest.raises(EventArgError, match="job_id must be int"):
        ev(JobRunner.COMPONENT, "jobs", "job_completed", 5, {"job_id": "7", "work_gpu_s": 1.0})
