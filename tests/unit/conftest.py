"""Fixtures shared by unit test modules: ``reference_digest``, the result of an uninterrupted
matmul run that interrupted and preempted ones must reproduce."""

import pytest

from flight.subsystems.jobs.programs import ProgramRun
from tests.support.jobs import STEPS, finish


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory):
    """Digest of matmul, STEPS steps, seed 1, never interrupted."""
    said = finish(ProgramRun("flight.subsystems.jobs.matmul", tmp_path_factory.mktemp("ref") / "1", STEPS, 1))
    assert said[-1] == ("exit", "0")
    return dict(said)["done"]
