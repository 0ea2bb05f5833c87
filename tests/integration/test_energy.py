"""Energy conservation and GPU shutdowns, from the simulator through the HAL bridge's
housekeeping to the run summary: the simulator's ledger must close (harvested − consumed −
losses = Δ stored within 0.5 %, issue 3) over a whole `flight run`, and every GPU hardware
shutdown at 92 °C is counted once, while a rack-wide feed cut is not a shutdown."""

from dataclasses import replace

import numpy as np
import pytest

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.hal.bridge import HalBridge
from flight.core.messages import Encoder, decode
from flight.executive.recorder import RunStats
from flight.core.tle import load_tle
from sim_hw.local import SimRig
from sim_hw.params import SimParams
from sim_hw.satellite import Satellite
from tests.support.predicates import FlightRun, free_port

TLE = load_tle("flight/data/tle-real.txt")[1]
N = 72
FULL_LOAD = {"gpu_power_limit_w": np.full(N, 1000.0), "gpu_load_frac": np.ones(N), "radiator_valve_frac": np.ones(4)}


def bridge_over(rig: SimRig) -> tuple[HalBridge, list]:
    """A HAL bridge wired to ``rig`` as :class:`flight.hal.bridge.LocalRigRunner` wires it,
    with its bus output captured as ``(kind, name, data)``."""
    out: list = []
    config = RunConfig(bus=BusAddress("inproc://x", "inproc://y", "inproc://z"), data_dir="", tick_s=1.0)
    bridge = HalBridge(config, lambda kind, name, data: out.append((kind, name, data)), lambda *_: None)
    bridge.energy_balance_error = rig.energy_balance_error
    return bridge, out


def summary_of(out: list, last_tick: int) -> dict:
    stats = RunStats(last_tick)
    enc = Encoder("sim")
    for kind, name, data in out:
        stats.observe(decode(enc.encode(kind, name, data, last_tick, float(last_tick))[1]))
    return stats.summary()


def test_every_thermal_shutdown_is_counted_once_and_reaches_the_summary():
    """Pump stopped at full load: the GPUs heat up and shut down at 92 °C. The bridge counts
    them from the frames alone; the simulator's own shutdown latches are the reference."""
    rig = SimRig(Satellite(TLE), 1.0, None)
    rig.actuate({**FULL_LOAD, "pump_speed_frac": 0.0})
    bridge, out = bridge_over(rig)
    latched = 0
    for _ in range(900):
        before = rig.sat.gpus.shutdown.copy()
        _, _, frame = rig.step()
        latched += int(np.count_nonzero(rig.sat.gpus.shutdown & ~before))
        bridge.accumulate(frame)
    bridge.housekeeping()
    assert latched > 0 and bridge.gpu_shutdowns == latched
    (hk,) = [data for kind, name, data in out if (kind, name) == ("tm", "hal.hk")]
    assert hk["gpu_shutdowns"] == latched
    announced = [data["args"] for _, name, data in out if name == "hal.gpus_offline"]
    assert sum(a["shutdowns"] for a in announced) == latched
    assert hk["gpu_temp_min_c"] - 1e-9 <= hk["gpu_temp_mean_c"] <= hk["gpu_temp_max_c"] + 1e-9
    s = summary_of(out, 900)
    assert s["gpu_shutdowns"] == latched and s["energy_balance_error"] < 1e-9


def test_a_feed_cut_takes_every_gpu_offline_without_counting_shutdowns():
    rig = SimRig(Satellite(TLE, params=replace(SimParams(), battery_initial_soc=0.06)), 1.0, None)
    rig.actuate({**FULL_LOAD, "pump_speed_frac": 0.8})
    bridge, out = bridge_over(rig)
    offline = False
    for _ in range(120):
        _, _, frame = rig.step()
        bridge.accumulate(frame)
        offline |= not frame["gpu_online"].any()
    bridge.housekeeping()
    (hk,) = [data for kind, name, data in out if (kind, name) == ("tm", "hal.hk")]
    assert offline and bridge.gpu_shutdowns == 0 and hk["gpu_shutdowns"] == 0
    (cut,) = [data["args"] for _, name, data in out if name == "hal.gpus_offline"]
    assert cut["shutdowns"] == 0 and cut["online"] == 0


def test_an_external_rig_reports_no_energy_balance():
    config = RunConfig(bus=BusAddress("inproc://x", "inproc://y", "inproc://z"), data_dir="", tick_s=1.0)
    out: list = []
    bridge = HalBridge(config, lambda kind, name, data: out.append((kind, name, data)), lambda *_: None)
    bridge.accumulate(Satellite(TLE).frame())
    bridge.housekeeping()
    assert np.isnan(out[0][2]["energy_balance_error"])
    assert summary_of(out, 10)["energy_balance_error"] is None


@pytest.mark.slow
def test_the_energy_ledger_closes_over_a_full_stack_run(tmp_path):
    """2000 simulated seconds through eclipse into sunlight (the default TLE starts in
    shadow), with the real power manager, thermal controller and job runner driving the rack."""
    with FlightRun(tmp_path, "--duration", "2000", "--link", f"127.0.0.1:{free_port()}") as run:
        assert run.wait(timeout_s=180) == 0
    s = run.summary()
    assert s["end"] == "completed" and 0 < s["eclipse_time_s"] < s["sim_time_s"]
    assert s["energy_harvested_j"] > 0
    assert s["energy_balance_error"] is not None and 0 <= s["energy_balance_error"] < 0.005
    assert s["gpu_shutdowns"] == 0
    hk = run.latest("hal.gpu_temp_min_c")
    assert hk is not None and hk <= run.latest("hal.gpu_temp_max_c")
