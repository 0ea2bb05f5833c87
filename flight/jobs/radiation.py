"""ECC error accounting and GPU fencing.

The HAL reports cumulative per-GPU ECC counters (``gpu_ecc_corrected``,
``gpu_ecc_uncorrected``, counts since the rig started). This module turns them into
per-tick deltas: corrected errors are only counted (housekeeping); each new uncorrectable
error is returned so the job runner can roll back the job on that GPU, and a GPU with
:data:`FENCE_COUNT` uncorrectable errors within :data:`FENCE_WINDOW_S` of simulated time is
reported for fencing (no new work lands on it until ``jobs.unfence``).

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
        :data:`FENCE_COUNT` within :data:`FENCE_WINDOW_S`.
        """
        if self._last_cor is not None and (corrected == self._last_cor).all() and (uncorrected == self._last_unc).all():
            return []  # the common tick: no upset anywhere
        if self._last_cor is None or np.any(corrected < self._last_cor) or np.any(uncorrected < self._last_unc):
            self._last_cor, self._last_unc = corrected.copy(), uncorrected.copy()
            return []
        self.corrected += (corrected - self._last_cor).astype(np.int64)
        new_unc = uncorrected - self._last_unc
        self._last_cor, self._last_unc = corrected.copy(), uncorrected.copy()
        hits = []
        for gpu in np.flatnonzero(new_unc):
            times = self._times[gpu]
            count = int(new_unc[gpu])
            times.extend([time_s] * count)
            while times and times[0] < time_s - FENCE_WINDOW_S:
                times.popleft()
            hits.append((int(gpu), count, len(times) >= FENCE_COUNT))
        return hits
