"""A schedule uploaded on one pass runs on board between passes, and its verification and the
housekeeping showing its effect arrive on the next pass; the schedule survives a restart of
the whole stack.

Real passes: Sentinel-1A's element set (polar, so two stations see it within minutes) with
the bundled ground stations and their 10 deg mask, flown at 100x real time. The passes are
found from the same orbit and station models the simulator uses. The stack is stopped during
the first pass, right after the upload, and a new `flight run` on the same data directory
(same epoch, so the same onboard clock) flies through the release time without contact and
into the next pass, where the ground only listens."""

import pytest

from flight.core.dictionary import full_dictionary
from flight.spacelink import keys
from flight.spacelink import pus11_scheduling as pus11
from flight.ground.client import LinkClient
from flight.spacelink.framing import request_id
from flight.spacelink.pus1_verification import Verification
from flight.spacelink.pus3_housekeeping import HkReport
from flight.core.orbit import Orbit
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from sim_hw.ground import GroundNetwork, load_stations
from sim_hw.params import SimParams
from tests.support.predicates import FlightRun

pytestmark = pytest.mark.slow

SATELLITE = "SENTINEL-1A"
SPEED = 100
SETPOINT_C = 31.0


def first_two_passes() -> tuple[float, list[tuple[float, float]]]:
    """The element set's epoch (UTC Unix s) and its first two passes as (start, end) onboard seconds."""
    params = SimParams()
    orbit = Orbit.from_tle(*load_tle(DEFAULT_TLE_PATH, SATELLITE)[1], params)
    network = GroundNetwork(load_stations(), params)
    passes, start = [], None
    t = 0.0
    while len(passes) < 2:
        contact = network.best(orbit.at(t).r_ecef_km)[2]
        if contact and start is None:
            start = t
        elif not contact and start is not None:
            passes.append((start, t))
            start = None
        t += 5.0
    return orbit.epoch_utc.timestamp(), passes


def test_a_schedule_uploaded_on_one_pass_runs_between_passes_and_reports_on_the_next(tmp_path):
    epoch_utc, ((first_start, first_end), (second_start, second_end)) = first_two_passes()
    assert second_start - first_end > 60, "a gap between the passes to schedule into"
    release_utc = epoch_utc + (first_end + second_start) / 2
    dictionary = full_dictionary()
    flags = ("--tle-name", SATELLITE, "--speed", str(SPEED), "--contact", "passes")

    with FlightRun(tmp_path, *flags, "--duration", str(first_end)) as run:
        run.await_telemetry("link.contact", True, timeout_s=first_start / SPEED + 60)
        with LinkClient(run.argv[run.argv.index("--link") + 1], dictionary, key=keys.load_key(run.keys),
                        tm_keys=run.tm_keys) as ground:
            inner = ground.signed(ground.function("thermal.set_setpoint", {"setpoint_c": SETPOINT_C}))
            stages = [r.stage for r in ground.request(pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT,
                                                      pus11.insert_data([(release_utc, bytes(inner.pack()))]), 10)]
            assert stages == ["accepted", "started", "completed"]
            assert ground.onboard_utc(5) < release_utc, "uploaded before its time"
        run.await_telemetry("link.schedule_activities", 1, timeout_s=10)

    with FlightRun(tmp_path, *flags, "--duration", str(second_end)) as run:
        # the recorder appends to the first run's telemetry: await what only this run can show
        run.await_telemetry("link.tc_released", 1, timeout_s=second_start / SPEED + 60)
        assert run.latest("link.contact") is False, "released without contact"
        verdicts, setpoints = [], []
        with LinkClient(run.argv[run.argv.index("--link") + 1], dictionary, key=keys.load_key(run.keys),
                        tm_keys=run.tm_keys) as ground:
            # nothing comes down before the next pass; its first real-time packet says it began
            assert ground.receive((second_start - first_end) / SPEED + 30) is not None
            ground.acknowledge()  # an archiving ground (TC[15,130]), as `flight ground listen`: sent the backlog
            while not (verdicts and verdicts[-1] == "completed" and SETPOINT_C in setpoints):
                try:
                    report = ground.receive(30)
                except ConnectionError:  # the run ended
                    report = None
                assert report is not None, f"the next pass brought {verdicts} and setpoints {setpoints}"
                if isinstance(report, Verification) and report.request_id == request_id(inner):
                    verdicts.append(report.stage)
                    assert report.utc_unix_s < epoch_utc + second_start, "executed between the passes"
                elif isinstance(report, HkReport) and report.component.name == "thermal" and \
                        release_utc < report.utc_unix_s < epoch_utc + second_start:
                    setpoints.append(report.values["setpoint_c"])
        assert verdicts == ["accepted", "started", "completed"]
        assert run.latest("link.schedule_activities") == 0
