"""What every ``flight ground`` sub-command shares: exit codes, option types, help text
layout, the station key to sign with, the dictionary, the connection to the link (with the
ground archive), sending one TC and printing its verification stages, and output formatting.
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

from flight.exit_status import EXIT_FAILED, EXIT_OK
from flight.core.component import Command, CommandError, Dictionary
from flight.core.config import RunConfig
from flight.spacelink import keys

DEFAULT_LINK = RunConfig.link_endpoint
"""The endpoint ``flight run`` serves by default (RunConfig's default)."""
DEFAULT_TIMEOUT_S = 5.0
FMT = argparse.RawDescriptionHelpFormatter
PIPE_WIDTH = 200
"""Table width (characters) when the output is not a terminal."""


# -- options and help --------------------------------------------------------------------------
def positive_float(text: str) -> float:
    """argparse type: a number > 0. Raises argparse.ArgumentTypeError otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1. Raises argparse.ArgumentTypeError otherwise."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def para(text: str) -> str:
    """A help description wrapped to 88 columns."""
    # RawDescriptionHelpFormatter keeps the example epilogs as written but wraps nothing
    return textwrap.fill(text, 88)


# -- signing, dictionary, connection ------------------------------------------------------------
def signing_key(args: argparse.Namespace) -> keys.StationKey | None:
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


def telemetry_keys(args: argparse.Namespace) -> dict[int, keys.StationKey] | None:
    """The telemetry keys ``args`` verify TM with (``<keys>/tm/``, :mod:`flight.spacelink.tm_sdls`);
    ``None`` for --unauthenticated (a lab-mode satellite seals nothing).

    Raises:
        OSError, ValueError: there are none, or a key file is unreadable or not a key (the
            message says how to get one).
    """
    from flight.spacelink import tm_sdls

    if args.unauthenticated:
        return None
    directory = keys.keys_dir(args.keys)
    found = tm_sdls.verifying_keys(directory)
    if not found:
        raise FileNotFoundError(
            f"no telemetry key in {tm_sdls.tm_keys_dir(directory)}: start `flight run` once (it creates it), "
            "run `flight keys init --telemetry`, or copy the satellite's key file there")
    return found


def forged_warner(archived: Callable[[bytes, str], None] | None) -> Callable[[bytes, str], None]:
    """A :attr:`~flight.ground.client.LinkClient.on_forged` that prints a warning (APID,
    sequence count, why) to stderr and then calls ``archived``."""
    from flight.ground.archive import forged_warning

    def warn(packet: bytes, why: str) -> None:
        print(forged_warning(why), file=sys.stderr, flush=True)
        if archived is not None:
            archived(packet, why)
    return warn


def unread_hint(args: argparse.Namespace, client) -> str:
    """After a wait that timed out: why the answer may have been there unread (TM sealed by a
    satellite that is not in lab mode, read by a ground told --unauthenticated); "" if none."""
    if not (args.unauthenticated and client.undecodable):
        return ""
    return (f"\n{client.undecodable} TM could not be read: with --unauthenticated the ground takes TM unsealed "
            "(a lab-mode satellite, or the gateway); this satellite seals its TM, so drop --unauthenticated")


def auth_hint(args: argparse.Namespace) -> str:
    """What to check when the satellite refused a TC with AUTHENTICATION_ERROR."""
    if args.unauthenticated:
        return "the TC was unsigned (--unauthenticated): only a run with --unauthenticated-lab takes those"
    signer = args.key or f"station {args.station!r} in {keys.keys_dir(args.keys)}"
    return f"the satellite did not authenticate this TC (signed with {signer}): check --station/--key/--keys"


def load_dictionary() -> Dictionary:
    """The dictionary the satellite and this ground share."""
    from flight.core.dictionary import full_dictionary  # imports every subsystem: only when a command runs

    return full_dictionary()


def open_archive(args: argparse.Namespace, dictionary: Dictionary,
                 tm_keys: dict[int, keys.StationKey] | None = None):
    """The ground archive ``args`` name (``--archive``, else the default), verifying TM with
    ``tm_keys`` (``None``: lab mode); ``None`` after printing why it cannot be opened."""
    from flight.ground.archive import Archive, archive_path

    try:
        return Archive(archive_path(args.archive), dictionary, tm_keys)
    except (OSError, sqlite3.Error) as exc:
        print(f"cannot open the ground archive {archive_path(args.archive)}: {exc}")
        return None


def connect(args: argparse.Namespace, dictionary: Dictionary, *, sign: bool):
    """A LinkClient, signing with the key ``args`` name when ``sign`` and verifying TM with
    the telemetry keys (a forged or altered TM is archived apart and warned about on
    stderr); ``None`` after printing why there is none."""
    from flight.ground.client import LinkClient

    try:
        key = signing_key(args) if sign else None
    except (OSError, ValueError) as exc:
        print(f"cannot sign telecommands: {exc}")
        return None
    try:
        tm_keys = telemetry_keys(args)
    except (OSError, ValueError) as exc:
        print(f"cannot verify telemetry: {exc}")
        return None
    archive = open_archive(args, dictionary, tm_keys)
    if archive is None:
        return None
    try:
        client = LinkClient(args.link, dictionary, key=key, tm_keys=tm_keys, connect_timeout_s=args.timeout)
    except (OSError, ValueError) as exc:
        archive.close()
        print(f"cannot reach the link at {args.link}: {exc}")
        return None
    client.keep_in(archive)
    client.on_forged = forged_warner(client.on_forged)
    return client


def parse_arguments(cmd: Command, pairs: list[str]) -> dict[str, Any]:
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


# -- one TC and its verification --------------------------------------------------------------
def run_tc(args: argparse.Namespace, dictionary: Dictionary, service: int, subtype: int, data: bytes,
           prepare: Callable[[Any], bytes] | None = None) -> tuple[int, list]:
    """Connect, send TC[service,subtype] (``prepare(client)`` may build ``data`` once
    connected), print each verification stage; return the exit code and the reports."""
    from flight.ground.client import Rejected

    client = connect(args, dictionary, sign=True)
    if client is None:
        return EXIT_FAILED, []
    reports, final = [], None
    with client:
        try:
            if prepare is not None:
                data = prepare(client)
            print(f"TC[{service},{subtype}] -> {args.link}")
            started = time.monotonic()
            for report in client.request(service, subtype, data, args.timeout):
                if hasattr(report, "stage"):
                    detail = f": {report.code} {report.message}" if report.code else ""
                    print(f"{(time.monotonic() - started) * 1e3:8.1f} ms  {report.stage}{detail}")
                    final = report
                else:
                    reports.append(report)
        except Rejected as exc:  # the ping that reads the onboard clock for +SECONDS
            print(f"TC[17,1] refused by {args.link}: {exc}")
            if exc.report.code == "AUTHENTICATION_ERROR":
                print(auth_hint(args))
            return EXIT_FAILED, reports
        except (TimeoutError, ConnectionError) as exc:
            print(f"{'':11s}  {exc}{unread_hint(args, client)}")
            return EXIT_FAILED, reports
    if final is not None and final.code == "AUTHENTICATION_ERROR":
        print(auth_hint(args))
    return (EXIT_OK if final is not None and final.ok else EXIT_FAILED), reports


# -- formatting --------------------------------------------------------------------------------
def utc_text(utc_unix_s: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of a UTC instant given as Unix seconds."""
    return datetime.datetime.fromtimestamp(utc_unix_s, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a table (rich): terminal width on a terminal, :data:`PIPE_WIDTH` when piped."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, no_wrap=i == 0, overflow="fold")
    for row in rows:
        table.add_row(*row)
    # piped into a file or another tool, a table is data: wide rather than cut to 80 columns
    Console(width=None if sys.stdout.isatty() else PIPE_WIDTH).print(table)
