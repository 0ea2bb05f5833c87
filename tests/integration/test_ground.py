"""Ground operations against a real-time run in lab contact, through the operator CLI as an
operator types it: ping, a command with its verification stages, on-board validation, and
a hostile byte stream on the link port."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.predicates import FlightRun, free_port

pytestmark = pytest.mark.slow


def ground(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flight.cli", "ground", *args], capture_output=True, text=True,
                          timeout=timeout_s)


@pytest.fixture
def realtime_run(tmp_path):
    port = free_port()
    with FlightRun(tmp_path, "--speed", "realtime", "--contact", "always", "--link", f"127.0.0.1:{port}",
                   "--duration", "600") as run:
        run.link = f"127.0.0.1:{port}"
        run.await_telemetry("link.contact", equals=True, timeout_s=60)
        yield run


def test_ping_command_validation_and_garbage_on_the_link(realtime_run):
    run, link = realtime_run, realtime_run.link

    ping = ground("ping", "--link", link, "--timeout", "5")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert float(re.search(r"([\d.]+) ms round trip", ping.stdout).group(1)) < 2000

    sent = ground("send", "thermal.set_setpoint", "setpoint_c=30", "--link", link)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert [s for s in ("accepted", "started", "completed") if s in sent.stdout] == ["accepted", "started", "completed"]
    run.await_telemetry("thermal.setpoint_c", within=(29.99, 30.01))

    on_ground = ground("send", "thermal.set_setpoint", "setpoint_c=99", "--link", link)
    assert on_ground.returncode == 1 and "VALIDATION_ERROR" in on_ground.stdout + on_ground.stderr
    on_board = ground("send", "thermal.set_setpoint", "setpoint_c=99", "--no-check", "--link", link)
    assert on_board.returncode == 1 and "VALIDATION_ERROR" in on_board.stdout
    assert "completed" not in on_board.stdout

    pids = run.processes()
    with socket.create_connection(("127.0.0.1", int(link.rpartition(":")[2])), timeout=5) as hostile:
        hostile.sendall(os.urandom(20_000) + b"\x18\x04\xc0\x00\x00\x05" + bytes(range(256)) * 8)
    run.await_telemetry("link.bytes_discarded", within=(1, float("inf")))
    assert ground("ping", "--link", link, "--timeout", "5").returncode == 0, "the link still serves"
    assert run.processes() == pids, "no process died or was restarted"
    assert len(run.events("thermal.setpoint_changed")) == 1, "only the valid command changed anything"
    time.sleep(11)  # one more housekeeping period: the rejected command left the setpoint alone
    assert run.latest("thermal.setpoint_c") == 30.0
    assert run.latest("exec.commands_executed") >= 1
