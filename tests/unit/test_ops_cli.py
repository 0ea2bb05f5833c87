"""`flight ground schedule | params | events enable/disable | hk | dict` as an operator types
them, against a real link manager on loopback TCP served in a background thread (the
harness of test_ground_cli); each prints the verification stages as `send` does."""


import pytest

from flight.spacelink import keys
from tests.support.ground_cli import run
from tests.support.predicates import wait_until

pytestmark = pytest.mark.usefixtures("ground_keys")

WAIT_S = 5.0


def stages(out: str) -> list[str]:
    return [line.split()[2] for line in out.splitlines() if " ms  " in line]


def until(condition, what: str) -> None:
    wait_until(condition, what, WAIT_S, 0.02)


@pytest.mark.parametrize("sub", [["schedule"], ["schedule", "add"], ["params"], ["params", "set"], ["events"],
                                 ["events", "disable"], ["hk"], ["hk", "interval"], ["dict"]])
def test_help_explains_each_command_with_an_example(capsys, sub):
    with pytest.raises(SystemExit) as exit_:
        run(*sub, "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: flight ground " + " ".join(sub) in out
    if len(sub) == 1:
        assert "example" in out and "flight ground " + sub[0] in out


def test_a_scheduled_command_is_listed_then_runs_at_its_time(served, capsys):
    link = served.harness.link
    assert run("schedule", "add", "--link", served.endpoint, "+3", "link.set_hk_interval", "interval_s=3") == 0
    out = capsys.readouterr().out
    assert stages(out) == ["accepted", "started", "completed"]
    assert "link.set_hk_interval interval_s=3.0 (request id 0x" in out
    assert run("schedule", "list", "--link", served.endpoint) == 0
    listed = capsys.readouterr().out
    assert "1 scheduled" in listed and "link.set_hk_interval interval_s=3.0" in listed
    until(lambda: link.hk_interval_s == 3.0, "the scheduled command ran")
    assert run("schedule", "list", "--link", served.endpoint) == 0
    assert "0 scheduled" in capsys.readouterr().out


def test_schedule_disable_delete_and_a_refused_insertion(served, capsys):
    link = served.harness.link
    assert run("schedule", "disable", "--link", served.endpoint) == 0
    assert run("schedule", "add", "--link", served.endpoint, "+1", "link.set_hk_interval", "interval_s=2") == 0
    request_id = capsys.readouterr().out.split("request id ")[1].split(")")[0]
    assert run("schedule", "delete", "--link", served.endpoint, request_id) == 0
    assert len(link.schedule_service.schedule) == 0
    assert run("schedule", "delete", "--link", served.endpoint, request_id) == 1
    assert "acceptance failed: VALIDATION_ERROR" in capsys.readouterr().out
    assert run("schedule", "add", "--link", served.endpoint, "+5", "thermal.set_setpoint", "setpoint_c=99") == 1
    assert "caught on the ground: nothing was sent" in capsys.readouterr().out
    assert run("schedule", "add", "--link", served.endpoint, "--no-check", "+5", "thermal.set_setpoint",
               "setpoint_c=99") == 1
    assert "acceptance failed: VALIDATION_ERROR" in capsys.readouterr().out
    assert run("schedule", "add", "--link", served.endpoint, "2020-01-01T00:00:00Z", "exec.noop") == 1
    assert "release time" in capsys.readouterr().out
    assert len(link.schedule_service.schedule) == 0 and link.hk_interval_s == 10.0


def test_params_set_and_get(served, capsys):
    assert run("params", "set", "--link", served.endpoint, "link.hk_interval_s", "4") == 0
    assert stages(capsys.readouterr().out) == ["accepted", "started", "completed"]
    assert run("params", "get", "--link", served.endpoint, "link.hk_interval_s", "thermal.setpoint_c") == 0
    out = capsys.readouterr().out
    assert "link.hk_interval_s" in out and "4.0" in out and "thermal.setpoint_c" in out and "25.0" in out
    assert run("params", "set", "--link", served.endpoint, "thermal.setpoint_c", "99") == 1
    assert "caught on the ground" in capsys.readouterr().out
    assert run("params", "set", "--link", served.endpoint, "--no-check", "link.hk_interval_s", "0.5") == 1
    assert "acceptance failed: VALIDATION_ERROR" in capsys.readouterr().out
    assert served.harness.link.hk_interval_s == 4.0


def test_events_disable_enable_and_list(served, capsys):
    assert run("events", "disable", "--link", served.endpoint, "link.client_connected", "0x0403") == 0
    assert run("events", "disabled", "--link", served.endpoint) == 0
    out = capsys.readouterr().out
    assert "2 event(s) with TM[5,x] off" in out and "link.client_disconnected" in out
    assert run("events", "enable", "--link", served.endpoint, "link.client_connected") == 0
    assert run("events", "disable", "--link", served.endpoint, "link.no_such_event") == 1
    assert "no event 'link.no_such_event'" in capsys.readouterr().out
    assert served.harness.link.reporting.events_disabled == {0x0403}


def test_hk_structures_and_interval(served, capsys):
    assert run("hk", "interval", "--link", served.endpoint, "thermal", "30") == 0
    assert run("hk", "disable", "--link", served.endpoint, "jobs") == 0
    capsys.readouterr()
    assert run("hk", "list", "--link", served.endpoint, "thermal", "jobs") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "thermal" in line or "jobs" in line]
    assert any("thermal" in r and " on " in r and " 30 " in r for r in rows)
    assert any("jobs" in r and " off " in r for r in rows)


def test_dict_shows_commands_telemetry_events_and_parameters(capsys):
    assert run("dict") == 0
    out = capsys.readouterr().out
    for heading in ("commands (TC[8,1])", "telemetry (TM[3,25])", "events (TM[5,x])", "parameters (PUS 20)"):
        assert heading in out
    assert "thermal.setpoint_c" in out and "15 .. 45" in out and "power.soc_floor" in out


def test_a_schedule_signed_with_a_key_the_satellite_does_not_know_is_refused(served, tmp_path, capsys):
    keys.create_key(tmp_path / "other")
    stranger = keys.key_path(tmp_path / "other", keys.LOCAL_STATION)
    assert run("schedule", "add", "--link", served.endpoint, "--key", str(stranger), "+5", "exec.noop") == 1
    out = capsys.readouterr().out
    assert "AUTHENTICATION_ERROR" in out and "check --station/--key/--keys" in out
    assert len(served.harness.link.schedule_service.schedule) == 0
