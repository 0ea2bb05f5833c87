"""The simulated satellite as a rig: stepping, the welcome and the actuation check, once.

:class:`SimRig` is what both transports of the simulator share:

* :class:`sim_hw.server.HalServer` serves it over a HAL endpoint (``flight sim --bind``,
  the HIL suite), exactly as a hardware rig would stand;
* :func:`main` runs it in the same process as the flight HAL bridge
  (:class:`flight.hal.rigs.LocalRigRunner`): ``flight run`` in simulation. Frames and
  actuations are then calls rather than messages, which spares a process and two bus hops
  per tick, and the bridge publishes the frames on the bus like any rig's. Being in the
  bridge's process also lets the bridge report what only the simulator knows: the residual of
  its energy ledger (``hal.hk`` ``energy_balance_error``), read at the housekeeping rate with no
  message of its own.

Run as ``python -m sim_hw.local CONFIG_JSON [--tle PATH] [--sat NAME] [--seed N]``; the
simulator's parameter overrides (a scenario's start conditions) come in ``config.params["sim"]``.
The satellite resumes the state saved in the data directory (:mod:`sim_hw.persist`) when there
is one (a reboot of the flight computer: the start conditions and the seed then no longer
apply), and saves it each simulated minute and at the end.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flight.core.config import RunConfig
from flight.core.runtime import serve
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from flight.hal import protocol as hal
from flight.hal.rigs import LocalRigRunner
from sim_hw import persist
from sim_hw.params import SimParams
from sim_hw.satellite import Satellite


class SimRig:
    """One :class:`Satellite` seen through the HAL protocol.

    Args:
        satellite: the simulation (stepped only through this object).
        tick_s: simulated seconds per tick, > 0.
        speed: ``None`` for lockstep, else the pace as a multiple of real time.
        saver: saves the satellite's state (:class:`sim_hw.persist.StateSaver`); ``None``: nothing
            is saved (a test rig).
        resumed: the satellite was restored from a saved state (the welcome says so).
    """

    name = "sim"

    def __init__(self, satellite: Satellite, tick_s: float, speed: float | None,
                 saver: persist.StateSaver | None = None, resumed: bool = False) -> None:
        self.sat = satellite
        self.tick_s = tick_s
        self.tick = 0
        self.saver = saver
        self.welcome = {
            "version": hal.HAL_VERSION, "n_gpus": hal.N_GPUS, "n_zones": hal.N_ZONES, "tick_s": tick_s,
            "lockstep": speed is None, "speed": speed, "epoch_utc": satellite.epoch_utc.isoformat(),
            "clock": {"time_s": satellite.time_s, "utc_unix_s": satellite.utc_unix_s, "resumed": resumed,
                      "battery_soc": satellite.power.battery.soc},
        }

    @classmethod
    def lockstep(cls, tle_lines: tuple[str, str], tick_s: float = 1.0, seed: int = 0,
                 params: SimParams | None = None) -> SimRig:
        """A lockstep rig flying a new :class:`Satellite` on ``tle_lines`` (``seed``: memory
        upsets; ``params``: the simulator's parameters, default :class:`SimParams`)."""
        return cls(Satellite(tuple(tle_lines), seed=seed, params=params), tick_s, None)

    def step(self) -> tuple[int, float, dict]:
        """Advance the physics one tick; return ``(tick, time_s, frame)``: frame N is the
        state at ``time_s = N * tick_s``."""
        self.sat.step(self.tick_s)
        self.tick += 1
        return self.tick, self.sat.time_s, self.sat.frame()

    def between_ticks(self) -> None:
        """Have the state saved when a save is due (written in the background:
        :meth:`sim_hw.persist.StateSaver.save_behind`) and look the orbit ahead
        (:meth:`Satellite.look_ahead`): neither changes the frame just stepped nor the next,
        so the bridge calls this once the frame is out, while flight handles it."""
        if self.saver is not None and self.sat.time_s >= self.saver.next_save_s:
            self.saver.save_behind()
        self.sat.look_ahead(self.tick_s)

    @property
    def saved_utc_s(self) -> float | None:
        """Onboard UTC (Unix s) of the latest state saved durably, which a reboot resumes
        from; ``None`` before the first save (or with no saver)."""
        if self.saver is None:
            return None
        self.saver.collect()
        return self.saver.saved_utc_s

    def close(self) -> None:
        """Save the satellite's state (the end of the run, or the process stopping)."""
        if self.saver is not None:
            self.saver.save()

    def actuate(self, fields: Any) -> str | None:
        """Apply an ``hal.actuate`` payload from the next step; return why it was rejected
        (counted in ``hal_rejected_count``, nothing applied), or ``None``."""
        why = hal.check_actuation(fields)
        if why:
            self.reject()
        else:
            self.sat.actuate(fields)
        return why

    def energy_balance_error(self) -> float:
        """|harvested − consumed − losses − shunted − Δstored| of the satellite's ledger
        (:class:`sim_hw.power.Ledger`) over the energy that flowed to those destinations
        (consumed + losses + shunted + |Δstored|), since the start; 0 before the first step."""
        led = self.sat.ledger
        flow = led.gpu + led.it_other + led.bus + led.battery_loss + led.shunted + abs(led.stored)
        return abs(led.residual_j()) / flow if flow > 0.0 else 0.0

    def fault(self, payload: dict) -> str:
        """Apply a ``hal.fault`` payload to the satellite (:meth:`sim_hw.faults.FaultInjector.apply`).

        Raises:
            sim_hw.faults.FaultError: malformed, invalid, or a clear of an inactive fault;
                nothing changed.
        """
        return self.sat.faults.apply(payload)

    def take_ended_faults(self) -> list[tuple[str, str]]:
        """``(fault, target)`` of the timed faults that ended since the last call."""
        ended, self.sat.faults.ended = self.sat.faults.ended, []
        return ended

    def reject(self) -> int:
        """Count one rejected message; return the count so far."""
        self.sat.hal_rejected_count += 1
        return self.sat.hal_rejected_count


def lockstep_rig(config: RunConfig) -> SimRig:
    """The simulated satellite of an in-process run (``flight.hal.inprocess.simulator_rig``):
    ``config``'s element set, tick, seed (memory upsets) and ``params["sim"]`` (start conditions).

    Raises:
        TypeError, ValueError: ``params["sim"]`` is not a set of :class:`SimParams` the
            simulator accepts.
    """
    params = SimParams(**config.params.get("sim", {}))
    return SimRig.lockstep(tuple(config.tle_lines), config.tick_s, config.seed, params)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim_hw.local",
                                 description="The simulated satellite in the HAL bridge's process (flight run).")
    ap.add_argument("config", help="the run's RunConfig as JSON (the executive passes it)")
    ap.add_argument("--tle", default=str(DEFAULT_TLE_PATH), help="TLE file (default: the bundled tle-real.txt)")
    ap.add_argument("--sat", default=None, help="name of the element set in the TLE file (default: the first)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (memory upsets)")
    args = ap.parse_args(argv)
    config = RunConfig.from_json(args.config)

    def build() -> LocalRigRunner:
        _, tle = load_tle(args.tle, args.sat)
        sat = Satellite(tle, seed=args.seed, params=SimParams(**config.params.get("sim", {})))
        path = config.data_path / persist.STATE_FILE
        state = persist.load(path)
        if state is not None:
            persist.restore(sat, state, tle)
        saver = persist.StateSaver(sat, path, args.seed, tle)
        return LocalRigRunner(config, SimRig(sat, config.tick_s, config.speed, saver, resumed=state is not None))

    try:
        return serve("sim", build)
    except persist.StateError as exc:
        print(f"sim: cannot resume the satellite saved in {config.data_path}: {exc}. "
              "flight run --fresh starts a new mission.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
