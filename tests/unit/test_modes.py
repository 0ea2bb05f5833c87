"""Modes: entry after persistence, exit after dwell, no chatter at a threshold, SAFE from
every mode and left only by command (flight.subsystems.power.modes), and the power manager's mode effects."""

import math

import numpy as np
import pytest

from flight.subsystems.power.modes import MODES, POWER_SAVE_GPU_MAX_W, RULES, ModeMachine
from tests.support.power import power_manager, sunlit_frame

NOMINAL_VALUES = {"battery_soc": 0.9, "soc_above_floor": 0.2, "sun_fraction": 1.0, "eclipse_energy_margin_j": 1e7,
                  "gpu_temp_max_c": 75.0, "coolant_supply_error_c": 0.0}


def fly(machine: ModeMachine, start_s: float, seconds: int, **values) -> list[str]:
    """Step ``machine`` once a second from ``start_s`` with NOMINAL values overridden by
    ``values``; return the mode after each step."""
    out = []
    for i in range(seconds):
        machine.step(start_s + i, {**NOMINAL_VALUES, **values})
        out.append(machine.mode)
    return out


def rule(mode: str):
    return next(r for r in RULES if r.mode == mode)


def test_thermal_limit_enters_after_its_persistence_and_not_before():
    m = ModeMachine()
    persist = int(rule("THERMAL_LIMIT").persist_s)
    modes = fly(m, 0, persist + 2, gpu_temp_max_c=86.0)
    assert modes[:persist] == ["NOMINAL"] * persist
    assert modes[-1] == "THERMAL_LIMIT"


def test_a_temperature_on_the_entry_threshold_does_not_make_the_mode_chatter():
    """Alternating just above and below 85 °C for an hour: the entry condition never holds
    for its persistence, so the mode never changes; once in THERMAL_LIMIT, the same signal
    never satisfies the exit rule (below 82 °C for 120 s)."""
    m = ModeMachine()
    changes = 0
    for t in range(3600):
        before = m.mode
        m.step(t, {**NOMINAL_VALUES, "gpu_temp_max_c": 85.0 + (0.1 if t % 20 < 10 else -0.1)})
        changes += m.mode != before
    assert changes == 0 and m.mode == "NOMINAL"
    m.command("THERMAL_LIMIT", "test")
    modes = fly(m, 3600, 3600, gpu_temp_max_c=84.0)
    assert set(modes) == {"THERMAL_LIMIT"}


def test_thermal_limit_leaves_only_after_its_dwell_below_the_lower_threshold():
    m = ModeMachine()
    fly(m, 0, 40, gpu_temp_max_c=86.0)
    dwell = int(rule("THERMAL_LIMIT").dwell_s)
    modes = fly(m, 40, dwell + 2, gpu_temp_max_c=80.0)
    assert modes[:dwell] == ["THERMAL_LIMIT"] * dwell and modes[-1] == "NOMINAL"


def test_power_save_needs_sunlight_to_leave():
    m = ModeMachine()
    fly(m, 0, 20, eclipse_energy_margin_j=-2e3)
    assert m.mode == "POWER_SAVE"
    assert set(fly(m, 20, 1000, sun_fraction=0.0)) == {"POWER_SAVE"}
    assert fly(m, 1020, 400)[-1] == "NOMINAL"


def test_a_balanced_eclipse_plan_is_not_a_shortfall():
    m = ModeMachine()
    assert set(fly(m, 0, 100, eclipse_energy_margin_j=-1.49e-8, sun_fraction=0.0)) == {"NOMINAL"}, "rounding"
    assert fly(m, 100, 20, eclipse_energy_margin_j=-2e3, sun_fraction=0.0)[-1] == "POWER_SAVE"


@pytest.mark.parametrize("start", MODES)
def test_safe_is_reachable_from_every_mode_and_left_only_by_command(start):
    m = ModeMachine()
    m.command(start, "test")
    assert m.mode == start
    m.command("SAFE", "test")
    assert m.mode == "SAFE"
    assert set(fly(m, 0, 1000)) == {"SAFE"}  # nominal values for long: still SAFE
    assert m.command("NOMINAL", "ground") == ("NOMINAL", "ground")


def test_contingency_soc_enters_safe_from_any_automatic_mode():
    m = ModeMachine()
    fly(m, 0, 40, gpu_temp_max_c=86.0)
    modes = fly(m, 40, 10, battery_soc=0.39, soc_above_floor=-0.31)
    assert modes[-1] == "SAFE"


def test_missing_parameters_change_nothing():
    m = ModeMachine()
    for t in range(1000):
        m.step(t, {"coolant_supply_error_c": math.nan})
    assert m.mode == "NOMINAL"
    with pytest.raises(ValueError):
        m.command("PANIC", "test")


@pytest.mark.parametrize("mode, most_w", [("NOMINAL", 1000.0), ("POWER_SAVE", POWER_SAVE_GPU_MAX_W), ("SAFE", 0.0)])
def test_each_mode_caps_the_gpus_as_documented(tmp_path, mode, most_w):
    """Ordered by command (power.set_mode, what exec.set_mode becomes), the mode caps the
    next tick's limits; the power manager, the one mode writer, announces it on ctl/mode."""
    pm, out = power_manager(tmp_path)
    assert pm.execute("set_mode", {"mode": mode, "why": "test"}) == f"mode {mode}"
    pm.on_frame(1, 1.0, sunlit_frame())
    assert float(np.max(pm.actuation["gpu_power_limit_w"])) == pytest.approx(most_w)
    announced = [d["mode"] for kind, name, d in out if (kind, name) == ("ctl", "mode")]
    assert announced == ([] if mode == "NOMINAL" else [mode])
    pm.on_stop()


@pytest.mark.slow
def test_modes_and_watchpoints_commanded_from_the_ground(tmp_path):
    """Through the whole stack at 10× real time: SAFE by command parks every GPU and is left
    by command; a bad watchpoint is refused on board; a good one fires and changes the mode."""
    import subprocess
    import sys

    from tests.support.predicates import FlightRun, free_port

    link = f"127.0.0.1:{free_port()}"

    def send(run, *args):
        done = subprocess.run([sys.executable, "-m", "flight.cli", "ground", "send", *args, "--link", link],
                              check=False, capture_output=True, text=True, timeout=30, env=run.env)
        return done.returncode, done.stdout + done.stderr

    with FlightRun(tmp_path, "--speed", "10", "--contact", "always", "--link", link, "--duration", "3000") as run:
        run.await_telemetry("link.contact", True)
        assert send(run, "exec.set_mode", "mode=SAFE")[0] == 0
        run.await_telemetry("power.mode", "SAFE")
        run.await_telemetry("power.gpus_parked", 72)
        assert run.await_event_fields("exec.mode_changed") == {"old": "NOMINAL", "new": "SAFE", "why": "commanded"}
        assert send(run, "exec.set_mode", "mode=NOMINAL")[0] == 0
        run.await_telemetry("power.mode", "NOMINAL")
        run.await_telemetry("power.gpus_parked", 0)

        wp = ["persistence=3", "action=mode", "severity=MEDIUM", "mode=POWER_SAVE", "command=", "command_args={}"]
        code, out = send(run, "power.monitor_add", "parameter=flux_capacitor_w", "low=0", "high=1", *wp)
        assert code == 1 and "VALIDATION_ERROR" in out
        code, out = send(run, "power.monitor_add", "parameter=battery_soc", "low=0.999", "high=1", *wp)
        assert code == 0, out
        assert run.await_event_fields("power.watchpoint_medium")["parameter"] == "battery_soc"
        run.await_telemetry("power.mode", "POWER_SAVE")
        run.await_telemetry("exec.mode", "POWER_SAVE")
