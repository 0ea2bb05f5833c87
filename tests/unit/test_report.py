"""`flight report`: PNG plots from a run database written with the real recorder and real bus
messages; clear errors and exit status 1 for a missing, corrupt, empty or too old database."""

import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image

from flight.core.messages import Encoder, decode
from flight.executive.recorder import Recorder
from flight.report import ReportError, intervals, write_report

PLOTS = ("soc.png", "power.png", "gpu_temp.png", "power_limits.png", "mode.png")
ECLIPSE = (100, 250)
PASS = (400, 450)
ECLIPSE_SHADE = np.array([0.88, 0.88, 0.88])
"""Grey 0.6 at alpha 0.3 over white, as :mod:`flight.report` shades an eclipse."""


def flight(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flight.cli", *args], capture_output=True, text=True, timeout=120, check=False)


def record_run(data_dir, ticks: int = 600, with_power: bool = True) -> None:
    """A small run database: housekeeping every 10 ticks as the stack publishes it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    rec = Recorder(data_dir / "telemetry.sqlite")
    enc = {src: Encoder(src) for src in ("hal", "power", "exec")}

    def put(src: str, name: str, tick: int, data: dict) -> None:
        body = enc[src].encode("tm", name, data, tick, float(tick))[1]
        rec.record(decode(body), body)

    for tick in range(10, ticks + 1, 10):
        dark = ECLIPSE[0] <= tick < ECLIPSE[1]
        temps = 40.0 + 30.0 * np.sin(np.arange(72) + tick / 50.0) ** 2
        put("hal", "hal.hk", tick, {
            "time_s": float(tick), "eclipse": dark, "ground_contact": PASS[0] <= tick < PASS[1],
            "battery_soc": 0.9 - (0.001 * (tick - ECLIPSE[0]) if dark else 0.0),
            "solar_array_power_w": 0.0 if dark else 200e3, "gpu_power_total_w": 30e3 if dark else 72e3,
            "bus_load_w": 5e3, "gpu_temp_min_c": float(temps.min()), "gpu_temp_mean_c": float(temps.mean()),
            "gpu_temp_max_c": float(temps.max())})
        if with_power:
            put("power", "power.hk", tick, {"gpu_power_limit_w": np.where(np.arange(72) < tick / 10, 400.0, 1000.0)})
        put("exec", "exec.hk", tick, {"mode": "POWER_SAVE" if dark else "NOMINAL"})
    rec.close()


def test_every_plot_is_written_and_is_a_real_image(tmp_path):
    record_run(tmp_path / "run")
    lines = write_report(tmp_path / "run", tmp_path / "out")
    assert len(lines) == len(PLOTS)
    for name, line in zip(PLOTS, lines):
        path = tmp_path / "out" / name
        assert line.startswith(f"wrote {path}: ") and "1 eclipse(s), 1 ground pass(es) shaded" in line
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        px = image.imread(path)[..., :3]
        assert px.shape[0] > 300 and px.shape[1] > 800
        assert px.std() > 0.05, f"{name} is nearly blank"
        shaded = np.all(np.abs(px - ECLIPSE_SHADE) < 0.02, axis=-1).mean()
        assert shaded > 0.01, f"{name} shows no eclipse shading"
    assert "0.760..0.900" in lines[0] and "(NOMINAL, POWER_SAVE)" in lines[4]


def test_intervals_follow_the_samples():
    t = np.arange(0.0, 100.0, 10.0)
    flag = (t >= 20) & (t < 50) | (t >= 80)
    assert intervals(t, flag) == [(20.0, 50.0), (80.0, 90.0)]
    assert intervals(t, np.zeros(10, bool)) == []


def test_a_run_without_power_housekeeping_skips_that_plot(tmp_path):
    record_run(tmp_path / "run", with_power=False)
    lines = write_report(tmp_path / "run", tmp_path / "out")
    assert "skipped power_limits.png: no power.hk housekeeping in the run" in lines
    assert not (tmp_path / "out" / "power_limits.png").exists() and (tmp_path / "out" / "soc.png").exists()


def test_cli_writes_into_data_dir_report_by_default(tmp_path):
    record_run(tmp_path / "run")
    out = flight("report", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(PLOTS)
    assert all((tmp_path / "run" / "report" / name).is_file() for name in PLOTS)


def test_help_says_what_each_file_shows():
    out = flight("report", "--help")
    assert out.returncode == 0 and "usage: flight report" in out.stdout
    assert all(name in out.stdout for name in PLOTS) and "--out" in out.stdout


def record_old_run(data_dir) -> None:
    """hal.hk without the channels the plots need, as a run of an older version recorded it."""
    rec = Recorder(data_dir / "telemetry.sqlite")
    body = Encoder("hal").encode("tm", "hal.hk", {"time_s": 10.0, "eclipse": False, "ground_contact": False}, 10, 10.0)[1]
    rec.record(decode(body), body)
    rec.close()


@pytest.mark.parametrize("make, why", [
    (lambda d: None, "no telemetry database at"),
    (lambda d: (d / "telemetry.sqlite").write_bytes(b"this is not sqlite, just some bytes" * 100), "is not a run database"),
    (lambda d: Recorder(d / "telemetry.sqlite").close(), "holds no hal.hk housekeeping"),
    (record_old_run, "hal.hk packets lack the channel 'battery_soc'"),
])
def test_missing_corrupt_empty_or_old_database_is_a_clear_error(tmp_path, make, why):
    data = tmp_path / "run"
    data.mkdir()
    make(data)
    with pytest.raises(ReportError, match=why):
        write_report(data, tmp_path / "out")
    out = flight("report", str(data), "--out", str(tmp_path / "out"))
    assert out.returncode == 1 and out.stderr.startswith("error: ") and why in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_injected_faults_are_marked_from_their_start_to_their_clear(tmp_path):
    from flight.hal.bridge import HalBridge
    from flight.report import fault_spans

    record_run(tmp_path / "run")
    rec = Recorder(tmp_path / "run" / "telemetry.sqlite")
    enc = Encoder("hal")
    for tick, event, args in [
        (120, "fault_injected", {"fault": "pump_degraded", "value": 0.5, "target": "", "duration_s": 0.0}),
        (200, "fault_injected", {"fault": "sensor_stuck", "value": 0.0, "target": "gpu_temp_c[7]", "duration_s": 0.0}),
        (300, "fault_cleared", {"fault": "pump_degraded", "target": "", "why": "commanded"}),
    ]:
        body = enc.encode("ev", f"hal.{event}", HalBridge.COMPONENT.event_payload(event, args), tick, float(tick))[1]
        rec.record(decode(body), body)
    rec.close()
    assert fault_spans(tmp_path / "run" / "telemetry.sqlite", 600.0) == [
        (120.0, 300.0, "pump_degraded 0.5"), (200.0, 600.0, "sensor_stuck gpu_temp_c[7]")]
    lines = write_report(tmp_path / "run", tmp_path / "out")
    assert all("2 injected fault(s) marked" in line for line in lines)


def test_fault_marks_come_from_the_event_fields_not_the_text(tmp_path):
    """Reworded messages mark the same faults: the report reads the recorded arguments; a
    database recorded before events had fields has none to mark (and still plots)."""
    from flight.report import fault_spans

    record_run(tmp_path / "run")
    rec = Recorder(tmp_path / "run" / "telemetry.sqlite")
    enc = Encoder("hal")
    for tick, event, message, args in [
        (50, "fault_injected", "pump at half flow",
         {"fault": "pump_degraded", "value": 0.5, "target": "", "duration_s": 0.0}),
        (80, "fault_cleared", "pump fine again", {"fault": "pump_degraded", "target": "", "why": "expired"}),
    ]:
        body = enc.encode("ev", f"hal.{event}", {"severity": "INFO", "message": message, "args": args},
                          tick, float(tick))[1]
        rec.record(decode(body), body)
    rec.close()
    assert fault_spans(tmp_path / "run" / "telemetry.sqlite", 600.0) == [(50.0, 80.0, "pump_degraded 0.5")]

    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE ev (tick INTEGER, time_s REAL, src TEXT, name TEXT, severity TEXT, message TEXT)")
    db.execute("INSERT INTO ev VALUES (?,?,?,?,?,?)", (5, 5.0, "hal", "hal.fault_injected", "MEDIUM",
                                                       "FAULT INJECTION: pump_degraded value=0.5 target='' duration 0 s"))
    db.commit()
    db.close()
    assert fault_spans(old, 600.0) == []
