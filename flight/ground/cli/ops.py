"""``flight ground`` sub-commands of the operations services (PUS 3, 5, 11, 20: :mod:`flight.spacelink`):

    flight ground schedule add +600 thermal.set_setpoint setpoint_c=30   TC[11,4]
    flight ground schedule list | delete ID... | enable | disable | reset TC[11,16/5/1/2/3]
    flight ground params get [NAME...] | set NAME VALUE                  TC[20,1] / TC[20,3]
    flight ground events enable|disable EVENT... | events disabled       TC[5,5/6/7]
    flight ground hk list | enable|disable COMPONENT... | interval ...    TC[3,9/5/6/31]
    flight ground dict [--json]                                          the dictionary, as tables

Each prints the verification stages as ``send`` does (accepted, started, completed, or
failed with its code) and the reports the TC asked for; exit 0 only when it completed.
Names are checked against the dictionary on the ground first; nothing is sent for one it
does not know.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from flight.core.component import CommandError, Dictionary
from flight.ground.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FMT,
    load_dictionary,
    para,
    parse_arguments,
    positive_float,
    print_table,
    run_tc,
    utc_text,
)
from flight.spacelink import (
    pus11_scheduling as pus11,
    pus20_parameters as pus20,
    pus3_housekeeping as pus3,
    pus5_events as pus5,
)


def _when(text: str) -> tuple[str, float]:
    """``+SECONDS`` (from onboard now) or an absolute UTC time (ISO 8601, e.g.
    ``2026-01-01T01:30:00Z``), as ``("+", seconds)`` or ``("@", unix seconds)``."""
    if text.startswith("+"):
        try:
            seconds = float(text[1:])
        except ValueError:
            raise argparse.ArgumentTypeError(f"not +SECONDS: {text!r}") from None
        if not seconds > 0:
            raise argparse.ArgumentTypeError(f"+SECONDS must be > 0, got {text!r}")
        return "+", seconds
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not +SECONDS or an ISO 8601 UTC time: {text!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return "@", stamp.timestamp()


def _request_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a request id (decimal or 0x hex): {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"request id {text} outside 32 bits")
    return value


def add_parsers(sub: Any, common: argparse.ArgumentParser,
                signing: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``schedule``, ``params``, ``events``, ``hk`` and ``dict`` on ``flight ground``'s
    sub-command ``sub``; ``common`` and ``signing`` are its shared option parents. Returns the
    ``events`` parser, whose bare form (no action) lists the archive: the caller adds that."""
    both = [common, signing]
    schedule = sub.add_parser(
        "schedule", formatter_class=FMT, help="time-tagged commands run on board at their time (PUS 11)",
        description=para(
            "The onboard time-based schedule (PUS service 11). A scheduled command runs on board at "
            "its onboard time, with or without contact, through the normal command path; its "
            "verification reports are stored on board and come down on the next pass. The schedule "
            "is durable: it survives a restart of the link and of the whole stack. Each scheduled "
            "command is signed like one sent at once and is checked against the dictionary when it "
            "is inserted."),
        epilog="examples:\n  flight ground schedule add +600 thermal.set_setpoint setpoint_c=30\n"
               "  flight ground schedule add 2026-01-01T01:30:00Z power.set_soc_floor soc_floor=0.6\n"
               "  flight ground schedule list\n  flight ground schedule delete 0x18041234\n"
               "  flight ground schedule disable      # hold every activity; enable releases the overdue ones")
    actions = schedule.add_subparsers(dest="schedule_action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", parents=both, formatter_class=FMT, help="insert a command at an onboard time: TC[11,4]",
        description=para(
            "Insert SUBSYSTEM.COMMAND KEY=VALUE... to run at TIME: +SECONDS from onboard now (read "
            "from the satellite's clock by a ping first) or an absolute UTC time in ISO 8601. The "
            "command's arguments are checked on the ground, then on board at insertion; the "
            "request id printed names the activity for `schedule delete`."),
        epilog="examples:\n  flight ground schedule add +3600 jobs.unfence gpu=5\n"
               "  flight ground schedule add +600 thermal.set_parameter name=setpoint_c value=30   # a parameter")
    add.add_argument("time", type=_when, metavar="TIME", help="+SECONDS from onboard now, or ISO 8601 UTC")
    add.add_argument("command", metavar="SUBSYSTEM.COMMAND", help="qualified command name")
    add.add_argument("args", nargs="*", metavar="KEY=VALUE", help="the command's arguments")
    add.add_argument("--no-check", action="store_true", help="skip the ground range/choice check")
    add.set_defaults(func=cmd_schedule_add)
    for name, subtype, what in (("list", pus11.SCHEDULE_REPORT_ALL, "list the activities: TC[11,16] -> TM[11,10]"),
                                ("enable", pus11.SCHEDULE_ENABLE, "release activities at their time: TC[11,1]"),
                                ("disable", pus11.SCHEDULE_DISABLE, "hold every activity: TC[11,2]"),
                                ("reset", pus11.SCHEDULE_RESET, "delete every activity: TC[11,3]")):
        p = actions.add_parser(name, parents=both, formatter_class=FMT, help=what, description=what)
        p.set_defaults(func=cmd_schedule_simple, subtype=subtype)
    delete = actions.add_parser("delete", parents=both, formatter_class=FMT,
                                help="delete activities by request id: TC[11,5]",
                                description="Delete the activities with these request ids (from `schedule list`); "
                                            "all or none.")
    delete.add_argument("ids", nargs="+", type=_request_id, metavar="ID", help="request id, decimal or 0x hex")
    delete.set_defaults(func=cmd_schedule_delete)

    params = sub.add_parser(
        "params", formatter_class=FMT, help="read and set onboard parameters (PUS 20)",
        description=para(
            "Onboard parameters (PUS service 20), declared in the dictionary next to their owner with "
            "type, unit, range and default (`flight ground dict`). A set is checked against that "
            "declaration on the ground and again on board (out of range: VALIDATION_ERROR, nothing "
            "changes), applied by the owner and persisted, so it survives a restart."),
        epilog="examples:\n  flight ground params get\n  flight ground params get thermal.setpoint_c\n"
               "  flight ground params set power.soc_floor 0.6")
    pactions = params.add_subparsers(dest="params_action", required=True, metavar="ACTION")
    get = pactions.add_parser("get", parents=both, formatter_class=FMT, help="report values: TC[20,1] -> TM[20,2]",
                              description="Report the values of NAME... (every parameter when none is named).")
    get.add_argument("names", nargs="*", metavar="NAME", help="qualified parameter name, e.g. thermal.setpoint_c")
    get.set_defaults(func=cmd_params_get)
    pset = pactions.add_parser("set", parents=both, formatter_class=FMT, help="set one value: TC[20,3]",
                               description="Set parameter NAME to VALUE and print the verification stages.")
    pset.add_argument("name", metavar="NAME")
    pset.add_argument("value", metavar="VALUE")
    pset.add_argument("--no-check", action="store_true", help="skip the ground range check")
    pset.set_defaults(func=cmd_params_set)

    events = sub.add_parser(
        "events", formatter_class=FMT, help="events received (ground archive); enable/disable per event id (PUS 5)",
        description=para(
            "Without an action: the events the ground archive holds (filters below). With one, event "
            "reporting on board (PUS service 5): `enable`/`disable` switch the generation of TM[5,x] "
            "for the named events (qualified names or 0x ids; the events are still recorded on "
            "board); `disabled` lists the ones switched off."),
        epilog="examples:\n  flight ground events disable link.client_connected link.client_disconnected\n"
               "  flight ground events disabled\n  flight ground events enable 0x0402")
    eactions = events.add_subparsers(dest="events_action", metavar="ACTION")
    for name, subtype, what in (("enable", pus5.EVENT_ENABLE, "generate TM[5,x] for these events: TC[5,5]"),
                                ("disable", pus5.EVENT_DISABLE, "stop TM[5,x] for these events: TC[5,6]")):
        p = eactions.add_parser(name, parents=both, formatter_class=FMT, help=what, description=what)
        p.add_argument("events", nargs="+", metavar="EVENT", help="qualified event name or id (0x0402)")
        p.set_defaults(func=cmd_events_switch, subtype=subtype)
    disabled = eactions.add_parser("disabled", parents=both, formatter_class=FMT,
                                   help="list the disabled events: TC[5,7] -> TM[5,8]",
                                   description="List the events whose TM[5,x] generation is off.")
    disabled.set_defaults(func=cmd_events_disabled)

    hk = sub.add_parser(
        "hk", formatter_class=FMT, help="housekeeping report structures, on/off and interval (PUS 3)",
        description=para(
            "Housekeeping (PUS service 3): one report structure per component (structure id = "
            "component id; its channels are the component's declared telemetry). `list` shows each "
            "with its state and collection interval, `enable`/`disable` switch its periodic TM[3,25], "
            "`interval` gives it its own collection interval (1..3600 s)."),
        epilog="examples:\n  flight ground hk list\n  flight ground hk disable jobs\n"
               "  flight ground hk interval thermal 30")
    hactions = hk.add_subparsers(dest="hk_action", required=True, metavar="ACTION")
    hlist = hactions.add_parser("list", parents=both, formatter_class=FMT, help="TC[3,9] -> TM[3,10]",
                                description="Show the report structures of COMPONENT... (all when none named).")
    hlist.add_argument("components", nargs="*", metavar="COMPONENT")
    hlist.set_defaults(func=cmd_hk_structures)
    for name, subtype, what in (("enable", pus3.HK_ENABLE, "periodic TM[3,25] on: TC[3,5]"),
                                ("disable", pus3.HK_DISABLE, "periodic TM[3,25] off: TC[3,6]")):
        p = hactions.add_parser(name, parents=both, formatter_class=FMT, help=what, description=what)
        p.add_argument("components", nargs="+", metavar="COMPONENT")
        p.set_defaults(func=cmd_hk_switch, subtype=subtype)
    interval = hactions.add_parser("interval", parents=both, formatter_class=FMT,
                                   help="collection interval of a structure: TC[3,31]",
                                   description="Set COMPONENT's housekeeping collection interval to SECONDS.")
    interval.add_argument("component", metavar="COMPONENT")
    interval.add_argument("seconds", type=positive_float, metavar="SECONDS")
    interval.set_defaults(func=cmd_hk_interval)

    dictionary = sub.add_parser(
        "dict", formatter_class=FMT, help="the dictionary as tables: commands, telemetry, events, parameters",
        description=para(
            "Print the dictionary the satellite and this ground share: commands with their "
            "arguments' types, ranges and units; telemetry channels with units and yellow/red limits; "
            "events with their severities; parameters with type, range and default. Offline: "
            "nothing is sent."),
        epilog="examples:\n  flight ground dict\n  flight ground dict --json | jq '.components.thermal'")
    dictionary.add_argument("--json", action="store_true", help="machine-readable JSON")
    dictionary.set_defaults(func=cmd_dict)
    return events


def _caught(exc: CommandError) -> int:
    print(f"{exc.code}: {exc.message}\ncaught on the ground: nothing was sent")
    return EXIT_FAILED


# -- schedule ------------------------------------------------------------------------------------
def cmd_schedule_add(args: argparse.Namespace) -> int:
    from flight.spacelink.framing import request_id

    dictionary = load_dictionary()
    cmd = dictionary.commands.get(args.command)
    try:
        if cmd is None:
            raise CommandError("INVALID_OPCODE", f"no command {args.command!r} (list them with `flight ground dict`)")
        values = parse_arguments(cmd, args.args)
        if not args.no_check:
            values = dictionary.validate_command(args.command, values)
    except CommandError as exc:
        return _caught(exc)
    kind, when = args.time

    def prepare(client) -> bytes:
        release = client.onboard_utc(args.timeout) + when if kind == "+" else when
        inner = client.signed(client.function(args.command, values))
        print(f"at {utc_text(release)} UTC: {pus11.summarize_tc(dictionary, inner)} "
              f"(request id 0x{request_id(inner):08x})")
        return pus11.insert_data([(release, bytes(inner.pack()))])

    return run_tc(args, dictionary, pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT, b"", prepare)[0]


def cmd_schedule_simple(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    code, reports = run_tc(args, dictionary, pus11.SCHEDULE_SERVICE, args.subtype, b"")
    activities = [a for r in reports if isinstance(r, pus11.ScheduleReport) for a in r.activities]
    if args.subtype == pus11.SCHEDULE_REPORT_ALL and code == EXIT_OK:
        print_table(f"{len(activities)} scheduled", ["release (UTC)", "request id", "TC", "does"],
                    [[utc_text(a.release_utc_s), f"0x{a.request_id:08x}", f"[{a.service},{a.subtype}]", a.summary]
                     for a in activities])
    return code


def cmd_schedule_delete(args: argparse.Namespace) -> int:
    return run_tc(args, load_dictionary(), pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DELETE,
                  pus11.request_id_data(args.ids))[0]


# -- parameters ------------------------------------------------------------------------------------
def _parameter(dictionary: Dictionary, name: str):
    par = dictionary.parameters.get(name)
    if par is None:
        raise CommandError("VALIDATION_ERROR", f"no parameter {name!r} (list them with `flight ground dict`)")
    return par


def cmd_params_get(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    names = args.names or list(dictionary.parameters)
    try:
        for name in names:
            _parameter(dictionary, name)
    except CommandError as exc:
        return _caught(exc)
    ids = [dictionary.parameter_id(n) for n in names]
    code, reports = run_tc(args, dictionary, pus20.PARAMETER_SERVICE, pus20.PARAMETER_REPORT_VALUES,
                           pus20.parameter_ids_data(ids))
    values = {n: v for r in reports if isinstance(r, pus20.ParameterReport) for n, v in r.values.items()}
    if values:
        print_table("parameters", ["parameter", "value", "units", "declared"],
                    [[n, repr(v), dictionary.parameters[n].units, dictionary.parameters[n].describe()]
                     for n, v in values.items()])
    return code


def cmd_params_set(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    try:
        par = _parameter(dictionary, args.name)
        value = par.as_arg().parse(args.value)
        if not args.no_check:
            value = par.validate(value)
        data = pus20.set_parameter_data(dictionary, args.name, value)
    except CommandError as exc:
        return _caught(exc)
    except ValueError as exc:
        return _caught(CommandError("FORMAT_ERROR", str(exc)))
    print(f"{args.name} = {value!r} {par.units}".rstrip())
    return run_tc(args, dictionary, pus20.PARAMETER_SERVICE, pus20.PARAMETER_SET, data)[0]


# -- events and housekeeping -------------------------------------------------------------------------
def _event_ids(dictionary: Dictionary, names: list[str]) -> list[int]:
    ids = []
    for name in names:
        if name in dictionary.events:
            ids.append(dictionary.event_id(name))
            continue
        try:
            event_id = int(name, 0)
        except ValueError:
            event_id = None
        if event_id not in dictionary.event_ids:
            raise CommandError("VALIDATION_ERROR", f"no event {name!r} (list them with `flight ground dict`)")
        ids.append(event_id)
    return ids


def cmd_events_switch(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    try:
        ids = _event_ids(dictionary, args.events)
    except CommandError as exc:
        return _caught(exc)
    return run_tc(args, dictionary, pus5.EVENT_SERVICE, args.subtype, pus5.event_list_data(ids))[0]


def cmd_events_disabled(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    code, reports = run_tc(args, dictionary, pus5.EVENT_SERVICE, pus5.EVENT_REPORT_DISABLED, b"")
    for report in reports:
        if isinstance(report, pus5.DisabledEventsReport):
            print(f"{len(report.events)} event(s) with TM[5,x] off" + "".join(f"\n  {e}" for e in report.events))
    return code


def _sids(dictionary: Dictionary, names: list[str]) -> list[int]:
    sids = []
    for name in names:
        component = dictionary.components.get(name)
        if component is None or not component.telemetry:
            raise CommandError("VALIDATION_ERROR", f"no housekeeping structure {name!r} "
                                                   f"(components: {', '.join(dictionary.components)})")
        sids.append(component.component_id)
    return sids


def cmd_hk_structures(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    try:
        sids = _sids(dictionary, args.components)
    except CommandError as exc:
        return _caught(exc)
    code, reports = run_tc(args, dictionary, pus3.HK_SERVICE, pus3.HK_REPORT_STRUCTURES, pus3.sid_list_data(sids))
    structures = [r for r in reports if isinstance(r, pus3.HkStructureReport)]
    if structures:
        print_table("housekeeping structures", ["sid", "component", "TM[3,25]", "interval s", "channels"],
                    [[str(r.component.component_id), r.component.name, "on" if r.enabled else "off",
                      f"{r.interval_s:g}", str(len(r.channels))] for r in structures])
    return code


def cmd_hk_switch(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    try:
        sids = _sids(dictionary, args.components)
    except CommandError as exc:
        return _caught(exc)
    return run_tc(args, dictionary, pus3.HK_SERVICE, args.subtype, pus3.sid_list_data(sids))[0]


def cmd_hk_interval(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    try:
        (sid,) = _sids(dictionary, [args.component])
    except CommandError as exc:
        return _caught(exc)
    return run_tc(args, dictionary, pus3.HK_SERVICE, pus3.HK_MODIFY_INTERVAL,
                  pus3.interval_data({sid: args.seconds}))[0]


# -- dictionary ------------------------------------------------------------------------------------
def _range(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"{lo:g} .. {hi:g}"


def _limits(pair: tuple[float, float] | None) -> str:
    return "" if pair is None else f"{pair[0]:g} .. {pair[1]:g}"


def cmd_dict(args: argparse.Namespace) -> int:
    dictionary = load_dictionary()
    if args.json:
        print(json.dumps(dictionary.to_json(), indent=2))
        return EXIT_OK
    print_table("commands (TC[8,1])", ["command", "opcode", "arguments", "doc"], [
        [q, f"0x{dictionary.opcode(q):04x}", "\n".join(a.describe() for a in c.args), c.doc]
        for q, c in dictionary.commands.items()])
    print_table("telemetry (TM[3,25])", ["channel", "type", "units", "yellow", "red", "doc"], [
        [q, f"{c.type}[{c.size}]" if c.size else c.type, c.units, _limits(c.yellow), _limits(c.red), c.doc]
        for q, c in dictionary.channels.items()])
    print_table("events (TM[5,x])", ["event", "id", "severity", "format"], [
        [q, f"0x{dictionary.event_id(q):04x}", e.severity, e.format] for q, e in dictionary.events.items()])
    print_table("parameters (PUS 20)", ["parameter", "id", "type", "units", "range", "default", "doc"], [
        [q, f"0x{dictionary.parameter_id(q):04x}", p.type, p.units,
         "" if p.type == "bool" else _range(p.lo, p.hi), str(p.default), p.doc]
        for q, p in dictionary.parameters.items()])
    return EXIT_OK
