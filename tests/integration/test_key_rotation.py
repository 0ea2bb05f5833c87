"""Key rotation and revocation through the whole stack, as an operator does it with the ground
CLI (README, "Authenticated commanding"): a new station key uploaded wrapped under the
key-encryption key `flight run` created, verified, activated, the old one deactivated; then a
reboot of the flight computer (`flight run` again on the same data directory, the old key's file
still in the key directory): the revoked key stays refused (KEY_NOT_ACTIVE, counted), the new one
commands."""

import socket

import pytest

from flight.spacelink import keys
from tests.support.predicates import PACED, FlightRun, at_least, wait_until

pytestmark = pytest.mark.slow


def _listening(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def _ok(done) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_revoked_key_stays_refused_and_the_rotated_one_commands_across_a_reboot(tmp_path):
    with FlightRun(tmp_path, *PACED, "--contact", "always", "--duration", "3000") as run:
        run.await_telemetry("link.contact", True, timeout_s=60)
        link = ("--link", run.link)
        keys.create_key(run.keys, "local-2")  # `flight keys init --station local-2`
        _ok(run.ground("keys", "upload", "local-2", *link))
        assert "verified" in _ok(run.ground("keys", "verify", "2", *link))
        _ok(run.ground("keys", "activate", "2", *link))
        _ok(run.ground("send", "thermal.set_setpoint", "setpoint_c=31", *link, "--station", "local-2"))
        _ok(run.ground("keys", "deactivate", "1", *link, "--station", "local-2"))
        refused = run.ground("send", "thermal.set_setpoint", "setpoint_c=32", *link)
        assert refused.returncode == 1 and "KEY_NOT_ACTIVE" in refused.stdout
        run.await_telemetry("link.tc_key_not_active", at_least(1))
    assert "created the key-encryption key 'master' (id 1)" in run.output

    with FlightRun(tmp_path, *PACED, "--contact", "always", "--duration", "3000") as again:  # a reboot
        # (the first run's telemetry is in the same file: wait for this run's link itself)
        wait_until(lambda: _listening(again.link), "the rebooted link listens", timeout_s=60, interval_s=0.2)
        link = ("--link", again.link)
        refused = again.ground("ping", *link)
        assert refused.returncode == 1 and "KEY_NOT_ACTIVE" in refused.stdout
        _ok(again.ground("ping", *link, "--station", "local-2"))
        listed = _ok(again.ground("keys", "list", *link, "--station", "local-2"))
        assert "DEACTIVATED" in listed and "local-2" in listed
        # one refusal recorded by each run, each a HIGH event naming the revoked key
        wait_until(lambda: len(again.events("link.tc_key_not_active")) == 2, "the refusal is recorded",
                   timeout_s=30, interval_s=0.2)
