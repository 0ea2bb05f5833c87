"""``flight report DATA_DIR``: PNG plots of a recorded run, from its ``telemetry.sqlite``.

Every plot is drawn against simulated time from the housekeeping packets the executive
recorded (:mod:`flight.executive.recorder`; one packet per source every ``hk_period_ticks`` ticks, so the
plots have that resolution), with the eclipse (grey) and ground-pass (green) intervals shaded
from ``hal.hk`` ``eclipse`` and ``ground_contact``, and injected faults marked in red (a
dashed line and the fault's name where ``hal.fault_injected`` was recorded, shaded until its
``hal.fault_cleared`` or the end of the run):

==================  =================================================================
``soc.png``         battery state of charge (``hal.hk`` ``battery_soc``), 0..1
``power.png``       solar array, GPUs total and platform bus power (``hal.hk``), kW
``gpu_temp.png``    GPU die temperature min / mean / max (``hal.hk``), °C
``power_limits.png`` per-GPU power limits commanded by the power manager (``power.hk``
                    ``gpu_power_limit_w``): min / mean / max, and a GPU × time heat map, W
``mode.png``        the executive's mode (``exec.hk`` ``mode``)
==================  =================================================================

A plot whose source packets are absent (e.g. no ``power.hk`` in a run whose power manager
never reported) is skipped and said so; ``hal.hk`` is required. Rendering uses matplotlib's
Agg backend, so no display is needed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flight.exit_status import EXIT_FAILED, EXIT_OK
from flight.core.messages import DecodeError, decode
from flight.executive.recorder import event_args
from flight.subsystems.power.modes import MODES

PACKETS = ("hal.hk", "power.hk", "exec.hk")
DPI = 110
FIGSIZE_IN = (10.0, 4.0)


class ReportError(Exception):
    """The run database is missing, is not a run database, holds no ``hal.hk``, or its
    packets lack a channel a plot needs."""


@dataclass
class Series:
    """One packet's channels over time: ``time_s`` (simulated s, shape ``(n,)``, ascending)
    and the decoded payloads in the same order."""

    name: str
    time_s: np.ndarray
    rows: list[dict[str, Any]]

    def channel(self, name: str, dtype: Any = float) -> np.ndarray:
        """Values of ``name``: shape ``(n,)`` for scalars, ``(n, k)`` for array channels.

        Raises:
            ReportError: a packet lacks the channel (a run recorded by an older version).
        """
        try:
            return np.array([r[name] for r in self.rows], dtype=dtype)
        except KeyError:
            raise ReportError(f"{self.name} packets lack the channel {name!r}: recorded by an older version?") from None


def load(db_path: Path) -> tuple[dict[str, Series], int]:
    """Read the packets in :data:`PACKETS` from a run database, in simulation order.

    Returns:
        ``({packet name: Series}, undecodable row count)``; a packet never recorded is absent.

    Raises:
        ReportError: no file at ``db_path``, not an SQLite run database, or no ``hal.hk``.
    """
    if not db_path.is_file():
        raise ReportError(f"no telemetry database at {db_path}")
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                f"SELECT time_s, name, body FROM tm WHERE name IN ({','.join('?' * len(PACKETS))}) "
                "ORDER BY tick, rowid", PACKETS).fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "no such table: tm", ...
        raise ReportError(f"{db_path} is not a run database: {exc}") from None
    found: dict[str, tuple[list[float], list[dict]]] = {}
    bad = 0
    for time_s, name, body in rows:
        try:
            data = decode(body).data
        except DecodeError:
            bad += 1
            continue
        if isinstance(data, dict):
            times, payloads = found.setdefault(name, ([], []))
            times.append(float(time_s))
            payloads.append(data)
    if "hal.hk" not in found:
        raise ReportError(f"{db_path} holds no hal.hk housekeeping to plot")
    return {name: Series(name, np.array(t), p) for name, (t, p) in found.items()}, bad


def fault_spans(db_path: Path, end_s: float) -> list[tuple[float, float, str]]:
    """Injected faults from the arguments of the recorded ``hal.fault_injected`` /
    ``hal.fault_cleared`` events (``fault``, ``target``, ``value``): ``(start_s, end_s, label)``,
    a fault still active at the end lasting to ``end_s``. A run recorded before events carried
    their arguments as fields has no faults to mark."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = event_args(db, "hal.fault_injected", "hal.fault_cleared")
    except sqlite3.DatabaseError:  # a database without the ev table (or its args) has no faults to mark
        rows = []
    finally:
        db.close()
    active: dict[tuple[str, str], tuple[float, str]] = {}
    spans = []
    for time_s, name, args in rows:
        if "fault" not in args:
            continue
        key = (str(args.get("fault")), str(args.get("target", "")))
        if name == "hal.fault_injected":
            value = args.get("value") or 0.0
            label = key[0] + (f" {key[1]}" if key[1] else "") + (f" {value:g}" if value else "")
            active[key] = (float(time_s), label)
        elif key in active:
            start, label = active.pop(key)
            spans.append((start, float(time_s), label))
    spans += [(start, end_s, label) for start, label in active.values()]
    return sorted(spans)


def intervals(time_s: np.ndarray, flag: np.ndarray) -> list[tuple[float, float]]:
    """Spans ``(start_s, end_s)`` where ``flag`` holds: from the first sample that has it to
    the first that does not (or the last sample), so a span is as long as the samples show."""
    spans, start = [], None
    for t, on in zip(time_s, flag):
        if on and start is None:
            start = float(t)
        elif not on and start is not None:
            spans.append((start, float(t)))
            start = None
    if start is not None:
        spans.append((start, float(time_s[-1])))
    return spans


class _Figures:
    """What every plot shares: the time axis unit and the shaded intervals."""

    def __init__(self, hal: Series, faults: list[tuple[float, float, str]]) -> None:
        self.faults = faults
        span_s = float(hal.time_s[-1] - hal.time_s[0])
        self.unit, self.scale = ("h", 3600.0) if span_s > 6 * 3600 else ("min", 60.0)
        self.eclipses = intervals(hal.time_s, hal.channel("eclipse", bool))
        self.passes = intervals(hal.time_s, hal.channel("ground_contact", bool))
        self.xlim = (float(hal.time_s[0]) / self.scale, float(hal.time_s[-1]) / self.scale)

    def x(self, time_s: np.ndarray) -> np.ndarray:
        return time_s / self.scale

    def shade(self, ax) -> None:
        for i, (a, b) in enumerate(self.eclipses):
            ax.axvspan(a / self.scale, b / self.scale, color="0.6", alpha=0.3, lw=0, label="eclipse" if i == 0 else None)
        for i, (a, b) in enumerate(self.passes):
            ax.axvspan(a / self.scale, b / self.scale, color="tab:green", alpha=0.2, lw=0,
                       label="ground pass" if i == 0 else None)
        for i, (a, b, label) in enumerate(self.faults):
            ax.axvspan(a / self.scale, b / self.scale, color="tab:red", alpha=0.08, lw=0)
            ax.axvline(a / self.scale, color="tab:red", lw=1, ls="--", label="injected fault" if i == 0 else None)
            ax.text(a / self.scale, 0.98, f" {label}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="left", fontsize="x-small", color="tab:red")

    def finish(self, fig, axes, title: str, path: Path, unshaded=()) -> None:
        """Shade, label and save. Axes in ``unshaded`` (a heat map) are left clear: the line
        axis above them shows the intervals on the shared time axis."""
        for ax in axes:
            if ax not in unshaded:
                self.shade(ax)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize="small")
        if self.xlim[1] > self.xlim[0]:  # every plot spans the same hal.hk time range
            axes[-1].set_xlim(*self.xlim)
        axes[-1].set_xlabel(f"simulated time ({self.unit})")
        axes[0].set_title(title)
        fig.savefig(path, dpi=DPI)

    def shaded_note(self) -> str:
        return (f"{len(self.eclipses)} eclipse(s), {len(self.passes)} ground pass(es) shaded, "
                f"{len(self.faults)} injected fault(s) marked")


def write_report(data_dir: Path, out_dir: Path) -> list[str]:
    """Write the plots of the run in ``data_dir`` into ``out_dir`` (created if needed).

    Returns:
        One line per plot: the file written and what it shows, or why it was skipped.

    Raises:
        ReportError: see :func:`load`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, bad = load(data_dir / "telemetry.sqlite")
    hal = series["hal.hk"]
    figs = _Figures(hal, fault_spans(data_dir / "telemetry.sqlite", float(hal.time_s[-1])))
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    note = figs.shaded_note()
    t = figs.x(hal.time_s)
    span = f"{hal.time_s[0]:,.0f}-{hal.time_s[-1]:,.0f} s"

    def new(rows: int = 1):
        fig, axes = plt.subplots(rows, 1, figsize=(FIGSIZE_IN[0], FIGSIZE_IN[1] * (1 + 0.6 * (rows - 1))),
                                 sharex=True, squeeze=False, layout="constrained")
        return fig, list(axes[:, 0])

    def save(fig, axes, title: str, name: str, what: str, unshaded=()) -> None:
        path = out_dir / name
        figs.finish(fig, axes, title, path, unshaded)
        plt.close(fig)
        lines.append(f"wrote {path}: {what}; {note}")

    soc = hal.channel("battery_soc")
    fig, (ax,) = new()
    ax.plot(t, soc, color="tab:blue", label="battery SOC")
    ax.set_ylabel("state of charge (0..1)")
    ax.set_ylim(0.0, 1.02)
    save(fig, [ax], "Battery state of charge", "soc.png",
         f"battery SOC over {span}, {soc.min():.3f}..{soc.max():.3f}")

    array_kw = hal.channel("solar_array_power_w") / 1e3
    gpu_kw = hal.channel("gpu_power_total_w") / 1e3
    bus_kw = hal.channel("bus_load_w") / 1e3
    fig, (ax,) = new()
    ax.plot(t, array_kw, color="tab:orange", label="solar array (in)")
    ax.plot(t, gpu_kw, color="tab:red", label="GPUs total (out)")
    ax.plot(t, bus_kw, color="tab:purple", label="platform bus (out)")
    ax.set_ylabel("power (kW)")
    save(fig, [ax], "Power in and out", "power.png",
         f"array peak {array_kw.max():,.1f} kW, GPUs mean {gpu_kw.mean():,.1f} kW, bus mean {bus_kw.mean():,.1f} kW")

    t_min, t_mean, t_max = (hal.channel(f"gpu_temp_{k}_c") for k in ("min", "mean", "max"))
    fig, (ax,) = new()
    ax.fill_between(t, t_min, t_max, color="tab:red", alpha=0.2, lw=0, label="min..max")
    ax.plot(t, t_max, color="tab:red", lw=1, label="max")
    ax.plot(t, t_mean, color="k", lw=1, label="mean")
    ax.plot(t, t_min, color="tab:blue", lw=1, label="min")
    ax.set_ylabel("GPU die temperature (°C)")
    save(fig, [ax], "GPU temperature over the 72 GPUs", "gpu_temp.png",
         f"GPU temperature {t_min.min():.1f}..{t_max.max():.1f} °C")

    power = series.get("power.hk")
    if power is None:
        lines.append("skipped power_limits.png: no power.hk housekeeping in the run")
    else:
        limits = power.channel("gpu_power_limit_w")
        tp = figs.x(power.time_s)
        fig, (ax, heat) = new(2)
        ax.plot(tp, limits.max(axis=1), color="tab:red", lw=1, label="max")
        ax.plot(tp, limits.mean(axis=1), color="k", lw=1, label="mean")
        ax.plot(tp, limits.min(axis=1), color="tab:blue", lw=1, label="min (0 = parked)")
        ax.set_ylabel("limit (W)")
        edges = np.append(tp, tp[-1] + (tp[-1] - tp[-2] if len(tp) > 1 else 1.0))
        mesh = heat.pcolormesh(edges, np.arange(limits.shape[1] + 1), limits.T, shading="flat", cmap="viridis")
        fig.colorbar(mesh, ax=[ax, heat], label="limit (W)", pad=0.01)
        heat.set_ylabel("GPU")
        save(fig, [ax, heat], "Per-GPU power limits (power manager)", "power_limits.png",
             f"{limits.shape[1]} GPUs' limits, {limits.min():,.0f}..{limits.max():,.0f} W", unshaded=(heat,))

    ex = series.get("exec.hk")
    if ex is None:
        lines.append("skipped mode.png: no exec.hk housekeeping in the run")
    else:
        modes = [str(m) for m in ex.channel("mode", object)]
        # flight.subsystems.power.modes.MODES bottom to top; any other mode string seen goes above them.
        order = list(MODES) + sorted(set(modes) - set(MODES))
        level = np.array([order.index(m) for m in modes])
        fig, (ax,) = new()
        ax.step(figs.x(ex.time_s), level, where="post", color="k", label="mode")
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(-0.5, len(order) - 0.5)
        seen = ", ".join(m for m in order if m in modes)
        save(fig, [ax], "Executive mode", "mode.png", f"mode over time ({seen})")
    if bad:
        lines.append(f"note: {bad} recorded packet(s) could not be decoded and were left out")
    return lines


def add_parser(subparsers: Any) -> None:
    """Register ``report`` on the ``flight`` command's subparsers."""
    p = subparsers.add_parser(
        "report", help="plot a recorded run (SOC, power, GPU temperature, power limits, mode) as PNGs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read DATA_DIR/telemetry.sqlite (the data directory of a `flight run`) and write PNG "
                    "plots against simulated time, with eclipses (grey) and ground passes (green) "
                    "shaded:\n"
                    "  soc.png           battery state of charge\n"
                    "  power.png         solar array, GPUs total and platform bus power\n"
                    "  gpu_temp.png      GPU temperature min / mean / max\n"
                    "  power_limits.png  per-GPU power limits: min / mean / max and a GPU x time heat map\n"
                    "  mode.png          the executive's mode\n"
                    "One line per file written. Exit status 1 if the database is missing or unreadable.",
        epilog="example:\n  flight run --orbits 1 --data runs/a && flight report runs/a --out runs/a/plots")
    p.add_argument("data_dir", metavar="DATA_DIR", type=Path, help="the run's data directory (--data of flight run)")
    p.add_argument("--out", metavar="DIR", type=Path, help="where to write the PNGs (default DATA_DIR/report)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        lines = write_report(args.data_dir, args.out or args.data_dir / "report")
    except (ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in lines:
        print(line)
    return EXIT_OK
