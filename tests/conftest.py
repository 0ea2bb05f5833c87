"""Shared pytest options and fixtures: ``--hal ENDPOINT`` points the HIL suite at a rig;
``harness`` and ``ground`` are a link manager on loopback and a ground station talking to it;
``ground_archive`` keeps every test's ground archive in its own directory;
``signal_dispositions_kept`` fails a test that leaves the process's signal handling changed."""

import os
import signal

import pytest

from flight.core.component import STRICT_EVENTS_ENV
from flight.spacelink import keys
from tests.support.link_harness import Ground, LinkHarness, ServedLink


def pytest_configure(config):
    # An event emitted against its declaration raises here and in every process a test starts.
    os.environ[STRICT_EVENTS_ENV] = "1"
    # Tests stop the runs they start as Ctrl-C does (SIGINT). A shell that starts pytest in the
    # background (`pytest &`, a CI script's job) sets SIGINT to ignored, and an ignored signal
    # stays ignored across exec, so every `flight run` would shrug Ctrl-C off; a handled one
    # is reset to the default in the child.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--hal", default=None, metavar="ENDPOINT",
                     help="HAL endpoint of a rig for tests/hil (default: start a sim_hw of our own)")


KEPT_SIGNALS = (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM,
                signal.SIGUSR1, signal.SIGUSR2)
"""Signals whose disposition a test must leave as it found it."""


@pytest.fixture(autouse=True)
def signal_dispositions_kept():
    """Fail a test that leaves this process's signal handling changed, and put it back.

    A test runs in a pytest worker that lives for the whole run: SIGPIPE left at its default
    (by a command's ``main`` run in process, say) lets some later test's write to a socket
    that its peer has just closed kill the worker without a traceback, far from the cause.
    """
    before = {sig: signal.getsignal(sig) for sig in KEPT_SIGNALS}
    yield
    after = {sig: signal.getsignal(sig) for sig in KEPT_SIGNALS}
    changed = [sig for sig in KEPT_SIGNALS if after[sig] != before[sig]]
    for sig in changed:
        signal.signal(sig, before[sig])
    if changed:
        pytest.fail("the test changed the handling of " + ", ".join(
            f"{signal.Signals(sig).name} (was {before[sig]!r}, left {after[sig]!r})" for sig in changed), pytrace=False)


@pytest.fixture(autouse=True)
def ground_archive(tmp_path, monkeypatch):
    """Every ground tool a test runs (in process or as a subprocess of it) archives into the
    test's own directory, never the user's."""
    path = tmp_path / "ground-archive.sqlite"
    monkeypatch.setenv("RACKFLIGHT_ARCHIVE", str(path))
    return path


@pytest.fixture
def harness(tmp_path):
    h = LinkHarness(tmp_path)
    yield h
    h.close()


@pytest.fixture
def ground(harness):
    harness.frame()
    g = Ground(harness)
    yield g
    g.close()


@pytest.fixture
def ground_keys(tmp_path, monkeypatch):
    """The test's key directory, where the ground tools and the served link find it by default
    (RACKFLIGHT_KEYS_DIR)."""
    monkeypatch.setenv(keys.ENV_VAR, str(tmp_path / "keys"))
    return tmp_path / "keys"


@pytest.fixture
def served(tmp_path):
    s = ServedLink(tmp_path)
    yield s
    s.close()
