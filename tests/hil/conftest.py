"""The rig under test: ``--hal ENDPOINT`` if given, else a simulator started here on a
private ipc:// endpoint and stopped afterwards."""

import sys

import pytest

from tests.support.hal_client import HalClient
from tests.support.predicates import running


@pytest.fixture(scope="module")
def hal_endpoint(request, tmp_path_factory):
    given = request.config.getoption("--hal")
    if given:
        yield given
        return
    endpoint = f"ipc://{tmp_path_factory.mktemp('hil')}/hal"
    with running([sys.executable, "-m", "sim_hw.server", "--bind", endpoint, "--speed", "max", "--seed", "1"]):
        yield endpoint


@pytest.fixture
def rig(hal_endpoint):
    client = HalClient(hal_endpoint)
    client.await_welcome(timeout_s=15)
    yield client
    client.close()
