"""``flight campaign run | report | replay``: the campaign commands.

    flight campaign run FILE [--workers N | --scheduler tcp://HOST:PORT] [--out DIR]
    flight campaign report DIR [--out DIR]
    flight campaign replay DIR CASE [--in-process]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from flight.exit_status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

EXAMPLE = "flight/campaigns/beta0-margins.toml"


def add_parser(subparsers: Any) -> None:
    """Register ``campaign`` and its commands on the ``flight`` command's subparsers."""
    p = subparsers.add_parser(
        "campaign", help="Monte Carlo campaigns: many dispersed cases on Dask, their report, a case's replay",
        description="Fly a campaign file's cases (scenarios x dispersed parameters, reproducible from one "
                    "master seed) in-process on Dask, report the results, replay one case.")
    sub = p.add_subparsers(dest="campaign_command", required=True, metavar="COMMAND")

    r = sub.add_parser(
        "run", help="fly a campaign's cases (resumes an interrupted one)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check FILE (a malformed file: an error naming the key, nothing runs), draw each case's seed "
                    "and parameters from the master seed, and fly the cases not yet in --out on Dask: a "
                    "LocalCluster of --workers processes on this machine, or the cluster behind --scheduler. "
                    "One row per case (inputs, SOC min, energy margin, GPU max temperature, goodput, pass/fail, "
                    "wall time) goes to DIR/results.parquet (pandas.read_parquet); each case's record to "
                    "DIR/cases/case-NNNNN/. A case that raises is a failed row with its traceback. Ctrl-C stops "
                    "(exit 130); running the same command again flies only the missing cases.",
        epilog=f"examples:\n  flight campaign run {EXAMPLE} --workers 2 --out runs/beta0\n"
               "  flight campaign run my.toml --scheduler tcp://10.0.0.5:8786 --out runs/big")
    r.add_argument("file", type=Path, metavar="FILE", help="the campaign file (TOML; see flight/campaign/spec.py)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="fly on the Dask cluster of this scheduler")
    r.add_argument("--out", type=Path, metavar="DIR", help="results directory (default campaign-runs/<name>)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser(
        "report", help="pass rate, outcome distributions, parameter scatter plots, worst cases",
        description="Read DIR/results.parquet and write campaign_outcomes.png (histograms of the outcome metrics), "
                    "campaign_scatter.png (each dispersed parameter against each outcome, failures as red "
                    "crosses), summary.md and summary.csv; print the summary table.")
    rep.add_argument("dir", type=Path, metavar="DIR", help="a campaign results directory (--out of campaign run)")
    rep.add_argument("--out", type=Path, metavar="DIR", help="where to write the report (default DIR/report)")
    rep.set_defaults(func=cmd_report)

    rp = sub.add_parser(
        "replay", help="fly one case again from its exact inputs and check it reproduces its row",
        description="Fly DIR/cases/case-NNNNN/scenario.toml again (the full stack, or in this process with "
                    "--in-process) and compare its outcome metrics, end, mode and telemetry_sha256 with the "
                    "recorded row. Exit status 0 if they are the same, 1 if not.")
    rp.add_argument("dir", type=Path, metavar="DIR", help="a campaign results directory")
    rp.add_argument("case", type=int, metavar="CASE", help="the case number (the row's case column)")
    rp.add_argument("--in-process", action="store_true", help="fly in this process instead of the full stack")
    rp.add_argument("--data", type=Path, metavar="DIR", help="keep the replay's data here (default: a temporary dir)")
    rp.set_defaults(func=cmd_replay)


def missing_extra(*modules: str) -> str | None:
    """A line saying how to install the ``campaign`` extra when one of ``modules`` is missing, else None."""
    import importlib.util

    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} not installed: pip install -e '.[campaign]' (Dask, pyarrow, pandas)"
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from flight.campaign import runner, spec

    console = Console(stderr=True)
    missing = missing_extra("distributed", "pandas", "pyarrow")
    if missing:
        console.print(f"[red]error:[/] {missing}", markup=False)
        return EXIT_FAILED
    try:
        campaign = spec.load(args.file)
    except spec.CampaignError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True, markup=False)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        console.print("[red]error:[/] --workers must be at least 1")
        return EXIT_USAGE
    out = args.out or Path("campaign-runs") / campaign.name
    where = f"scheduler {args.scheduler}" if args.scheduler else f"{args.workers or 'one per core'} local workers"
    console.print(f"campaign [bold]{campaign.name}[/]: {campaign.cases} cases of {', '.join(s.name for s in campaign.scenarios)}, "
                  f"{len(campaign.dispersions)} dispersed parameters, master seed {campaign.master_seed}; {where}; "
                  f"results in {out}")
    progress = Progress(TextColumn("[bold]cases"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("[green]{task.fields[passed]} passed [red]{task.fields[failed]} failed"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        disable=args.no_progress or not console.is_terminal)
    task = progress.add_task("cases", total=campaign.cases, passed=0, failed=0)
    counts = {"passed": 0, "failed": 0}

    def started(todo: int, already: int) -> None:
        if already:
            console.print(f"{already} cases already flown in {out}: flying the {todo} missing")
        progress.update(task, completed=already)

    def finished(row: dict) -> None:
        counts["passed" if row["passed"] else "failed"] += 1
        progress.update(task, advance=1, **counts)

    wall = time.monotonic()
    try:
        with progress:
            outcome = runner.run(campaign, out, args.workers, args.scheduler, on_case=finished, on_start=started)
    except runner.CampaignDirError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return EXIT_USAGE
    except (OSError, TimeoutError) as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return EXIT_FAILED
    wall = time.monotonic() - wall
    rate = f", {outcome.flown / wall * 60:.1f} cases/min" if outcome.flown else ""
    done = outcome.flown + outcome.already
    console.print(f"{'interrupted: ' if outcome.interrupted else ''}{done}/{outcome.total} cases in "
                  f"{out / runner.RESULTS_FILE} ({outcome.flown} flown now in {wall:.0f} s{rate}); "
                  f"{outcome.passed} passed. Next: flight campaign report {out}")
    return EXIT_INTERRUPTED if outcome.interrupted else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from flight.campaign.report import worst_cases, write_report

    console = Console()
    missing = missing_extra("pandas", "pyarrow")
    if missing:
        console.print(f"[red]error:[/] {missing}", markup=False)
        return EXIT_FAILED
    try:
        report = write_report(args.dir, args.out or args.dir / "report")
    except (FileNotFoundError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return EXIT_FAILED
    low, high = report.interval
    console.print(f"[bold]pass rate {report.passed}/{report.cases} = {report.passed / report.cases:.1%}[/] "
                  f"(95 % Wilson interval {low:.1%} .. {high:.1%})")
    from flight.campaign.runner import read_table

    table = Table(title="worst cases")
    for column in ("case", "SOC min", "margin", "GPU °C", "goodput", "passed"):
        table.add_column(column, no_wrap=True, min_width=len(column) + 1)
    table.add_column("why", overflow="fold", ratio=1)
    for _, r in worst_cases(read_table(args.dir)).iterrows():
        why = "raised: " + r["error"].strip().splitlines()[-1] if r["error"] else r["failed_checks"]
        table.add_row(str(int(r["case"])), f"{r['battery_soc_min']:.3f}",
                      f"{r['energy_margin_frac']:.3f}", f"{r['gpu_temp_max_c']:.1f}", f"{r['goodput_frac']:.3f}",
                      "yes" if r["passed"] else "[red]no[/]", why[:80])
    console.print(table)
    for path in report.files:
        print(f"wrote {path}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from flight import scenario
    from flight.campaign.case import REPRODUCED, failed_outcome, fly, outcome
    from flight.campaign.runner import CASES_DIR, ROW_FILE
    from flight.campaign.spec import case_name

    case_dir = args.dir / CASES_DIR / case_name(args.case)
    try:
        row = json.loads((case_dir / ROW_FILE).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: no recorded case {args.case} in {args.dir}: {exc}")
        return EXIT_USAGE
    mode = "in this process" if args.in_process else "in the full stack"
    print(f"replaying {case_name(args.case)} ({row['scenario']}, seed {row['seed']}) {mode}")
    with tempfile.TemporaryDirectory(prefix="rf-replay-") as tmp:
        try:
            summary, _ = fly(case_dir, args.data or Path(tmp) / "run", full_stack=not args.in_process)
            again = outcome(summary)
        except (scenario.ScenarioError, ArithmeticError, TypeError, ValueError) as exc:
            print(f"the replay raised {type(exc).__name__}: {exc}")
            again = failed_outcome()
    differ = [(k, row.get(k), again.get(k)) for k in REPRODUCED if not _same(row.get(k), again.get(k))]
    for key in REPRODUCED:
        print(f"  {key:20s} recorded {row.get(key)!s:>20.20}  replayed {again.get(key)!s:>20.20}"
              f"{'  DIFFERS' if any(k == key for k, *_ in differ) else ''}")
    if differ:
        print(f"{case_name(args.case)} NOT reproduced: {', '.join(k for k, *_ in differ)} differ")
        return EXIT_FAILED
    print(f"{case_name(args.case)} reproduced")
    return EXIT_OK


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
