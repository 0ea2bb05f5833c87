"""Per-GPU power allocator: C binding vs pure-Python reference, invariants, ladder and
hysteresis behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flight.control.power_alloc import Allocation, PowerAllocator, allocate_reference

FAST = settings(max_examples=60, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False)


def vec(n: int, elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, n, elements=elements)


# Weights: zero, tied small integers, or spread values.
weight_el = st.one_of(st.just(0.0), st.sampled_from([1.0, 2.0, 3.0]), st.floats(1e-3, 10))
# Thermal caps: none, below p_min (parks), or anywhere in the range.
cap_el = st.one_of(st.just(math.inf), st.floats(0, 1500))


@st.composite
def rack(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 72))
    p_min = draw(vec(n, st.floats(50, 600)))
    p_max = p_min + draw(vec(n, st.floats(0, 800)))
    p_idle = p_min * draw(vec(n, st.floats(0, 1)))
    hysteresis = draw(st.one_of(st.just(0.0), st.floats(0, 50)))
    return {"n": n, "p_min": p_min, "p_max": p_max, "p_idle": p_idle, "hysteresis": hysteresis}


@st.composite
def tick(draw: st.DrawFn, cfg: dict) -> tuple[float, np.ndarray, np.ndarray]:
    n = cfg["n"]
    top = float(np.sum(cfg["p_max"])) * 1.1
    budget = draw(st.floats(-100, top))
    return budget, draw(vec(n, weight_el)), draw(vec(n, cap_el))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict, list]:
    cfg = draw(rack())
    # Budgets drifting a little tick to tick exercise the hysteresis holds.
    first = draw(tick(cfg))
    ticks = [first]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            budget, weight, cap = ticks[-1]
            ticks.append((budget + draw(st.floats(-30, 30)), weight, cap))
        else:
            ticks.append(draw(tick(cfg)))
    return cfg, ticks


def allocator(cfg: dict, hysteresis: float | None = None) -> PowerAllocator:
    h = cfg["hysteresis"] if hysteresis is None else hysteresis
    return PowerAllocator(cfg["n"], cfg["p_min"], cfg["p_max"], cfg["p_idle"], hysteresis_w=h)


def draw_w(cfg: dict, limits: np.ndarray) -> float:
    return float(np.sum(np.where(limits > 0, limits, cfg["p_idle"])))


@FAST
@given(scenario())
def test_c_matches_reference_over_ticks(sc) -> None:
    cfg, ticks = sc
    alloc = allocator(cfg)
    prev = [0.0] * cfg["n"]
    for budget, weight, cap in ticks:
        got = alloc.allocate(budget, weight, cap)
        limits, n_parked, feasible, n_shed = allocate_reference(
            budget,
            weight.tolist(),
            cap.tolist(),
            cfg["p_min"].tolist(),
            cfg["p_max"].tolist(),
            cfg["p_idle"].tolist(),
            prev,
            cfg["hysteresis"],
        )
        np.testing.assert_allclose(got.limits_w, limits, rtol=0, atol=1e-6)
        assert (got.n_parked, got.feasible, got.n_shed) == (n_parked, feasible, n_shed)
        prev = limits


@FAST
@given(scenario())
def test_invariants(sc) -> None:
    cfg, ticks = sc
    alloc = allocator(cfg)
    p_min, p_max, p_idle = cfg["p_min"], cfg["p_max"], cfg["p_idle"]
    for budget, weight, cap in ticks:
        res = alloc.allocate(budget, weight, cap)
        lim = res.limits_w
        assert lim.shape == (cfg["n"],) and np.all(np.isfinite(lim))
        parked = lim == 0.0
        assert res.n_parked == int(np.sum(parked))
        hi = np.minimum(p_max, cap)
        thermal = hi < p_min
        assert np.all(parked[thermal])
        if not res.feasible:
            assert np.all(parked)
            assert np.sum(p_idle) > budget
            continue
        assert draw_w(cfg, lim) <= budget + 1e-6
        active = ~parked
        assert np.all(lim[active] >= p_min[active])
        assert np.all(lim[active] <= hi[active])
        shed = parked & ~thermal
        assert res.n_shed == int(np.sum(shed))
        if np.any(shed) and np.any(active):
            assert np.max(weight[shed]) <= np.min(weight[active])
            # Ties: the higher index is shed first.
            tie = weight[active].min()
            if np.any(shed & (weight == tie)):
                assert np.min(np.flatnonzero(shed & (weight == tie))) > np.max(
                    np.flatnonzero(active & (weight == tie))
                )


@FAST
@given(rack().flatmap(lambda cfg: st.tuples(st.just(cfg), tick(cfg))))
def test_budget_is_used_when_binding(args) -> None:
    cfg, (budget, weight, cap) = args
    alloc = allocator(cfg, hysteresis=0.0)
    res = alloc.allocate(budget, weight, cap)
    lim = res.limits_w
    active = lim > 0
    hi = np.minimum(cfg["p_max"], cap)
    all_hi_draw = float(np.sum(np.where(active, hi, cfg["p_idle"])))
    if res.feasible and np.all(weight[active] > 0) and all_hi_draw > budget:
        assert draw_w(cfg, lim) >= budget - 1e-6


@FAST
@given(
    rack().flatmap(lambda cfg: st.tuples(st.just(cfg), tick(cfg), st.floats(0, 20000)))
)
def test_more_budget_never_lowers_total_allocation(args) -> None:
    cfg, (budget, weight, cap), extra = args
    low = allocator(cfg, hysteresis=0.0).allocate(budget, weight, cap)
    high = allocator(cfg, hysteresis=0.0).allocate(budget + extra, weight, cap)
    if low.feasible:
        assert high.feasible
        assert draw_w(cfg, high.limits_w) >= draw_w(cfg, low.limits_w) - 1e-6
        assert np.sum(high.limits_w) >= np.sum(low.limits_w) - 1e-6
        assert high.n_parked <= low.n_parked


@FAST
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.floats(1e-6, 1e150),
            vec(n, st.floats(1, 1e6)),
            vec(n, st.floats(0, 1)),
            st.floats(0, 1e6),
            st.lists(st.tuples(finite, vec(n, finite), vec(n, finite)), min_size=1, max_size=4),
        )
    )
)
def test_any_finite_input_gives_finite_output_and_matches_reference(args) -> None:
    n, p_min_scale, span, idle_frac, hysteresis, ticks = args
    p_min = np.full(n, p_min_scale)
    p_max = p_min + span
    p_idle = p_min * idle_frac
    alloc = PowerAllocator(n, p_min, p_max, p_idle, hysteresis_w=hysteresis)
    prev = [0.0] * n
    for budget, weight, cap in ticks:
        res = alloc.allocate(budget, weight, cap)
        assert np.all(np.isfinite(res.limits_w))
        ref = allocate_reference(
            budget, weight.tolist(), cap.tolist(), p_min.tolist(), p_max.tolist(),
            p_idle.tolist(), prev, hysteresis,
        )
        np.testing.assert_allclose(res.limits_w, ref[0], rtol=1e-12, atol=1e-6)
        assert (res.n_parked, res.feasible, res.n_shed) == ref[1:]
        prev = ref[0]


# --- examples ------------------------------------------------------------------------

N = 72


def rack72(hysteresis: float = 0.0) -> PowerAllocator:
    return PowerAllocator(N, 400.0, 1000.0, 150.0, hysteresis_w=hysteresis)


def test_ample_budget_gives_everyone_their_cap() -> None:
    cap = np.full(N, math.inf)
    cap[:4] = 700.0
    res = rack72().allocate(100e3, 1.0, cap)
    assert res.feasible and res.n_parked == 0 and res.n_shed == 0
    np.testing.assert_array_equal(res.limits_w[:4], 700.0)
    np.testing.assert_array_equal(res.limits_w[4:], 1000.0)


def test_equal_weights_split_evenly_and_weights_scale_shares() -> None:
    res = rack72().allocate(N * 600.0, 1.0, math.inf)
    np.testing.assert_allclose(res.limits_w, 600.0, rtol=1e-12)
    weight = np.where(np.arange(N) % 2 == 0, 1.0, 2.0)
    res = rack72().allocate(N * 600.0, weight, math.inf)
    np.testing.assert_allclose(res.limits_w[1::2], 2 * res.limits_w[0::2], rtol=1e-12)
    np.testing.assert_allclose(res.limits_w.sum(), N * 600.0, rtol=1e-12)


def test_shares_respect_minimum_and_maximum() -> None:
    weight = np.ones(N)
    weight[0] = 100.0  # wants far more than p_max
    weight[1] = 0.01  # would get far less than p_min
    res = rack72().allocate(N * 600.0, weight, math.inf)
    assert res.limits_w[0] == 1000.0
    assert res.limits_w[1] == 400.0
    np.testing.assert_allclose(res.limits_w[2:], (N * 600.0 - 1400.0) / (N - 2), rtol=1e-12)


def test_ladder_sheds_lowest_weight_then_highest_index() -> None:
    weight = np.full(N, 5.0)
    weight[10] = 1.0
    weight[[20, 30]] = 2.0
    # Everyone at p_min needs 72 * 400 = 28800 W; each shed GPU frees 250 W.
    res = rack72().allocate(28800.0 - 600.0, weight, math.inf)
    assert res.feasible and res.n_shed == 3 and res.n_parked == 3
    np.testing.assert_array_equal(np.flatnonzero(res.limits_w == 0.0), [10, 20, 30])
    res = rack72().allocate(28800.0 - 400.0, weight, math.inf)
    np.testing.assert_array_equal(np.flatnonzero(res.limits_w == 0.0), [10, 30])
    np.testing.assert_allclose(draw_w({"p_idle": np.full(N, 150.0)}, res.limits_w), 28400.0)


def test_nothing_fits_parks_everything() -> None:
    res = rack72().allocate(N * 150.0 - 1.0, 1.0, math.inf)
    assert not res.feasible
    assert res.n_parked == N and res.n_shed == N
    np.testing.assert_array_equal(res.limits_w, 0.0)


def test_thermal_cap_below_minimum_parks_without_shedding() -> None:
    cap = np.full(N, math.inf)
    cap[[3, 7]] = 350.0
    cap[9] = math.nan  # unknown thermal state: park
    res = rack72().allocate(100e3, 1.0, cap)
    assert res.n_parked == 3 and res.n_shed == 0
    np.testing.assert_array_equal(np.flatnonzero(res.limits_w == 0.0), [3, 7, 9])


def test_unknown_budget_is_infeasible() -> None:
    res = rack72().allocate(math.nan, 1.0, math.inf)
    assert not res.feasible and res.n_parked == N


def test_hysteresis_holds_small_changes_only_while_they_fit() -> None:
    alloc = rack72(hysteresis=5.0)
    first = alloc.allocate(N * 600.0, 1.0, math.inf).limits_w
    # Slightly more budget: every change is < 5 W and keeping the old limits fits.
    held = alloc.allocate(N * 600.0 + 72.0, 1.0, math.inf).limits_w
    np.testing.assert_array_equal(held, first)
    # Slightly less budget: keeping the old limits would overdraw, so the new ones apply.
    lower = alloc.allocate(N * 600.0 - 72.0, 1.0, math.inf).limits_w
    np.testing.assert_allclose(lower, 599.0, rtol=1e-12)
    # A big change is not held.
    bigger = alloc.allocate(N * 700.0, 1.0, math.inf).limits_w
    np.testing.assert_allclose(bigger, 700.0, rtol=1e-12)


def test_hysteresis_never_holds_above_a_new_thermal_cap() -> None:
    alloc = rack72(hysteresis=50.0)
    alloc.allocate(100e3, 1.0, math.inf)
    cap = np.full(N, math.inf)
    cap[0] = 990.0
    res = alloc.allocate(100e3, 1.0, cap)
    assert res.limits_w[0] == 990.0
    np.testing.assert_array_equal(res.limits_w[1:], 1000.0)


def test_reset_forgets_previous_limits() -> None:
    alloc = rack72(hysteresis=5.0)
    alloc.allocate(N * 600.0, 1.0, math.inf)
    alloc.reset()
    np.testing.assert_array_equal(alloc.limits_w, 0.0)
    res = alloc.allocate(N * 601.0, 1.0, math.inf)
    np.testing.assert_allclose(res.limits_w, 601.0, rtol=1e-12)


def test_allocation_is_a_snapshot() -> None:
    alloc = rack72()
    res = alloc.allocate(N * 600.0, 1.0, math.inf)
    assert isinstance(res, Allocation)
    res.limits_w[:] = 0.0
    np.testing.assert_allclose(alloc.limits_w, 600.0, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"p_min_w": 0.0},
        {"p_max_w": 300.0},
        {"p_idle_w": 500.0},
        {"p_idle_w": -1.0},
        {"p_min_w": math.nan},
        {"p_max_w": [1000.0, 1000.0]},
        {"hysteresis_w": -1.0},
        {"hysteresis_w": math.inf},
    ],
)
def test_constructor_rejects_bad_configuration(kwargs) -> None:
    args = {"n": 4, "p_min_w": 400.0, "p_max_w": 1000.0, "p_idle_w": 150.0, "hysteresis_w": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError):
        PowerAllocator(**args)


def test_allocate_rejects_wrong_shapes() -> None:
    alloc = PowerAllocator(4, 400.0, 1000.0, 150.0)
    with pytest.raises(ValueError):
        alloc.allocate(3000.0, np.ones(5), math.inf)
    with pytest.raises(TypeError):
        alloc.allocate("3000", 1.0, math.inf)
