"""Control loops: batched C implementations in ``flight._native`` (see ``native/``), each
with a pure-Python reference of identical semantics beside its binding."""

from __future__ import annotations

import numpy as np

from flight._native import ffi


def clamp(x: float, lo: float, hi: float) -> float:
    """Reference of the C ``rf_clamp``: NaN becomes ``lo``, and ``hi`` wins when ``lo > hi``."""
    if not x >= lo:
        x = lo
    if x > hi:
        x = hi
    return x


class CBuffers:
    """Hands numpy arrays to C once: each cffi view (and so its array) stays alive as long as
    this object, i.e. as long as the C structs that point into them."""

    def __init__(self) -> None:
        self._views: list[object] = []

    def wrap(self, arr: np.ndarray, ctype: str = "double[]") -> object:
        view = ffi.from_buffer(ctype, arr)
        self._views.append(view)
        return view
