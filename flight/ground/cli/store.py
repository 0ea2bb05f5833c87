"""``flight ground`` sub-commands for stored data: ``listen`` (archive every pass), ``dump``
(retrieve a time range from the onboard stores, TC[15,9], and show it from the archive),
``store`` (packet store status, enable/disable, delete: PUS 15), ``history`` and the
``events`` listing (from the ground archive, :mod:`flight.ground.archive`)."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from typing import Any

from flight.core.component import SEVERITIES
from flight.ground.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FMT,
    connect,
    load_dictionary,
    para,
    positive_float,
    positive_int,
    print_table,
    run_tc,
    signing_key,
    telemetry_keys,
    utc_text,
)
from flight.spacelink import (
    framing,
    pus140_results as pus140,
    pus15_storage as pus15,
    pus1_verification as pus1,
    pus3_housekeeping as pus3,
    pus5_events as pus5,
    services,
)
from flight.ground.archive import Archive, archive_path, listen
from flight.spacelink.pus15_storage import STORE_BY_ID, STORE_BY_NAME

DUMP_QUIET_S = 2.0
"""``dump`` stops waiting once no stored packet arrived for this many wall seconds."""


def utc_time(text: str) -> float:
    """A UTC instant given as ISO 8601 (``2026-01-01T00:10:00``, UTC unless it says) or Unix
    seconds, as Unix seconds.

    Raises:
        argparse.ArgumentTypeError: neither.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 UTC time or Unix seconds: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def add_parsers(sub: Any, common: argparse.ArgumentParser, signing: argparse.ArgumentParser) -> None:
    """Register ``listen``, ``dump``, ``store`` and ``history`` on the ``ground`` sub-parsers."""
    both = [common, signing]
    stores = sorted(STORE_BY_NAME)
    lis = sub.add_parser(
        "listen", parents=both, formatter_class=FMT, help="stay connected across passes and archive everything",
        description=para(
            "Stay connected to the link manager and keep every TM it sends in the ground archive, "
            "acknowledging what was archived (TC[15,130]) so the satellite stops holding it; connect "
            "again whenever the link goes away. Stored packets come down on each pass in priority "
            "order: events, verification reports, housekeeping, job results. Runs until Ctrl-C or "
            "--duration."),
        epilog="examples:\n  flight ground listen\n  flight ground listen --duration 3600 --archive pass.sqlite")
    lis.add_argument("--duration", type=positive_float, metavar="S", help="stop after S wall seconds")
    lis.set_defaults(func=cmd_listen)

    dump = sub.add_parser(
        "dump", parents=both, formatter_class=FMT, help="pull stored data for a time range: TC[15,9]",
        description=para(
            "Ask the satellite to downlink again what its packet stores hold between --from and --to "
            "(TC[15,9] per store), archive what comes down, then list the archived packets of that "
            "range. With --archive-only nothing is sent: the archive is listed as it is."),
        epilog="examples:\n  flight ground dump --from 2026-01-01T00:00:00 --to 2026-01-01T01:00:00\n"
               "  flight ground dump --from 1767225600 --to 1767229200 --store events --archive-only")
    dump.add_argument("--from", dest="from_utc", type=utc_time, required=True, metavar="UTC",
                      help="start (ISO 8601 UTC or Unix seconds)")
    dump.add_argument("--to", dest="to_utc", type=utc_time, required=True, metavar="UTC", help="end, inclusive")
    dump.add_argument("--store", choices=stores, help="one packet store (default: every store)")
    dump.add_argument("--archive-only", action="store_true", help="list the archive, send nothing")
    dump.add_argument("--json", action="store_true", help="one JSON object per packet")
    dump.set_defaults(func=cmd_dump)

    store = sub.add_parser(
        "store", formatter_class=FMT, help="onboard packet stores: status, enable/disable, delete (PUS 15)",
        description=para(
            "Onboard packet stores (PUS service 15): hk, events, results, verification. Every TM the "
            "link downlinks from a store is kept there until the ground acknowledges it; retention "
            "drops the oldest of a full store and counts them."),
        epilog="examples:\n  flight ground store status\n  flight ground store disable hk\n"
               "  flight ground store delete --to 2026-01-01T00:00:00 events")
    actions = store.add_subparsers(dest="store_action", required=True, metavar="ACTION")
    status = actions.add_parser("status", parents=both, formatter_class=FMT,
                                help="each store's content and counters: TC[15,12] -> TM[15,13]")
    status.add_argument("stores", nargs="*", metavar="STORE", help=f"any of {stores} (default: all)")
    status.set_defaults(func=cmd_store_status)
    for name, subtype, what in (("enable", pus15.ENABLE_STORAGE, "store again: TC[15,1]"),
                                ("disable", pus15.DISABLE_STORAGE, "stop storing (real time only): TC[15,2]")):
        p = actions.add_parser(name, parents=both, formatter_class=FMT, help=what, description=what)
        p.add_argument("stores", nargs="+", choices=stores, metavar="STORE", help=f"any of {stores}")
        p.set_defaults(func=cmd_store_change, subtype=subtype)
    delete = actions.add_parser("delete", parents=both, formatter_class=FMT,
                                help="delete up to a time: TC[15,11]", description="delete up to a time: TC[15,11]")
    delete.add_argument("--to", dest="to_utc", type=utc_time, required=True, metavar="UTC")
    delete.add_argument("stores", nargs="+", choices=stores, metavar="STORE", help=f"any of {stores}")
    delete.set_defaults(func=cmd_store_change, subtype=pus15.DELETE_UP_TO)

    history = sub.add_parser(
        "history", parents=[common], formatter_class=FMT, help="commands sent and their verification stages",
        description=para("The telecommands sent from this ground (any `flight ground` command) "
                         "with the verification stages the satellite reported, from the archive."),
        epilog="examples:\n  flight ground history\n  flight ground history --limit 5")
    history.add_argument("--limit", type=positive_int, default=50, metavar="N", help="last N (default 50)")
    history.set_defaults(func=cmd_history)


def add_event_listing(events: argparse.ArgumentParser) -> None:
    """Make bare ``flight ground events`` list the archived events (its sub-actions are PUS 5's)."""
    events.add_argument("--severity", choices=SEVERITIES, default=SEVERITIES[0],
                        help="this severity and above (default INFO: all)")
    events.add_argument("--from", dest="from_utc", type=utc_time, metavar="UTC", help="from (ISO 8601 or Unix s)")
    events.add_argument("--to", dest="to_utc", type=utc_time, metavar="UTC", help="to, inclusive")
    events.add_argument("--limit", type=positive_int, default=100, metavar="N", help="last N (default 100)")
    events.add_argument("--archive", metavar="PATH", help="ground archive (default $RACKFLIGHT_ARCHIVE or "
                                                          "~/.local/share/rackflight/ground-archive.sqlite)")
    events.set_defaults(func=cmd_events)


def _archive(args: argparse.Namespace, dictionary, tm_keys=None) -> Archive:
    return Archive(archive_path(getattr(args, "archive", None)), dictionary, tm_keys)


def _utc(utc_unix_s: float | None) -> str:
    return "-" if utc_unix_s is None else utc_text(utc_unix_s)


# -- listen --------------------------------------------------------------------------------------
def cmd_listen(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    try:
        key = signing_key(args)
        tm_keys = telemetry_keys(args)
    except (OSError, ValueError) as exc:
        print(f"cannot listen: {exc}")
        return EXIT_FAILED
    from flight.ground.client import LinkClient

    deadline = math.inf if args.duration is None else time.monotonic() + args.duration
    with _archive(args, dictionary, tm_keys) as archive:
        print(f"archiving to {archive.path}")
        before = dict(archive.counters)
        try:
            for line in listen(lambda: LinkClient(args.link, dictionary, key=key, tm_keys=tm_keys,
                                                  connect_timeout_s=args.timeout),
                               archive, stop=lambda: time.monotonic() >= deadline):
                print(f"{utc_text(time.time())}  {line}", flush=True)
        except KeyboardInterrupt:
            pass
        archive.commit()
        got = {k: archive.counters[k] - before.get(k, 0) for k in archive.counters}
    print(f"received {got['received']} packet(s): {got['received'] - got['duplicates']} new, "
          f"{got['duplicates']} duplicate(s), {got['undecodable']} undecodable; "
          f"{got['forged']} forged or altered (refused, kept apart)")
    return EXIT_OK


# -- dump ----------------------------------------------------------------------------------------
def _describe(dictionary, packet: bytes) -> str:
    try:
        report = services.decode_tm(dictionary, packet)
    except framing.TmDecodeError as exc:
        return f"undecodable: {exc}"
    if isinstance(report, pus3.HkReport):
        return f"{report.component.name} housekeeping, {len(report.values)} channels"
    if isinstance(report, pus5.EventReport):
        return f"{report.severity} {report.name}: {report.message}"
    if isinstance(report, pus1.Verification):
        return f"request 0x{report.request_id:08x} {report.stage} {report.code or ''}".rstrip()
    if isinstance(report, pus140.JobResultReport):
        return f"job {report.job_id} {report.outcome} ({report.done_gpu_s:g} of {report.work_gpu_s:g} GPU s)"
    return type(report).__name__


def cmd_dump(args: argparse.Namespace) -> int:
    if args.from_utc > args.to_utc:
        print("--from is after --to")
        return EXIT_FAILED
    dictionary = load_dictionary()
    wanted = [STORE_BY_NAME[args.store]] if args.store else sorted(STORE_BY_ID.values(), key=lambda s: s.store_id)
    if not args.archive_only:
        client = connect(args, dictionary, sign=True)
        if client is None:
            return EXIT_FAILED
        with client:
            try:
                client.acknowledge()  # an archiving connection: the retrieved packets come to it
                for spec in wanted:
                    data = pus15.storage_data(pus15.RETRIEVE_BY_TIME_RANGE, store_ids=[spec.store_id],
                                              from_utc_unix_s=args.from_utc, to_utc_unix_s=args.to_utc)
                    final = list(client.request(pus15.STORAGE_SERVICE, pus15.RETRIEVE_BY_TIME_RANGE, data,
                                                args.timeout))[-1]
                    if not final.ok:
                        print(f"TC[15,9] {spec.name}: {final.stage} {final.code}: {final.message}")
                        return EXIT_FAILED
                    print(f"TC[15,9] {spec.name}: retrieval started")
                _drain(client)
            except (TimeoutError, ConnectionError) as exc:
                print(f"no answer from {args.link}: {exc}")
                return EXIT_FAILED
    with _archive(args, dictionary) as archive:
        rows = [r for spec in wanted for r in archive.packets(args.from_utc, args.to_utc, spec.name)]
    rows.sort(key=lambda r: r[0])
    for utc, apid, service, subtype, packet in rows:
        if args.json:
            print(json.dumps({"utc_unix_s": utc, "apid": apid, "service": service, "subtype": subtype,
                              "packet": packet.hex()}))
        else:
            print(f"{_utc(utc)}  APID {apid:3d}  TM[{service},{subtype}]  {_describe(dictionary, packet)}")
    if not args.json:
        print(f"{len(rows)} packet(s) in the archive for {_utc(args.from_utc)} .. {_utc(args.to_utc)} UTC")
    return EXIT_OK


def _drain(client) -> None:
    """Receive (into the archive) until the link is quiet, then acknowledge."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < DUMP_QUIET_S:
        if client.receive(0.1) is not None:
            quiet_since = time.monotonic()
    client.archive.commit()
    client.acknowledge()


# -- store ---------------------------------------------------------------------------------------
def cmd_store_status(args: argparse.Namespace) -> int:
    unknown = sorted(set(args.stores) - set(STORE_BY_NAME))
    if unknown:
        print(f"no packet store {', '.join(unknown)}: the stores are {', '.join(sorted(STORE_BY_NAME))}")
        return EXIT_FAILED
    ids = [STORE_BY_NAME[n].store_id for n in args.stores]
    code, reports = run_tc(args, load_dictionary(), pus15.STORAGE_SERVICE, pus15.REPORT_STORE_STATUS,
                           pus15.storage_data(pus15.REPORT_STORE_STATUS, store_ids=ids))
    for report in reports:
        if isinstance(report, pus15.StoreStatusReport):
            print_table(
                f"packet stores at {_utc(report.utc_unix_s)} UTC",
                ["store", "storing", "packets", "unacknowledged", "oldest UTC", "newest UTC", "dropped",
                 "expired", "deleted", "not stored"],
                [[STORE_BY_ID[e.store_id].name if e.store_id in STORE_BY_ID else str(e.store_id),
                  "yes" if e.enabled else "no", str(e.count), str(e.unacknowledged), _utc(e.oldest_utc_unix_s),
                  _utc(e.newest_utc_unix_s), str(e.dropped), str(e.expired), str(e.deleted), str(e.not_stored)]
                 for e in report.stores])
    return code


def cmd_store_change(args: argparse.Namespace) -> int:
    ids = [STORE_BY_NAME[n].store_id for n in args.stores]
    data = pus15.storage_data(args.subtype, store_ids=ids, to_utc_unix_s=getattr(args, "to_utc", 0.0))
    return run_tc(args, load_dictionary(), pus15.STORAGE_SERVICE, args.subtype, data)[0]


# -- from the archive ----------------------------------------------------------------------------
def cmd_history(args: argparse.Namespace) -> int:
    with _archive(args, load_dictionary()) as archive:
        commands = archive.history(args.limit)
    for c in commands:
        shown = " ".join(f"{k}={v!r}" for k, v in c.args.items())
        print(f"{_utc(c.sent_unix_s)}  0x{c.request_id:08x}  {c.name} {shown}".rstrip())
        for utc, stage, code, message in c.stages:
            detail = f": {code} {message}" if code else ""
            print(f"{'':21s}  {_utc(utc)}  {stage}{detail}")
        if not c.stages:
            print(f"{'':21s}  no verification received")
    print(f"{len(commands)} command(s)")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    with _archive(args, load_dictionary()) as archive:
        rows = archive.events(args.from_utc if args.from_utc is not None else -math.inf,
                              args.to_utc if args.to_utc is not None else math.inf, args.severity)
    rows = rows[-args.limit:]
    for utc, severity, name, message in rows:
        print(f"{_utc(utc)}  {severity:6s}  {name}: {message}")
    print(f"{len(rows)} event(s)")
    return EXIT_OK
