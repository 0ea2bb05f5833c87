"""`flight ground ping | send | watch` against a real link manager on loopback TCP (run in a
background thread by the test_link harness, its commands answered by a stand-in dispatcher)."""

import argparse
import socket
import threading
import time

import pytest

from flight.ground import cli
from tests.test_link import THERMAL_HK, LinkHarness

FRAME_PERIOD_S = 0.05
"""Wall seconds per served tick (one onboard second each)."""


class ServedLink:
    """The harness's LinkManager served from its own thread, ticking every FRAME_PERIOD_S;
    ``call(fn)`` runs ``fn(harness)`` once in that thread (the link is single-threaded),
    ``each_tick(harness)`` after every tick."""

    def __init__(self, tmp_path, contact: bool = True) -> None:
        self.harness = LinkHarness(tmp_path)
        self.contact = contact
        self.endpoint = f"127.0.0.1:{self.harness.port}"
        self._calls: list = []
        self.each_tick = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.harness.frame(contact=contact)  # contact is known before any client can connect
        self._thread = threading.Thread(target=self._serve, name="link", daemon=True)
        self._thread.start()

    def call(self, fn) -> None:
        with self._lock:
            self._calls.append(fn)

    def _serve(self) -> None:
        next_frame = time.monotonic() + FRAME_PERIOD_S
        while not self._stop.is_set():
            with self._lock:
                calls, self._calls = self._calls, []
            for fn in calls:
                fn(self.harness)
            self.harness.pump(0.005)
            if time.monotonic() >= next_frame:
                self.harness.frame(contact=self.contact)
                if self.each_tick is not None:
                    self.each_tick(self.harness)
                next_frame = time.monotonic() + FRAME_PERIOD_S

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.harness.close()


@pytest.fixture
def served(tmp_path):
    s = ServedLink(tmp_path)
    yield s
    s.close()


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="flight")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ground", *argv])
    return args.func(args)


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


def test_ping_without_a_link_fails_cleanly(capsys):
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
    time.sleep(3 * FRAME_PERIOD_S)
    assert served.harness.link.tc_received == 0


def test_no_check_lets_the_satellite_refuse_it(served, capsys):
    assert run("send", "--no-check", "--link", served.endpoint, "thermal.set_setpoint", "setpoint_c=99") == 1
    out = capsys.readouterr().out
    assert "acceptance failed: VALIDATION_ERROR" in out and "caught on the ground" not in out
    assert served.harness.link.tc_received == 1


def test_send_times_out_without_a_final_verdict(served, capsys):
    served.call(lambda h: setattr(h, "script", [("accepted", "", "")]))
    time.sleep(3 * FRAME_PERIOD_S)
    assert run("send", "--timeout", "0.5", "--link", served.endpoint, "exec.noop") == 1
    out = capsys.readouterr().out
    assert "accepted" in out and "no final verification of exec.noop within 0.5 s" in out


def test_watch_shows_housekeeping_with_units_and_events(served, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")

    def feed(h):
        h.publish("tm", "thermal.hk", THERMAL_HK)
        h.publish("ev", "thermal.setpoint_changed",
                  {"severity": "INFO", "message": "coolant setpoint 25.0 -> 30.0 °C", "args": {}})
    served.call(lambda h: h.link.cmd_set_hk_interval(1.0))
    served.each_tick = feed
    assert run("watch", "--link", served.endpoint, "--count", "6", "--timeout", "10") == 0
    out = capsys.readouterr().out
    assert "thermal.setpoint_c" in out and "degC" in out and "link.tc_received" in out
    assert "[72] min 0 mean 17.75 max 35.5" in out  # gpu_headroom_w summarised
    assert "coolant setpoint 25.0 -> 30.0 °C" in out


def test_watch_with_too_few_packets_fails_after_its_timeout(served, capsys):
    started = time.monotonic()
    assert run("watch", "--link", served.endpoint, "--count", "100000", "--timeout", "0.5") == 1
    assert time.monotonic() - started < 5
    assert "packets within 0.5 s" in capsys.readouterr().out
