"""Flying a campaign on Dask, and its results directory.

:func:`run` maps :func:`flight.campaign.case.fly_case` over the cases still to fly with
``client.map``: on a ``distributed.LocalCluster`` of worker processes (one thread each) on
this machine, or, given a scheduler address, on whatever cluster stands behind it (its
workers need this package installed; the cases carry their own scenario and element set).
The cases are drawn here from the master seed (:meth:`flight.campaign.spec.CampaignSpec.case`),
so no worker count or completion order changes them.

The results directory (``--out``)::

    campaign.toml                 the campaign file, as flown (a rerun must match it)
    results.parquet               one row per finished case, by case (pandas.read_parquet)
    cases/case-00042/row.json     the case's row, written as soon as it finished
    cases/case-00042/summary.json its run summary (absent for a case that raised)
    cases/case-00042/scenario.toml, case.tle   its exact inputs (flight campaign replay)

A case's ``row.json`` is written (atomically) when it finishes, and ``results.parquet`` is
rebuilt from them all at the end, after Ctrl-C too. A rerun on the same directory flies
only the cases without a ``row.json``: an interrupted campaign resumes, a finished one
does nothing but rebuild the table.
"""

from __future__ import annotations

import json
import logging
import math
import os
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.campaign.case import failed_outcome, fly_case, write_case
from flight.campaign.spec import CampaignSpec, Case, case_name

RESULTS_FILE = "results.parquet"
CAMPAIGN_FILE = "campaign.toml"
CASES_DIR = "cases"
ROW_FILE = "row.json"
SUMMARY_FILE = "summary.json"


class CampaignDirError(ValueError):
    """A results directory that holds another campaign (its ``campaign.toml`` differs)."""


@dataclass
class Outcome:
    """What :func:`run` did: cases flown now, found finished, passed; whether interrupted."""

    flown: int
    already: int
    passed: int
    total: int
    interrupted: bool = False


def prepare(spec: CampaignSpec, out: Path) -> list[int]:
    """Make ``out`` this campaign's directory; the indices of the cases it still lacks.

    Raises:
        CampaignDirError: ``out`` holds another campaign's results.
        OSError: ``out`` cannot be written.
    """
    text = spec.path.read_text()
    (out / CASES_DIR).mkdir(parents=True, exist_ok=True)
    recorded = out / CAMPAIGN_FILE
    if recorded.exists() and recorded.read_text() != text:
        raise CampaignDirError(f"{out} holds the results of another campaign ({recorded} differs from {spec.path}): "
                               "choose another --out")
    recorded.write_text(text)
    return [i for i in range(spec.cases) if not (out / CASES_DIR / case_name(i) / ROW_FILE).exists()]


def client_for(workers: int | None, scheduler: str | None):
    """A Dask client: of the scheduler at ``scheduler`` (``tcp://HOST:PORT``), else of a new
    LocalCluster of ``workers`` processes (default: one per core), one thread each. Close
    ``client.cluster`` too when it is a LocalCluster (:func:`close_client`)."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout=30, set_as_default=False)
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster, set_as_default=False)


def close_client(client) -> None:
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def run(spec: CampaignSpec, out: Path, workers: int | None = None, scheduler: str | None = None,
        on_case: Callable[[dict], None] | None = None, on_start: Callable[[int, int], None] | None = None) -> Outcome:
    """Fly the campaign's missing cases into ``out``; rebuild ``results.parquet``.

    Args:
        workers: LocalCluster size (ignored with ``scheduler``).
        scheduler: a Dask scheduler's address, ``tcp://HOST:PORT``.
        on_case: called with each finished case's row, as it comes.
        on_start: called with ``(cases to fly, cases already finished)`` before the first.

    Raises:
        CampaignDirError, OSError: see :func:`prepare`.
        OSError, TimeoutError: the scheduler cannot be reached.
    """
    missing = prepare(spec, out)
    outcome = Outcome(flown=0, already=spec.cases - len(missing), passed=0, total=spec.cases)
    if on_start is not None:
        on_start(len(missing), outcome.already)
    if missing:
        outcome.interrupted = not _fly(spec, out, [spec.case(i) for i in missing], workers, scheduler, outcome,
                                       on_case or (lambda _row: None))
    rows = write_table(out)
    outcome.passed = sum(bool(r["passed"]) for r in rows)
    return outcome


def _fly(spec: CampaignSpec, out: Path, cases: list[Case], workers: int | None, scheduler: str | None,
         outcome: Outcome, on_case: Callable[[dict], None]) -> bool:
    """Fly ``cases`` on Dask, recording each as it finishes; False when interrupted (Ctrl-C)."""
    from distributed import as_completed

    client = client_for(workers, scheduler)
    futures = []
    try:
        run_id = uuid.uuid4().hex[:8]  # a shared scheduler may hold another run of the same campaign
        futures = client.map(fly_case, cases, limits=spec.limits, pure=False,
                             key=[f"{spec.name}-{c.name}-{run_id}" for c in cases])
        by_key = {f.key: c for f, c in zip(futures, cases)}
        for future in as_completed(futures, loop=client.loop):
            case = by_key[future.key]
            try:
                result = future.result()
            except Exception:  # the worker died under it (KilledWorker) or the result was lost
                result = {"row": {"case": case.index, "scenario": case.scenario, "seed": case.seed, **case.values,
                                  **failed_outcome(), "failed_checks": "raised", "error": traceback.format_exc(),
                                  "wall_s": math.nan}, "summary": None}
            record_case(out, case, result)
            outcome.flown += 1
            on_case(result["row"])
        return True
    except KeyboardInterrupt:
        return False
    finally:
        client.cancel(futures)
        close_client(client)


def record_case(out: Path, case: Case, result: dict[str, Any]) -> None:
    """Keep one finished case: its inputs, summary and (last, atomically) its row."""
    directory = write_case(case, out / CASES_DIR / case.name)
    if result["summary"] is not None:
        (directory / SUMMARY_FILE).write_text(json.dumps(result["summary"], indent=2))
    tmp = directory / (ROW_FILE + ".tmp")
    tmp.write_text(json.dumps(result["row"], indent=1, allow_nan=True))
    tmp.replace(directory / ROW_FILE)


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Every finished case's row, by case."""
    rows = [json.loads(p.read_text()) for p in (out / CASES_DIR).glob(f"*/{ROW_FILE}")]
    return sorted(rows, key=lambda r: r["case"])


def write_table(out: Path) -> list[dict[str, Any]]:
    """Rebuild ``results.parquet`` from the rows (pyarrow through pandas); the rows."""
    import pandas as pd

    rows = read_rows(out)
    if rows:
        pd.DataFrame(rows).to_parquet(out / RESULTS_FILE, index=False)
    return rows


def read_table(out: Path):
    """``results.parquet`` of a results directory as a pandas DataFrame.

    Raises:
        FileNotFoundError: no results there.
    """
    import pandas as pd

    path = out / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} in {out}: run flight campaign run first")
    return pd.read_parquet(path)
