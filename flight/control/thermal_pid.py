"""Batched thermal PID and per-GPU thermal headroom: the C binding and its Python reference.

:class:`ThermalPid` steps N PID loops (coolant supply temperature, radiator zone valves,
...) in one call into ``flight._native`` (``native/thermal_pid.c``); no allocation happens in
:meth:`ThermalPid.step`. :func:`pid_step_reference` is the same algorithm in plain Python,
written to be read; the tests require the two to agree.

Algorithm (K. J. Åström and T. Hägglund, "Advanced PID Control", ISA 2006, ch. 3 and the
chapter on implementation), per loop ``i`` with ``dir = -1 if direction[i] < 0 else +1``::

    e      = dir * (setpoint - measurement)
    P      = kp * e
    D      = a * D_prev - dir * kd / (tau + dt) * (measurement - measurement_prev),
             a = tau / (tau + dt)                      # filtered derivative on measurement,
                                                       # backward difference
    window = [max(out_min, u_prev - slew*dt), min(out_max, u_prev + slew*dt)]
    I     += ki * e * dt   unless P + I + D is already at/over the window edge the
                           increment pushes towards (conditional integration)
    I      = clamp(I, out_min, out_max)
    u      = clamp(P + I + D, window)

The derivative acts on the measurement so a setpoint step does not kick the actuator; the
first step after :meth:`ThermalPid.reset` has no derivative kick either. ``out_max`` wins
when ``out_min > out_max``; the amplitude clamp wins over the slew limit if the previous
output lies outside the range. Every term is saturated to ±:data:`RF_SAT`, so finite inputs
always give finite outputs and state.

Units are the caller's: a loop on °C with a valve fraction output has ``kp`` in 1/°C,
``ki`` in 1/(°C·s), ``kd`` in s/°C.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flight._native import ffi, lib
from flight.control import CBuffers, clamp

RF_SAT = 1e300
"""Saturation magnitude of every term and state value; equals ``RF_SAT`` in the C header."""

PID_PARAM_NAMES = (
    "kp",
    "ki",
    "kd",
    "derivative_tau_s",
    "out_min",
    "out_max",
    "slew_per_s",
    "direction",
)
"""Names of the per-loop parameter arrays of :class:`ThermalPid` (and keyword arguments of
:func:`pid_step_reference`)."""

_PID_DEFAULTS = {
    "kp": 0.0,
    "ki": 0.0,
    "kd": 0.0,
    "derivative_tau_s": 0.0,
    "out_min": 0.0,
    "out_max": 1.0,
    "slew_per_s": math.inf,
    "direction": 1.0,
}
_PID_STATE_NAMES = ("integrator", "derivative", "prev_measurement", "output")


def _f64_buffer(n: int, fill: float) -> np.ndarray:
    return np.full(n, fill, dtype=np.float64)


def _param_property(name: str, doc: str) -> property:
    attr = "_" + name

    def get(self: ThermalPid) -> np.ndarray:
        return getattr(self, attr)

    def set_(self: ThermalPid, value: object) -> None:
        # Copy into the existing buffer: the C side holds a pointer to it, so rebinding the
        # attribute to a new array would silently detach the parameter from the loop.
        getattr(self, attr)[...] = value

    return property(get, set_, doc=doc)


class ThermalPid:
    """N independent PID loops stepped together in one C call.

    Parameters are public float64 arrays of shape ``(n,)``; change them in place
    (``pid.kp[2] = 0.5``) or assign a scalar / length-``n`` sequence (``pid.kp = 0.5``),
    which copies into the same buffer. They take effect on the next :meth:`step`.

    Defaults: ``kp = ki = kd = 0``, ``derivative_tau_s = 0`` (unfiltered derivative),
    ``out_min = 0``, ``out_max = 1`` (a valve or pump fraction), ``slew_per_s = inf``
    (no slew limit), ``direction = +1``.

    Valid ranges: gains finite (any sign, though negative gains rarely make sense);
    ``derivative_tau_s >= 0`` (negative counts as 0); ``out_min``/``out_max`` may be
    ±inf; ``slew_per_s >= 0`` or ``inf`` (negative counts as 0, freezing the output);
    ``direction`` ±1 (any negative value is reverse acting: a larger output lowers the
    measurement, e.g. opening a radiator valve).

    The state starts as after ``reset(0.0)``.

    Raises:
        ValueError: ``n < 1``.
    """

    kp = _param_property("kp", "Proportional gain, output units per error unit, shape (n,).")
    ki = _param_property("ki", "Integral gain, output units per (error unit · s), shape (n,).")
    kd = _param_property("kd", "Derivative gain, output units per (error unit / s), shape (n,).")
    derivative_tau_s = _param_property(
        "derivative_tau_s", "Derivative low-pass time constant, s, >= 0, shape (n,)."
    )
    out_min = _param_property("out_min", "Output lower clamp, may be -inf, shape (n,).")
    out_max = _param_property("out_max", "Output upper clamp, may be +inf, shape (n,).")
    slew_per_s = _param_property(
        "slew_per_s", "Max |Δoutput| per second, >= 0, inf for none, shape (n,)."
    )
    direction = _param_property(
        "direction", "+1 direct acting, -1 reverse acting (output up, measurement down)."
    )

    def __init__(self, n: int) -> None:
        n = int(n)
        if n < 1:
            raise ValueError(f"ThermalPid needs n >= 1 loops, got {n}")
        self._n = n
        self._params = ffi.new("rf_pid_params *")
        self._state = ffi.new("rf_pid_state *")
        self._buffers = CBuffers()
        for name in PID_PARAM_NAMES:
            arr = _f64_buffer(n, _PID_DEFAULTS[name])
            setattr(self, "_" + name, arr)
            setattr(self._params, name, self._buffers.wrap(arr))
        for name in _PID_STATE_NAMES:
            arr = _f64_buffer(n, 0.0)
            setattr(self, "_" + name, arr)
            setattr(self._state, name, self._buffers.wrap(arr))
        self._setpoint = _f64_buffer(n, 0.0)
        self._measurement = _f64_buffer(n, 0.0)
        self._output0 = _f64_buffer(n, 0.0)
        self._c_setpoint = self._buffers.wrap(self._setpoint)
        self._c_measurement = self._buffers.wrap(self._measurement)
        self._c_output0 = self._buffers.wrap(self._output0)
        self._integrator_ro = self._readonly(self._integrator)
        self._derivative_ro = self._readonly(self._derivative)
        self._prev_measurement_ro = self._readonly(self._prev_measurement)
        self._output_ro = self._readonly(self._output)
        self.reset(0.0)

    @staticmethod
    def _readonly(arr: np.ndarray) -> np.ndarray:
        view = arr.view()
        view.flags.writeable = False
        return view

    @property
    def n(self) -> int:
        """Number of loops."""
        return self._n

    @property
    def integrator(self) -> np.ndarray:
        """Integral term per loop, output units, shape (n,); read-only live view."""
        return self._integrator_ro

    @property
    def derivative(self) -> np.ndarray:
        """Filtered derivative term per loop, output units, shape (n,); read-only live view."""
        return self._derivative_ro

    @property
    def prev_measurement(self) -> np.ndarray:
        """Measurement of the last step per loop (NaN right after a reset); read-only view."""
        return self._prev_measurement_ro

    @property
    def output(self) -> np.ndarray:
        """Last output per loop, output units, shape (n,); read-only live view."""
        return self._output_ro

    def reset(self, output0: float | Sequence[float] | np.ndarray = 0.0) -> None:
        """Start bumplessly from ``output0`` (scalar or shape (n,)), clamped to the limits.

        The integrator is set to the clamped output, the derivative filter to 0, and the next
        step uses its own measurement as the previous one (no derivative kick).

        Raises:
            ValueError: ``output0`` not finite or not broadcastable to (n,).
        """
        self._output0[...] = output0
        if not np.all(np.isfinite(self._output0)):
            raise ValueError("ThermalPid.reset: output0 must be finite")
        lib.rf_pid_reset(self._n, self._c_output0, self._params, self._state)

    def step(
        self,
        dt_s: float,
        setpoint: float | Sequence[float] | np.ndarray,
        measurement: float | Sequence[float] | np.ndarray,
    ) -> np.ndarray:
        """Advance every loop by ``dt_s`` seconds and return the outputs.

        Args:
            dt_s: time since the previous step, s. ``dt_s <= 0`` or non-finite changes
                nothing and returns the held outputs.
            setpoint: scalar or shape (n,), measurement units.
            measurement: scalar or shape (n,), measurement units. A loop whose setpoint or
                measurement is non-finite (failed sensor) holds its output and state.

        Returns:
            The output array, shape (n,), float64: a read-only live view of the state that
            the next step overwrites (copy it to keep it).

        Raises:
            ValueError: setpoint or measurement not broadcastable to (n,).
            TypeError: ``dt_s`` not a real number.
        """
        self._setpoint[...] = setpoint
        self._measurement[...] = measurement
        lib.rf_pid_step(
            self._n, dt_s, self._c_setpoint, self._c_measurement, self._params, self._state
        )
        return self._output_ro


def thermal_headroom_w(
    gpu_temp_c: np.ndarray,
    gpu_power_w: np.ndarray,
    target_c: float,
    r_th_c_per_w: float | np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Per-GPU power at which each GPU would sit at ``target_c`` (one C call).

    Linear extrapolation along the package-to-coolant thermal resistance:
    ``headroom_i = max(0, gpu_power_w_i + (target_c - gpu_temp_c_i) / r_th_i)``. A GPU with a
    non-finite temperature or power reading, or ``r_th <= 0``, gets 0 (no proof of margin).
    Results are saturated at :data:`RF_SAT`.

    Args:
        gpu_temp_c: shape (n,), °C.
        gpu_power_w: shape (n,), W, the power drawn at ``gpu_temp_c``.
        target_c: temperature not to exceed, °C (e.g. a margin below the 89 °C slowdown).
        r_th_c_per_w: package-to-coolant thermal resistance, °C/W, > 0; scalar or (n,).
        out: optional float64 C-contiguous array of shape (n,) to write into; with it,
            float64 contiguous inputs and an (n,) ``r_th_c_per_w`` nothing is allocated.

    Returns:
        ``out`` (or a new array), shape (n,), W, >= 0.

    Raises:
        ValueError: shapes differ, ``out`` has the wrong shape/dtype/layout, or any
            ``r_th_c_per_w <= 0``.
    """
    temp = np.ascontiguousarray(gpu_temp_c, dtype=np.float64)
    power = np.ascontiguousarray(gpu_power_w, dtype=np.float64)
    if temp.ndim != 1 or power.shape != temp.shape:
        raise ValueError(
            f"gpu_temp_c and gpu_power_w must have the same shape (n,), got "
            f"{temp.shape} and {power.shape}"
        )
    n = temp.shape[0]
    if np.ndim(r_th_c_per_w) == 0:
        r_scalar = float(r_th_c_per_w)
        if not r_scalar > 0.0:
            raise ValueError("r_th_c_per_w must be > 0")
        r_th = np.full(n, r_scalar)
    else:
        r_th = np.ascontiguousarray(r_th_c_per_w, dtype=np.float64)
        if r_th.shape != (n,):
            raise ValueError(f"r_th_c_per_w must be a scalar or shape ({n},), got {r_th.shape}")
        if not r_th.min() > 0.0:
            raise ValueError("r_th_c_per_w must be > 0")
    if out is None:
        out = np.empty(n, dtype=np.float64)
    elif out.shape != (n,) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float64 array of shape (n,)")
    lib.rf_thermal_headroom(
        n,
        float(target_c),
        ffi.from_buffer("double[]", temp),
        ffi.from_buffer("double[]", power),
        ffi.from_buffer("double[]", r_th),
        ffi.from_buffer("double[]", out, require_writable=True),
    )
    return out


# --- pure-Python reference -------------------------------------------------------------


def _sat(x: float) -> float:
    return clamp(x, -RF_SAT, RF_SAT)


@dataclass
class PidReferenceState:
    """State of :func:`pid_step_reference`, one list entry per loop (mutated in place)."""

    integrator: list[float]
    derivative: list[float]
    prev_measurement: list[float]
    output: list[float]


def pid_reset_reference(
    output0: Sequence[float], out_min: Sequence[float], out_max: Sequence[float]
) -> PidReferenceState:
    """Reference of :meth:`ThermalPid.reset` for ``len(output0)`` loops."""
    u = [_sat(clamp(output0[i], out_min[i], out_max[i])) for i in range(len(output0))]
    n = len(u)
    return PidReferenceState(
        integrator=list(u), derivative=[0.0] * n, prev_measurement=[math.nan] * n, output=u
    )


def pid_step_reference(
    dt_s: float,
    setpoint: Sequence[float],
    measurement: Sequence[float],
    state: PidReferenceState,
    *,
    kp: Sequence[float],
    ki: Sequence[float],
    kd: Sequence[float],
    derivative_tau_s: Sequence[float],
    out_min: Sequence[float],
    out_max: Sequence[float],
    slew_per_s: Sequence[float],
    direction: Sequence[float],
) -> list[float]:
    """Pure-Python reference of :meth:`ThermalPid.step` (same semantics, same rounding).

    All sequences have one entry per loop; ``state`` is updated in place and
    ``state.output`` returned.
    """
    if not (dt_s > 0.0 and dt_s <= RF_SAT):
        return state.output
    for i in range(len(state.output)):
        y = measurement[i]
        r = setpoint[i]
        if not (math.isfinite(y) and math.isfinite(r)):
            continue
        sign = -1.0 if direction[i] < 0.0 else 1.0
        lo = out_min[i]
        hi = out_max[i]
        u_prev = state.output[i]

        e = sign * _sat(r - y)
        prop = _sat(kp[i] * e)

        y_prev = y if math.isnan(state.prev_measurement[i]) else state.prev_measurement[i]
        tau = clamp(derivative_tau_s[i], 0.0, RF_SAT)
        a = tau / (tau + dt_s)
        g = _sat(kd[i] / (tau + dt_s))
        deriv = _sat(a * state.derivative[i] - sign * _sat(g * _sat(y - y_prev)))

        slew = slew_per_s[i] if slew_per_s[i] > 0.0 else 0.0
        du = slew * dt_s
        lo_eff = lo if lo > u_prev - du else u_prev - du
        hi_eff = hi if hi < u_prev + du else u_prev + du

        di = _sat(_sat(ki[i] * e) * dt_s)
        v0 = prop + state.integrator[i] + deriv
        integ = state.integrator[i]
        if not ((di > 0.0 and v0 >= hi_eff) or (di < 0.0 and v0 <= lo_eff)):
            integ += di
        integ = _sat(clamp(integ, lo, hi))

        u = _sat(clamp(prop + integ + deriv, lo_eff, hi_eff))

        state.integrator[i] = integ
        state.derivative[i] = deriv
        state.prev_measurement[i] = y
        state.output[i] = u
    return state.output


def thermal_headroom_reference(
    gpu_temp_c: Sequence[float],
    gpu_power_w: Sequence[float],
    target_c: float,
    r_th_c_per_w: Sequence[float],
) -> list[float]:
    """Pure-Python reference of :func:`thermal_headroom_w` (per-GPU ``r_th_c_per_w``)."""
    out = []
    for t, pw, r in zip(gpu_temp_c, gpu_power_w, r_th_c_per_w):
        h = 0.0
        if (
            math.isfinite(target_c)
            and math.isfinite(t)
            and math.isfinite(pw)
            and r > 0.0
            and math.isfinite(r)
        ):
            h = pw + (target_c - t) / r
        out.append(clamp(h, 0.0, RF_SAT))
    return out
