"""Fixtures of the full-stack tests: a paced run in lab contact for ground operations, and a
simulator standing alone as a rig stands."""

import sys

import pytest

from tests.support.predicates import PACED, FlightRun, running

@pytest.fixture
def paced_run(tmp_path):
    """A paced run in contact all the time, its link up; ``run.link`` is its HOST:PORT."""
    with FlightRun(tmp_path, *PACED, "--contact", "always", "--duration", "3000") as run:
        run.await_telemetry("link.contact", True, timeout_s=60)
        yield run
    assert f"created the key of ground station 'local' (SPI 1): {run.keys / 'local.key'}" in run.output


@pytest.fixture
def standalone_sim(tmp_path):
    """`flight sim --bind` standing alone, as a hardware-in-the-loop rig stands."""
    endpoint = f"ipc://{tmp_path}/rig"
    with running([sys.executable, "-m", "flight.cli", "sim", "--bind", endpoint, "--speed", "max"]):
        yield endpoint
