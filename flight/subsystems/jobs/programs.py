"""Command-kind jobs: a real program on the host, driven through a small contract.

The ground picks a program by name from :data:`PROGRAMS` (a telecommand never carries a
command line: what the satellite may run is fixed on board). The job runner starts it as::

    python -m MODULE WORKDIR STEPS SEED

in ``WORKDIR`` (``<data dir>/jobs/<job id>/``, kept across restarts), with one BLAS thread,
stdout a pipe to the runner, stderr appended to ``WORKDIR/stderr.log`` and the runner's pid
in the environment as ``RACKFLIGHT_JOB_PARENT``.

The contract a program keeps:

* first, call :func:`die_with_runner` (it is stopped like a preemption when the job runner
  dies, and exits at once if the runner is already gone);
* work comes in ``STEPS`` steps (the job's ``work_gpu_s``: one step is one unit of work);
* on start, resume from ``WORKDIR/checkpoint.npz`` if it exists, install its SIGUSR1 and
  SIGTERM handlers, then print ``progress <steps done>``: the runner sends no signal before
  this first line (the default action of both would kill it);
* print ``progress <steps done>`` now and then (a line on stdout, flushed);
* on SIGUSR1, at the next step boundary, write ``checkpoint.npz`` atomically (temporary
  file, fsync, rename) and print ``checkpoint <steps done>``;
* on SIGTERM, the same, then exit 0 (a preemption or pause: it will be restarted);
* when all steps are done, write ``WORKDIR/output.npy`` atomically, print
  ``done <sha256 of the result>`` and exit 0;
* the same arguments give the same result, bit for bit, however often it was stopped and
  resumed (a critical job's two replicas are compared by their digests);
* fault injection, for tests only: on SIGUSR2, flip one bit of the state at the next step
  boundary, as an upset in GPU memory that ECC did not see would (a program without the
  handler dies of the signal, and its job fails).

Anything else (another exit, an unreadable line) is the program failing. The runner keeps
each finished job's output at ``<data dir>/results/job-<id>.npy`` for downlink and its
digest in the store's ``results.detail``. A ``critical`` job runs two replicas, each in its
own working directory (``WORKDIR/replica-<n>/``) with the same arguments, and completes only
when both digests agree (:mod:`flight.subsystems.jobs.runner`). :mod:`flight.subsystems.jobs.matmul` is the
reference program.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from flight.core.runtime import name_process

PARENT_ENV = "RACKFLIGHT_JOB_PARENT"
PROGRAMS = {"matmul": "flight.subsystems.jobs.matmul"}
"""Programs a command job may run: name (the ``kind`` of ``jobs.submit``) -> Python module."""
MAX_LINE = 256
"""A longer unfinished line from a program is a contract violation."""


def _valid(word: str, value: str) -> bool:
    """A line of the contract: a step count (decimal digits) or a SHA-256 (64 hex digits)."""
    if word in ("progress", "checkpoint"):
        return value.isascii() and value.isdigit() and len(value) <= 18
    return word == "done" and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def die_with_runner(name: str) -> None:
    """For a program: take the process name ``name``, get SIGTERM when the job runner that
    started it dies, and exit now if it already has (the signal would never come).

    Raises:
        SystemExit: the runner is gone.
    """
    name_process(name)
    if str(os.getppid()) != os.environ.get(PARENT_ENV):
        raise SystemExit(0)


class ProgramRun:
    """One run of a job's program (a child process).

    Args:
        module: the program's module (a value of :data:`PROGRAMS`).
        workdir: its working directory (created if missing).
        steps, seed: its arguments.
    """

    def __init__(self, module: str, workdir: Path, steps: int, seed: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.steps = workdir, steps
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               PARENT_ENV: str(os.getpid())}
        with open(workdir / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, str(workdir), str(steps), str(seed)], cwd=workdir, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._partial = b""
        self.heard = False
        """The program has said something (its first line tells where it resumed from)."""
        self.ready = False
        """The program has printed its first line, so its signal handlers are installed."""
        self.checkpoint_pending = False
        self.stopping = False
        self.exited = False
        self.digest: str | None = None
        """The result's SHA-256 once the program said ``done``."""
        self.done_steps = 0
        """Steps done, as the program last said (progress, checkpoint or done)."""
        self.saved_steps = 0
        """Steps its checkpoint file holds: what it started from (its first line), then its
        last ``checkpoint``."""
        self.problem: str | None = None
        """Why the program broke the contract, if it did."""

    def request_checkpoint(self) -> bool:
        """Ask for a checkpoint (SIGUSR1); False if the program cannot take the request yet
        (not ready, or stopping: ask again later)."""
        if self.digest is not None:
            return True  # finished: nothing left to save
        if not self.ready or self.stopping:
            return False
        if not self.checkpoint_pending:
            self._signal(signal.SIGUSR1)
            self.checkpoint_pending = True
        return True

    def inject_upset(self) -> bool:
        """Fault injection: ask the program to flip one bit of its state (SIGUSR2); False if
        it cannot take the request now (not ready, stopping or finished)."""
        if not self.ready or self.stopping or self.digest is not None:
            return False
        self._signal(signal.SIGUSR2)
        return True

    def stop(self) -> None:
        """Ask the program to checkpoint and exit (SIGTERM; sent once it is ready)."""
        if not self.stopping and self.ready:
            self._signal(signal.SIGTERM)
        self.stopping = True

    def kill(self) -> None:
        """End the program now, without a checkpoint (SIGKILL), and reap it."""
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()
        self.exited = True

    @property
    def failure(self) -> str | None:
        """Why the program broke the contract, once it has exited (``None`` while it runs,
        and when it finished with a result or stopped as asked)."""
        if not self.exited:
            return None
        if self.problem is not None:
            return self.problem
        code = self.proc.returncode
        if code != 0 or (self.digest is None and not self.stopping):
            return f"program exited with {code}"
        return None

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def _account(self, word: str, value: str) -> None:
        if word == "done":
            self.digest, self.done_steps = value, self.steps
            return
        self.done_steps = int(value)
        if word == "checkpoint" or not self.heard:
            self.saved_steps = self.done_steps
            self.checkpoint_pending = False
        self.heard = True

    def poll(self) -> list[tuple[str, str]]:
        """What the program said since the last call, as ``(word, value)`` pairs
        (``progress``/``checkpoint`` with a step count, ``done`` with a digest, ``bad``
        with an unreadable line), then ``("exit", code)`` once, after it has exited and
        every line is read. Never blocks."""
        if self.exited:
            return []
        chunk = self.proc.stdout.read()  # None: nothing yet; b"": end of file
        out = []
        if chunk:
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                word, _, value = line.decode("ascii", "replace").partition(" ")
                if _valid(word, value):
                    out.append((word, value))
                    self._account(word, value)
                else:
                    out.append(("bad", line[:80].decode("ascii", "replace")))
            if out and not self.ready:
                self.ready = True
                if self.stopping:
                    self._signal(signal.SIGTERM)
            if len(self._partial) > MAX_LINE:
                out.append(("bad", self._partial[:80].decode("ascii", "replace")))
                self._partial = b""
        elif chunk == b"" and self.proc.poll() is not None:
            self.proc.stdout.close()
            self.exited = True
            out.append(("exit", str(self.proc.returncode)))
        return out
