"""ECC error accounting and GPU fencing.

The HAL reports cumulative per-GPU ECC counters (``gpu_ecc_corrected``,
``gpu_ecc_uncorrected``, counts since the rig started). This module turns them into
per-tick deltas: corrected errors are only counted (housekeeping); each new uncorrectable
error is returned so the job runner can roll back the job on that GPU, and a GPU with
:data:`FENCE_COUNT` uncorrectable errors within :data:`FENCE_WINDOW_S` of simulated time is
reported for fencing (no new work lands on it until ``jobs.unfence``), unless more than
:data:`RACK_WIDE_FRACTION` of the rack's GPUs had an uncorrectable error in the same window.
A GPU failing alone points at the part; much of the rack failing together points at the
environment (a solar particle event), where fencing would take the rack off line for upsets
that rollback already handles. Background upsets, even in the South Atlantic Anomaly, touch a
few GPUs an hour (:mod:`sim_hw.radiation` rates), far below the fraction.

The first frame a process sees only sets the baseline: errors from before it started were
either handled by its predecessor or happened while no job state was live (a restarted
runner resumes every job from its checkpoint anyway). A counter that goes down (a rig
restarted) is re-baselined the same way.
"""

from __future__ import annotations

from collections import deque

import numpy as np

FENCE_COUNT = 3
"""Uncorrectable errors within the window that fence a GPU."""
FENCE_WINDOW_S = 3600.0
"""Sliding window of simulated time for :data:`FENCE_COUNT`."""
RACK_WIDE_FRACTION = 0.25
"""Share of the rack's GPUs with an uncorrectable error in the window above which errors are
taken as environmental and nothing is fenced (estimate)."""


class EccMonitor:
    """Per-GPU ECC deltas and the uncorrectable-error window.

    Args:
        n_gpus: GPUs in the rack.
        history: ``(gpu, time_s)`` of earlier uncorrectable errors still inside the window
            (from the store, so fencing survives a restart).

    Attributes:
        corrected: per-GPU corrected errors seen by this process (int64, shape ``(n_gpus,)``).
    """

    def __init__(self, n_gpus: int, history: list[tuple[int, float]] = ()) -> None:
        self.corrected = np.zeros(n_gpus, dtype=np.int64)
        self._last_cor: np.ndarray | None = None
        self._last_unc: np.ndarray | None = None
        self._times: list[deque[float]] = [deque() for _ in range(n_gpus)]
        for gpu, time_s in history:
            self._times[gpu].append(time_s)

    def clear(self, gpu: int) -> None:
        """Forget ``gpu``'s uncorrectable history (it was unfenced)."""
        self._times[gpu].clear()

    def observe(self, corrected: np.ndarray, uncorrected: np.ndarray, time_s: float) -> list[tuple[int, int, bool]]:
        """Take one frame's cumulative counters (shape ``(n_gpus,)``) at ``time_s``.

        Returns ``(gpu, new uncorrectable errors, window full)`` for every GPU with new
        uncorrectable errors; ``window full`` is True when the GPU now has at least
        :data:`FENCE_COUNT` within :data:`FENCE_WINDOW_S` and no more than
        :data:`RACK_WIDE_FRACTION` of the GPUs erred in that window.
        """
        if self._last_cor is not None and (corrected == self._last_cor).all() and (uncorrected == self._last_unc).all():
            return []  # the common tick: no upset anywhere
        if self._last_cor is None or np.any(corrected < self._last_cor) or np.any(uncorrected < self._last_unc):
            self._last_cor, self._last_unc = corrected.copy(), uncorrected.copy()
            return []
        self.corrected += (corrected - self._last_cor).astype(np.int64)
        new_unc = uncorrected - self._last_unc
        self._last_cor, self._last_unc = corrected.copy(), uncorrected.copy()
        for gpu in np.flatnonzero(new_unc):
            self._times[gpu].extend([time_s] * int(new_unc[gpu]))
        in_window = np.array([self._window_count(g, time_s) for g in range(len(self._times))])
        rack_wide = np.count_nonzero(in_window) > RACK_WIDE_FRACTION * len(in_window)
        return [(int(gpu), int(new_unc[gpu]), bool(in_window[gpu] >= FENCE_COUNT and not rack_wide))
                for gpu in np.flatnonzero(new_unc)]

    def _window_count(self, gpu: int, time_s: float) -> int:
        times = self._times[gpu]
        while times and times[0] < time_s - FENCE_WINDOW_S:
            times.popleft()
        return len(times)
