"""One campaign case: flown from its exact inputs, judged, reduced to one row.

:func:`fly_case` is what a Dask worker runs (anywhere: the case carries its scenario file and
element set as text). It writes them to a scratch directory, reads them back as any scenario
(:func:`flight.scenario.load`), flies them in-process (:class:`flight.executive.inprocess.InProcessRun`)
and returns the row: the inputs, the outcome metrics (:func:`outcome`), pass/fail against the
scenario's ``[expect]`` and the campaign's limits, the wall time; a case that raises is a
failed row carrying its traceback. :func:`fly` flies a case directory again, in-process or
as the full stack (``flight campaign replay``).

Outcome metrics (:data:`OUTCOME_METRICS`), from the run summary:

* ``battery_soc_min``: lowest battery state of charge of any frame, 0..1;
* ``energy_margin_frac``: ``battery_soc_min`` less the lowest SOC floor the power manager held
  (fraction of capacity; < 0: the floor was crossed);
* ``gpu_temp_max_c``: hottest GPU die of any frame, °C; ``gpu_shutdowns``: thermal shutdowns;
* ``goodput_frac``: GPU work not thrown away (done less lost: kept, or in progress at the
  end) over what every GPU could have done in the run, 0..1;
* ``energy_harvested_j``: array energy over the run, J.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from flight import scenario
from flight.campaign.spec import CASE_SCENARIO_FILE, CASE_TLE_FILE, Case, Limits
from flight.hal.protocol import N_GPUS

OUTCOME_METRICS = ("battery_soc_min", "energy_margin_frac", "gpu_temp_max_c", "gpu_shutdowns", "goodput_frac",
                   "energy_harvested_j")
"""The numeric outcome of a case (module docstring), in reports' order."""
REPRODUCED = (*OUTCOME_METRICS, "end", "mode", "telemetry_sha256")
"""What a replay must give again exactly (lockstep runs are deterministic)."""


def outcome(summary: dict[str, Any]) -> dict[str, Any]:
    """The outcome of a run from its summary (:meth:`flight.executive.supervisor.Executive.summary`
    keys): :data:`OUTCOME_METRICS` (NaN where the run had no frame) plus ``end``, ``mode`` and
    ``telemetry_sha256``."""
    soc_min = _number(summary.get("battery_soc_min"))
    floor = _number(summary.get("battery_soc_floor"))
    capacity_gpu_s = N_GPUS * summary["sim_time_s"]
    kept_gpu_s = summary["gpu_work_done_s"] - summary["gpu_work_lost_s"]
    return {
        "battery_soc_min": soc_min,
        "energy_margin_frac": soc_min - floor,
        "gpu_temp_max_c": _number(summary.get("gpu_temp_max_c")),
        "gpu_shutdowns": int(summary["gpu_shutdowns"]),
        "goodput_frac": kept_gpu_s / capacity_gpu_s if capacity_gpu_s > 0 else math.nan,
        "energy_harvested_j": float(summary["energy_harvested_j"]),
        "end": summary["end"],
        "mode": summary["mode"],
        "telemetry_sha256": summary["telemetry_sha256"],
    }


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def write_case(case: Case, directory: Path) -> Path:
    """Write ``case``'s scenario file and element set into ``directory`` (created); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CASE_TLE_FILE).write_text(case.tle_text)
    (directory / CASE_SCENARIO_FILE).write_text(case.scenario_toml)
    return directory


def fly(case_dir: Path, data_dir: Path, full_stack: bool = False) -> tuple[dict, list[scenario.Check]]:
    """Fly the case in ``case_dir`` (:func:`write_case`) with its data in ``data_dir``: in
    this process, or as the full stack (``flight run``'s executive and processes, lab mode,
    the link on a free loopback port); its summary and the scenario's ``[expect]`` checks.

    Raises:
        flight.scenario.ScenarioError: the case's scenario file does not read back.
        TypeError, ValueError, ArithmeticError: the simulator refuses or cannot fly the inputs.
    """
    from flight.core.bus import BusAddress
    from flight.executive import supervisor
    from flight.executive.inprocess import InProcessRun
    from flight.hal.inprocess import in_process_config

    scn = scenario.load(case_dir / CASE_SCENARIO_FILE)
    duration_s = scn.run_duration_s()
    config = in_process_config(data_dir, scn.tle_lines, scn.seed, scn.run_params())
    if full_stack:
        run_dir = supervisor.short_run_dir()
        try:
            config.bus, config.parent_pid = BusAddress.in_dir(run_dir), os.getpid()
            summary = supervisor.Executive(config, duration_s, supervisor.sim_options(
                str(scn.tle_path), scn.tle_name, scn.seed)).run()
        finally:
            supervisor.remove_run_dir(run_dir)
    else:
        summary = InProcessRun(config, duration_s).run()
    return summary, scn.check(summary, scenario.recorded_events(data_dir / "telemetry.sqlite"))


def fly_case(case: Case, limits: Limits) -> dict[str, Any]:
    """Fly one case in this process (a Dask worker); never raises for the case's sake.

    Returns:
        ``{"row": ..., "summary": ... or None}``: ``row`` has ``case``, ``scenario``, ``seed``,
        one column per dispersed parameter, the outcome (:func:`outcome`), ``passed``,
        ``failed_checks`` (what failed, ``; ``-separated), ``error`` (the traceback of a case
        that raised, else ``""``) and ``wall_s``.
    """
    started = time.perf_counter()
    row: dict[str, Any] = {"case": case.index, "scenario": case.scenario, "seed": case.seed, **case.values}
    summary = None
    try:
        with tempfile.TemporaryDirectory(prefix="rf-case-") as tmp:
            case_dir = write_case(case, Path(tmp))
            summary, checks = fly(case_dir, case_dir / "run")
        result = outcome(summary)
        checks += limits.check(result)
        failed = [f"{c.name} ({c.detail})" for c in checks if not c.ok]
        row.update(result, passed=not failed, failed_checks="; ".join(failed), error="")
    except Exception:  # a case that crashes is a failed row, never a lost campaign
        row.update(failed_outcome(), failed_checks="raised", error=traceback.format_exc())
    row["wall_s"] = time.perf_counter() - started
    return {"row": row, "summary": summary}


def failed_outcome() -> dict[str, Any]:
    """The outcome columns of a case that did not fly to its end: NaN metrics, not passed."""
    return {**dict.fromkeys(OUTCOME_METRICS, math.nan), "end": "raised", "mode": "", "telemetry_sha256": "",
            "passed": False}
