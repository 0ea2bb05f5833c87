"""The power manager in a test's own process: ``power_manager`` builds one with its output
captured, ``sunlit_frame`` is a HAL frame of a sunlit, nominal rack to feed it."""

import numpy as np

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.subsystems.power.manager import PowerManager


def power_manager(tmp_path, tle_lines: tuple[str, ...] = ()) -> tuple[PowerManager, list]:
    """A power manager in this process, its output captured as ``(kind, name, data)``."""
    out: list = []
    config = RunConfig(bus=BusAddress("inproc://a", "inproc://b", "inproc://c"), data_dir=str(tmp_path),
                       tle_lines=tuple(tle_lines))
    pm = PowerManager(config, lambda kind, name, data: out.append((kind, name, data)))
    pm.on_start()
    return pm, out


def sunlit_frame(**over) -> dict:
    frame = {
        "battery_soc": 0.9, "battery_capacity_j": 5.76e8, "solar_array_power_w": 200e3, "bus_load_w": 8e3,
        "battery_voltage_v": 800.0, "battery_current_a": 0.0, "battery_temp_c": 20.0, "shunt_power_w": 87e3,
        "sun_fraction": 1.0, "coolant_supply_temp_c": 25.0, "gpu_power_w": np.full(72, 900.0),
        "gpu_temp_c": np.full(72, 70.0), "gpu_online": np.ones(72, bool),
    }
    frame.update(over)
    return frame
