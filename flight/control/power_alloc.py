"""Per-GPU power limits: the C binding of the allocator and its Python reference.

:class:`PowerAllocator` turns the power available to the GPUs into per-GPU power limits in
one call into ``flight._native`` (``native/power_alloc.c``), allocation-free in C.
:func:`allocate_reference` is the same algorithm in plain Python; the tests require the two
to agree to 1e-6 W (in practice they agree bit for bit).

Algorithm, per tick:

1. **Thermal parking.** ``hi_i = min(p_max_i, cap_i)`` (a NaN cap counts as 0). A GPU with
   ``hi_i < p_min_i`` cannot run inside its thermal cap and is parked: limit 0, drawing
   ``p_idle_i``.
2. **Load-shedding ladder.** If the active GPUs at ``p_min`` plus the parked ones at idle
   exceed the budget, park active GPUs one at a time, lowest weight first (ties: highest
   index first), until it fits. If even all-parked does not fit, the result is all parked
   and ``feasible=False``.
3. **Water-filling.** If every active GPU fits at ``hi_i``, each gets ``hi_i``. Otherwise each
   active GPU gets ``clamp(λ·w_i, p_min_i, hi_i)`` with the level λ found by bisection so
   that the draw (limits plus parked idle power) is as large as possible but ≤ the budget.
   This is the KKT solution of maximising Σ w_i·log(x_i) (weighted proportional fairness)
   over the boxes with the sum fixed, the water-filling derivation of S. Boyd and
   L. Vandenberghe, "Convex Optimization", CUP 2004, §5.5.3. Weights are relative (scaled
   to a maximum of 1); a weight-0 GPU stays at ``p_min`` until the budget covers every GPU
   at ``hi``.
4. **Hysteresis.** An active GPU whose new limit is within ``hysteresis_w`` (strictly) of its
   previous limit keeps the previous one if that is still within ``[p_min_i, hi_i]`` —
   all such GPUs together, and only if the draw still fits the budget; otherwise all new
   values are used.

Invariants (checked by the property tests): when feasible, Σ active limits + Σ parked idle
≤ budget; each active limit in ``[p_min_i, min(p_max_i, cap_i)]``; shed GPUs have weights no
larger than any active (non-thermally-parked) GPU; all outputs finite; with hysteresis 0 the
draw never decreases when the budget grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flight._native import ffi, lib
from flight.control import CBuffers, clamp

RF_SAT = 1e300
"""Saturation magnitude for budget and weights; equals ``RF_SAT`` in the C header."""

RF_POWER_BISECT_MAX_ITER = 128
"""Bisection step bound; equals ``RF_POWER_BISECT_MAX_ITER`` in the C header."""


@dataclass(frozen=True)
class Allocation:
    """Result of one allocation tick.

    Attributes:
        limits_w: per-GPU power limit, W, shape (n,), a copy owned by this object; 0 means
            parked at idle (``p_idle_w``), otherwise within ``[p_min_w, min(p_max_w, cap_w)]``.
        n_parked: GPUs with limit 0 (thermally parked plus shed).
        feasible: False if even all GPUs parked at idle exceed the budget.
        n_shed: GPUs parked by the load-shedding ladder (a subset of ``n_parked``).
    """

    limits_w: np.ndarray
    n_parked: int
    feasible: bool
    n_shed: int


def _per_gpu(name: str, value: float | Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    arr = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)), dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


class PowerAllocator:
    """Per-GPU power limits for ``n`` GPUs, one C call per :meth:`allocate`.

    Args:
        n: number of GPUs, >= 1.
        p_min_w: lowest power limit a running GPU accepts, W, > 0; scalar or (n,).
        p_max_w: highest power limit, W, >= p_min_w; scalar or (n,).
        p_idle_w: power a parked GPU still draws, W, in [0, p_min_w]; scalar or (n,).
        hysteresis_w: limit changes smaller than this are suppressed, W, >= 0.

    The configuration arrays are copied and fixed; the previous limits (hysteresis state)
    start at 0, as after :meth:`reset`.

    Raises:
        ValueError: ``n < 1``, a value not finite, not broadcastable to (n,), or out of
            the ranges above.
    """

    def __init__(
        self,
        n: int,
        p_min_w: float | Sequence[float] | np.ndarray,
        p_max_w: float | Sequence[float] | np.ndarray,
        p_idle_w: float | Sequence[float] | np.ndarray,
        hysteresis_w: float = 0.0,
    ) -> None:
        n = int(n)
        if n < 1:
            raise ValueError(f"PowerAllocator needs n >= 1 GPUs, got {n}")
        p_min = _per_gpu("p_min_w", p_min_w, n)
        p_max = _per_gpu("p_max_w", p_max_w, n)
        p_idle = _per_gpu("p_idle_w", p_idle_w, n)
        if not np.all(p_min > 0.0):
            raise ValueError("p_min_w must be > 0 (a limit of 0 means parked)")
        if not np.all(p_max >= p_min):
            raise ValueError("p_max_w must be >= p_min_w")
        # Parking must never draw more than running at minimum, or shedding would not help.
        if not (np.all(p_idle >= 0.0) and np.all(p_idle <= p_min)):
            raise ValueError("p_idle_w must be in [0, p_min_w]")
        hysteresis_w = float(hysteresis_w)
        if not (math.isfinite(hysteresis_w) and hysteresis_w >= 0.0):
            raise ValueError("hysteresis_w must be finite and >= 0")

        self._n = n
        self._p_min = p_min
        self._p_max = p_max
        self._p_idle = p_idle
        self._hysteresis_w = hysteresis_w
        self._weight = np.zeros(n)
        self._cap = np.zeros(n)
        self._limits = np.zeros(n)
        self._work_hi = np.zeros(n)
        self._work_weight = np.zeros(n)
        self._work_limit = np.zeros(n)
        self._work_active = np.zeros(n, dtype=np.uint8)

        self._buffers = CBuffers()
        self._cfg = ffi.new("rf_power_config *")
        self._cfg.p_min_w = self._buffers.wrap(self._p_min)
        self._cfg.p_max_w = self._buffers.wrap(self._p_max)
        self._cfg.p_idle_w = self._buffers.wrap(self._p_idle)
        self._cfg.hysteresis_w = hysteresis_w
        self._work = ffi.new("rf_power_work *")
        self._work.hi_w = self._buffers.wrap(self._work_hi)
        self._work.weight = self._buffers.wrap(self._work_weight)
        self._work.limit_w = self._buffers.wrap(self._work_limit)
        self._work.active = self._buffers.wrap(self._work_active, "unsigned char[]")
        self._result = ffi.new("rf_power_result *")
        self._c_weight = self._buffers.wrap(self._weight)
        self._c_cap = self._buffers.wrap(self._cap)
        self._c_limits = self._buffers.wrap(self._limits)
        for arr in (self._p_min, self._p_max, self._p_idle):
            arr.flags.writeable = False

    @property
    def n(self) -> int:
        """Number of GPUs."""
        return self._n

    @property
    def p_min_w(self) -> np.ndarray:
        """Per-GPU minimum running limit, W, shape (n,), read-only."""
        return self._p_min

    @property
    def p_max_w(self) -> np.ndarray:
        """Per-GPU maximum limit, W, shape (n,), read-only."""
        return self._p_max

    @property
    def p_idle_w(self) -> np.ndarray:
        """Per-GPU parked (idle) draw, W, shape (n,), read-only."""
        return self._p_idle

    @property
    def hysteresis_w(self) -> float:
        """Limit changes below this many W are suppressed."""
        return self._hysteresis_w

    @property
    def limits_w(self) -> np.ndarray:
        """Limits of the last :meth:`allocate` (the hysteresis state), W, shape (n,).

        A copy; 0 means parked.
        """
        return self._limits.copy()

    def reset(self) -> None:
        """Forget the previous limits, so the next allocation applies no hysteresis."""
        self._limits[...] = 0.0

    def allocate(
        self,
        budget_w: float,
        weight: float | Sequence[float] | np.ndarray,
        cap_w: float | Sequence[float] | np.ndarray,
    ) -> Allocation:
        """Compute this tick's per-GPU power limits.

        Args:
            budget_w: power available to the GPUs, W (array output + allowed battery
                discharge - bus loads). NaN counts as "nothing available" (infeasible).
            weight: job priority weights, >= 0 (negative or NaN count as 0); scalar or (n,).
            cap_w: per-GPU thermal cap, W, e.g. from :func:`~flight.control.thermal_pid.
                thermal_headroom_w`; ``inf`` for none, NaN counts as 0 (parks the GPU);
                scalar or (n,).

        Returns:
            The :class:`Allocation`; its limits are also kept as the hysteresis state.

        Raises:
            ValueError: ``weight`` or ``cap_w`` not broadcastable to (n,).
            TypeError: ``budget_w`` not a real number.
        """
        self._weight[...] = weight
        self._cap[...] = cap_w
        res = self._result
        lib.rf_power_allocate(
            self._n,
            budget_w,
            self._c_weight,
            self._c_cap,
            self._cfg,
            self._work,
            self._c_limits,
            res,
        )
        return Allocation(self._limits.copy(), res.n_parked, bool(res.feasible), res.n_shed)


# --- pure-Python reference -------------------------------------------------------------


def _draw_at(
    lam: float,
    weight: list[float],
    hi: list[float],
    active: list[bool],
    p_min: Sequence[float],
    p_idle: Sequence[float],
) -> float:
    total = 0.0
    for i in range(len(active)):
        total += clamp(lam * weight[i], p_min[i], hi[i]) if active[i] else p_idle[i]
    return total


def _holds(prev: float, fresh: float, p_min: float, hi: float, hysteresis_w: float) -> bool:
    return prev >= p_min and prev <= hi and abs(fresh - prev) < hysteresis_w


def _water_level(
    budget: float,
    weight: list[float],
    hi: list[float],
    active: list[bool],
    p_min: Sequence[float],
    p_idle: Sequence[float],
) -> float:
    n = len(active)
    w_max = 0.0
    for i in range(n):
        if active[i] and weight[i] > w_max:
            w_max = weight[i]
    if not w_max > 0.0:
        return 0.0
    lam_lo = RF_SAT
    lam_hi = 0.0
    for i in range(n):
        wn = weight[i] / w_max if active[i] else 0.0
        weight[i] = wn
        if wn > 0.0:
            a = p_min[i] / wn
            b = hi[i] / wn
            lam_lo = a if a < lam_lo else lam_lo
            lam_hi = b if b > lam_hi else lam_hi
    lam_lo = 0.5 * lam_lo
    lam_hi = clamp(lam_hi, -RF_SAT, RF_SAT)
    for _ in range(RF_POWER_BISECT_MAX_ITER):
        if lam_hi > 2.0 * lam_lo:
            mid = math.sqrt(lam_lo) * math.sqrt(lam_hi)
        else:
            mid = lam_lo + 0.5 * (lam_hi - lam_lo)
        if not (mid > lam_lo and mid < lam_hi):
            break
        if _draw_at(mid, weight, hi, active, p_min, p_idle) <= budget:
            lam_lo = mid
        else:
            lam_hi = mid
    return lam_lo


def allocate_reference(
    budget_w: float,
    weight: Sequence[float],
    cap_w: Sequence[float],
    p_min_w: Sequence[float],
    p_max_w: Sequence[float],
    p_idle_w: Sequence[float],
    prev_limits_w: Sequence[float],
    hysteresis_w: float,
) -> tuple[list[float], int, bool, int]:
    """Pure-Python reference of :meth:`PowerAllocator.allocate`, same algorithm and rounding.

    All sequences have one entry per GPU; ``prev_limits_w`` is the previous result (zeros
    after a reset). The configuration must satisfy the :class:`PowerAllocator` preconditions.

    Returns:
        ``(limits_w, n_parked, feasible, n_shed)``.
    """
    n = len(weight)
    budget = clamp(budget_w, -RF_SAT, RF_SAT)
    w = [clamp(weight[i], 0.0, RF_SAT) for i in range(n)]
    hi = [clamp(cap_w[i], 0.0, p_max_w[i]) for i in range(n)]
    active = [hi[i] >= p_min_w[i] for i in range(n)]

    n_shed = 0
    need = _draw_at(0.0, w, hi, active, p_min_w, p_idle_w)
    while need > budget:
        victim = -1
        for i in range(n - 1, -1, -1):
            if active[i] and (victim < 0 or w[i] < w[victim]):
                victim = i
        if victim < 0:
            break
        active[victim] = False
        n_shed += 1
        need = _draw_at(0.0, w, hi, active, p_min_w, p_idle_w)
    if need > budget:
        return [0.0] * n, n, False, n_shed

    draw_hi = 0.0
    for i in range(n):
        draw_hi += hi[i] if active[i] else p_idle_w[i]
    if draw_hi <= budget:
        fresh = [hi[i] if active[i] else 0.0 for i in range(n)]
    else:
        lam = _water_level(budget, w, hi, active, p_min_w, p_idle_w)
        fresh = [clamp(lam * w[i], p_min_w[i], hi[i]) if active[i] else 0.0 for i in range(n)]

    n_hold = 0
    held_draw = 0.0
    for i in range(n):
        if active[i]:
            hold = _holds(prev_limits_w[i], fresh[i], p_min_w[i], hi[i], hysteresis_w)
            n_hold += hold
            held_draw += prev_limits_w[i] if hold else fresh[i]
        else:
            held_draw += p_idle_w[i]
    keep = n_hold > 0 and held_draw <= budget

    limits = []
    for i in range(n):
        if not active[i]:
            limits.append(0.0)
        elif keep and _holds(prev_limits_w[i], fresh[i], p_min_w[i], hi[i], hysteresis_w):
            limits.append(prev_limits_w[i])
        else:
            limits.append(fresh[i])
    n_parked = sum(1 for a in active if not a)
    return limits, n_parked, True, n_shed
