"""``flight ground gateway``: run the ground gateway (:mod:`flight.ground.gateway`) until
Ctrl-C, printing connection changes as they happen, a status line now and then, and its
counters at the end."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from flight.ground.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FMT,
    load_dictionary,
    open_archive,
    para,
    print_table,
    signing_key,
    telemetry_keys,
)
from flight.spacelink.framing import is_loopback, parse_endpoint

STATUS_INTERVAL_S = 60.0
"""Wall seconds between status lines while the gateway runs."""


def add_parser(sub: Any, common: argparse.ArgumentParser, signing: argparse.ArgumentParser) -> None:
    """Register ``gateway`` on ``flight ground``'s sub-command ``sub``."""
    p = sub.add_parser(
        "gateway", parents=[common, signing], formatter_class=FMT,
        help="front end for any PUS ground tool: signs its plain TCs, relays all TM",
        description=para(
            "Serve standard CCSDS/PUS ground tools (tmtccmd, a spacepackets script, ...) on --listen: "
            "they send plain PUS-C telecommands over TCP, framed by the Space Packet length field "
            "as the link itself frames them; the gateway adds the security header and MAC with the "
            "station key and a fresh anti-replay sequence number and forwards them to the satellite "
            "at --link. Every TM from the satellite goes to every connected tool and into the ground "
            "archive (each packet once). With --playback the gateway also acknowledges what it "
            "received (TC[15,130], as `flight ground listen` does), so the satellite sends it the "
            "stored backlog of the passes too, housekeeping and events recorded while nobody listened, "
            "each with its onboard time; it asks once a tool is connected, and relays and archives "
            "those packets like any TM (`flight ground yamcs` turns this on). Without it the "
            "gateway relays real-time TM only and the backlog waits on board for an archiving ground "
            "such as `flight ground listen`. A TC is never held for a later pass: with no connection to the link, or when "
            "the satellite does not answer the gateway's own TC[17,1] probe within 5 s (no contact), "
            "the tool gets a TM[1,2] BUSY from APID 2032 (the gateway). A tool that sends "
            "bytes that are not PUS-C TCs is disconnected; the others go on. The gateway reconnects "
            "to the link by itself across passes and restarts; Ctrl-C stops it and prints its "
            "counters. The packet layouts are in docs/icd.md."),
        epilog="examples:\n  flight ground gateway --listen 127.0.0.1:52100\n"
               "  flight ground gateway --listen 127.0.0.1:52100 --link 127.0.0.1:52001 --station svalbard\n"
               "  flight ground gateway --listen 127.0.0.1:52100 --playback   # the stored backlog too\n"
               "  flight ground --link 10.0.0.5:52001 gateway --listen 127.0.0.1:52100 --key ./svalbard.key")
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="where ground tools connect (loopback unless you mean to expose the station key's "
                        "authority to the network: see the warning it prints)")
    p.add_argument("--playback", action="store_true",
                   help="acknowledge what arrives (TC[15,130]) so the stored backlog of the passes comes through "
                        "the gateway too, once a tool is connected (default: real-time TM only; do not use it "
                        "beside `flight ground listen`, or the backlog comes down to both)")
    p.set_defaults(func=cmd_gateway)


def exposure_warning(host: str) -> str | None:
    """What listening on ``host`` exposes, or ``None`` for a loopback address."""
    if is_loopback(host):
        return None
    return (f"WARNING: listening on {host}, not loopback: anyone who can reach this port commands the "
            "satellite with this station's key: the gateway signs and forwards whatever TC arrives, and "
            "does not authenticate the tools. Keep the port behind a firewall, or listen on 127.0.0.1.")


def cmd_gateway(args: argparse.Namespace) -> int:
    from flight.ground.gateway import Gateway

    try:
        host, _ = parse_endpoint(args.listen)
    except ValueError as exc:
        print(f"cannot start the gateway: --listen {args.listen!r}: {exc}")
        return EXIT_FAILED
    try:
        key = signing_key(args)
        tm_keys = telemetry_keys(args)
    except (OSError, ValueError) as exc:
        print(f"cannot start the gateway: {exc}")
        return EXIT_FAILED
    dictionary = load_dictionary()
    archive = open_archive(args, dictionary, tm_keys)
    if archive is None:
        return EXIT_FAILED
    try:
        gateway = Gateway(args.listen, args.link, key, dictionary, archive, connect_timeout_s=args.timeout,
                          tm_keys=tm_keys, playback=args.playback)
    except (OSError, ValueError) as exc:
        archive.close()
        print(f"cannot listen on {args.listen}: {exc}")
        return EXIT_FAILED
    if (warning := exposure_warning(host)) is not None:
        print(warning)
    signer = ("unsigned (lab)" if key is None else f"signing as station {key.station!r} (SPI {key.spi})"
              + ("" if tm_keys is None else f", TM verified (SPI {', '.join(map(str, sorted(tm_keys)))}), "
                                            "relayed as plain PUS-C"))
    tm = "real-time TM and the stored backlog (playback)" if args.playback else "real-time TM"
    print(f"gateway on {gateway.endpoint} -> link {args.link}, {signer}, {tm}, archive {archive.path}; Ctrl-C stops",
          flush=True)
    started = last_status = time.monotonic()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a service manager's stop ends it as Ctrl-C does
    try:
        while True:
            for line in gateway.step(0.1):
                print(line, flush=True)
            if time.monotonic() - last_status >= STATUS_INTERVAL_S:
                last_status = time.monotonic()
                print(gateway.status(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        final = gateway.status()  # as it was when stopped, before closing disconnects everything
        gateway.close()
        archive.close()
    print(f"gateway stopped after {time.monotonic() - started:.0f} s: {final}")
    print_table("gateway counters", ["counter", "value"],
                [[name, str(value)] for name, value in gateway.counters.as_dict().items()])
    return EXIT_OK
