"""`flight ground ping | send | watch` and `flight keys init` against a real link manager on
loopback TCP (run in a background thread by the link harness, its commands answered by the
real dispatcher and subsystems). The key directory is the test's own (RACKFLIGHT_KEYS_DIR)."""

import socket
import threading
import time

import pytest

from flight.ground.cli.watch import WatchView
from flight.spacelink import keys, tm_sdls
from tests.support.ground_cli import run
from tests.support.link_harness import FRAME_PERIOD_S, JOBS_HK, THERMAL_HK, ServedLink
from tests.support.predicates import wait_until

pytestmark = pytest.mark.usefixtures("ground_keys")


def await_ticks(served, n: int) -> None:
    """Wait until the served link has ticked ``n`` more times."""
    until = served.harness.tick + n
    wait_until(lambda: served.harness.tick >= until, f"{n} ticks of the served link", 10 + n * FRAME_PERIOD_S,
               FRAME_PERIOD_S / 5)


@pytest.mark.parametrize("sub", [[], ["ping"], ["send"], ["watch"]])
def test_help_explains_each_command_with_an_example(capsys, sub):
    with pytest.raises(SystemExit) as exit_:
        run(*sub, "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "flight ground" in out
    if sub:
        assert "--link HOST:PORT" in out and "--timeout S" in out and "127.0.0.1:52001" in out


def test_ping_prints_the_round_trip(served, capsys):
    assert run("ping", "--link", served.endpoint, "--timeout", "3") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"TM[17,2] from {served.endpoint}: ") and out.rstrip().endswith(" ms round trip")


def test_ping_out_of_contact_times_out(tmp_path, capsys):
    served = ServedLink(tmp_path, contact=False)
    try:
        started = time.monotonic()
        assert run("ping", "--link", served.endpoint, "--timeout", "0.5") == 1
        assert time.monotonic() - started < 3
        assert "no TM[17,2] within 0.5 s" in capsys.readouterr().out
    finally:
        served.close()


def test_ping_without_a_link_fails_cleanly(ground_keys, capsys):
    keys.create_key(ground_keys)
    tm_sdls.ensure_tm_key(ground_keys)  # a ground provisioned with both keys, and no link to reach
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run("ping", "--link", f"127.0.0.1:{port}", "--timeout", "1") == 1
    assert "cannot reach the link" in capsys.readouterr().out


def test_send_prints_each_stage_and_exits_0_on_completion(served, capsys):
    assert run("send", "--link", served.endpoint, "thermal.set_setpoint", "setpoint_c=30") == 0
    out = capsys.readouterr().out
    stages = [line.split()[2] for line in out.splitlines() if " ms  " in line]
    assert stages == ["accepted", "started", "completed"]
    assert "TC[8,1] thermal.set_setpoint setpoint_c=30.0" in out
    assert [c[1:] for c in served.harness.commands] == [("thermal.set_setpoint", {"setpoint_c": 30.0})]


def test_a_link_command_really_runs_on_board(served):
    assert run("send", "--link", served.endpoint, "link.set_hk_interval", "interval_s=2") == 0
    assert served.harness.link.hk_interval_s == 2.0


@pytest.mark.parametrize("argv, code", [
    (["thermal.set_setpoint", "setpoint_c=99"], "VALIDATION_ERROR"),
    (["thermal.set_gains", "loop=fan", "kp=0", "ki=0", "kd=0"], "VALIDATION_ERROR"),
    (["thermal.set_setpoint", "setpoint_c=warm"], "FORMAT_ERROR"),
    (["thermal.set_setpoint", "setpoint=30"], "FORMAT_ERROR"),
    (["thermal.set_setpoint", "setpoint_c=30", "setpoint_c=31"], "FORMAT_ERROR"),
    (["thermal.set_setpoint", "30"], "FORMAT_ERROR"),
    (["thermal.set_setpoint"], "FORMAT_ERROR"),
    (["thermal.warp_drive"], "INVALID_OPCODE"),
])
def test_a_command_that_fails_on_the_ground_is_not_sent(served, capsys, argv, code):
    assert run("send", "--link", served.endpoint, *argv) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{code}: ") and "caught on the ground: nothing was sent" in out
    await_ticks(served, 3)  # the link had three ticks' time to see any packet
    assert served.harness.link.counters.tc_received == 0


def test_no_check_lets_the_satellite_refuse_it(served, capsys):
    assert run("send", "--no-check", "--link", served.endpoint, "thermal.set_setpoint", "setpoint_c=99") == 1
    out = capsys.readouterr().out
    assert "acceptance failed: VALIDATION_ERROR" in out and "caught on the ground" not in out
    assert served.harness.link.counters.tc_received == 1


def test_send_times_out_without_a_final_verdict(served, capsys):
    installed = threading.Event()
    served.call(lambda h: (setattr(h, "script", [("accepted", "", "")]), installed.set()))
    assert installed.wait(5), "the link thread took the script"
    assert run("send", "--timeout", "0.5", "--link", served.endpoint, "exec.noop") == 1
    out = capsys.readouterr().out
    assert "accepted" in out and "no final verification of exec.noop within 0.5 s" in out


def test_watch_shows_housekeeping_with_units_and_events(served, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")

    def feed(h):
        h.publish("tm", "thermal.hk", THERMAL_HK)
        h.publish("tm", "jobs.hk", JOBS_HK)
        h.publish("ev", "thermal.setpoint_changed",
                  {"severity": "INFO", "message": "coolant setpoint 25.0 -> 30.0 °C", "args": {}})
    served.call(lambda h: h.link.cmd_set_hk_interval(1.0))
    served.each_tick = feed
    assert run("watch", "--link", served.endpoint, "--count", "6", "--timeout", "10") == 0
    out = capsys.readouterr().out
    assert "thermal.setpoint_c" in out and "degC" in out and "link.tc_received" in out
    assert "[72] min 0 mean 17.75 max 35.5" in out  # gpu_headroom_w summarised
    assert "[72] min 0 mean 35.5 max 71" in out and "[72] 36 true" in out  # gpu_job_id, gpu_fenced
    assert "coolant setpoint 25.0 -> 30.0 °C" in out


def test_watch_with_too_few_packets_fails_after_its_timeout(served, capsys):
    started = time.monotonic()
    assert run("watch", "--link", served.endpoint, "--count", "100000", "--timeout", "0.5") == 1
    assert time.monotonic() - started < 5
    assert "packets within 0.5 s" in capsys.readouterr().out


# -- signing ---------------------------------------------------------------------------------------
def test_keys_init_creates_a_private_key_and_says_where(tmp_path, capsys):
    assert run("init", "--station", "svalbard", "--dir", str(tmp_path / "k"), command="keys") == 0
    path = tmp_path / "k" / "svalbard.key"
    assert str(path) in capsys.readouterr().out
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "k").stat().st_mode & 0o777 == 0o700
    key = keys.read_key(path)
    assert (key.station, key.spi, len(key.key)) == ("svalbard", 1, 32)
    assert run("init", "--station", "svalbard", "--dir", str(tmp_path / "k"), command="keys") == 1
    assert "already has a key" in capsys.readouterr().out and keys.read_key(path) == key


def test_keys_init_defaults_to_the_environment_directory(ground_keys, capsys):
    assert run("init", "--station", "kiruna", command="keys") == 0
    assert (ground_keys / "kiruna.key").exists() and str(ground_keys) in capsys.readouterr().out


def test_a_foreign_key_is_refused_and_shown_as_an_authentication_failure(served, tmp_path, capsys):
    keys.create_key(tmp_path / "other", "intruder", spi=served.harness.key.spi)
    foreign = str(tmp_path / "other" / "intruder.key")
    assert run("ping", "--link", served.endpoint, "--timeout", "3", "--key", foreign) == 1
    out = capsys.readouterr().out
    assert "refused" in out and "AUTHENTICATION_ERROR: MAC mismatch" in out and foreign in out
    assert run("send", "--link", served.endpoint, "--key", foreign, "exec.noop") == 1
    out = capsys.readouterr().out
    assert "acceptance failed: AUTHENTICATION_ERROR" in out and "did not authenticate" in out
    assert served.harness.commands == [] and served.harness.link.counters.tc_auth_failed == 2


def test_unsigned_tcs_are_refused(served, capsys):
    assert run("ping", "--link", served.endpoint, "--timeout", "3", "--unauthenticated") == 1
    out = capsys.readouterr().out
    # the refusal (TM[1,2]) comes sealed: a ground that takes TM unsealed cannot read it, and says so
    assert "no TM[17,2]" in out and "drop --unauthenticated" in out
    assert served.harness.link.counters.tc_auth_failed == 1


def test_a_missing_station_key_is_a_clear_error_before_connecting(served, capsys):
    assert run("ping", "--link", served.endpoint, "--station", "nowhere") == 1
    out = capsys.readouterr().out
    assert "no key for station 'nowhere'" in out and "flight keys init" in out
    await_ticks(served, 3)  # the link had three ticks' time to see any packet
    assert served.harness.link.counters.tc_received == 0



def test_watch_keeps_the_newest_sample_when_a_pass_brings_older_ones_after_it():
    from flight.spacelink.pus3_housekeeping import HkReport
    from flight.spacelink.pus5_events import EventReport
    from tests.support.link_harness import DICT, THERMAL, UTC0

    view = WatchView("127.0.0.1:1", stale_s=30.0)
    view.add(HkReport(THERMAL, {**THERMAL_HK, "setpoint_c": 31.0}, UTC0 + 100))
    view.add(HkReport(THERMAL, {**THERMAL_HK, "setpoint_c": 25.0}, UTC0 + 10))  # from the stored backlog
    assert view.hk["thermal"].values["setpoint_c"] == 31.0
    view.add(EventReport("link.contact_lost", DICT.event_id("link.contact_lost"), "INFO", "later", UTC0 + 90))
    view.add(EventReport("link.contact_lost", DICT.event_id("link.contact_lost"), "INFO", "earlier", UTC0 + 5))
    assert [e.message for e in view.events] == ["earlier", "later"]
