"""``flight ground xtce`` and ``flight ground yamcs``: the mission database for Yamcs
(:mod:`flight.ground.xtce`) and Yamcs itself as mission control (:mod:`flight.ground.yamcs`)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from flight.ground.cli.common import EXIT_FAILED, EXIT_OK, FMT, load_dictionary, para

MISSING = ("needs the yamcs extra, yamcs-pymdb and fprime-yamcs-bundle (cannot import {what}): "
           "pip install 'rackflight[yamcs]' (from a checkout: pip install -e '.[yamcs]'); "
           "Yamcs also needs Java 17 or later")


def add_parsers(sub: Any, common: argparse.ArgumentParser, signing: argparse.ArgumentParser) -> None:
    """Register ``xtce`` and ``yamcs`` on ``flight ground``'s sub-command ``sub``."""
    x = sub.add_parser(
        "xtce", formatter_class=FMT, help="the mission database for Yamcs (XTCE 1.2), from the dictionary",
        description=para(
            "Write the whole mission as XTCE 1.2 (yamcs-pymdb): CCSDS and PUS-C headers, every "
            "housekeeping structure TM[3,25] with typed, unit-bearing parameters and yellow/red limits "
            "as alarms, TM[5,x] events with typed arguments, every TC[8,1] command with range-checked "
            "arguments, TC[17,1], and command verification from TM[1,x]. Needs the yamcs extra."),
        epilog="examples:\n  flight ground xtce --out rackflight.xml\n  flight ground xtce | head")
    x.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    x.set_defaults(func=cmd_xtce)

    y = sub.add_parser(
        "yamcs", parents=[common, signing], formatter_class=FMT,
        help="Yamcs mission control in the browser, connected to the satellite through the gateway",
        description=para(
            "Generate the XTCE and a Yamcs instance, start the ground gateway (`flight ground gateway`: "
            "it signs Yamcs' TCs with the station key, and with --playback brings the stored backlog of the "
            "passes as well as real-time TM) and a Yamcs 5.12 server connected to it, and print "
            "the web UI's URL: live parameters with limits, events, commands with verification stages, "
            "alarms, the archive (kept in --data across starts; housekeeping recorded on board while nobody "
            "listened is filed at its onboard time). Ctrl-C stops both. Needs the yamcs "
            "extra and Java 17 or later."),
        epilog="examples:\n  flight run --speed realtime --contact always &\n  flight ground yamcs\n"
               "  flight ground yamcs --link 127.0.0.1:52001 --http 127.0.0.1:8090 --data ./yamcs-data")
    y.add_argument("--http", default="127.0.0.1:8090", metavar="HOST:PORT",
                   help="where Yamcs serves its web UI and API (default 127.0.0.1:8090)")
    y.add_argument("--data", metavar="DIR",
                   help="Yamcs' configuration, archive and logs, and the gateway's archive unless --archive "
                        "says otherwise (default ~/.local/share/rackflight/yamcs)")
    y.set_defaults(func=cmd_yamcs)


def cmd_xtce(args: argparse.Namespace) -> int:
    try:
        from flight.ground.xtce import MissionDatabase
    except ImportError as exc:
        print(f"flight ground xtce {MISSING.format(what=exc.name)}", file=sys.stderr)
        return EXIT_FAILED
    text = MissionDatabase(load_dictionary()).xtce()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def gateway_options(args: argparse.Namespace, data: Path) -> list[str]:
    """``flight ground gateway``'s options from ours: the link, the signing key, the archive;
    always ``--playback``, so Yamcs gets the stored backlog too, filed by its packet time."""
    out = ["--link", args.link, "--timeout", str(args.timeout), "--playback",
           "--archive", args.archive or str(data / "ground-archive.sqlite")]
    for option in ("station", "key", "keys"):
        if getattr(args, option, None):
            out += [f"--{option}", getattr(args, option)]
    if args.unauthenticated:
        out.append("--unauthenticated")
    return out


def cmd_yamcs(args: argparse.Namespace) -> int:
    try:
        from flight.ground.yamcs import MissionControl, YamcsUnavailable, default_data_dir, yamcs_jars
        yamcs_jars()
    except ImportError as exc:
        print(f"flight ground yamcs {MISSING.format(what=exc.name)}")
        return EXIT_FAILED
    except YamcsUnavailable as exc:
        print(f"flight ground yamcs: {exc}")
        return EXIT_FAILED
    data = Path(args.data).expanduser().resolve() if args.data else default_data_dir()
    control = MissionControl(data, http=args.http, gateway_args=gateway_options(args, data))
    # a service manager's stop ends it as Ctrl-C does, and Ctrl-C does even where the shell
    # that started it in the background made it ignore SIGINT
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        control.start(load_dictionary(), say=lambda line: print(line, flush=True))
        print(f"Yamcs mission control at {control.url} (instance rackflight; link {args.link} through the "
              f"gateway {control.gateway_endpoint}; archive in {data}); Ctrl-C stops", flush=True)
        while (why := control.poll()) is None:
            time.sleep(0.5)
        print(f"mission control stopped: {why}")
        return EXIT_FAILED
    except RuntimeError as exc:  # YamcsUnavailable among them
        print(f"flight ground yamcs: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("stopping Yamcs and the gateway", flush=True)
        return EXIT_OK
    finally:
        control.stop()
