"""``flight ground``: talk to the satellite over the space link, as an operator would.

    flight ground ping                                       TC[17,1] -> TM[17,2], round trip
    flight ground send thermal.set_setpoint setpoint_c=30    TC[8,1] -> TM[1,x] stages
    flight ground watch                                      TM[3,25] table + TM[5,x] events
    flight ground keys upload|verify|activate|deactivate|list  the onboard key store (TC[141,x])
    flight keys init [--station NAME] [--dir DIR]            a new ground-station key
    flight keys init-kek [--name NAME] [--dir DIR]           a new key-encryption key

``ping`` and ``send`` sign every TC with a station key (:mod:`flight.spacelink.keys`, default
the local station's, the one ``flight run`` creates). Each sub-command's ``func`` takes the
parsed arguments and returns the exit code.

This module builds the ``ground`` and ``keys`` parsers and holds ``ping``, ``send``, ``keys
init`` and ``keys init-kek``; the operations services' commands are in
:mod:`flight.ground.cli.ops`, the key store's in :mod:`flight.ground.cli.keys`, the
stored-data commands in :mod:`flight.ground.cli.store`, ``watch`` in
:mod:`flight.ground.cli.watch`, and what they share in :mod:`flight.ground.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from flight.core.component import CommandError
from flight.ground.cli import gateway, keys as key_cli, ops, store, watch, yamcs
from flight.ground.cli.common import (
    DEFAULT_LINK,
    DEFAULT_TIMEOUT_S,
    EXIT_FAILED,
    EXIT_OK,
    FMT,
    auth_hint,
    connect,
    load_dictionary,
    para,
    parse_arguments,
    positive_float,
    positive_int,
    unread_hint,
)
from flight.spacelink import keys, tm_sdls


def connection_options(defaults: bool) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The option parents every connecting sub-command shares: ``common`` (``--link``,
    ``--timeout``, ``--archive``) and ``signing`` (``--station``, ``--key``, ``--keys``,
    ``--unauthenticated``). With ``defaults`` they carry their defaults (for ``flight ground``
    itself, before the verb); without, an option not given leaves no value, so one given
    before the verb stands unless the verb repeats it (``flight ground --link H:P ping``, as
    git and kubectl take global options)."""
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--link", default=default(DEFAULT_LINK), metavar="HOST:PORT",
                        help=f"where the satellite's link manager listens (default {DEFAULT_LINK})")
    common.add_argument("--timeout", type=positive_float, default=default(DEFAULT_TIMEOUT_S), metavar="S",
                        help=f"seconds to wait for the link and its answers (default {DEFAULT_TIMEOUT_S:g})")
    common.add_argument("--archive", default=default(None), metavar="PATH",
                        help="ground archive that keeps every packet received and TC sent (default "
                             "$RACKFLIGHT_ARCHIVE or ~/.local/share/rackflight/ground-archive.sqlite)")
    signing = argparse.ArgumentParser(add_help=False)
    signing.add_argument("--station", default=default(keys.LOCAL_STATION), metavar="NAME",
                         help=f"sign as this ground station (default {keys.LOCAL_STATION!r}, whose key "
                              "`flight run` creates)")
    signing.add_argument("--key", default=default(None), metavar="FILE",
                         help="sign with this key file instead of --station's")
    signing.add_argument("--keys", default=default(None), metavar="DIR",
                         help=f"key directory (default ${keys.ENV_VAR} or ~/.config/rackflight/keys)")
    signing.add_argument("--unauthenticated", action="store_true", default=default(False),
                         help="send unsigned TCs (only a run with --unauthenticated-lab takes them)")
    return common, signing


def add_parser(subparsers: Any) -> None:
    """Register ``ground`` and its sub-commands on an argparse ``subparsers`` object."""
    common, signing = connection_options(defaults=False)
    ground = subparsers.add_parser(
        "ground", parents=list(connection_options(defaults=True)), formatter_class=FMT,
        help="talk to the satellite over the space link (CCSDS/PUS-C over TCP)",
        description=para(
            "Ground operator commands. They connect to the link manager over TCP and speak CCSDS "
            "Space Packets carrying ECSS PUS-C, like any PUS ground tool. The link is up only "
            "during contact (run with --contact always in the lab). Every telecommand is signed "
            "(HMAC-SHA256 and a sequence number, as CCSDS SDLS) with a ground-station key; a TC the "
            "satellite cannot authenticate is refused with AUTHENTICATION_ERROR. The connection options "
            "go before the sub-command or after it."),
        epilog="examples:\n  flight run --speed realtime --contact always &\n  flight ground ping\n"
               "  flight ground --link 127.0.0.1:52001 --timeout 2 ping\n"
               "  flight ground send thermal.set_setpoint setpoint_c=30\n  flight ground watch")
    sub = ground.add_subparsers(dest="ground_command", required=True, metavar="COMMAND")

    ping = sub.add_parser(
        "ping", parents=[common, signing], formatter_class=FMT, help="are-you-alive test: TC[17,1] -> TM[17,2]",
        description=para(
            "Send a PUS TC[17,1] are-you-alive and wait for the TM[17,2] reply; print the round "
            "trip. Exit 0 on a reply, 1 when it is refused (e.g. AUTHENTICATION_ERROR: not this "
            "satellite's key) or none comes within --timeout (no contact, no link)."),
        epilog="examples:\n  flight ground ping --link 127.0.0.1:52001 --timeout 2\n"
               "  flight ground ping --station svalbard --keys /etc/rackflight/keys")
    ping.set_defaults(func=cmd_ping)

    send = sub.add_parser(
        "send", parents=[common, signing], formatter_class=FMT, help="send a command: TC[8,1], then its verification",
        description=para(
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

    watching = sub.add_parser(
        "watch", parents=[common], formatter_class=FMT, help="live housekeeping table and events",
        description=para(
            "Show every component's housekeeping (TM[3,25]) as a live table with units, limit "
            "colours (red/yellow from the dictionary) and the age of each value in onboard "
            "seconds, plus the latest events (TM[5,x]). Runs until Ctrl-C, or until --count "
            "packets arrived (then exit 1 if they did not within --timeout)."),
        epilog="examples:\n  flight ground watch\n  flight ground watch --count 20 --timeout 30")
    watching.add_argument("--count", type=positive_int, metavar="N",
                          help="stop after N housekeeping or event packets")
    watching.add_argument("--stale", type=positive_float, default=30.0, metavar="S",
                          help="dim values older than S onboard seconds (default 30)")
    watching.set_defaults(func=watch.cmd_watch)

    events = ops.add_parsers(sub, common, signing)
    store.add_event_listing(events)
    store.add_parsers(sub, common, signing)
    gateway.add_parser(sub, common, signing)
    key_cli.add_parser(sub, common, signing)
    yamcs.add_parsers(sub, common, signing)


def add_keys_parser(subparsers: Any) -> None:
    """Register ``keys`` (``flight keys init``) on an argparse ``subparsers`` object."""
    keys_parser = subparsers.add_parser(
        "keys", help="ground-station keys that authenticate telecommands", formatter_class=FMT,
        description=para(
            "Manage the ground-station keys telecommands are signed with (HMAC-SHA256, CCSDS SDLS "
            f"manner). Keys live in one directory: --dir, else ${keys.ENV_VAR}, else "
            "$XDG_CONFIG_HOME/rackflight/keys (~/.config/rackflight/keys). The first `flight run` of a "
            "mission takes every key there into its onboard key store, active; after that keys change "
            "on board only by telecommand (`flight ground keys`), wrapped under a key-encryption key "
            "(*.kek, also there). `flight ground` signs with one key. The telemetry key, in its "
            f"subdirectory {tm_sdls.TM_KEYS_SUBDIR}/, seals every TM (`flight ground` verifies with it)."),
        epilog="examples:\n  flight keys init\n  flight keys init --station svalbard --dir /etc/rackflight/keys\n"
               "  flight keys init-kek --name backup\n  flight keys init --telemetry")
    sub = keys_parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    for verb, what, detail, option, default, example, func in (
            ("init", "a random 256-bit key for a ground station",
             "Create a random 256-bit key for ground station NAME, in a file of mode 0600 with the next free "
             "Security Parameter Index (SPI), and print where.", "--station", keys.LOCAL_STATION,
             "flight keys init --station svalbard --dir ./keys", cmd_keys_init),
            ("init-kek", "a random 256-bit key-encryption key",
             "Create a random 256-bit AES key-encryption key NAME (the master key of SDLS OTAR) in a file "
             "NAME.kek of mode 0600 with the next free id, and print where. The satellite loads every *.kek "
             "of its key directory at start and unwraps keys uploaded by `flight ground keys upload --kek "
             "NAME` with it; `flight run` creates 'master' when there is none.", "--name", keys.LOCAL_KEK,
             "flight keys init-kek --name backup --dir ./keys", cmd_keys_init_kek)):
        parser = sub.add_parser(verb, formatter_class=FMT, help=f"create {what}",
                                description=para(f"{detail} An existing one is never overwritten (exit 1)."),
                                epilog=f"example:\n  {example}")
        parser.add_argument(option, default=default, metavar="NAME",
                            help=f"its name: letters, digits, - and _ (default {default!r})")
        parser.add_argument("--dir", metavar="DIR", help=f"key directory (default ${keys.ENV_VAR} or "
                                                         "~/.config/rackflight/keys)")
        parser.set_defaults(func=func)
        if verb == "init":
            parser.add_argument("--telemetry", action="store_true",
                                help=f"create the telemetry key instead (DIR/{tm_sdls.TM_KEYS_SUBDIR}/"
                                     f"{tm_sdls.TM_KEY_NAME}{keys.SUFFIX}): the satellite seals every TM with it, "
                                     "the ground verifies with it; copy it to every ground that reads TM")


def _create(directory_arg: str | os.PathLike | None, name: str, suffix: str, what: str, ident: str) -> int:
    """Create the key file ``name + suffix`` (``what``: "key" or "key-encryption key") and
    print where, with its ``ident`` ("SPI" or "id"); exit 1 if it exists or cannot be made."""
    directory = keys.keys_dir(directory_arg)
    try:
        path = keys.key_path(directory, name, suffix)
        created = keys.create_key(directory, name) if suffix == keys.SUFFIX else keys.create_kek(directory, name)
    except FileExistsError:
        print(f"{name!r} already has a {what}: {path} (kept)")
        return EXIT_FAILED
    except (OSError, ValueError) as exc:
        print(f"cannot create a {what} for {name!r} in {directory}: {exc}")
        return EXIT_FAILED
    number = created.spi if suffix == keys.SUFFIX else created.kek_id
    print(f"created the {what} of {name!r} ({ident} {number}): {path}")
    return EXIT_OK


def cmd_keys_init(args: argparse.Namespace) -> int:
    if args.telemetry:
        return _create(tm_sdls.tm_keys_dir(keys.keys_dir(args.dir)), tm_sdls.TM_KEY_NAME, keys.SUFFIX,
                       "telemetry key", "SPI")
    return _create(args.dir, args.station, keys.SUFFIX, "key", "SPI")


def cmd_keys_init_kek(args: argparse.Namespace) -> int:
    return _create(args.dir, args.name, keys.KEK_SUFFIX, "key-encryption key", "id")


def cmd_ping(args: argparse.Namespace) -> int:
    from flight.ground.client import Rejected

    client = connect(args, load_dictionary(), sign=True)
    if client is None:
        return EXIT_FAILED
    with client:
        try:
            rtt_s = client.ping(args.timeout)
        except Rejected as exc:
            print(f"TC[17,1] refused by {args.link}: {exc}")
            if exc.report.code == "AUTHENTICATION_ERROR":
                print(auth_hint(args))
            return EXIT_FAILED
        except (TimeoutError, ConnectionError) as exc:
            print(f"no answer from {args.link}: {exc}{unread_hint(args, client)}")
            return EXIT_FAILED
    print(f"TM[17,2] from {args.link}: {rtt_s * 1e3:.1f} ms round trip")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    cmd = dictionary.commands.get(args.command)
    try:
        if cmd is None:
            raise CommandError("INVALID_OPCODE", f"no command {args.command!r} (list them with `flight dict`)")
        values = parse_arguments(cmd, args.args)
        if not args.no_check:
            values = dictionary.validate_command(args.command, values)
    except CommandError as exc:
        print(f"{exc.code}: {exc.message}\ncaught on the ground: nothing was sent"
              + ("" if exc.code == "INVALID_OPCODE" else " (--no-check skips the range check)"))
        return EXIT_FAILED
    client = connect(args, dictionary, sign=True)
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
            print(f"{'':11s}  {exc}{unread_hint(args, client)}")
            return EXIT_FAILED
    if final is not None and final.code == "AUTHENTICATION_ERROR":
        print(auth_hint(args))
    return EXIT_OK if final is not None and final.ok else EXIT_FAILED
