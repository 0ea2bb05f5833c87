"""A campaign file: which scenarios to fly how many times, with which dispersed parameters,
and what a case must hold to pass; and the cases drawn from it.

Format (TOML, read with ``tomllib``)::

    name = "beta0-margins"                   # defaults to the file's stem
    description = "one line"

    [campaign]
    cases = 200                              # 1 .. 100000
    master_seed = 20261204                   # every case's seed and values derive from it
    orbits = 1                               # or duration_s = 5700; default: each scenario's length
    scenarios = ["worst-eclipse"]            # bundled names or files relative to this one;
                                             # case i flies scenarios[i % len(scenarios)]

    [[dispersion]]
    parameter = "sim.battery_capacity_j"     # sim.<simulator parameter> or <subsystem>.<flight parameter>
    unit = "J"                               # must be the parameter's declared unit
    distribution = "truncated-normal"        # normal (mean, sigma) | uniform (min, max) |
    mean = 5.76e8                            # truncated-normal (mean, sigma, min, max)
    sigma = 2.0e7
    min = 5.0e8
    max = 6.2e8

    [pass]                                   # limits on top of each scenario's [expect]
    battery_soc_min = 0.45                   # lowest SOC of the run must stay above
    gpu_temp_max_c = 88.0                    # hottest GPU must stay below
    gpu_shutdowns_max = 0                    # GPU hardware shutdowns at most
    goodput_min = 0.5                        # useful GPU work / (GPUs x run length) at least
    energy_margin_min = 0.0                  # lowest SOC minus the SOC floor held, at least

Parameters: ``sim.<name>`` is a numeric parameter of the simulator (its table,
``sim_hw/params.py``, with units; reached by module name, :data:`flight.scenario.SIMULATOR_START`),
applied as the run's start conditions (over the scenario's ``[start]``); an integer
parameter takes the drawn value rounded. ``<subsystem>.<name>`` is a flight parameter of the
dictionary (``flight dict``, PUS service 20), set by its ``set_parameter`` telecommand at
0 s, before the scenario's own commands. The drawn values of a bounded distribution must lie
in the flight parameter's declared range, and the simulator must accept both bounds; an
unbounded normal may draw a value the simulator refuses, and that case fails with the
traceback (the campaign flies on).

Cases: case ``i`` draws from ``numpy.random.SeedSequence(master_seed, spawn_key=(i,))`` (the
``i``-th child of ``SeedSequence(master_seed).spawn``): first its run seed (the simulator's
memory upsets and the synthetic workload; the scenario's own seed is not used), then one
value per dispersion in file order. A case depends on the file and its index alone, never on
how many workers fly it or in which order.

Every key is checked when the file is read; a malformed file raises :class:`CampaignError`
naming the file and the key (``campaign.cases``, ``dispersion[2].unit``), and nothing runs.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from flight import scenario
from flight.core.dictionary import full_dictionary
from flight.core.tle import orbit_period_s

MAX_CASES = 100_000
DISTRIBUTIONS = ("normal", "uniform", "truncated-normal")
SEED_LIMIT = 2**31 - 1
"""Run seeds are drawn in [0, SEED_LIMIT)."""
CASE_SCENARIO_FILE = "scenario.toml"
CASE_TLE_FILE = "case.tle"

_TOP = {"name", "description", "campaign", "dispersion", "pass"}
_CAMPAIGN = {"cases", "master_seed", "orbits", "duration_s", "scenarios"}
_DISPERSION = {"parameter", "unit", "distribution", "mean", "sigma", "min", "max"}
_NEEDS = {"normal": ("mean", "sigma"), "uniform": ("min", "max"), "truncated-normal": ("mean", "sigma", "min", "max")}
_PASS = {"battery_soc_min", "gpu_temp_max_c", "gpu_shutdowns_max", "goodput_min", "energy_margin_min"}


class CampaignError(ValueError):
    """A campaign file that cannot be flown; the message names the file and the key."""


@dataclass(frozen=True)
class Dispersion:
    """One dispersed parameter (see the module docstring)."""

    parameter: str
    unit: str
    distribution: str
    mean: float | None = None
    sigma: float | None = None
    low: float | None = None
    high: float | None = None
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> float | int:
        """One value; a truncated normal by inverting its CDF over ``[low, high]`` (one
        uniform draw, so every dispersion takes the same share of the case's stream)."""
        if self.distribution == "uniform":
            value = float(rng.uniform(self.low, self.high))
        elif self.distribution == "normal":
            value = float(rng.normal(self.mean, self.sigma))
        else:
            dist = NormalDist(self.mean, self.sigma)
            u = rng.uniform(dist.cdf(self.low), dist.cdf(self.high))
            value = min(self.high, max(self.low, dist.inv_cdf(float(u))))
        return int(round(value)) if self.integer else value

    @property
    def simulator(self) -> bool:
        """Whether it is a simulator parameter (``sim.``), else a flight parameter."""
        return self.parameter.startswith("sim.")


@dataclass(frozen=True)
class Limits:
    """The campaign's own pass limits (``None``: not checked)."""

    battery_soc_min: float | None = None
    gpu_temp_max_c: float | None = None
    gpu_shutdowns_max: int | None = None
    goodput_min: float | None = None
    energy_margin_min: float | None = None

    def check(self, outcome: dict[str, Any]) -> list[scenario.Check]:
        """Each limit against a case's outcome (:func:`flight.campaign.case.outcome`)."""
        out = []
        for key, limit, metric, sense in (
                ("battery_soc_min", self.battery_soc_min, "battery_soc_min", ">"),
                ("gpu_temp_max_c", self.gpu_temp_max_c, "gpu_temp_max_c", "<"),
                ("gpu_shutdowns_max", self.gpu_shutdowns_max, "gpu_shutdowns", "<="),
                ("goodput_min", self.goodput_min, "goodput_frac", ">="),
                ("energy_margin_min", self.energy_margin_min, "energy_margin_frac", ">=")):
            if limit is None:
                continue
            value = outcome.get(metric)
            ok = isinstance(value, (int, float)) and math.isfinite(value) and {
                ">": value > limit, "<": value < limit, "<=": value <= limit, ">=": value >= limit}[sense]
            out.append(scenario.Check(f"{metric} {sense} {limit:g}", ok, scenario.format_value(value)))
        return out


@dataclass(frozen=True)
class Case:
    """One case's exact inputs: everything a worker needs to fly it, anywhere.

    ``scenario_toml`` is a complete scenario file (:mod:`flight.scenario`) with the case's
    seed, length, start conditions (dispersed simulator parameters included) and telecommands
    (the flight parameters' ``set_parameter`` at 0 s first); its element set is
    :data:`CASE_TLE_FILE` beside it, whose text is ``tle_text``."""

    index: int
    scenario: str
    seed: int
    values: dict[str, float | int]
    duration_s: float
    scenario_toml: str
    tle_text: str

    @property
    def name(self) -> str:
        return case_name(self.index)


def case_name(index: int) -> str:
    """``case-00042``: a case's directory and name in reports."""
    return f"case-{index:05d}"


@dataclass(frozen=True)
class CampaignSpec:
    """A checked campaign file (see the module docstring)."""

    name: str
    description: str
    path: Path
    cases: int
    master_seed: int
    scenarios: tuple[scenario.Scenario, ...]
    duration_s: float | None = None
    orbits: float | None = None
    dispersions: tuple[Dispersion, ...] = ()
    limits: Limits = field(default_factory=Limits)

    def case(self, index: int) -> Case:
        """Case ``index`` (0 <= index < cases), drawn from the master seed (module docstring)."""
        if not 0 <= index < self.cases:
            raise IndexError(f"case {index} outside 0..{self.cases - 1}")
        rng = np.random.default_rng(np.random.SeedSequence(self.master_seed, spawn_key=(index,)))
        seed = int(rng.integers(0, SEED_LIMIT))
        values = {d.parameter: d.draw(rng) for d in self.dispersions}
        scn = self.scenarios[index % len(self.scenarios)]
        if self.duration_s is not None:
            duration_s = self.duration_s
        elif self.orbits is not None:
            duration_s = self.orbits * orbit_period_s(*scn.tle_lines)
        else:
            duration_s = scn.run_duration_s()
        return Case(index, scn.name, seed, values, duration_s, case_scenario_toml(scn, seed, duration_s, values),
                    f"{scn.tle_name}\n{scn.tle_lines[0]}\n{scn.tle_lines[1]}\n")

    def all_cases(self) -> list[Case]:
        return [self.case(i) for i in range(self.cases)]


def load(path: Path | str) -> CampaignSpec:
    """Read and check a campaign file.

    Raises:
        CampaignError: the file is missing or not TOML, or a key is unknown, missing, mistyped,
            out of range, names an unknown scenario or parameter, or gives a unit other than
            the parameter's (the message names the key).
    """
    path = Path(path)
    raw = scenario.read_toml(path, CampaignError)
    top = scenario.TableReader(path, "", raw, _TOP, CampaignError)
    camp = scenario.TableReader(path, "campaign", raw.get("campaign", {}), _CAMPAIGN, CampaignError)
    for key in ("cases", "master_seed", "scenarios"):
        camp.required(key)
    if "orbits" in camp.table and "duration_s" in camp.table:
        camp.fail("orbits", "give duration_s or orbits, not both")
    scenarios = tuple(_scenario(camp, i, name) for i, name in enumerate(camp.strings("scenarios")))
    if not scenarios:
        camp.fail("scenarios", "name at least one scenario")
    dispersions = tuple(_dispersion(r, scenarios[0].tle_lines)
                        for r in top.array_of_tables("dispersion", _DISPERSION, ("parameter", "unit", "distribution")))
    seen = set()
    for i, d in enumerate(dispersions):
        if d.parameter in seen:
            raise CampaignError(f"{path}: dispersion[{i}].parameter: {d.parameter} is dispersed twice")
        seen.add(d.parameter)
    limits = scenario.TableReader(path, "pass", raw.get("pass", {}), _PASS, CampaignError)
    shutdowns = limits.number("gpu_shutdowns_max", integer=True, lo=0)
    return CampaignSpec(
        name=top.text("name", path.stem), description=top.text("description", ""), path=path,
        cases=int(camp.number("cases", integer=True, lo=1, hi=MAX_CASES)),
        master_seed=int(camp.number("master_seed", integer=True, lo=0, hi=2**63 - 1)),
        scenarios=scenarios,
        duration_s=camp.number("duration_s", lo=1.0, hi=scenario.MAX_DURATION_S),
        orbits=camp.number("orbits", lo=0.01, hi=500.0),
        dispersions=dispersions,
        limits=Limits(limits.number("battery_soc_min", lo=0.0, hi=1.0), limits.number("gpu_temp_max_c", lo=-60, hi=150),
                      None if shutdowns is None else int(shutdowns), limits.number("goodput_min", lo=0.0, hi=1.0),
                      limits.number("energy_margin_min", lo=-1.0, hi=1.0)),
    )


def _scenario(camp: scenario.TableReader, i: int, name: str) -> scenario.Scenario:
    local = camp.path.parent / name
    try:
        return scenario.load(local if local.is_file() else name)
    except scenario.ScenarioError as exc:
        camp.fail(f"scenarios[{i}]", str(exc))


def _dispersion(r: scenario.TableReader, tle_lines: tuple[str, str]) -> Dispersion:
    parameter, unit, distribution = r.text("parameter"), r.text("unit"), r.text("distribution")
    if distribution not in DISTRIBUTIONS:
        r.fail("distribution", f"{distribution!r} is not one of {', '.join(DISTRIBUTIONS)}")
    for key in _NEEDS[distribution]:
        r.required(key)
    extra = sorted(set(r.table) & {"mean", "sigma", "min", "max"} - set(_NEEDS[distribution]))
    if extra:
        r.fail(extra[0], f"not used by a {distribution} distribution (it takes {', '.join(_NEEDS[distribution])})")
    mean, sigma, low, high = (r.number(k) for k in ("mean", "sigma", "min", "max"))
    if sigma is not None and not sigma > 0:
        r.fail("sigma", f"must be > 0, not {sigma!r}")
    if low is not None and not low < high:
        r.fail("max", f"must be above min ({low!r}), not {high!r}")
    if distribution == "truncated-normal":
        dist = NormalDist(mean, sigma)
        if not dist.cdf(high) - dist.cdf(low) > 1e-9:
            r.fail("min", f"[{low:g}, {high:g}] holds no probability of normal({mean:g}, {sigma:g})")
    declared_unit, integer, lo, hi = _declared(r, parameter)
    if unit != declared_unit:
        r.fail("unit", f"{parameter} is in {declared_unit!r}, not {unit!r}")
    for key, value in (("min", low), ("max", high), ("mean", mean)):
        if value is not None and not lo <= value <= hi:
            r.fail(key, f"{value!r} outside {parameter}'s range [{lo:g}, {hi:g}]")
    if parameter.startswith("sim.") and low is not None:
        _simulator_accepts(r, parameter[4:], (low, high), integer, tle_lines)
    return Dispersion(parameter, unit, distribution, mean, sigma, low, high, integer)


def _declared(r: scenario.TableReader, parameter: str) -> tuple[str, bool, float, float]:
    """``(unit, integer, lo, hi)`` of a dispersable parameter as its table declares it."""
    if parameter.startswith("sim."):
        simulator = importlib.import_module(scenario.SIMULATOR_START)
        table = simulator.numeric_parameters()
        if parameter[4:] not in table:
            r.fail("parameter", f"{parameter[4:]!r} is not a numeric simulator parameter "
                                f"(sim_hw/params.py: {', '.join(sorted(table))})")
        unit, integer = table[parameter[4:]]
        return unit, integer, -math.inf, math.inf
    declared = full_dictionary().parameters.get(parameter)
    if declared is None or declared.type not in ("float", "int"):
        r.fail("parameter", f"{parameter!r} is neither sim.<simulator parameter> nor a numeric flight "
                            "parameter (flight dict lists them)")
    return declared.units, declared.type == "int", declared.lo, declared.hi


def _simulator_accepts(r: scenario.TableReader, name: str, bounds: tuple[float, float], integer: bool,
                       tle_lines: tuple[str, str]) -> None:
    simulator = importlib.import_module(scenario.SIMULATOR_START)
    for key, value in zip(("min", "max"), bounds):
        try:
            simulator.check({name: int(round(value)) if integer else value}, tle_lines)
        except simulator.StartError as exc:
            r.fail(key, f"the simulator refuses {name} = {value!r}: {exc.why}")
        except ArithmeticError as exc:
            r.fail(key, f"the simulator cannot fly {name} = {value!r}: {type(exc).__name__}: {exc}")


# --- a case as a scenario file ---------------------------------------------------------------


def case_scenario_toml(scn: scenario.Scenario, seed: int, duration_s: float, values: dict[str, float | int]) -> str:
    """The scenario file of one case: ``scn`` with the case's seed, length, dispersed
    simulator parameters over its ``[start]`` and the flight parameters' ``set_parameter``
    telecommands at 0 s before its own; the element set is :data:`CASE_TLE_FILE` beside it."""
    start = dict(scn.start)
    commands: list[tuple[float, str, dict]] = []
    for parameter, value in values.items():
        if parameter.startswith("sim."):
            start[parameter[4:]] = value
        else:
            owner, _, local = parameter.partition(".")
            commands.append((0.0, f"{owner}.set_parameter", {"name": local, "value": float(value)}))
    commands += [(c.at_s, c.command, c.args) for c in scn.commands]
    lines = [f"name = {_toml(scn.name)}", f"description = {_toml(scn.description)}", "",
             "[run]", f"duration_s = {_toml(float(duration_s))}", f"seed = {seed}",
             f"tle = {_toml(CASE_TLE_FILE)}", f"tle_name = {_toml(scn.tle_name)}", "",
             "[start]", *(f"{k} = {_toml(v)}" for k, v in start.items()), "",
             "[load]", *(f"{k} = {_toml(v)}" for k, v in scn.load.items()), ""]
    for at_s, name, args in commands:
        lines += ["[[command]]", f"at_s = {_toml(float(at_s))}", f"name = {_toml(name)}", f"args = {_toml(args)}", ""]
    e = scn.expect
    lines.append("[expect]")
    for key in ("mode", "modes_entered", "events", "no_events"):
        if getattr(e, key):
            lines.append(f"{key} = {_toml(list(getattr(e, key)))}")
    for key in ("battery_soc_floor", "gpu_temp_max_c", "gpu_shutdowns_max"):
        if getattr(e, key) is not None:
            lines.append(f"{key} = {_toml(getattr(e, key))}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value of the few types a scenario holds (JSON strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML of a scenario holds finite numbers only, not {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} in a scenario file")
