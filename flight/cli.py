"""The ``flight`` command: run the stack, stand up the simulator alone, print the
dictionary, talk to the satellite from the ground.

    flight run [--orbits N | --duration S] [--speed max|realtime|FACTOR] ...
    flight sim --bind ENDPOINT ...
    flight run --scenario NAME|FILE [--duration S] ...
    flight scenarios
    flight dict [--json | --graph | --icd [--out FILE]]
    flight ground ping | send SUBSYSTEM.COMMAND key=value ... | watch
    flight report DATA_DIR [--out DIR]
    flight campaign run FILE [--workers N | --scheduler tcp://HOST:PORT] [--out DIR] | report DIR | replay DIR CASE
    flight keys init [--station NAME] [--dir DIR] | init-kek [--name NAME] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from flight.exit_status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT_CLOSED, EXIT_USAGE
from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.tle import DEFAULT_TLE_NAME, DEFAULT_TLE_PATH, load_tle, orbit_period_s

LINK_DEFAULT = "127.0.0.1:52001"
SIMULATOR_SERVER = "sim_hw.server"
"""``flight sim`` becomes this module's process (``python -m``): its own parser and --help."""


def _speed(text: str) -> str:
    if text in ("max", "realtime"):
        return text
    try:
        factor = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be max, realtime or a positive factor, not {text!r}") from None
    if not (math.isfinite(factor) and factor > 0):
        raise argparse.ArgumentTypeError("speed factor must be a positive number")
    return text


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def add_run_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="fly the whole stack against the simulated satellite (or a HAL rig)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start the executive, the bus, the four subsystem processes (power, thermal, jobs, "
                    "link), the HAL bridge and the simulated rack-satellite, and fly the run.\n\n"
                    "Lockstep (--speed max) runs as fast as the machine allows and is reproducible: the same "
                    "TLE, seed and commands give the same telemetry_sha256. Realtime or a factor paces ticks "
                    "by the wall clock; an overrun is a counted cycle slip.",
        epilog="examples:\n  flight run --orbits 1 --speed max --summary-json s.json\n"
               "  flight run --speed realtime --contact always      # then: flight ground ping\n"
               "  flight run --hal tcp://rig.local:5555 --speed realtime   # fly against a HIL rig")
    p.add_argument("--tle", default=str(DEFAULT_TLE_PATH), metavar="PATH",
                   help="TLE file (2- or 3-line sets); default: the bundled real TLEs")
    p.add_argument("--tle-name", default=DEFAULT_TLE_NAME, metavar="NAME",
                   help=f"which satellite of the TLE file (default {DEFAULT_TLE_NAME}; ignored for a single set)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--orbits", type=_positive(float), metavar="N", help="fly N orbits of the TLE (default 1)")
    length.add_argument("--duration", type=_positive(float), metavar="S", help="fly S simulated seconds")
    p.add_argument("--speed", type=_speed, default="max",
                   help="max (lockstep, as fast as possible; default), realtime, or a factor such as 10")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed of the simulator and workload (default 0, or the scenario's)")
    p.add_argument("--tick-s", type=_positive(float), default=1.0, metavar="S", help="base tick (default 1 s)")
    p.add_argument("--data", metavar="DIR",
                   help="data directory of the mission (default rackflight-runs/<time>). A directory that "
                        "already holds a mission is resumed: a reboot of the flight computer, not a new mission "
                        "(onboard time, battery, temperatures, faults, jobs, schedule and stores carry on). It "
                        "must be given the same TLE and scenario it was started with, else the run is refused")
    p.add_argument("--fresh", action="store_true",
                   help="start a new mission in --data DIR: whatever it holds is moved into DIR/superseded-<time>/")
    p.add_argument("--contact", choices=("passes", "always"), default="passes",
                   help="ground link up only during station passes (default) or always (lab)")
    p.add_argument("--link", type=_host_port, default=LINK_DEFAULT, metavar="HOST:PORT",
                   help=f"where the link manager listens for the ground (default {LINK_DEFAULT})")
    p.add_argument("--keys", metavar="DIR",
                   help="ground-station keys, taken into the onboard key store on a mission's first run, and "
                        "the key-encryption keys that unwrap keys uploaded later (default $RACKFLIGHT_KEYS_DIR or "
                        "~/.config/rackflight/keys; a local station key and 'master' key-encryption key are "
                        "created there if it has none)")
    p.add_argument("--unauthenticated-lab", action="store_true",
                   help="lab only: accept telecommands without authentication (the link binds loopback only)")
    p.add_argument("--hal", metavar="ENDPOINT",
                   help="fly against an external HAL rig at this ZeroMQ endpoint instead of starting the simulator")
    p.add_argument("--scenario", metavar="NAME|FILE",
                   help="fly a scenario (flight scenarios lists the bundled ones): its element set, seed, length, "
                        "start conditions, load, timed faults and commands; --duration/--orbits/--seed given here "
                        "override its own. Its [expect] is checked at the end: PASS, or FAIL and exit status 1")
    p.add_argument("--in-process", action="store_true",
                   help="fly the same components in lockstep in this one process, with no bus and no child "
                        "processes (flight/hal/inprocess.py): several times faster, the same summary and "
                        "telemetry_sha256; lockstep only, no ground station can connect (the link listens on "
                        "any free port unless --link is given)")
    p.add_argument("--summary-json", metavar="PATH", help="also write the run summary as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flight.executive import supervisor as executive
    from flight.executive.inprocess import InProcessRun

    console = Console(stderr=True)
    if args.in_process and (args.hal or args.speed != "max"):
        console.print("[red]error:[/] --in-process flies the simulator in lockstep: no --hal, no --speed but max")
        return EXIT_USAGE
    scn = None
    if args.scenario:
        from flight import scenario

        try:
            scn = scenario.load(args.scenario)
        except scenario.ScenarioError as exc:
            console.print(f"[red]error:[/] {exc}", soft_wrap=True, markup=False)
            return EXIT_USAGE
        args.tle, args.tle_name = str(scn.tle_path), scn.tle_name
        if args.hal:
            console.print(f"note: against the rig at {args.hal} the scenario's timed faults and commands and its "
                          "[expect] apply; its start conditions and seed are the rig's own business")
    try:
        name, (line1, line2) = load_tle(args.tle, args.tle_name)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/] cannot use TLE {args.tle}: {exc}")
        return EXIT_FAILED
    keys_dir = _prepare_keys(console, args)
    if keys_dir is None:
        return EXIT_FAILED
    period_s = orbit_period_s(line1, line2)
    if scn is not None and not (args.duration or args.orbits):
        duration_s = scn.run_duration_s()
    else:
        duration_s = args.duration if args.duration else (args.orbits or 1.0) * period_s
    if args.seed is None:
        args.seed = scn.seed if scn is not None else 0
    speed = None if args.speed == "max" else 1.0 if args.speed == "realtime" else float(args.speed)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    data_dir = Path(args.data or f"rackflight-runs/{stamp}-seed{args.seed}").resolve()
    why = _prepare_mission(data_dir, (line1, line2), scn.name if scn is not None else "", args.fresh, stamp)
    if why:
        console.print(f"[red]error:[/] {why}", soft_wrap=True, markup=False)
        return EXIT_USAGE
    run_dir = executive.short_run_dir()
    link = args.link if args.link != LINK_DEFAULT or not args.in_process else "127.0.0.1:0"
    config = RunConfig(bus=BusAddress.in_dir(run_dir), data_dir=str(data_dir), tick_s=args.tick_s, speed=speed,
                       seed=args.seed, contact=args.contact, link_endpoint=link, hal_endpoint=args.hal or "",
                       parent_pid=os.getpid(), keys_dir=str(keys_dir),
                       unauthenticated_lab=args.unauthenticated_lab, tle_lines=(line1, line2))
    if scn is not None:
        config.params.update(scn.run_params())
    sim = None if args.hal else executive.sim_options(args.tle, name, args.seed)
    console.print(f"flying [bold]{name}[/] for {duration_s:,.0f} s ({duration_s / period_s:.2f} orbits of "
                  f"{period_s:,.0f} s), speed {args.speed}, seed {args.seed}, contact {args.contact}; data in {data_dir}")
    signal.signal(signal.SIGTERM, _interrupt)
    with _progress(console, duration_s, disable=args.no_progress or not console.is_terminal) as update:
        try:
            if args.in_process:
                exe = InProcessRun(config, duration_s, on_progress=update)
            else:
                exe = executive.Executive(config, duration_s, sim, on_progress=update)
            summary = exe.run()
        finally:
            executive.remove_run_dir(run_dir)
    for path in (data_dir / "summary.json", *([Path(args.summary_json)] if args.summary_json else [])):
        try:
            path.write_text(json.dumps(summary, indent=2))
        except OSError as exc:  # a full disk: the summary is still printed below
            console.print(f"[red]error:[/] cannot write {path}: {exc}", markup=True)
    _print_summary(console, summary)
    if summary["end"] == "interrupted":
        return EXIT_INTERRUPTED
    if scn is not None:
        return _check_scenario(console, scn, summary, data_dir)
    return EXIT_OK if summary["end"] == "completed" else EXIT_FAILED


def _prepare_mission(data_dir: Path, tle: tuple[str, str], scenario: str, fresh: bool, stamp: str) -> str:
    """Make ``data_dir`` ready to fly: a new mission is recorded (:mod:`flight.hal.onboard_clock`),
    an existing one of the same TLE and scenario is resumed, ``fresh`` moves what the directory
    holds aside first. Returns why the run is refused (empty when it is not)."""
    from flight.hal import onboard_clock

    try:
        mission = onboard_clock.read_mission(data_dir)
    except onboard_clock.MissionError as exc:
        return f"cannot read the mission record: {exc}; repair it, or start anew with --fresh"
    try:
        if fresh and data_dir.is_dir() and any(data_dir.iterdir()):
            aside = data_dir / f"superseded-{stamp}"
            aside.mkdir()
            for entry in data_dir.iterdir():
                if entry != aside and not entry.name.startswith("superseded-"):
                    entry.rename(aside / entry.name)
            mission = None
        if mission is not None:
            differs = mission.differs(tle, scenario)
            return (f"{data_dir} holds another mission: {differs}. Give the TLE and scenario it was started with "
                    "to resume it, or --fresh to start a new one there") if differs else ""
        data_dir.mkdir(parents=True, exist_ok=True)
        onboard_clock.write_mission(data_dir, onboard_clock.Mission(
            tle, scenario, started_utc=datetime.now(timezone.utc).isoformat()))
    except OSError as exc:
        return f"cannot prepare the data directory {data_dir}: {exc}"
    return ""


def _check_scenario(console, scn, summary: dict, data_dir: Path) -> int:
    """Print the scenario's [expect] checks and PASS/FAIL; the exit status."""
    from rich.table import Table

    from flight.scenario import recorded_events

    checks = scn.check(summary, recorded_events(data_dir / "telemetry.sqlite"))
    passed = all(c.ok for c in checks)
    table = Table(title=f"scenario {scn.name}: {'PASS' if passed else 'FAIL'}")
    for column in ("check", "result", "value"):
        table.add_column(column)
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail)
    console.print(table)
    print(f"scenario {scn.name}: {'PASS' if passed else 'FAIL'}")
    return EXIT_OK if passed else EXIT_FAILED


def add_scenarios_parser(sub) -> None:
    p = sub.add_parser("scenarios", help="list the bundled scenarios (flight run --scenario NAME)",
                       description="One line per bundled scenario (flight/scenarios/*.toml): name, length, "
                                   "faults and description.")
    p.set_defaults(func=cmd_scenarios)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from flight import scenario

    status = EXIT_OK
    for path in sorted(scenario.SCENARIO_DIR.glob("*.toml")):
        try:
            scn = scenario.load(path)
        except scenario.ScenarioError as exc:
            print(f"{path.stem:24s} BROKEN: {exc}")
            status = EXIT_FAILED
            continue
        fault_names = sorted({c.args["fault"] for c in scn.commands if c.command == "hal.inject_fault"})
        print(f"{scn.name:24s} {scn.run_duration_s():8,.0f} s  faults: {', '.join(fault_names) or '-':28s} "
              f"{scn.description}")
    return status


def _prepare_keys(console, args: argparse.Namespace) -> Path | None:
    """The resolved key directory, after creating the local station key, the key-encryption
    key and the telemetry key when it holds none (one line each says where) or warning about
    lab mode; ``None`` after an error."""
    from flight.spacelink import keys, tm_sdls

    directory = keys.keys_dir(args.keys).resolve()
    if args.unauthenticated_lab:
        console.print(f"[bold red]WARNING: unauthenticated lab mode[/]: anyone who can reach {args.link} can "
                      "command this satellite, and its telemetry is not sealed (loopback only)")
        return directory
    try:
        created = keys.ensure_local_key(directory)
        kek = keys.ensure_local_kek(directory)
        created_tm = tm_sdls.ensure_tm_key(directory)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/] cannot create a key in {directory}: {exc}")
        return None
    if created is not None:
        console.print(f"created the key of ground station {created.station!r} (SPI {created.spi}): "
                      f"{keys.key_path(directory, created.station)}", soft_wrap=True)  # a path to copy, unbroken
    if kek is not None:
        console.print(f"created the key-encryption key {kek.name!r} (id {kek.kek_id}) that wraps uploaded keys: "
                      f"{keys.key_path(directory, kek.name, keys.KEK_SUFFIX)}", soft_wrap=True)
    if created_tm is not None:
        console.print(f"created the telemetry key (SPI {created_tm.spi}) every TM is sealed with: "
                      f"{keys.key_path(tm_sdls.tm_keys_dir(directory), created_tm.station)}", soft_wrap=True)
    return directory


def _interrupt(*_args) -> None:
    """SIGTERM ends a run the way Ctrl-C does: children stopped, summary written."""
    raise KeyboardInterrupt


class _progress:
    """A rich progress bar of simulated time; a no-op when disabled."""

    def __init__(self, console, total_s: float, disable: bool) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]sim"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} s"),
            TextColumn("x{task.fields[speedup]:,.0f}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=disable, transient=False,
        )
        self.task = self.progress.add_task("sim", total=total_s, speedup=0.0)
        self.started = time.monotonic()

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, sim_time_s: float) -> None:
        wall = max(1e-9, time.monotonic() - self.started)
        self.progress.update(self.task, completed=sim_time_s, speedup=sim_time_s / wall)

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _print_summary(console, summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"run summary ({summary['end']})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("simulated time", f"{summary['sim_time_s']:,.0f} s"),
        ("onboard UTC", f"{summary['utc_start'] or '-'} .. {summary['utc_end'] or '-'}"),
        ("wall time", f"{summary['wall_time_s']:,.1f} s"),
        ("eclipse time", f"{summary['eclipse_time_s']:,.0f} s"),
        ("energy harvested", f"{summary['energy_harvested_j'] / 3.6e9:,.2f} MWh"),
        ("battery SOC min", "-" if summary["battery_soc_min"] is None else f"{summary['battery_soc_min']:.3f}"),
        ("battery SOC floor", "-" if summary["battery_soc_floor"] is None
         else f"{summary['battery_soc_floor']:.3f}"),
        ("GPU temp max", "-" if summary["gpu_temp_max_c"] is None else f"{summary['gpu_temp_max_c']:.1f} °C"),
        ("GPU work done", f"{summary['gpu_work_done_s']:,.0f} GPU-s"),
        ("GPU work kept / in progress / lost", "{:,.0f} / {:,.0f} / {:,.0f} GPU-s".format(
            summary["gpu_work_useful_s"],
            max(0.0, summary["gpu_work_done_s"] - summary["gpu_work_useful_s"] - summary["gpu_work_lost_s"]),
            summary["gpu_work_lost_s"])),
        ("GPU shutdowns (92 °C)", str(summary["gpu_shutdowns"])),
        ("energy balance error", "-" if summary["energy_balance_error"] is None
         else f"{summary['energy_balance_error']:.1e}"),
        ("commands executed", str(summary["commands_executed"])),
        ("events", ", ".join(f"{k} {v}" for k, v in summary["events"].items())),
        ("cycle slips", str(summary["cycle_slips"])),
        ("telemetry rows dropped", str(summary["telemetry_rows_dropped"])),
        ("restarts", str(summary["restarts"])),
        ("mode", summary["mode"]),
        ("time in mode", ", ".join(f"{m} {t:,.0f} s" for m, t in summary["mode_time_s"].items() if t)),
        ("telemetry sha256", summary["telemetry_sha256"][:16] + "…"),
        ("data", summary["data_dir"]),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def add_sim_parser(sub) -> None:
    # main() hands `flight sim ...` to the simulator's own parser, so its --help is the full one
    sub.add_parser("sim", add_help=False,
                   help="run the simulated rack-satellite alone at a HAL endpoint, as a HIL rig stands")


def add_dict_parser(sub) -> None:
    p = sub.add_parser("dict", help="print the dictionary: commands, telemetry, events, parameters, wiring, HAL fields",
                       description="Print every command (with argument types, ranges, units and opcode), "
                                   "telemetry channel (units, limits), event (severity, format), parameter "
                                   "(type, range, default), the wiring (each data product with its publisher "
                                   "and readers, each actuator field with its owner) and the HAL "
                                   "sensor/actuator fields, all from their single declaration in code.")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable JSON")
    form.add_argument("--graph", action="store_true",
                      help="the wiring as a Graphviz DOT digraph (flight dict --graph | dot -Tsvg > wiring.svg)")
    form.add_argument("--icd", action="store_true",
                      help="the space link's interface control document as markdown (docs/icd.md: packets, APIDs, "
                           "every TC and TM layout, failure codes, counters, security), from the declarations")
    p.add_argument("--out", metavar="FILE", help="with --icd: write it to FILE instead of stdout")
    p.set_defaults(func=cmd_dict)


def cmd_dict(args: argparse.Namespace) -> int:
    from flight import icd
    from flight.hal import protocol as hal
    from flight.core.dictionary import full_dictionary

    def field_json(f: hal.Field) -> dict:
        # strict JSON has no infinity: an unbounded end of a range is null
        return {"name": f.name, "dtype": f.dtype, "shape": list(f.shape), "doc": f.doc,
                "min": f.lo if math.isfinite(f.lo) else None, "max": f.hi if math.isfinite(f.hi) else None}

    d = full_dictionary()
    if args.out and not args.icd:
        print("flight dict: --out goes with --icd", file=sys.stderr)
        return EXIT_USAGE
    if args.icd:
        text = icd.render(d)
        if args.out:
            Path(args.out).write_text(text)
            print(f"wrote the interface control document to {args.out} ({len(text.splitlines())} lines)")
        else:
            print(text, end="")
        return EXIT_OK
    if args.graph:
        print(d.wiring_dot(), end="")
        return EXIT_OK
    if args.json:
        out = d.to_json()
        out["hal"] = {"version": hal.HAL_VERSION, "sensors": [field_json(f) for f in hal.SENSOR_FIELDS],
                      "actuators": [field_json(f) for f in hal.ACTUATOR_FIELDS]}
        out["space_link"] = icd.space_link_json()
        print(json.dumps(out, indent=2, allow_nan=False))
        return EXIT_OK
    for qual, cmd in d.commands.items():
        print(f"cmd   {qual:32s} 0x{d.opcode(qual):04x}  {' '.join(a.describe() for a in cmd.args)}  — {cmd.doc}")
    for qual, ch in d.channels.items():
        print(f"tm    {qual:32s} {ch.type}{f'[{ch.size}]' if ch.size else ''} {ch.units}  — {ch.doc}")
    for qual, ev in d.events.items():
        print(f"event {qual:32s} {ev.severity:6s} {ev.format}")
    for qual, par in d.parameters.items():
        print(f"param {qual:32s} 0x{d.parameter_id(qual):04x}  {par.describe()}  — {par.doc}")
    for qual, prod in d.products.items():
        print(f"data  {qual:32s} {d.publisher[qual]} -> {', '.join(d.readers[qual]) or '(nobody)'}  "
              f"{' '.join(f.describe() for f in prod.fields)}")
    for name, owner in d.owners.items():
        print(f"owns  {name:32s} {owner} -> hal")
    print("\nHAL sensor frame\n" + hal.markdown_table(hal.SENSOR_FIELDS))
    print("\nHAL actuators\n" + hal.markdown_table(hal.ACTUATOR_FIELDS))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flight", description="rackflight: onboard flight software for compute satellites.",
        epilog="Start with: flight run --orbits 1 --speed max")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(sub)
    add_sim_parser(sub)
    add_dict_parser(sub)
    add_scenarios_parser(sub)
    from flight import report
    from flight.campaign import cli as campaign_cli

    report.add_parser(sub)
    campaign_cli.add_parser(sub)
    from flight.ground.cli import main as ground_cli

    ground_cli.add_parser(sub)
    ground_cli.add_keys_parser(sub)
    return parser


def _output_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (Linux ``poll(2)`` reports
    POLLERR on a pipe's write end once no reader is left)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, ValueError, OSError):
        return False
    return any(events & select.POLLERR for _, events in poller.poll(0))


def main(argv: list[str] | None = None) -> None:
    """The ``flight`` command line (``argv``: the arguments, default ``sys.argv[1:]``); exits
    with a status of :mod:`flight.exit_status`.

    SIGPIPE keeps Python's disposition (ignored): a write to a link, a Dask peer or a Yamcs
    client that has gone raises an error the command handles, where the signal's default
    action would kill a ground gateway without a word. Only standard output closed by its
    reader (``flight dict | head``) ends the command quietly, with 141 as the signal would.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sim"]:
        # the simulator by module name, as the executive starts it: flight does not import it
        os.execv(sys.executable, [sys.executable, "-m", SIMULATOR_SERVER, *argv[1:]])
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        if not _output_reader_gone():
            raise
        # what is still buffered can go nowhere; without this, the flush at exit would fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = EXIT_OUTPUT_CLOSED
    sys.exit(status)


if __name__ == "__main__":
    main()
