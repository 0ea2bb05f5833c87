"""Every bundled scenario flown whole by `flight run --scenario` on the whole stack: the run
passes its own [expect] (end mode, modes entered, events that must and must not occur), no GPU
reaches its 92 °C hardware shutdown, the battery stays above its contingency floor (SOC 0.40:
60 % depth of discharge) and the expected events are in the recorded telemetry. A scenario's
fault also reaches an external rig over the HAL protocol, and an operator injects and clears
one from the ground in a running real-time stack."""

import sqlite3

import pytest

from flight import scenario
from tests.support.predicates import FlightRun

pytestmark = pytest.mark.slow
SHORT_S = 240
"""Simulated seconds of the external-rig run: past the dead-gpu scenario's fault."""
CONTINGENCY_SOC = 0.40
SHUTDOWN_C = 92.0


def recorded(run: FlightRun) -> dict[str, int]:
    db = sqlite3.connect(f"file:{run.data / 'telemetry.sqlite'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT name, COUNT(*) FROM ev GROUP BY name"))
    finally:
        db.close()


@pytest.mark.parametrize("name", sorted(p.stem for p in scenario.SCENARIO_DIR.glob("*.toml")))
def test_the_bundled_scenario_flies_and_passes(tmp_path, name):
    scn = scenario.load(name)
    with FlightRun(tmp_path, "--scenario", name) as run:
        assert run.wait(timeout_s=300) == 0
    assert f"scenario {scn.name}: PASS" in run.output
    s = run.summary()
    assert s["end"] == "completed" and s["sim_time_s"] == pytest.approx(scn.run_duration_s(), abs=1.0)
    for mode in scn.expect.modes_entered:
        assert s["mode_time_s"][mode] > 0, mode
    assert s["gpu_shutdowns"] == 0 and s["gpu_temp_max_c"] < SHUTDOWN_C
    assert s["battery_soc_min"] > CONTINGENCY_SOC
    events = recorded(run)
    for expected in scn.expect.events:
        assert events.get(expected, 0) > 0, expected
    for unexpected in scn.expect.no_events:
        assert unexpected not in events, unexpected
    assert events.get("hal.fault_injected", 0) == sum(c.command == "hal.inject_fault" for c in scn.commands)
    if scn.expect.mode:
        assert s["mode"] in scn.expect.mode


def test_a_fault_injected_and_cleared_from_the_ground(paced_run):
    run, link = paced_run, paced_run.link
    sent = run.ground("send", "hal.inject_fault", "fault=gpu_dead", "value=0", "target=5", "duration_s=0",
                  "--link", link)
    assert sent.returncode == 0 and "completed" in sent.stdout, sent.stdout + sent.stderr
    run.await_telemetry("hal.gpus_online", 71)
    run.await_telemetry("hal.faults_active", 1)
    assert run.await_event_fields("hal.fault_injected") == {"fault": "gpu_dead", "value": 0.0, "target": "5",
                                                            "duration_s": 0.0}
    offline = run.await_event_fields("hal.gpus_offline")
    assert offline["gpus"] == "5" and offline["shutdowns"] == 0 and offline["online"] == 71

    refused = run.ground("send", "hal.inject_fault", "fault=pump_degraded", "value=2", "target=", "duration_s=0",
                     "--link", link)
    assert refused.returncode == 1 and "VALIDATION_ERROR" in refused.stdout and "flow fraction" in refused.stdout
    assert run.event_fields("hal.fault_injected") == [run.await_event_fields("hal.fault_injected")]

    cleared = run.ground("send", "hal.clear_fault", "fault=gpu_dead", "target=5", "--link", link)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    run.await_telemetry("hal.gpus_online", 72)
    run.await_telemetry("hal.faults_active", 0)


def test_a_scenario_fault_reaches_an_external_rig_over_the_hal_protocol(tmp_path, standalone_sim):
    """Against `flight sim --bind` the fault travels as hal.fault; the telecommand completes
    only when the rig acknowledges it."""
    with FlightRun(tmp_path, "--hal", standalone_sim, "--scenario", "dead-gpu", "--duration", str(SHORT_S)) as run:
        assert run.wait(timeout_s=180) == 0
    assert "scenario dead-gpu: PASS" in run.output
    events = recorded(run)
    assert events.get("hal.fault_injected") == 1 and "hal.scenario_command_failed" not in events
    assert run.summary()["commands_executed"] >= 1
