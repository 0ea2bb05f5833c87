"""The rack-satellite's own figures, once: GPU limits, rack draw, battery.

Every flight component that needs one of these imports it from here; none keeps a copy.
The number of GPUs is not here: it is the shape of the hardware interface's frames, so it
lives with the protocol (:data:`flight.hal.protocol.N_GPUS`, the rig confirms it in
``hal.welcome``). The simulator (``sim_hw/params.py``) keeps its own table: it stands for
the hardware, whose physics flight must not assume.

Sources: DESIGN.md "Default parameters" (NVIDIA nvidia-smi limits of a B200-class part,
ISS power figures); values marked "estimate" are this project's.
"""

from __future__ import annotations

from flight.hal.protocol import N_GPUS

GPU_MAX_W = 1000.0
"""Highest settable GPU power limit, W (B200 class, nvidia-smi "Max Power Limit"; estimate)."""
GPU_MIN_W = 400.0
"""Lowest settable GPU power limit, W (B200 class, nvidia-smi "Min Power Limit"; estimate)."""
GPU_IDLE_W = 150.0
"""Draw of an idle GPU, W (B200 class; estimate)."""

RACK_FULL_W = 120e3
"""Whole-rack IT draw at full load, W (DESIGN.md: 120 kW nominal)."""
RACK_IDLE_W = 25e3
"""Whole-rack IT draw idle, W (DESIGN.md: 25 kW idle)."""
IT_IDLE_OVERHEAD_W = RACK_IDLE_W - N_GPUS * GPU_IDLE_W
"""Non-GPU IT load (host CPUs, switches) of an idle rack, W: the idle rack less its idle GPUs."""
MIN_LIMIT_CLOCK_FRAC = ((GPU_MIN_W - GPU_IDLE_W) / (GPU_MAX_W - GPU_IDLE_W)) ** (1 / 3)
"""Clock fraction of a GPU at its lowest limit: dynamic power ∝ clock³ (DESIGN.md GPU model)."""
RUNNING_GPU_EXTRA_W = (GPU_MIN_W - GPU_IDLE_W) + MIN_LIMIT_CLOCK_FRAC * (
    RACK_FULL_W - RACK_IDLE_W - N_GPUS * (GPU_MAX_W - GPU_IDLE_W)) / N_GPUS
"""Draw one more running GPU adds to the rack at its lowest limit, W: its own
``GPU_MIN_W - GPU_IDLE_W`` plus its share of the host and fabric load, which follows the
GPUs' throughput (estimate, from the figures above: about 560 W)."""

BATTERY_DISCHARGE_EFFICIENCY = BATTERY_CHARGE_EFFICIENCY = 0.97
"""Li-ion energy efficiency per direction (estimate; the simulator's battery has the same)."""
BATTERY_MAX_DISCHARGE_C, BATTERY_MAX_CHARGE_C = 1.0, 0.5
"""C-rate limits, 1/h (estimate: typical high-energy NMC cells)."""
BATTERY_DISCHARGE_TEMP_C, BATTERY_CHARGE_TEMP_C = (-20.0, 60.0), (5.0, 45.0)
"""Cell temperature windows, °C (estimate: cell datasheets; no charging below 5 °C)."""
SOC_FLOOR = 0.70
"""Default planned state-of-charge floor: normal depth of discharge 30 % (DESIGN.md). The
power manager's parameter ``power.soc_floor`` starts here; operators may move it."""
SOC_CONTINGENCY = 0.40
"""Contingency depth of discharge 60 % (DESIGN.md): below this SOC the rack goes SAFE."""
