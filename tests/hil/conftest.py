"""The rig under test: ``--hal ENDPOINT`` if given, else a simulator started here on a
private ipc:// endpoint and stopped afterwards."""

import subprocess
import sys
import time

import pytest

from tests.hil.client import HalClient


@pytest.fixture(scope="module")
def hal_endpoint(request, tmp_path_factory):
    given = request.config.getoption("--hal")
    if given:
        yield given
        return
    endpoint = f"ipc://{tmp_path_factory.mktemp('hil')}/hal"
    proc = subprocess.Popen([sys.executable, "-m", "sim_hw.server", "--bind", endpoint, "--speed", "max", "--seed", "1"])
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def rig(hal_endpoint):
    client = HalClient(hal_endpoint)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.hello()
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    yield client
    client.close()
