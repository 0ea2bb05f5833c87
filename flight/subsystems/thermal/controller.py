"""Thermal controller: holds the coolant supply temperature at its setpoint and tells the
power manager how much power each GPU can take before it runs hot.

Five PID loops stepped in one batched C call (:class:`flight.control.thermal_pid.ThermalPid`):

* loops 0..3, one per radiator zone: zone valve opening from the coolant supply
  temperature (reverse acting: opening a valve sends more flow through the radiators and
  lowers the supply temperature);
* loop 4: pump speed from the hottest GPU (reverse acting: more flow, more cold-plate
  conductance), never below ``PUMP_MIN_FRAC`` so the loop keeps circulating.

Per-GPU thermal headroom (the power at which each GPU would sit at ``gpu_target_c``) comes
from :func:`flight.control.thermal_pid.thermal_headroom_w`, extrapolating each die
temperature along the die-to-coolant resistance from the power it reflects (the measured
power low-passed with the package's thermal time constant, ``GPU_THERMAL_TAU_S``). It is
published as the data product ``thermal.headroom`` for the power manager's allocator, by
exception: when any GPU's headroom has moved more than ``HEADROOM_DEADBAND_W`` since the last
publication, and at every housekeeping tick (so a restarted power manager catches up).

Neither loop trusts a temperature sensor blindly: :mod:`flight.subsystems.thermal.sensor_check` cross-checks
every GPU die reading against its power and its neighbours, and the coolant supply against
the radiator outlets; a sensor that disagrees for ``PERSISTENCE_S`` is declared failed (event
``sensor_failed``, count ``sensors_failed`` in housekeeping) and a conservative estimate
replaces it in the loops and the headroom.
"""

from __future__ import annotations

import numpy as np

from flight.control.thermal_pid import ThermalPid, thermal_headroom_w
from flight.core.component import Arg, Channel, Command, Component, DataProduct, Event, EventArg, Parameter, ProductField
from flight.hal.protocol import N_GPUS, N_ZONES
from flight.subsystems.thermal.sensor_check import PERSISTENCE_S, SensorCheck
from flight.core.subsystem import Subsystem

PUMP = N_ZONES
"""Index of the pump loop, after the zone-valve loops."""
PUMP_MIN_FRAC = 0.3
VALVE_SLEW_PER_S = 0.05
"""Matches a motorised valve's ~20 s full stroke; commanding faster only winds the loop up."""
R_TH_C_PER_W = 0.035
"""Die-to-coolant thermal resistance of one GPU (°C/W): TIM, spreading and cold-plate
convection for a B200-class package at full flow (estimate, ~35 K rise at 1 kW)."""
GPU_THERMAL_TAU_S = 16.0
"""Slow time constant of a GPU's die and cold plate (s): the larger one of the two-node
chain die (~400 J/K) -> 40 W/K -> plate (~600 J/K) -> 105 W/K -> coolant (estimates for a
B200-class package on a ~1 kg copper plate, the figures sim_hw uses). The headroom
extrapolates from the power low-passed with it, the power the die temperature reflects.
With the instantaneous power, a GPU whose job had just ended read ~210 W of headroom (below
its 400 W minimum: parked, it took no work for about a minute) and one just loaded read
up to ~50 % too much; in the two-node model of a 1 kW / 150 W step the filtered estimate
stays within ~6 % of the steady value (``tests/integration/test_thermal_headroom.py``
checks the freed GPU against the simulator)."""
HEADROOM_DEADBAND_W = 10.0
"""About 0.35 K of die temperature at ``R_TH_C_PER_W``, and the power allocator's own
hysteresis: smaller moves would not change a single power limit."""
DEFAULT_SETPOINT_C = 25.0
DEFAULT_GPU_TARGET_C = 80.0
DEFAULT_GAINS = {"valves": (0.08, 0.004, 0.0), "pump": (0.05, 0.002, 0.0)}
"""(kp, ki, kd) per loop family; kp in fraction/K, ki in fraction/(K·s), kd in fraction·s/K.
Tuned in closed loop against sim_hw at full load and at idle in eclipse."""


def _gain_view(loop: str, gain: str) -> property:
    """One gain of a loop family as an attribute (a parameter governs it), read from and
    written to the batched PID's gain array."""
    first = 0 if loop == "valves" else PUMP
    rows = slice(0, N_ZONES) if loop == "valves" else slice(PUMP, PUMP + 1)

    def write(self, value: float) -> None:
        getattr(self.pid, gain)[rows] = value

    return property(lambda self: float(getattr(self.pid, gain)[first]), write)


class ThermalController(Subsystem):
    COMPONENT = Component(
        "thermal", 3, doc="Coolant loop control (radiator valves, pump) and per-GPU thermal headroom.",
        commands=(
            Command("set_setpoint", 1, (Arg("setpoint_c", "float", "degC", 15.0, 45.0,
                                            doc="Coolant supply temperature to hold."),),
                    doc="Change the coolant supply temperature setpoint.", idempotent=True),
            Command("set_gpu_target", 2, (Arg("target_c", "float", "degC", 60.0, 87.0,
                                              doc="GPU temperature the headroom and pump aim at."),),
                    doc="Change the GPU temperature target (below the 89 °C hardware slowdown).", idempotent=True),
            Command("set_gains", 3, (
                Arg("loop", "str", choices=("valves", "pump"), doc="Loop family."),
                Arg("kp", "float", "1/K", 0.0, 2.0, doc="Proportional gain."),
                Arg("ki", "float", "1/(K*s)", 0.0, 0.1, doc="Integral gain."),
                Arg("kd", "float", "s/K", 0.0, 20.0, doc="Derivative gain."),
            ), doc="Retune a loop family; the integrator is kept.", idempotent=True),
        ),
        telemetry=(
            Channel("setpoint_c", "float", "degC", "Coolant supply setpoint."),
            Channel("coolant_supply_temp_c", "float", "degC", "Measured supply temperature.", yellow=(10, 40), red=(0, 50)),
            Channel("supply_error_c", "float", "K", "Supply minus setpoint.", yellow=(-1, 1), red=(-5, 5)),
            Channel("valve_cmd_frac", "float", "", "Radiator zone valve commands.", size=N_ZONES),
            Channel("pump_cmd_frac", "float", "", "Pump speed command."),
            Channel("gpu_target_c", "float", "degC", "GPU temperature target."),
            Channel("gpu_temp_max_c", "float", "degC", "Hottest GPU.", yellow=(-10, 85), red=(-20, 89)),
            Channel("headroom_total_w", "float", "W", "Sum of per-GPU headroom."),
            Channel("gpu_headroom_w", "float", "W", "Per-GPU power at which it reaches the target.", size=N_GPUS),
            Channel("sensors_failed", "int", "count",
                    "Temperature sensors the cross-check declared failed (replaced by substitutes).", yellow=(0, 0)),
        ),
        events=(
            Event("setpoint_changed", 1, "INFO", "coolant setpoint {old_c:.1f} -> {new_c:.1f} °C",
                  args=(EventArg("old_c", "float", "degC"), EventArg("new_c", "float", "degC"))),
            Event("gpu_target_changed", 2, "INFO", "GPU target {old_c:.1f} -> {new_c:.1f} °C",
                  args=(EventArg("old_c", "float", "degC"), EventArg("new_c", "float", "degC"))),
            Event("gains_changed", 3, "INFO", "{loop} gains kp={kp:g} ki={ki:g} kd={kd:g}",
                  args=(EventArg("loop", "str"), EventArg("kp", "float"), EventArg("ki", "float"),
                        EventArg("kd", "float"))),
            Event("sensor_failed", 4, "MEDIUM",
                  "{sensor} disagreed with related readings for {persist_s:g} s: failed, a conservative "
                  "estimate replaces it",
                  args=(EventArg("sensor", "str"), EventArg("persist_s", "float", "s"))),
        ),
        parameters=(
            Parameter("setpoint_c", 1, "float", "degC", 15.0, 45.0, DEFAULT_SETPOINT_C,
                      "Coolant supply temperature to hold; as set_setpoint."),
            Parameter("gpu_target_c", 2, "float", "degC", 60.0, 87.0, DEFAULT_GPU_TARGET_C,
                      "GPU temperature the headroom and pump aim at; as set_gpu_target."),
            *(Parameter(f"{loop}_{gain}", 3 + 3 * i + j, "float", units, 0.0, hi, DEFAULT_GAINS[loop][j],
                        f"{gain} of the {loop} loop family; as set_gains.")
              for i, loop in enumerate(DEFAULT_GAINS)
              for j, (gain, units, hi) in enumerate((("kp", "1/K", 2.0), ("ki", "1/(K*s)", 0.1), ("kd", "s/K", 20.0)))),
        ),
        publishes=(DataProduct("headroom", (
            ProductField("gpu_headroom_w", "float64", "W", (N_GPUS,),
                         "Per-GPU power at which it would sit at the GPU target (0 offline)."),
            ProductField("setpoint_c", "float64", "degC", doc="Coolant supply setpoint in force."),
        ), doc="Thermal headroom, by exception (a move over HEADROOM_DEADBAND_W) and every housekeeping tick."),),
        actuates=("radiator_valve_frac", "pump_speed_frac"),
    )
    RATE_GROUPS = ((1, "control"),)

    def __init__(self, config, emit, send_command=None, **ports) -> None:
        super().__init__(config, emit, send_command, **ports)
        params = config.params.get("thermal", {})
        self.setpoint_c = float(params.get("setpoint_c", DEFAULT_SETPOINT_C))
        self.gpu_target_c = float(params.get("gpu_target_c", DEFAULT_GPU_TARGET_C))
        self.pid = ThermalPid(N_ZONES + 1)
        self.pid.direction = -1.0
        self.pid.out_min = 0.0
        self.pid.out_min[PUMP] = PUMP_MIN_FRAC
        self.pid.out_max = 1.0
        self.pid.slew_per_s = VALVE_SLEW_PER_S
        self.pid.derivative_tau_s = 5.0
        for loop, gains in DEFAULT_GAINS.items():
            self._set_gains(loop, *gains)
        self.pid.reset([0.5] * N_ZONES + [0.6])
        self.setpoints = np.empty(N_ZONES + 1)
        self.measurements = np.empty(N_ZONES + 1)
        self.headroom_w = np.zeros(N_GPUS)
        self.heating_w = np.full(N_GPUS, np.nan)
        """Each GPU's power filtered with :data:`GPU_THERMAL_TAU_S` (W; NaN until a finite reading)."""
        self.heating_alpha = -np.expm1(-config.tick_s / GPU_THERMAL_TAU_S)
        self.published_w = np.full(N_GPUS, np.inf)
        """Headroom as last published; inf forces the first publication."""
        self.supply_c = self.hottest_c = float("nan")
        self.sensors = SensorCheck(N_GPUS, N_ZONES, R_TH_C_PER_W, config.tick_s)
        """Cross-check of the temperature sensors (:mod:`flight.subsystems.thermal.sensor_check`)."""

    # the gains as parameters (PUS service 20)
    valves_kp, valves_ki, valves_kd = (_gain_view("valves", g) for g in ("kp", "ki", "kd"))
    pump_kp, pump_ki, pump_kd = (_gain_view("pump", g) for g in ("kp", "ki", "kd"))

    def _set_gains(self, loop: str, kp: float, ki: float, kd: float) -> None:
        idx = slice(0, N_ZONES) if loop == "valves" else slice(PUMP, PUMP + 1)
        self.pid.kp[idx], self.pid.ki[idx], self.pid.kd[idx] = kp, ki, kd

    def cmd_set_setpoint(self, setpoint_c: float) -> str:
        self.event("setpoint_changed", old_c=self.setpoint_c, new_c=setpoint_c)
        self.setpoint_c = setpoint_c
        return f"setpoint {setpoint_c:.1f} °C"

    def cmd_set_gpu_target(self, target_c: float) -> str:
        self.event("gpu_target_changed", old_c=self.gpu_target_c, new_c=target_c)
        self.gpu_target_c = target_c
        return f"GPU target {target_c:.1f} °C"

    def cmd_set_gains(self, loop: str, kp: float, ki: float, kd: float) -> str:
        self._set_gains(loop, kp, ki, kd)
        self.event("gains_changed", loop=loop, kp=kp, ki=ki, kd=kd)
        return f"{loop} gains set"

    def control(self, frame: dict) -> None:
        for sensor in self.sensors.update(frame):
            self.event("sensor_failed", sensor=sensor, persist_s=PERSISTENCE_S)
        temps = self.sensors.gpu_temps_c(frame)
        online = frame["gpu_online"]
        hottest = float(np.max(temps[online])) if online.any() else float(np.max(temps))
        supply = self.sensors.supply_c(frame)
        self.setpoints[:N_ZONES] = self.setpoint_c
        self.setpoints[PUMP] = self.gpu_target_c
        self.measurements[:N_ZONES] = supply
        self.measurements[PUMP] = hottest
        out = self.pid.step(self.config.tick_s, self.setpoints, self.measurements)
        self.actuate(radiator_valve_frac=out[:N_ZONES].copy(), pump_speed_frac=float(out[PUMP]))
        power = frame["gpu_power_w"]
        # a non-finite reading passes through (no headroom that tick) and restarts the filter
        self.heating_w += self.heating_alpha * (power - self.heating_w)
        np.copyto(self.heating_w, power, where=~np.isfinite(self.heating_w))
        thermal_headroom_w(temps, self.heating_w, self.gpu_target_c, R_TH_C_PER_W, out=self.headroom_w)
        self.headroom_w[~online] = 0.0
        if (np.max(np.abs(self.headroom_w - self.published_w)) > HEADROOM_DEADBAND_W
                or self.config.housekeeping_due(self.tick)):
            self.publish_data("headroom", gpu_headroom_w=self.headroom_w, setpoint_c=self.setpoint_c)
            self.published_w[:] = self.headroom_w
        self.supply_c, self.hottest_c = supply, hottest

    def housekeeping(self) -> None:
        out = self.pid.output
        self.telemetry(
            setpoint_c=self.setpoint_c, coolant_supply_temp_c=self.supply_c,
            supply_error_c=self.supply_c - self.setpoint_c, valve_cmd_frac=out[:N_ZONES].copy(),
            pump_cmd_frac=float(out[PUMP]), gpu_target_c=self.gpu_target_c, gpu_temp_max_c=self.hottest_c,
            headroom_total_w=float(np.sum(self.headroom_w)), gpu_headroom_w=self.headroom_w,
            sensors_failed=self.sensors.failed_count,
        )
