"""Hardware-interface (HAL) protocol: what a rig or the simulator exchanges with flight.

Protocol version :data:`HAL_VERSION`. Transport: the rig binds a ZeroMQ ROUTER socket at its
HAL endpoint (``ipc://...`` on one host, ``tcp://host:port`` across hosts); the flight side
connects one DEALER. Every message is one envelope body from :mod:`flight.core.messages` (a
single frame on this link: DEALER/ROUTER adds only the peer identity) with ``kind="hw"``.

Sequence::

    flight -> rig   hal.hello       {"version": HAL_VERSION}
    rig -> flight   hal.welcome     {"version", "n_gpus", "n_zones", "tick_s", "lockstep", "speed", "epoch_utc"}
    rig -> flight   hal.frame       one sensor frame per tick (fields: SENSOR_FIELDS)
    flight -> rig   hal.actuate     any subset of ACTUATOR_FIELDS, applied from the next tick
    flight -> rig   hal.tick_done   {"tick": N}: flight finished tick N
    rig -> flight   hal.reject      {"reason": str, "rejected_count": int} for a bad message
    flight -> rig   hal.bye         {} : the flight side is leaving
    rig -> flight   hal.end         {"reason": str} : the rig stops serving (end of its run, shutdown)
    flight -> rig   hal.fault       {"id", "action": "inject", "fault", "value", "target", "duration_s"}
                                    or {"id", "action": "clear", "fault", "target"} (test and lab)
    rig -> flight   hal.fault_ack   {"id", "ok": bool, "reason": str}
    rig -> flight   hal.fault_ended {"fault", "target"} : a timed fault's duration has passed

``speed`` in the welcome is ``None`` in lockstep, else the pace as a multiple of real time.
A rig may add ``"clock": {"time_s", "utc_unix_s", "resumed", "battery_soc"}``: its onboard
time (s since the run epoch) and UTC when it started serving, whether it resumed a saved state
(a reboot of the flight computer, :mod:`sim_hw.persist`; the bridge then announces
``hal.rebooted``) and the battery's state of charge then. Whatever the rig says, the flight
side refuses to run on when onboard UTC goes backwards (:mod:`flight.hal.onboard_clock`).

Lockstep (simulation, ``--speed max``): the rig sends frame N+1 only after ``tick_done``
for N. Paced (``realtime`` or a speed factor, and every real rig): frames follow the wall
clock and ``tick_done`` is informational; a late one is a cycle slip.

An actuator message is checked whole against :data:`ACTUATOR_FIELDS` (known names, dtype,
shape, range, finite); one bad field rejects the whole message, changes nothing, is
counted in the frame's ``hal_rejected_count`` and answered with ``hal.reject`` — as is
any other message the rig cannot use (undecodable, unknown name, not from its client).

Fault injection (``hal.fault``) is optional for a rig: the faults, their arguments and
effects are the catalogue of :mod:`flight.hal.faults`, which the flight side checks before
sending. The simulator applies them; a real rig may answer ``ok: false`` ("not supported")
or, if it predates the message, ``hal.reject``. Either way nothing changes on the rig and
the ``hal.inject_fault`` telecommand fails with EXECUTION_ERROR.

Ranges below are the valid range of the *value*, used by the rig to reject actuator
settings and by the HIL suite to check frames. Units are in the field names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight.core.messages import DecodeError

HAL_VERSION = 1
N_GPUS = 72
"""GPUs in one NVL72-class rack."""
N_ZONES = 4
"""Radiator zones, each with its own flow valve and outlet temperature sensor."""

# NVML clocks-throttle-reason bits (nvml.h, nvmlClocksEventReasons*), as reported per GPU.
THROTTLE_GPU_IDLE = 0x1
THROTTLE_SW_POWER_CAP = 0x4
THROTTLE_HW_SLOWDOWN = 0x8
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_HW_POWER_BRAKE = 0x80
THROTTLE_MASK = 0xFF


@dataclass(frozen=True)
class Field:
    """One HAL field: name, numpy dtype, shape (``()`` for a scalar), valid range, meaning."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    lo: float
    hi: float
    doc: str

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not valid for this field, or ``None`` if it is.

        Fast on the common case (a Python scalar or a numpy array of the right shape): the
        bridge checks every field of every frame.
        """
        if self.dtype == "bool":
            if self.shape == ():
                ok = isinstance(value, (bool, np.bool_))
            else:
                ok = isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.shape == self.shape
            return None if ok else f"{self.name}: expected bool of shape {self.shape}"
        if isinstance(value, (bool, np.bool_, str, bytes)):
            return f"{self.name}: expected a number"
        if self.shape == ():
            if not isinstance(value, (int, float, np.integer, np.floating)):
                return f"{self.name}: expected a number"
            lo = hi = float(value)
        else:
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if arr.dtype.kind not in "iuf":
                return f"{self.name}: expected numbers"
            if arr.shape != self.shape:
                return f"{self.name}: shape {arr.shape} is not {self.shape}"
            lo, hi = float(arr.min()), float(arr.max())  # NaN propagates into both
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return f"{self.name}: not finite"
        if lo < self.lo or hi > self.hi:
            return f"{self.name}: outside [{self.lo:g}, {self.hi:g}]"
        return None


G, Z = (N_GPUS,), (N_ZONES,)
INF = float("inf")

SENSOR_FIELDS: tuple[Field, ...] = (
    # time and orbit (GNSS receiver, sun sensors, attitude determination)
    Field("time_s", "f8", (), 0, INF, "Seconds since the run epoch (the TLE epoch by default)."),
    Field("utc_unix_s", "f8", (), 0, INF, "UTC as Unix seconds."),
    Field("latitude_deg", "f8", (), -90, 90, "Geodetic latitude of the sub-satellite point."),
    Field("longitude_deg", "f8", (), -180, 180, "Longitude of the sub-satellite point."),
    Field("altitude_km", "f8", (), 100, 2000, "Altitude above the WGS-84 ellipsoid."),
    Field("sun_vector_eci", "f8", (3,), -1, 1, "Unit vector satellite->Sun, TEME/ECI frame."),
    Field("sun_fraction", "f8", (), 0, 1, "Fraction of the solar disc visible: 1 sunlit, 0 umbra."),
    Field("eclipse", "bool", (), 0, 1, "True while sun_fraction < 0.5 (umbra or deep penumbra)."),
    Field("beta_angle_deg", "f8", (), -90, 90, "Angle between the orbit plane and the Sun vector."),
    # electrical power system
    Field("solar_array_power_w", "f8", (), 0, 400e3,
          "Array output at its maximum power point, including what the shunt then dumps."),
    Field("shunt_power_w", "f8", (), 0, 400e3, "Array power dumped by the shunt regulator (unused)."),
    Field("solar_array_current_a", "f8", (), 0, 5e3, "Array current at the bus voltage."),
    Field("battery_voltage_v", "f8", (), 0, 1000, "Battery terminal voltage."),
    Field("battery_current_a", "f8", (), -5e3, 5e3, "Battery current, + charging, - discharging."),
    Field("battery_temp_c", "f8", (), -60, 100, "Battery cell temperature."),
    Field("battery_soc", "f8", (), 0, 1, "State of charge estimate from the battery management system."),
    Field("battery_capacity_j", "f8", (), 0, 1e12, "Usable capacity at the current state of health."),
    Field("battery_heater_on", "bool", (), 0, 1, "Battery heater switch state."),
    Field("bus_load_w", "f8", (), 0, 100e3, "Platform loads: avionics, pumps, heaters, links."),
    # GPUs (NVML-style per-device readings)
    Field("gpu_power_w", "f8", G, 0, 2000, "Per-GPU board power draw."),
    Field("gpu_power_limit_w", "f8", G, 0, 2000, "Per-GPU enforced power limit."),
    Field("gpu_temp_c", "f8", G, -60, 150, "Per-GPU die temperature."),
    Field("gpu_clock_mhz", "f8", G, 0, 3000, "Per-GPU graphics clock."),
    Field("gpu_util", "f8", G, 0, 1, "Per-GPU utilisation (fraction of the time busy)."),
    Field("gpu_ecc_corrected", "f8", G, 0, INF, "Per-GPU corrected ECC errors since start (count)."),
    Field("gpu_ecc_uncorrected", "f8", G, 0, INF, "Per-GPU uncorrectable ECC errors since start (count)."),
    Field("gpu_throttle_reasons", "f8", G, 0, THROTTLE_MASK, "Per-GPU NVML throttle-reason bitmask."),
    Field("gpu_online", "bool", G, 0, 1, "False after a hardware thermal shutdown or a dead GPU."),
    # thermal control system
    Field("coolant_supply_temp_c", "f8", (), -40, 150, "Coolant entering the cold plates."),
    Field("coolant_return_temp_c", "f8", (), -40, 150, "Coolant leaving the cold plates."),
    Field("radiator_outlet_temp_c", "f8", Z, -100, 150, "Coolant leaving each radiator zone."),
    Field("radiator_temp_c", "f8", Z, -150, 150, "Mean panel temperature of each radiator zone."),
    Field("pump_speed_frac", "f8", (), 0, 1, "Coolant pump speed as a fraction of maximum."),
    Field("coolant_flow_kg_s", "f8", (), 0, 100, "Coolant mass flow."),
    Field("radiator_valve_frac", "f8", Z, 0, 1, "Valve opening of each radiator zone."),
    # communications
    Field("ground_contact", "bool", (), 0, 1, "A ground station is above its elevation mask."),
    Field("ground_station_id", "f8", (), -1, 255, "Index of the station in contact, -1 for none."),
    Field("ground_elevation_deg", "f8", (), -90, 90,
          "Elevation of the satellite at the highest station (also out of contact)."),
    Field("downlink_rate_bps", "f8", (), 0, 100e9, "Available downlink rate (0 without contact)."),
    Field("transmitter_on", "bool", (), 0, 1, "Ka-band transmitter switch state."),
    Field("laser_terminal_on", "bool", (), 0, 1, "Optical inter-satellite terminal switch state."),
    # the interface itself
    Field("hal_rejected_count", "f8", (), 0, INF, "Messages the rig rejected since start."),
)

ACTUATOR_FIELDS: tuple[Field, ...] = (
    Field("gpu_power_limit_w", "f8", G, 0, 1000, "Per-GPU power limit; 0 parks the GPU at idle."),
    Field("gpu_load_frac", "f8", G, 0, 1, "Per-GPU work offered by the job runner (0 idle)."),
    Field("pump_speed_frac", "f8", (), 0, 1, "Coolant pump speed command."),
    Field("radiator_valve_frac", "f8", Z, 0, 1, "Radiator zone valve commands."),
    Field("battery_heater_on", "bool", (), 0, 1, "Battery heater switch."),
    Field("transmitter_on", "bool", (), 0, 1, "Ka-band transmitter switch."),
    Field("laser_terminal_on", "bool", (), 0, 1, "Optical terminal switch."),
)

SENSORS = {f.name: f for f in SENSOR_FIELDS}
ACTUATORS = {f.name: f for f in ACTUATOR_FIELDS}

# The packed sensor frame: how the HAL bridge hands each frame to the lockstep participants
# (flight.core.lockstep). Every participant unpacks every frame, every tick, in a process that
# has just woken up with cold caches: as a msgpack map of 42 named values and 13 array
# extensions that took 16 us warm and 38-41 us traced in the full stack; packed, 7 us warm.
_SCALAR_NAMES = tuple(f.name for f in SENSOR_FIELDS if f.shape == ())
_BOOL_SCALARS = tuple(f.name for f in SENSOR_FIELDS if f.shape == () and f.dtype == "bool")


@dataclass(frozen=True)
class _PackedArray:
    name: str
    dtype: np.dtype
    """As unpacked: float64, or bool (one byte on the wire)."""
    count: int
    offset: int
    shape: tuple[int, ...] | None
    """``None`` for a 1-D field (frombuffer gives it), else the shape to restore."""


def _array_layout() -> tuple[_PackedArray, ...]:
    layout, offset = [], 8 * len(_SCALAR_NAMES)
    for f in SENSOR_FIELDS:
        if f.shape != ():
            dtype = np.dtype(bool) if f.dtype == "bool" else np.dtype("<f8")
            count = math.prod(f.shape)
            layout.append(_PackedArray(f.name, dtype, count, offset, f.shape if len(f.shape) > 1 else None))
            offset += dtype.itemsize * count
    return tuple(layout)


_ARRAYS = _array_layout()
_BOOL_ARRAYS = tuple(a for a in _ARRAYS if a.dtype == np.bool_)
PACKED_FRAME_BYTES = _ARRAYS[-1].offset + _ARRAYS[-1].dtype.itemsize * _ARRAYS[-1].count
"""Size of a packed sensor frame: 5,032 bytes for 72 GPUs and 4 radiator zones."""


def pack_frame(frame: dict[str, Any]) -> bytes:
    """A sensor frame (every field of :data:`SENSOR_FIELDS`, checked or built to them) as
    :data:`PACKED_FRAME_BYTES` bytes: first every scalar field in :data:`SENSOR_FIELDS` order
    as a little-endian float64 (a bool as 0.0 or 1.0), then every array field in that order,
    row-major, as little-endian float64 (a bool array as one byte, 0 or 1, per element).
    Fields the table does not declare are left out.

    Raises:
        KeyError: a declared field is missing.
        ValueError: an array field with the wrong number of values.
    """
    parts = [np.array([frame[name] for name in _SCALAR_NAMES], dtype="<f8").tobytes()]
    for a in _ARRAYS:
        values = np.ascontiguousarray(frame[a.name], dtype=a.dtype)
        if values.size != a.count:
            raise ValueError(f"{a.name}: {values.size} values, not {a.count}")
        parts.append(values.tobytes())
    return b"".join(parts)


def unpack_frame(raw: bytes) -> dict[str, Any]:
    """The sensor frame packed by :func:`pack_frame`, as a map of every field (the scalars
    first): scalars as Python floats and bools, arrays as read-only views of ``raw``
    (float64, bool for ``gpu_online``) of their declared shapes.

    Raises:
        DecodeError: ``raw`` is not bytes of :data:`PACKED_FRAME_BYTES`, or a bool is
            neither 0 nor 1.
    """
    if not isinstance(raw, bytes) or len(raw) != PACKED_FRAME_BYTES:
        size = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise DecodeError(f"packed sensor frame of {size}, not {PACKED_FRAME_BYTES} bytes")
    frame = dict(zip(_SCALAR_NAMES, np.frombuffer(raw, "<f8", len(_SCALAR_NAMES)).tolist()))
    for name in _BOOL_SCALARS:
        value = frame[name]
        if value != 0.0 and value != 1.0:
            raise DecodeError(f"{name}: {value!r} is not a bool")
        frame[name] = value == 1.0
    for a in _BOOL_ARRAYS:
        if raw[a.offset:a.offset + a.count].strip(b"\x00\x01"):
            raise DecodeError(f"{a.name}: a byte that is neither 0 nor 1")
    for a in _ARRAYS:
        values = np.frombuffer(raw, a.dtype, a.count, a.offset)
        frame[a.name] = values if a.shape is None else values.reshape(a.shape)
    return frame


def check_actuation(data: Any) -> str | None:
    """Why an ``hal.actuate`` payload is invalid, or ``None`` if every field is valid."""
    if not isinstance(data, dict) or not data:
        return "actuation must be a non-empty map of field -> value"
    for name, value in data.items():
        field = ACTUATORS.get(name)
        if field is None:
            return f"unknown actuator {name!r}"
        why = field.check(value)
        if why:
            return why
    return None


def check_frame(data: Any) -> list[str]:
    """Every problem with a sensor frame payload: missing fields, wrong shape, out of range."""
    if not isinstance(data, dict):
        return ["frame is not a map"]
    problems = [f"missing {name}" for name in SENSORS if name not in data]
    problems += [why for name, f in SENSORS.items() if name in data and (why := f.check(data[name]))]
    return problems


def markdown_table(fields: tuple[Field, ...]) -> str:
    """The fields as a Markdown table (used by ``flight dict`` and docs/HAL.md)."""
    rows = ["| field | type | shape | range | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        rng = "" if f.dtype == "bool" else f"[{f.lo:g}, {f.hi:g}]"
        rows.append(f"| `{f.name}` | {f.dtype} | {list(f.shape) or 'scalar'} | {rng} | {f.doc} |")
    return "\n".join(rows)
