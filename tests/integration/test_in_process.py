"""`flight run --in-process` against the full stack: for the same element set, seed, scenario
and commands, the same summary and the same ``telemetry_sha256`` (issue 15). Short runs (a
few hundred simulated seconds, the faults a minute in) keep the suite fast; they cover
housekeeping, the power, thermal and job loops, the link's transmitter and a timed fault
with its consequences (a dead GPU's rolled-back jobs, a storm of memory upsets)."""

import pytest

from tests.support.predicates import FlightRun

pytestmark = pytest.mark.slow
DIFFERENT_BY_NATURE = {"wall_time_s", "data_dir"}


def fly_both(tmp_path, *args: str) -> tuple[dict, dict]:
    summaries = []
    for mode in ((), ("--in-process",)):
        with FlightRun(tmp_path / (mode[0][2:] if mode else "full"), *args, *mode) as run:
            assert run.wait(timeout_s=180) == 0, run.proc.stdout.read().decode(errors="replace")
        summaries.append(run.summary())
    return summaries[0], summaries[1]


@pytest.mark.parametrize("args", [
    ("--duration", "300", "--seed", "3"),
    ("--scenario", "dead-gpu", "--duration", "240"),
    ("--scenario", "seu-storm", "--duration", "240"),
], ids=["nominal", "dead-gpu", "seu-storm"])
def test_in_process_flies_the_full_stack_telemetry(tmp_path, args):
    full, inproc = fly_both(tmp_path, *args)
    assert full["end"] == inproc["end"] == "completed"
    assert inproc["telemetry_sha256"] == full["telemetry_sha256"]
    differ = {k: (full[k], inproc.get(k)) for k in full if k not in DIFFERENT_BY_NATURE and full[k] != inproc.get(k)}
    assert not differ, f"summaries differ: {differ}"
    assert inproc.keys() == full.keys()
