"""cffi builder (API mode) for ``flight._native``: the batched thermal PID, thermal headroom
and power allocator in ``native/*.c``.

Used by setuptools through ``setup.py`` (``cffi_modules=["native/build_native.py:ffibuilder"]``),
so ``pip install .`` and ``pip install -e .`` compile it. For an in-place rebuild without
reinstalling run ``python native/build_native.py`` (= ``python setup.py build_ext
--inplace``), which writes ``flight/_native*.so`` into the package directory.

The cdef is the block between the ``CFFI-CDEF`` markers of ``rackflight_native.h``, so the
declarations exist once.
"""

from __future__ import annotations

import os
import pathlib
import sys

import cffi

HERE = pathlib.Path(__file__).resolve().parent
HEADER = HERE / "rackflight_native.h"
SOURCES = ("thermal_pid.c", "power_alloc.c")
_BEGIN = "/* CFFI-CDEF-BEGIN */"
_END = "/* CFFI-CDEF-END */"


def _cdef_from_header(text: str) -> str:
    try:
        start = text.index(_BEGIN) + len(_BEGIN)
        stop = text.index(_END, start)
    except ValueError as exc:
        raise RuntimeError(f"{HEADER}: cdef markers {_BEGIN!r} / {_END!r} not found") from exc
    return text[start:stop]


def _rel(path: pathlib.Path) -> str:
    # setuptools wants sources relative to the project root (its cwd during a build);
    # relpath also keeps a direct run of this script from another directory working.
    return os.path.relpath(path)


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return []
    # -ffp-contract=off: no fused multiply-add, so the C loops round exactly like the
    # pure-Python references they are tested against (FMA is on by default on aarch64).
    return ["-std=c99", "-O2", "-Wall", "-Wextra", "-ffp-contract=off"]


ffibuilder = cffi.FFI()
ffibuilder.cdef(_cdef_from_header(HEADER.read_text(encoding="utf-8")))
ffibuilder.set_source(
    "flight._native",
    '#include "rackflight_native.h"\n',
    sources=[_rel(HERE / name) for name in SOURCES],
    include_dirs=[_rel(HERE)],
    depends=[_rel(HEADER)],
    extra_compile_args=_compile_args(),
    libraries=[] if sys.platform == "win32" else ["m"],
)

if __name__ == "__main__":
    import subprocess

    # Through setuptools like pip does, so the in-place module has the same file name
    # (cffi picks abi3 or not) and an older build of another name cannot shadow it.
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=HERE.parent, check=True
    )
