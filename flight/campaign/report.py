"""``flight campaign report DIR``: what a campaign's results say, as PNGs and a table.

From ``DIR/results.parquet`` (:mod:`flight.campaign.runner`), into ``DIR/report/`` (or ``--out``):

========================  ===================================================================
``campaign_outcomes.png`` a histogram of each outcome metric (:data:`flight.campaign.case.OUTCOME_METRICS`),
                          passed and failed cases stacked in two colours
``campaign_scatter.png``  each dispersed parameter (columns) against each outcome metric
                          (rows), failed cases as red crosses: where in the dispersion it fails
``summary.md``            pass rate with its 95 % Wilson score interval, each metric's
                          min / 5 % / median / 95 % / max, the worst cases and why they failed
``summary.csv``           the metric statistics as CSV
========================  ===================================================================

The pass rate's interval is Wilson's score interval (E. B. Wilson, "Probable inference, the
law of succession, and statistical inference", JASA 22 (1927) 209-212), which stays inside
[0, 1] and is sound for rates near 0 or 1, where the normal approximation is not. Rendering
uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from flight.campaign.case import OUTCOME_METRICS
from flight.campaign.runner import read_table

Z_95 = 1.959963984540054
"""Standard normal quantile of 97.5 %: the two-sided 95 % interval."""
WORST_CASES = 10
QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)
INPUT_COLUMNS = ("case", "scenario", "seed")
OTHER_COLUMNS = frozenset({*INPUT_COLUMNS, *OUTCOME_METRICS, "end", "mode", "telemetry_sha256", "passed",
                           "failed_checks", "error", "wall_s"})
WORST_FIRST = {"energy_margin_frac": True, "battery_soc_min": True, "goodput_frac": True, "gpu_temp_max_c": False}
"""Metric -> whether low is bad, for ranking the worst cases (failed cases first)."""


@dataclass(frozen=True)
class Report:
    """What was written and the headline numbers."""

    cases: int
    passed: int
    interval: tuple[float, float]
    files: tuple[Path, ...]
    markdown: str


def wilson_interval(passed: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``passed / n`` (module docstring);
    ``(0, 1)`` for ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def dispersed_columns(columns) -> list[str]:
    """The dispersed parameters' columns of a results table (``sim.x``, ``power.y``)."""
    return [c for c in columns if c not in OTHER_COLUMNS]


def write_report(results_dir: Path, out: Path) -> Report:
    """Write the report of ``results_dir`` into ``out`` (module docstring).

    Raises:
        FileNotFoundError: no ``results.parquet`` in ``results_dir``.
        OSError: ``out`` cannot be written.
    """
    table = read_table(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    n, passed = len(table), int(table["passed"].sum())
    interval = wilson_interval(passed, n)
    files = (_histograms(table, out / "campaign_outcomes.png"), _scatter(table, out / "campaign_scatter.png"))
    stats = _statistics(table)
    (out / "summary.csv").write_text("metric,min,p05,median,p95,max\n" + "".join(
        f"{m},{','.join(f'{v:.6g}' for v in values)}\n" for m, values in stats.items()))
    markdown = _markdown(table, passed, interval, stats)
    (out / "summary.md").write_text(markdown)
    return Report(n, passed, interval, (*files, out / "summary.md", out / "summary.csv"), markdown)


def _statistics(table) -> dict[str, list[float]]:
    return {m: [float(table[m].quantile(q)) for q in QUANTILES] for m in OUTCOME_METRICS if table[m].notna().any()}


def worst_cases(table, count: int = WORST_CASES):
    """The ``count`` worst cases: failed first (raised, then by energy margin), then by energy margin."""
    ranked = table.assign(_raised=table["error"] != "").sort_values(
        ["passed", "_raised", "energy_margin_frac", "gpu_temp_max_c"], ascending=[True, False, True, False],
        na_position="first")
    return ranked.drop(columns="_raised").head(count)


def _markdown(table, passed: int, interval: tuple[float, float], stats: dict[str, list[float]]) -> str:
    n = len(table)
    lines = [f"# Campaign report: {n} cases", "",
             f"Pass rate: **{passed}/{n} = {passed / n:.1%}** (95 % Wilson interval {interval[0]:.1%} .. "
             f"{interval[1]:.1%})", "", "| metric | min | 5 % | median | 95 % | max |", "|---|---|---|---|---|---|"]
    lines += [f"| {m} | " + " | ".join(f"{v:.4g}" for v in values) + " |" for m, values in stats.items()]
    params = dispersed_columns(table.columns)
    lines += ["", "## Worst cases", "", "| case | scenario | seed | " + " | ".join(params)
              + " | SOC min | margin | GPU max °C | goodput | passed | why |",
              "|---" * (len(params) + 9) + "|"]
    for _, r in worst_cases(table).iterrows():
        why = "raised: " + r["error"].strip().splitlines()[-1] if r["error"] else r["failed_checks"]
        lines.append(f"| {int(r['case'])} | {r['scenario']} | {int(r['seed'])} | "
                     + " | ".join(f"{r[p]:.4g}" for p in params)
                     + f" | {r['battery_soc_min']:.3f} | {r['energy_margin_frac']:.3f} | {r['gpu_temp_max_c']:.1f} | "
                       f"{r['goodput_frac']:.3f} | {'yes' if r['passed'] else 'no'} | {why.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _histograms(table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in OUTCOME_METRICS if table[m].notna().any()]
    cols = 3
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    ok = table["passed"].astype(bool)
    for ax, m in zip(axes.flat, metrics):
        data = [table.loc[ok, m].dropna(), table.loc[~ok, m].dropna()]
        ax.hist(data, bins=20, stacked=True, color=["tab:blue", "tab:red"], label=["passed", "failed"])
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"outcomes of {len(table)} cases ({int(ok.sum())} passed)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _scatter(table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = dispersed_columns(table.columns) or ["seed"]
    metrics = [m for m in OUTCOME_METRICS if table[m].notna().any()]
    fig, axes = plt.subplots(len(metrics), len(params), figsize=(3.0 * len(params), 2.3 * len(metrics)),
                             squeeze=False, sharex="col", sharey="row")
    ok = table["passed"].astype(bool)
    for i, m in enumerate(metrics):
        for j, p in enumerate(params):
            ax = axes[i][j]
            ax.scatter(table.loc[ok, p], table.loc[ok, m], s=6, c="tab:blue", alpha=0.6)
            ax.scatter(table.loc[~ok, p], table.loc[~ok, m], s=18, c="tab:red", marker="x")
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(m, fontsize=7)
            if i == len(metrics) - 1:
                ax.set_xlabel(p, fontsize=7)
    fig.suptitle("dispersed parameters against outcomes (red x: failed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
