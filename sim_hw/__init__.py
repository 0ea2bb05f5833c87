"""The simulated rack-satellite and its HAL server.

Modules, one job each: :mod:`~sim_hw.params` (the documented defaults table), :mod:`~sim_hw.ground`
(stations and downlink), :mod:`~sim_hw.power` (array, battery, dispatch, energy ledger),
:mod:`~sim_hw.thermal` (coolant loop and radiators), :mod:`~sim_hw.gpus` (GPUs and the rest
of the IT load), :mod:`~sim_hw.radiation` (memory upsets and ECC), :mod:`~sim_hw.satellite`
(the :class:`~sim_hw.satellite.Satellite` that ties them together) and
:mod:`~sim_hw.server` (the rig side of :mod:`flight.hal.protocol`), :mod:`~sim_hw.local` (the
rig in the HAL bridge's process), :mod:`~sim_hw.faults` (the physical effects of the fault
catalogue :mod:`flight.hal.faults`) and :mod:`~sim_hw.start` (a scenario's ``[start]`` table,
checked). sim_hw imports only :mod:`flight.core` and :mod:`flight.hal`. The orbit geometry (SGP4, Sun,
shadow, beta angle, geodesy) is :mod:`flight.core.orbit`, shared with the flight software's own
eclipse forecast.
"""
