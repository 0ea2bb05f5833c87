"""A command-kind job program: repeated dense matrix products (numpy), checkpointable.

    python -m flight.subsystems.jobs.matmul WORKDIR STEPS SEED

Each step multiplies the state ``x`` (``N x K`` float64) by a fixed random matrix ``A``
(``N x N``, regenerated from ``SEED``, never stored) and normalises its columns: power
iteration, the dense linear algebra a GPU job spends its time on. The result is ``x`` after
``STEPS`` steps; its SHA-256 identifies it, and an interrupted run that resumes from its
checkpoints gives the same bytes as one that never stopped (the state is saved exactly, and
one BLAS thread keeps the arithmetic in one order).

It follows the command-job contract of :mod:`flight.subsystems.jobs.programs`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from flight.subsystems.jobs.programs import die_with_runner

N, K = 512, 32
PROGRESS_EVERY_S = 0.2
UPSET_BIT = 30
"""The mantissa bit a fault-injected upset flips (SIGUSR2): a relative change of ~1e-7 that
power iteration does not wash out of the result's bits (seen: ~5e-11 absolute after 5000
steps, from a flip at step 100 or 4900)."""


def _save_atomically(path: Path, write) -> None:
    """``write(file)`` into ``path`` so that a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _ignore_signals() -> None:
    """From here on a late request changes nothing; ignored, it cannot kill the interpreter
    while it shuts down (which puts handled signals back to their default action)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def main(argv: list[str]) -> int:
    workdir, steps, seed = Path(argv[0]), int(argv[1]), int(argv[2])
    die_with_runner(f"job-{workdir.name}")
    flags = {"checkpoint": False, "stop": False, "upset": False}
    signal.signal(signal.SIGUSR1, lambda *_: flags.__setitem__("checkpoint", True))
    signal.signal(signal.SIGTERM, lambda *_: flags.__setitem__("stop", True))
    signal.signal(signal.SIGUSR2, lambda *_: flags.__setitem__("upset", True))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((N, N)) / np.sqrt(N)
    checkpoint = workdir / "checkpoint.npz"
    if checkpoint.exists():
        with np.load(checkpoint) as saved:
            x, done = saved["x"], int(saved["done"])
    else:
        x, done = rng.standard_normal((N, K)), 0
    print(f"progress {done}", flush=True)  # ready: the handlers are in place
    last_report = time.monotonic()
    while done < steps:
        x = a @ x
        x /= np.linalg.norm(x, axis=0)
        done += 1
        if flags["upset"]:
            x.view(np.uint64)[0, 0] ^= np.uint64(1 << UPSET_BIT)
            flags["upset"] = False
        if time.monotonic() - last_report > PROGRESS_EVERY_S:
            print(f"progress {done}", flush=True)
            last_report = time.monotonic()
        if flags["checkpoint"] or flags["stop"]:
            _save_atomically(checkpoint, lambda f, x=x, done=done: np.savez(f, x=x, done=done))
            print(f"checkpoint {done}", flush=True)
            flags["checkpoint"] = False
            if flags["stop"]:
                _ignore_signals()
                return 0
    _ignore_signals()
    _save_atomically(workdir / "output.npy", lambda f: np.save(f, x))
    print(f"done {hashlib.sha256(x.tobytes()).hexdigest()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
