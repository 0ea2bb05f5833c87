"""The campaign report (flight/campaign/report.py): Wilson's interval against published
values, and the files it writes from a results table."""

import math

import pandas as pd
import pytest

from flight.campaign.case import OUTCOME_METRICS, failed_outcome
from flight.campaign.report import wilson_interval, worst_cases, write_report
from flight.campaign.runner import RESULTS_FILE


@pytest.mark.parametrize("passed, n, low, high", [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_matches_the_published_values(passed, n, low, high):
    # 81/263: Newcombe, Statistics in Medicine 17 (1998) 857-872, table I, method 3
    got = wilson_interval(passed, n)
    assert got == pytest.approx((low, high), abs=5e-4)


def table(n: int = 30) -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = {"case": i, "scenario": "worst-eclipse", "seed": 1000 + i, "sim.array_degradation": 0.8 + 0.2 * i / n,
               "battery_soc_min": 0.70 + 0.001 * i, "energy_margin_frac": 0.001 * i - 0.005,
               "gpu_temp_max_c": 80.0 + 0.1 * i, "gpu_shutdowns": 0, "goodput_frac": 0.6 + 0.01 * i,
               "energy_harvested_j": 6e8 + i, "end": "completed", "mode": "NOMINAL", "telemetry_sha256": "ab" * 32,
               "error": "", "wall_s": 1.0}
        row["passed"] = row["energy_margin_frac"] >= 0
        row["failed_checks"] = "" if row["passed"] else "energy_margin_frac >= 0"
        rows.append(row)
    rows.append({"case": n, "scenario": "worst-eclipse", "seed": 7, "sim.array_degradation": 0.9,
                 **failed_outcome(), "failed_checks": "raised", "error": "Traceback ...\nZeroDivisionError: x",
                 "wall_s": 0.1})
    return pd.DataFrame(rows)


def test_the_report_writes_its_plots_and_tables_and_ranks_a_raised_case_worst(tmp_path):
    t = table()
    t.to_parquet(tmp_path / RESULTS_FILE, index=False)
    report = write_report(tmp_path, tmp_path / "report")
    assert (report.cases, report.passed) == (31, 25)
    assert report.interval == pytest.approx(wilson_interval(25, 31))
    for path in report.files:
        assert path.stat().st_size > 0
    assert {p.name for p in report.files} == {"campaign_outcomes.png", "campaign_scatter.png", "summary.md",
                                              "summary.csv"}
    assert "25/31 = 80.6%" in report.markdown
    csv = (tmp_path / "report" / "summary.csv").read_text().splitlines()
    assert csv[0] == "metric,min,p05,median,p95,max" and len(csv) == 1 + len(OUTCOME_METRICS)
    worst = worst_cases(t)
    assert list(worst["case"][:3]) == [30, 0, 1], "the raised case, then the smallest margins"
    assert math.isnan(worst.iloc[0]["battery_soc_min"])
