"""Batched thermal PID and thermal headroom: C binding vs pure-Python reference, invariants,
closed-loop behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flight.control.thermal_pid import (
    PID_PARAM_NAMES,
    RF_SAT,
    ThermalPid,
    pid_reset_reference,
    pid_step_reference,
    thermal_headroom_reference,
    thermal_headroom_w,
)

FAST = settings(max_examples=60, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False)


def vec(n: int, elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, n, elements=elements)


@st.composite
def physical_case(draw: st.DrawFn) -> dict:
    """Plausible thermal-loop parameters and a short run of steps."""
    n = draw(st.integers(1, 72))
    lo = draw(vec(n, st.floats(-100, 100)))
    span = draw(vec(n, st.floats(0, 100)))
    params = {
        "kp": draw(vec(n, st.floats(-10, 10))),
        "ki": draw(vec(n, st.floats(0, 5))),
        "kd": draw(vec(n, st.floats(0, 20))),
        "derivative_tau_s": draw(vec(n, st.floats(0, 30))),
        "out_min": lo,
        "out_max": lo + span,
        "slew_per_s": draw(vec(n, st.one_of(st.just(math.inf), st.floats(0, 50)))),
        "direction": draw(vec(n, st.sampled_from([-1.0, 1.0]))),
    }
    output0 = draw(vec(n, st.floats(-200, 200)))
    dt = st.one_of(st.floats(1e-3, 10), st.sampled_from([0.0, -1.0, math.nan]))
    reading = st.one_of(st.floats(-300, 300), st.just(math.nan))
    steps = draw(
        st.lists(st.tuples(dt, vec(n, st.floats(-300, 300)), vec(n, reading)), min_size=1, max_size=6)
    )
    return {"n": n, "params": params, "output0": output0, "steps": steps}


@st.composite
def extreme_case(draw: st.DrawFn) -> dict:
    """Any finite numbers at all, in every parameter and input."""
    n = draw(st.integers(1, 8))
    params = {name: draw(vec(n, finite)) for name in PID_PARAM_NAMES}
    output0 = draw(vec(n, finite))
    steps = draw(st.lists(st.tuples(finite, vec(n, finite), vec(n, finite)), min_size=1, max_size=6))
    return {"n": n, "params": params, "output0": output0, "steps": steps}


def make_pid(case: dict) -> ThermalPid:
    pid = ThermalPid(case["n"])
    for name, value in case["params"].items():
        setattr(pid, name, value)
    pid.reset(case["output0"])
    return pid


def c_state(pid: ThermalPid) -> dict[str, np.ndarray]:
    names = ("integrator", "derivative", "prev_measurement", "output")
    return {name: getattr(pid, name).copy() for name in names}


def assert_same_as_reference(case: dict) -> None:
    pid = make_pid(case)
    params = {name: getattr(pid, name).tolist() for name in PID_PARAM_NAMES}
    ref = pid_reset_reference(case["output0"].tolist(), params["out_min"], params["out_max"])
    for dt, sp, y in [(math.nan, None, None)] + case["steps"]:
        if sp is not None:
            pid.step(dt, sp, y)
            pid_step_reference(dt, sp.tolist(), y.tolist(), ref, **params)
        got = c_state(pid)
        for name, want in vars(ref).items():
            np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name)


@FAST
@given(physical_case())
def test_c_matches_reference(case: dict) -> None:
    assert_same_as_reference(case)


@FAST
@given(extreme_case())
def test_c_matches_reference_any_finite_input(case: dict) -> None:
    assert_same_as_reference(case)


@FAST
@given(extreme_case())
def test_finite_inputs_give_finite_outputs(case: dict) -> None:
    pid = make_pid(case)
    for dt, sp, y in case["steps"]:
        out = pid.step(dt, sp, y)
        assert np.all(np.isfinite(out))
        assert np.all(np.isfinite(pid.integrator))
        assert np.all(np.isfinite(pid.derivative))


@FAST
@given(physical_case())
def test_output_and_integrator_within_clamp_and_slew(case: dict) -> None:
    pid = make_pid(case)
    lo, hi, slew = pid.out_min, pid.out_max, pid.slew_per_s
    prev = pid.output.copy()
    for dt, sp, y in case["steps"]:
        out = pid.step(dt, sp, y)
        assert np.all(out >= lo) and np.all(out <= hi)
        assert np.all(pid.integrator >= lo) and np.all(pid.integrator <= hi)
        if dt > 0:
            tol = 1e-12 * np.maximum(1.0, np.abs(prev))
            assert np.all(np.abs(out - prev) <= slew * dt + tol)
        else:
            np.testing.assert_array_equal(out, prev)
        prev = out.copy()


def test_bad_dt_changes_nothing() -> None:
    pid = ThermalPid(3)
    pid.kp, pid.ki, pid.kd = 1.0, 0.5, 2.0
    pid.out_min, pid.out_max = -10.0, 10.0
    pid.step(1.0, 1.0, [0.0, 0.5, 2.0])
    before = c_state(pid)
    for dt in (0.0, -5.0, math.nan, math.inf):
        pid.step(dt, 3.0, [7.0, 8.0, 9.0])
        after = c_state(pid)
        for name in before:
            np.testing.assert_array_equal(after[name], before[name])


def test_failed_sensor_holds_only_its_loop() -> None:
    pid = ThermalPid(2)
    pid.kp, pid.ki = 0.1, 0.05
    pid.step(1.0, 1.0, [0.0, 0.0])
    held = pid.output[1]
    out = pid.step(1.0, 1.0, [0.0, math.nan])
    assert out[1] == held
    assert out[0] > held


def test_no_derivative_kick_on_setpoint_step_or_first_step() -> None:
    pid = ThermalPid(2)
    pid.kd = 5.0
    pid.derivative_tau_s = [0.0, 2.0]
    pid.out_min, pid.out_max = -100.0, 100.0
    pid.reset(3.0)
    # The first measurement is far from anything seen before; no kick.
    out = pid.step(1.0, 0.0, 50.0)
    np.testing.assert_array_equal(out, [3.0, 3.0])
    for setpoint in (10.0, -40.0, 80.0):
        out = pid.step(1.0, setpoint, 50.0)
        np.testing.assert_array_equal(out, [3.0, 3.0])
    # A measurement change does act (and through the filter, less for the filtered loop).
    out = pid.step(1.0, 0.0, 51.0)
    assert out[0] == pytest.approx(3.0 - 5.0)
    assert out[1] == pytest.approx(3.0 - 5.0 / 3.0)


def test_reverse_acting_loop_opens_when_hot() -> None:
    pid = ThermalPid(2)
    pid.kp = 0.1
    pid.direction = [1.0, -1.0]
    pid.out_min, pid.out_max = -1.0, 1.0
    out = pid.step(1.0, 20.0, 25.0)  # 5 degC above setpoint
    assert out[0] == pytest.approx(-0.5)
    assert out[1] == pytest.approx(0.5)


def test_anti_windup_recovers_from_long_saturation() -> None:
    pid = ThermalPid(1)
    pid.kp, pid.ki = 0.5, 0.2
    pid.out_min, pid.out_max = 0.0, 1.0
    for _ in range(1000):  # large error, output pinned at out_max
        pid.step(1.0, 100.0, 0.0)
    assert pid.output[0] == 1.0
    assert pid.integrator[0] <= 1.0
    # Error reverses: a wound-up integrator would keep the output pinned for ~1000 s.
    for _ in range(5):
        out = pid.step(1.0, 0.0, 1.0)
    assert out[0] < 1.0


def test_slew_limit_rate() -> None:
    pid = ThermalPid(1)
    pid.kp = 100.0
    pid.out_min, pid.out_max = -10.0, 10.0
    pid.slew_per_s = 0.5
    outs = [pid.step(2.0, 1.0, 0.0)[0] for _ in range(12)]
    np.testing.assert_allclose(outs[:10], np.arange(1, 11) * 1.0)
    assert outs[-1] == 10.0


def simulate_first_order_plant(pid: ThermalPid, steps: int, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Coolant node cooled by a radiator valve u in [0, 1]: tau dT/dt = T_hot - gain*u - T."""
    tau_s, t_hot, gain = 60.0, 40.0, 30.0
    temp = np.full(pid.n, t_hot)
    temps, outs = [], []
    for _ in range(steps):
        u = pid.step(dt, 25.0, temp)
        # Exact discretisation of the linear plant over one step with u held.
        t_eq = t_hot - gain * u
        temp = t_eq + (temp - t_eq) * math.exp(-dt / tau_s)
        temps.append(temp.copy())
        outs.append(u.copy())
    return np.array(temps), np.array(outs)


@pytest.mark.parametrize(
    "kp, ki, kd, tau, slew",
    [
        (0.05, 0.002, 0.0, 0.0, math.inf),
        (0.2, 0.01, 0.5, 5.0, math.inf),
        (0.1, 0.005, 1.0, 10.0, 0.01),
    ],
)
def test_closed_loop_converges_without_sustained_oscillation(kp, ki, kd, tau, slew) -> None:
    pid = ThermalPid(1)
    pid.kp, pid.ki, pid.kd, pid.derivative_tau_s, pid.slew_per_s = kp, ki, kd, tau, slew
    pid.direction = -1.0  # opening the valve cools
    pid.reset(0.0)
    temps, outs = simulate_first_order_plant(pid, 3000)
    tail_t, tail_u = temps[-1000:, 0], outs[-1000:, 0]
    assert abs(tail_t[-1] - 25.0) < 0.01
    assert np.ptp(tail_t) < 0.02
    assert np.ptp(tail_u) < 1e-3
    assert tail_u[-1] == pytest.approx(0.5, abs=1e-3)


def test_parameters_are_assigned_in_place() -> None:
    pid = ThermalPid(3)
    kp = pid.kp
    pid.kp = 2.0
    assert pid.kp is kp
    np.testing.assert_array_equal(kp, [2.0, 2.0, 2.0])
    pid.kp[1] = 0.0
    pid.out_min, pid.out_max = -100.0, 100.0
    out = pid.step(1.0, 1.0, 0.0)
    np.testing.assert_array_equal(out, [2.0, 0.0, 2.0])


def test_returned_output_is_read_only_live_view() -> None:
    pid = ThermalPid(2)
    pid.kp = 0.1
    out = pid.step(1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        out[0] = 5.0
    with pytest.raises(ValueError):
        pid.integrator[0] = 5.0
    assert pid.step(1.0, 2.0, 0.0) is out


def test_argument_errors() -> None:
    with pytest.raises(ValueError):
        ThermalPid(0)
    pid = ThermalPid(3)
    with pytest.raises(ValueError):
        pid.step(1.0, np.zeros(4), 0.0)
    with pytest.raises(ValueError):
        pid.reset([0.0, math.nan, 0.0])
    with pytest.raises(TypeError):
        pid.step("1", 0.0, 0.0)


# --- thermal headroom ----------------------------------------------------------------


@FAST
@given(
    st.integers(1, 72).flatmap(
        lambda n: st.tuples(
            vec(n, st.one_of(finite, st.just(math.nan))),
            vec(n, st.one_of(finite, st.just(math.inf))),
            st.one_of(finite, st.just(math.nan)),
            vec(n, st.floats(min_value=1e-300, max_value=1e300)),
        )
    )
)
def test_headroom_matches_reference_and_is_finite(args) -> None:
    temp, power, target, r_th = args
    got = thermal_headroom_w(temp, power, target, r_th)
    want = thermal_headroom_reference(temp.tolist(), power.tolist(), target, r_th.tolist())
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert np.all(np.isfinite(got)) and np.all(got >= 0.0) and np.all(got <= RF_SAT)


def test_headroom_values() -> None:
    temp = np.array([70.0, 85.0, 95.0, math.nan])
    power = np.array([800.0, 900.0, 1000.0, 700.0])
    out = np.empty(4)
    res = thermal_headroom_w(temp, power, 85.0, 0.05, out=out)
    assert res is out
    np.testing.assert_allclose(out, [800.0 + 300.0, 900.0, 1000.0 - 200.0, 0.0])
    # Far above target: clamped at zero, never negative.
    assert thermal_headroom_w(np.array([200.0]), np.array([100.0]), 85.0, 0.05)[0] == 0.0


def test_headroom_errors() -> None:
    with pytest.raises(ValueError):
        thermal_headroom_w(np.zeros(3), np.zeros(3), 80.0, [0.1, 0.0, 0.1])
    with pytest.raises(ValueError):
        thermal_headroom_w(np.zeros(3), np.zeros(2), 80.0, 0.1)
    with pytest.raises(ValueError):
        thermal_headroom_w(np.zeros(3), np.zeros(3), 80.0, 0.1, out=np.zeros(3, dtype=np.float32))
