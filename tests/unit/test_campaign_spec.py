"""The campaign file (flight/campaign/spec.py): every malformed key is an error that names it,
and the cases drawn from the master seed depend on the file and the case index alone."""

import math
import re
from pathlib import Path

import pytest

from flight.campaign import spec
from flight.campaign.spec import CampaignError

SMOKE = Path("flight/campaigns/smoke.toml")
GOOD = """
[campaign]
cases = 50
master_seed = 11
duration_s = 60
scenarios = ["dead-gpu"]

[[dispersion]]
parameter = "sim.battery_capacity_j"
unit = "J"
distribution = "truncated-normal"
mean = 5.76e8
sigma = 3e7
min = 5.4e8
max = 6.0e8

[[dispersion]]
parameter = "thermal.setpoint_c"
unit = "degC"
distribution = "uniform"
min = 20.0
max = 30.0

[[dispersion]]
parameter = "sim.radiator_segments"
unit = "1"
distribution = "normal"
mean = 4
sigma = 1

[pass]
battery_soc_min = 0.4
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_a_good_file_reads_and_its_cases_stay_in_their_bounds(tmp_path):
    c = spec.load(write(tmp_path, GOOD))
    assert (c.cases, c.master_seed, c.duration_s, [s.name for s in c.scenarios]) == (50, 11, 60, ["dead-gpu"])
    cases = c.all_cases()
    capacity = [k.values["sim.battery_capacity_j"] for k in cases]
    setpoint = [k.values["thermal.setpoint_c"] for k in cases]
    assert all(5.4e8 <= v <= 6.0e8 for v in capacity) and len(set(capacity)) == 50
    assert all(20.0 <= v <= 30.0 for v in setpoint)
    assert all(isinstance(k.values["sim.radiator_segments"], int) for k in cases), "an integer parameter is rounded"
    assert len({k.seed for k in cases}) == 50
    assert "[[command]]\nat_s = 0.0\nname = \"thermal.set_parameter\"" in cases[0].scenario_toml


def test_a_case_depends_on_its_index_alone_not_on_the_order_it_is_drawn_in(tmp_path):
    c = spec.load(write(tmp_path, GOOD))
    forward = [c.case(i) for i in range(c.cases)]
    backward = [c.case(i) for i in reversed(range(c.cases))][::-1]
    assert forward == backward
    other = spec.load(write(tmp_path, GOOD.replace("master_seed = 11", "master_seed = 12")))
    assert other.case(0).seed != c.case(0).seed


def test_a_case_scenario_file_reads_back_with_the_drawn_values(tmp_path):
    from flight import scenario

    case = spec.load(SMOKE).case(1)
    (tmp_path / spec.CASE_TLE_FILE).write_text(case.tle_text)
    (tmp_path / spec.CASE_SCENARIO_FILE).write_text(case.scenario_toml)
    scn = scenario.load(tmp_path / spec.CASE_SCENARIO_FILE)
    assert scn.seed == case.seed and math.isclose(scn.run_duration_s(), 120.0)
    assert scn.start["battery_initial_soc"] == case.values["sim.battery_initial_soc"]
    first = scn.commands[0]
    assert (first.at_s, first.command, first.args) == (
        0.0, "power.set_parameter", {"name": "soc_floor", "value": case.values["power.soc_floor"]})
    assert [c.command for c in scn.commands[1:]] == ["hal.inject_fault"], "the scenario's own fault follows"


@pytest.mark.parametrize("change, key", [
    (("cases = 50", "cases = 0"), "campaign.cases"),
    (("cases = 50\n", ""), "campaign.cases: missing"),
    (("master_seed = 11", "master_seed = -1"), "campaign.master_seed"),
    (("scenarios = [\"dead-gpu\"]", "scenarios = [\"no-such\"]"), "campaign.scenarios[0]"),
    (("duration_s = 60", "duration_s = 60\norbits = 1"), "campaign.orbits"),
    (("unit = \"J\"", "unit = \"kWh\""), "dispersion[0].unit"),
    (("distribution = \"uniform\"", "distribution = \"lognormal\""), "dispersion[1].distribution"),
    (("sim.battery_capacity_j", "sim.no_such_thing"), "dispersion[0].parameter"),
    (("thermal.setpoint_c", "thermal.no_such"), "dispersion[1].parameter"),
    (("min = 20.0", "min = 10.0"), "dispersion[1].min"),          # below the flight parameter's range
    (("sigma = 3e7", "sigma = 0"), "dispersion[0].sigma"),
    (("max = 30.0", "max = 20.0"), "dispersion[1].max"),
    (("mean = 4\nsigma = 1", "mean = 4"), "dispersion[2].sigma: missing"),
    (("mean = 4\nsigma = 1", "mean = 4\nsigma = 1\nmin = 1"), "dispersion[2].min: not used"),
    (("min = 5.4e8\nmax = 6.0e8", "min = 9.4e8\nmax = 9.5e8"), "dispersion[0].min: [9.4e+08, 9.5e+08] holds no"),
    (("battery_soc_min = 0.4", "battery_soc_min = 2"), "pass.battery_soc_min"),
    (("[pass]", "[pass]\nlaunch = true"), "pass.launch: unknown key"),
    (("[campaign]", "colour = \"red\"\n[campaign]"), "colour: unknown key"),
])
def test_a_malformed_file_names_the_key(tmp_path, change, key):
    old, new = change
    assert old in GOOD
    with pytest.raises(CampaignError, match=r"c\.toml: " + re.escape(key)):
        spec.load(write(tmp_path, GOOD.replace(old, new, 1)))


def test_a_parameter_dispersed_twice_and_a_bound_the_simulator_refuses_are_errors(tmp_path):
    twice = GOOD + GOOD[GOOD.index("[[dispersion]]"):GOOD.index("[[dispersion]]", GOOD.index("[[dispersion]]") + 1)]
    with pytest.raises(CampaignError, match="dispersed twice"):
        spec.load(write(tmp_path, twice))
    refused = GOOD.replace('parameter = "sim.battery_capacity_j"\nunit = "J"',
                           'parameter = "sim.array_strings"\nunit = "1"').replace("min = 5.4e8", "min = 0")
    with pytest.raises(CampaignError, match=r"dispersion\[0\]\.min: the simulator refuses array_strings"):
        spec.load(write(tmp_path, refused))


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(CampaignError, match="not valid TOML"):
        spec.load(write(tmp_path, "cases = = 3"))
    with pytest.raises(CampaignError, match="cannot read"):
        spec.load(tmp_path / "absent.toml")


def test_the_bundled_campaigns_read():
    for path in Path("flight/campaigns").glob("*.toml"):
        assert spec.load(path).cases > 0
