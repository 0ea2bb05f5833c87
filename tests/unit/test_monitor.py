"""Onboard monitoring (flight.subsystems.power.monitor): watchpoints fire after their persistence and not
before, re-arm when back within limits, act (event, mode, telecommand), are edited only by
valid commands and survive a restart in the run's SQLite database."""

import json

import numpy as np
import pytest

from flight.core.component import CommandError
from flight.core.messages import Message
from flight.subsystems.power.monitor import DEFAULT_WATCHPOINTS, Monitor, Watchpoint
from tests.support.power import power_manager, sunlit_frame


def hot_frame(temp_c: float) -> dict:
    return sunlit_frame(gpu_temp_c=np.full(72, 70.0) + np.eye(72)[5] * (temp_c - 70.0))


def watchpoint(**over) -> Watchpoint:
    base = {"wp_id": 0, "parameter": "gpu_temp_max_c", "low": -20.0, "high": 80.0, "persistence": 3,
            "enabled": True, "action": "event", "severity": "LOW"}
    return Watchpoint(**{**base, **over})


def only(monitor: Monitor, wp: Watchpoint) -> Monitor:
    for wp_id in list(monitor.table):
        monitor.delete(wp_id)
    monitor.add(wp)
    return monitor


def test_a_watchpoint_fires_after_its_persistence_and_not_before():
    mon = only(Monitor(None), watchpoint(persistence=3))
    fired = [mon.check(hot_frame(85.0)) for _ in range(5)]
    assert [len(f) for f in fired] == [0, 0, 1, 0, 0]  # once per excursion
    assert fired[2][0].value == pytest.approx(85.0) and not fired[2][0].cleared


def test_an_interrupted_excursion_restarts_the_count_and_a_return_clears():
    mon = only(Monitor(None), watchpoint(persistence=3))
    pattern = [85.0, 85.0, 75.0, 85.0, 85.0, 85.0, 75.0]
    results = [mon.check(hot_frame(t)) for t in pattern]
    assert [len(r) for r in results] == [0, 0, 0, 0, 0, 1, 1]
    assert results[6][0].cleared


def test_a_disabled_watchpoint_never_fires():
    mon = only(Monitor(None), watchpoint(persistence=1))
    mon.enable(1, False)
    assert not any(mon.check(hot_frame(99.0)) for _ in range(10))
    mon.enable(1, True)
    assert mon.check(hot_frame(99.0))


@pytest.mark.parametrize("bad, why", [
    ({"parameter": "warp_core_temp_c"}, "unknown parameter"),
    ({"low": 90.0, "high": 80.0}, "low < high"),
    ({"low": float("nan")}, "finite"),
    ({"persistence": 0}, ">= 1"),
    ({"action": "mode", "mode": "PANIC"}, "mode"),
    ({"action": "command", "command": "thermal.self_destruct", "command_args": "{}"}, "INVALID_OPCODE"),
    ({"action": "command", "command": "thermal.set_setpoint", "command_args": '{"setpoint_c": 99}'}, "outside"),
    ({"action": "command", "command": "thermal.set_setpoint", "command_args": "{oops"}, "JSON"),
])
def test_bad_watchpoints_are_refused_and_change_nothing(tmp_path, bad, why):
    from flight.subsystems.power.manager import _validate_command

    mon = Monitor(tmp_path / "monitor.sqlite", _validate_command)
    before = dict(mon.table)
    with pytest.raises(CommandError) as err:
        mon.add(watchpoint(**bad))
    assert err.value.code == "VALIDATION_ERROR" and why in err.value.message
    assert mon.table == before
    mon.close()
    assert Monitor(tmp_path / "monitor.sqlite").table == before


def test_the_table_survives_a_restart(tmp_path):
    path = tmp_path / "monitor.sqlite"
    mon = Monitor(path)
    assert list(mon.table.values()) == list(DEFAULT_WATCHPOINTS)
    added = mon.add(watchpoint())
    mon.delete(1)
    mon.enable(3, False)
    mon.close()
    again = Monitor(path)
    assert 1 not in again.table and again.table[added.wp_id] == added and not again.table[3].enabled


def command(pm, name: str, **args):
    """Run a power command as the process runner does (dictionary validation first)."""
    return pm.execute(name, args)


def test_commands_edit_the_table_and_refusals_say_validation_error(tmp_path):
    pm, out = power_manager(tmp_path)
    n = len(pm.monitor.table)
    args = {"parameter": "battery_temp_c", "low": 0.0, "high": 40.0, "persistence": 5, "action": "event",
            "severity": "MEDIUM", "mode": "", "command": "", "command_args": "{}"}
    assert command(pm, "monitor_add", **args) == f"watchpoint {n + 1} added"
    with pytest.raises(CommandError) as err:
        command(pm, "monitor_add", **{**args, "parameter": "flux_capacitor_w"})
    assert err.value.code == "VALIDATION_ERROR"
    with pytest.raises(CommandError) as err:
        command(pm, "monitor_delete", wp_id=999)
    assert err.value.code == "VALIDATION_ERROR"
    command(pm, "monitor_disable", wp_id=n + 1)
    listed = [json.loads(line) for line in command(pm, "monitor_list").splitlines()]
    assert len(listed) == n + 1 and listed[-1]["enabled"] is False
    assert [d["args"]["change"] for k, name, d in out if name == "power.monitor_changed"] == \
        [f"added {n + 1} (battery_temp_c)", f"disabled {n + 1}"]
    pm.on_stop()


def test_a_mode_action_enters_safe_after_persistence(tmp_path):
    """The default table parks the rack (SAFE) when the hottest GPU stays above 90.5 °C."""
    pm, out = power_manager(tmp_path)
    wp = next(w for w in pm.monitor.table.values() if w.action == "mode")
    for tick in range(1, wp.persistence + 1):
        assert pm.modes.mode == "NOMINAL"
        pm.on_frame(tick, float(tick), hot_frame(91.0))
    assert pm.modes.mode == "SAFE"
    assert [d["mode"] for kind, name, d in out if kind == "ctl"] == ["SAFE"]
    assert [(name, d["args"]["wp_id"]) for kind, name, d in out if name.startswith("power.watchpoint_")] == \
        [("power.watchpoint_high", wp.wp_id)]  # the 88 °C watchpoint persists 5 ticks: not yet
    pm.on_stop()


def test_a_command_action_sends_its_telecommand(tmp_path):
    sent = []
    pm, out = power_manager(tmp_path)
    pm._send_command = lambda cid, qualified, args: sent.append((qualified, args))
    wp = next(w for w in pm.monitor.table.values() if w.action == "command")
    for tick in range(1, wp.persistence + 2):
        pm.on_frame(tick, float(tick), sunlit_frame(battery_temp_c=wp.high + 3))
    assert sent == [(wp.command, json.loads(wp.command_args))]
    pm.on_response(Message("dispatcher", 1, 0, 0.0, "rsp", wp.command,
                           {"id": "x", "stage": "failed", "code": "BUSY", "message": "busy"}))
    assert out[-1][1] == "power.monitor_command_failed"
    pm.on_stop()
