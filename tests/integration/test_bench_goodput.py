"""tools/bench_goodput.py flies what it says: the naive baseline runs without look-ahead (its
power manager on the reactive plan, its battery below the floor after the first eclipse),
the flight setups keep the floor, and every goodput is finished work over the same run's
bound (the numbers themselves are the benchmark's business, not a test's)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench_goodput  # noqa: E402


def test_three_flights_on_one_load_each_measured_against_its_own_bound(capsys):
    assert bench_goodput.main(["--hours", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("", "baseline_", "fifo_planned_"):
        assert 0 < result[f"{key}finished_gpu_s"] <= result[f"{key}done_gpu_s"]
        assert result[f"{key}goodput"] == pytest.approx(result[f"{key}finished_gpu_s"] / result[f"{key}bound_gpu_s"])
    assert result["baseline_soc_min"] < bench_goodput.SOC_FLOOR < result["soc_min"]
    assert result["fifo_planned_soc_min"] > bench_goodput.SOC_FLOOR
    assert result["baseline_power_save_s"] > 0 and result["power_save_s"] == 0
    assert result["ratio"] == pytest.approx(result["goodput"] / result["baseline_goodput"])
    assert result["ratio_fifo_planned"] == pytest.approx(result["goodput"] / result["fifo_planned_goodput"])


def test_hours_outside_the_range_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench_goodput.main(["--hours", "0"])
    assert "--hours" in capsys.readouterr().err
