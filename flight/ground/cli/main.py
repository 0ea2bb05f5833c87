"""``flight ground``: talk to the satellite over the space link, as an operator would.

    flight ground ping                                       TC[17,1] -> TM[17,2], round trip
    flight ground send thermal.set_setpoint setpoint_c=30    TC[8,1] -> TM[1,x] stages
    flight ground watch                                      TM[3,25] table + TM[5,x] events
    flight keys init [--station NAME] [--dir DIR]            a new ground-station key

``ping`` and ``send`` sign every TC with a station key (:mod:`flight.spacelink.keys`, default
the local station's, the one ``flight run`` creates). Each sub-command's ``func`` takes the
parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
import textwrap
import time
from collections import deque
from pathlib import Path
from typing import Any

from flight.core.config import RunConfig
from flight.core.component import Command, CommandError, Dictionary
from flight.spacelink import keys

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_LINK = RunConfig.link_endpoint
"""The endpoint ``flight run`` serves by default (RunConfig's default)."""
DEFAULT_TIMEOUT_S = 5.0
WATCH_EVENTS = 12
"""Most recent events shown under the housekeeping table."""
LIMIT_STYLE = {"red": "bold red", "yellow": "yellow", "ok": ""}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _para(text: str) -> str:
    # RawDescriptionHelpFormatter keeps the example epilogs as written but wraps nothing
    return textwrap.fill(text, 88)


def add_parser(subparsers: Any) -> None:
    """Register ``ground`` and its sub-commands on an argparse ``subparsers`` object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--link", default=DEFAULT_LINK, metavar="HOST:PORT",
                        help=f"where the satellite's link manager listens (default {DEFAULT_LINK})")
    common.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for the link and its answers (default {DEFAULT_TIMEOUT_S:g})")
    common.add_argument("--archive", metavar="PATH",
                        help="ground archive that keeps every packet received and TC sent (default "
                             "$RACKFLIGHT_ARCHIVE or ~/.local/share/rackflight/ground-archive.sqlite)")
    signing = argparse.ArgumentParser(add_help=False)
    signing.add_argument("--station", default=keys.LOCAL_STATION, metavar="NAME",
                         help=f"sign as this ground station (default {keys.LOCAL_STATION!r}, whose key "
                              "`flight run` creates)")
    signing.add_argument("--key", metavar="FILE", help="sign with this key file instead of --station's")
    signing.add_argument("--keys", metavar="DIR",
                         help=f"key directory (default ${keys.ENV_VAR} or ~/.config/rackflight/keys)")
    signing.add_argument("--unauthenticated", action="store_true",
                         help="send unsigned TCs (only a run with --unauthenticated-lab takes them)")
    fmt = argparse.RawDescriptionHelpFormatter

    ground = subparsers.add_parser(
        "ground", help="talk to the satellite over the space link (CCSDS/PUS-C over TCP)", formatter_class=fmt,
        description=_para(
            "Ground operator commands. They connect to the link manager over TCP and speak CCSDS "
            "Space Packets carrying ECSS PUS-C, like any PUS ground tool. The link is up only "
            "during contact (run with --contact always in the lab). Every telecommand is signed "
            "(HMAC-SHA256 and a sequence number, as CCSDS SDLS) with a ground-station key; a TC the "
            "satellite cannot authenticate is refused with AUTHENTICATION_ERROR."),
        epilog="examples:\n  flight run --speed realtime --contact always &\n  flight ground ping\n"
               "  flight ground send thermal.set_setpoint setpoint_c=30\n  flight ground watch")
    sub = ground.add_subparsers(dest="ground_command", required=True, metavar="COMMAND")

    ping = sub.add_parser(
        "ping", parents=[common, signing], formatter_class=fmt, help="are-you-alive test: TC[17,1] -> TM[17,2]",
        description=_para(
            "Send a PUS TC[17,1] are-you-alive and wait for the TM[17,2] reply; print the round "
            "trip. Exit 0 on a reply, 1 when it is refused (e.g. AUTHENTICATION_ERROR: not this "
            "satellite's key) or none comes within --timeout (no contact, no link)."),
        epilog="examples:\n  flight ground ping --link 127.0.0.1:52001 --timeout 2\n"
               "  flight ground ping --station svalbard --keys /etc/rackflight/keys")
    ping.set_defaults(func=cmd_ping)

    send = sub.add_parser(
        "send", parents=[common, signing], formatter_class=fmt, help="send a command: TC[8,1], then its verification",
        description=_para(
            "Send SUBSYSTEM.COMMAND with its KEY=VALUE arguments as a PUS TC[8,1] and print each "
            "verification stage as the satellite reports it (TM[1,x]): accepted, started, "
            "completed, or failed with its code (INVALID_OPCODE, VALIDATION_ERROR, FORMAT_ERROR, "
            "EXECUTION_ERROR, BUSY, AUTHENTICATION_ERROR). Arguments are checked on the ground first against the "
            "dictionary (see `flight dict`); a command that fails there is not sent. Exit 0 when "
            "the command completed, 1 on any failure or timeout."),
        epilog="examples:\n  flight ground send thermal.set_setpoint setpoint_c=30\n"
               "  flight ground send thermal.set_gains loop=pump kp=0.05 ki=0.002 kd=0\n"
               "  flight ground send --no-check thermal.set_setpoint setpoint_c=99   # let the satellite refuse it")
    send.add_argument("command", metavar="SUBSYSTEM.COMMAND", help="qualified command name, e.g. exec.noop")
    send.add_argument("args", nargs="*", metavar="KEY=VALUE", help="the command's arguments")
    send.add_argument("--no-check", action="store_true",
                      help="skip the ground range/choice check, so the onboard validation is exercised")
    send.set_defaults(func=cmd_send)

    watch = sub.add_parser(
        "watch", parents=[common], formatter_class=fmt, help="live housekeeping table and events",
        description=_para(
            "Show every component's housekeeping (TM[3,25]) as a live table with units, limit "
            "colours (red/yellow from the dictionary) and the age of each value in onboard "
            "seconds, plus the latest events (TM[5,x]). Runs until Ctrl-C, or until --count "
            "packets arrived (then exit 1 if they did not within --timeout)."),
        epilog="examples:\n  flight ground watch\n  flight ground watch --count 20 --timeout 30")
    watch.add_argument("--count", type=_positive_int, metavar="N",
                       help="stop after N housekeeping or event packets")
    watch.add_argument("--stale", type=_positive_float, default=30.0, metavar="S",
                       help="dim values older than S onboard seconds (default 30)")
    watch.set_defaults(func=cmd_watch)

    from flight.ground.cli import ops as ops_cli

    from flight.ground.cli import store as store_cli

    ops_cli.add_parsers(sub, common, signing)
    store_cli.add_parsers(sub, common, signing)


def add_keys_parser(subparsers: Any) -> None:
    """Register ``keys`` (``flight keys init``) on an argparse ``subparsers`` object."""
    fmt = argparse.RawDescriptionHelpFormatter
    keys_parser = subparsers.add_parser(
        "keys", help="ground-station keys that authenticate telecommands", formatter_class=fmt,
        description=_para(
            "Manage the ground-station keys telecommands are signed with (HMAC-SHA256, CCSDS SDLS "
            f"manner). Keys live in one directory: --dir, else ${keys.ENV_VAR}, else "
            "$XDG_CONFIG_HOME/rackflight/keys (~/.config/rackflight/keys). `flight run` accepts a TC "
            "signed with any key there; `flight ground` signs with one."),
        epilog="examples:\n  flight keys init\n  flight keys init --station svalbard --dir /etc/rackflight/keys")
    sub = keys_parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    init = sub.add_parser(
        "init", formatter_class=fmt, help="create a random 256-bit key for a ground station",
        description=_para(
            "Create a random 256-bit key for ground station NAME, in a file of mode 0600 with the "
            "next free Security Parameter Index (SPI), and print where. An existing key is never "
            "overwritten (exit 1)."),
        epilog="example:\n  flight keys init --station svalbard --dir ./keys")
    init.add_argument("--station", default=keys.LOCAL_STATION, metavar="NAME",
                      help=f"ground station name: letters, digits, - and _ (default {keys.LOCAL_STATION!r})")
    init.add_argument("--dir", metavar="DIR", help=f"key directory (default ${keys.ENV_VAR} or "
                                                   "~/.config/rackflight/keys)")
    init.set_defaults(func=cmd_keys_init)


def cmd_keys_init(args: argparse.Namespace) -> int:
    directory = keys.keys_dir(args.dir)
    try:
        key = keys.create_key(directory, args.station)
    except FileExistsError:
        print(f"station {args.station!r} already has a key: {keys.key_path(directory, args.station)} (kept)")
        return EXIT_FAILED
    except (OSError, ValueError) as exc:
        print(f"cannot create a key for {args.station!r} in {directory}: {exc}")
        return EXIT_FAILED
    print(f"created the key of ground station {key.station!r} (SPI {key.spi}): {keys.key_path(directory, key.station)}")
    return EXIT_OK


def _signing_key(args: argparse.Namespace) -> keys.StationKey | None:
    """The key ``args`` ask to sign with; ``None`` for --unauthenticated.

    Raises:
        OSError, ValueError: the key file is missing, unreadable or not a key (the message
            says how to get one).
    """
    if args.unauthenticated:
        return None
    if args.key:
        return keys.read_key(Path(args.key))
    directory = keys.keys_dir(args.keys)
    try:
        return keys.load_key(directory, args.station)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no key for station {args.station!r} in {directory}: start `flight run` once (it creates the "
            "local station's), run `flight keys init`, or pass --key FILE") from None


def _auth_hint(args: argparse.Namespace) -> str:
    if args.unauthenticated:
        return "the TC was unsigned (--unauthenticated): only a run with --unauthenticated-lab takes those"
    signer = args.key or f"station {args.station!r} in {keys.keys_dir(args.keys)}"
    return f"the satellite did not authenticate this TC (signed with {signer}): check --station/--key/--keys"


def _dictionary() -> Dictionary:
    from flight.executive.supervisor import full_dictionary  # imports every subsystem: only when a command runs

    return full_dictionary()


def _connect(args: argparse.Namespace, dictionary: Dictionary, *, sign: bool):
    """A LinkClient, signing with the key ``args`` name when ``sign``; ``None`` after
    printing why there is none."""
    from flight.ground.client import LinkClient

    try:
        key = _signing_key(args) if sign else None
    except (OSError, ValueError) as exc:
        print(f"cannot sign telecommands: {exc}")
        return None
    from flight.ground.archive import Archive, archive_path

    try:
        archive = Archive(archive_path(args.archive), dictionary)
    except (OSError, sqlite3.Error) as exc:
        print(f"cannot open the ground archive {archive_path(args.archive)}: {exc}")
        return None
    try:
        client = LinkClient(args.link, dictionary, key=key, connect_timeout_s=args.timeout)
    except (OSError, ValueError) as exc:
        archive.close()
        print(f"cannot reach the link at {args.link}: {exc}")
        return None
    client.keep_in(archive)
    return client


def cmd_ping(args: argparse.Namespace) -> int:
    from flight.ground.client import Rejected

    client = _connect(args, _dictionary(), sign=True)
    if client is None:
        return EXIT_FAILED
    with client:
        try:
            rtt_s = client.ping(args.timeout)
        except Rejected as exc:
            print(f"TC[17,1] refused by {args.link}: {exc}")
            if exc.report.code == "AUTHENTICATION_ERROR":
                print(_auth_hint(args))
            return EXIT_FAILED
        except (TimeoutError, ConnectionError) as exc:
            print(f"no answer from {args.link}: {exc}")
            return EXIT_FAILED
    print(f"TM[17,2] from {args.link}: {rtt_s * 1e3:.1f} ms round trip")
    return EXIT_OK


def _parse_arguments(cmd: Command, pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to typed values (ranges unchecked).

    Raises:
        CommandError: FORMAT_ERROR for a malformed pair, an unknown or repeated key, or a value
            that does not parse as its argument's type.
    """
    by_name = {a.name: a for a in cmd.args}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in by_name or key in values:
            why = "not KEY=VALUE" if not sep else "repeated" if key in values else "unknown argument"
            raise CommandError("FORMAT_ERROR", f"{pair!r}: {why}; {cmd.name} takes "
                                               f"{' '.join(a.describe() for a in cmd.args) or 'no arguments'}")
        values[key] = by_name[key].parse(text)
    return values


def cmd_send(args: argparse.Namespace) -> int:
    dictionary = _dictionary()
    cmd = dictionary.commands.get(args.command)
    try:
        if cmd is None:
            raise CommandError("INVALID_OPCODE", f"no command {args.command!r} (list them with `flight dict`)")
        values = _parse_arguments(cmd, args.args)
        if not args.no_check:
            values = dictionary.validate_command(args.command, values)
    except CommandError as exc:
        print(f"{exc.code}: {exc.message}\ncaught on the ground: nothing was sent"
              + ("" if exc.code == "INVALID_OPCODE" else " (--no-check skips the range check)"))
        return EXIT_FAILED
    client = _connect(args, dictionary, sign=True)
    if client is None:
        return EXIT_FAILED
    shown = " ".join(f"{k}={v!r}" for k, v in values.items())
    print(f"TC[8,1] {args.command} {shown}".rstrip() + f" -> {args.link}")
    started = time.monotonic()
    final = None
    with client:
        try:
            for report in client.command(args.command, values, args.timeout):
                detail = f": {report.code} {report.message}" if report.code else ""
                print(f"{(time.monotonic() - started) * 1e3:8.1f} ms  {report.stage}{detail}")
                final = report
        except CommandError as exc:
            print(f"{exc.code}: {exc.message}\ncaught on the ground: nothing was sent")
            return EXIT_FAILED
        except (TimeoutError, ConnectionError) as exc:
            print(f"{'':11s}  {exc}")
            return EXIT_FAILED
    if final is not None and final.code == "AUTHENTICATION_ERROR":
        print(_auth_hint(args))
    return EXIT_OK if final is not None and final.ok else EXIT_FAILED


# -- watch ---------------------------------------------------------------------------------
def _utc_text(utc_unix_s: float) -> str:
    return datetime.datetime.fromtimestamp(utc_unix_s, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cell(channel, value: Any) -> tuple[str, str]:
    """Text and limit state of one channel value; an array shows min/mean/max, coloured by
    its worst element (a bool array: how many are true)."""
    if isinstance(value, list):
        if not value:
            return "[]", "ok"
        if channel.type == "bool":
            return f"[{len(value)}] {sum(value)} true", "ok"
        states = {channel.limit_state(v) for v in value}
        state = "red" if "red" in states else "yellow" if "yellow" in states else "ok"
        return (f"[{len(value)}] min {min(value):.4g} mean {sum(value) / len(value):.4g} "
                f"max {max(value):.4g}", state)
    if isinstance(value, bool):
        return ("true" if value else "false"), "ok"
    if isinstance(value, (int, float)):
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        return text, channel.limit_state(value)
    return str(value), "ok"


class _WatchView:
    """What ``watch`` shows: the latest report of each component and the recent events."""

    def __init__(self, endpoint: str, stale_s: float) -> None:
        self.endpoint = endpoint
        self.stale_s = stale_s
        self.hk: dict[str, Any] = {}
        self.events: deque = deque(maxlen=WATCH_EVENTS)
        self.onboard_utc = 0.0
        self.last_rx = 0.0

    def add(self, report: Any) -> None:
        from flight.spacelink.pus import HkReport

        self.onboard_utc = max(self.onboard_utc, report.utc_unix_s)
        self.last_rx = time.monotonic()
        if isinstance(report, HkReport):
            held = self.hk.get(report.component.name)
            # a pass brings the stored backlog after real time: an older sample never hides a newer one
            if held is None or report.utc_unix_s >= held.utc_unix_s:
                self.hk[report.component.name] = report
        else:
            self.events.append(report)
            if len(self.events) > 1 and report.utc_unix_s < self.events[-2].utc_unix_s:
                self.events = deque(sorted(self.events, key=lambda e: e.utc_unix_s), maxlen=WATCH_EVENTS)

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        quiet = f"{time.monotonic() - self.last_rx:.1f} s ago" if self.last_rx else "nothing yet"
        onboard = _utc_text(self.onboard_utc) if self.onboard_utc else "-"
        table = Table(title=f"housekeeping from {self.endpoint} — onboard {onboard} UTC, last packet {quiet}",
                      title_justify="left")
        for col, justify in (("channel", "left"), ("value", "right"), ("units", "left"), ("age s", "right")):
            table.add_column(col, justify=justify)
        for name in sorted(self.hk):
            report = self.hk[name]
            age = self.onboard_utc - report.utc_unix_s
            for ch in report.component.telemetry:
                text, state = _cell(ch, report.values[ch.name])
                style = "dim" if age > self.stale_s else LIMIT_STYLE[state]
                table.add_row(f"{name}.{ch.name}", Text(text, style=LIMIT_STYLE[state]), ch.units,
                              f"{age:.0f} stale" if age > self.stale_s else f"{age:.0f}", style=style)
        severity_style = {"INFO": "", "LOW": "cyan", "MEDIUM": "yellow", "HIGH": "bold red"}
        events = Table(title="events", title_justify="left", show_header=False)
        events.add_column("time")
        events.add_column("severity")
        events.add_column("event")
        for ev in self.events:
            events.add_row(_utc_text(ev.utc_unix_s), Text(ev.severity, style=severity_style[ev.severity]),
                           f"{ev.name}: {ev.message}")
        return Group(table, events)


def cmd_watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from flight.spacelink.pus import EventReport, HkReport

    client = _connect(args, _dictionary(), sign=False)  # watch only listens: nothing to sign
    if client is None:
        return EXIT_FAILED
    view = _WatchView(args.link, args.stale)
    received = 0
    deadline = time.monotonic() + args.timeout if args.count else None
    try:
        with client, Live(view.render(), console=Console(), refresh_per_second=4) as live:
            while args.count is None or received < args.count:
                if deadline is not None and time.monotonic() > deadline:
                    live.console.print(f"only {received} of {args.count} packets within {args.timeout:g} s")
                    return EXIT_FAILED
                report = client.receive(0.25)
                if isinstance(report, (HkReport, EventReport)):
                    view.add(report)
                    received += 1
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    except ConnectionError as exc:
        print(exc)
        return EXIT_FAILED
    return EXIT_OK
