"""The dictionary: argument validation codes, unique opcodes, the JSON export, typed event arguments
(checked against the format at declaration and against the payload at emit time)."""

import math
import string

import numpy as np
import pytest

from flight.core.component import (STRICT_EVENTS_ENV, Arg, Command, CommandError, Component, Dictionary, Event,
                                   EventArg, EventArgError)
from flight.core.dictionary import full_dictionary

SETPOINT = Command("set_setpoint", 1, (Arg("setpoint_c", "float", "degC", 15, 45),))


def code_of(fn, *args):
    with pytest.raises(CommandError) as info:
        fn(*args)
    return info.value.code


def test_valid_arguments_are_converted():
    assert SETPOINT.validate({"setpoint_c": 30}) == {"setpoint_c": 30.0}


@pytest.mark.parametrize("args, code", [
    ({"setpoint_c": 46.0}, "VALIDATION_ERROR"),
    ({"setpoint_c": math.nan}, "VALIDATION_ERROR"),
    ({"setpoint_c": "30"}, "FORMAT_ERROR"),
    ({"setpoint_c": True}, "FORMAT_ERROR"),
    ({}, "FORMAT_ERROR"),
    ({"setpoint_c": 30.0, "extra": 1}, "FORMAT_ERROR"),
    ([30.0], "FORMAT_ERROR"),
])
def test_bad_arguments_fail_with_the_right_code(args, code):
    assert code_of(SETPOINT.validate, args) == code


def test_int_str_and_bool_arguments():
    cmd = Command("c", 1, (Arg("n", "int", lo=1, hi=4), Arg("mode", "str", choices=("A", "B")), Arg("on", "bool")))
    assert cmd.validate({"n": 2.0, "mode": "A", "on": False}) == {"n": 2, "mode": "A", "on": False}
    assert code_of(cmd.validate, {"n": 2.5, "mode": "A", "on": False}) == "FORMAT_ERROR"
    assert code_of(cmd.validate, {"n": 2, "mode": "C", "on": False}) == "VALIDATION_ERROR"
    assert code_of(cmd.validate, {"n": 2, "mode": "A", "on": 1}) == "FORMAT_ERROR"
    assert Arg("on", "bool").parse("true") is True
    assert code_of(Arg("x", "float").parse, "abc") == "FORMAT_ERROR"


def test_unknown_command_is_an_invalid_opcode():
    d = Dictionary([Component("thermal", 3, (SETPOINT,))])
    assert code_of(d.validate_command, "thermal.nope", {}) == "INVALID_OPCODE"
    assert d.opcode("thermal.set_setpoint") == 0x0301


def test_declarations_reject_duplicates_and_bad_severity():
    with pytest.raises(ValueError):
        Component("x", 1, (SETPOINT, SETPOINT))
    with pytest.raises(ValueError):
        Event("e", 1, "SEVERE", "x")
    with pytest.raises(ValueError):
        Dictionary([Component("a", 1), Component("b", 1)])


def test_the_flight_dictionary_is_consistent():
    d = full_dictionary()
    assert {"exec", "hal", "power", "thermal", "jobs", "link"} <= set(d.components)
    assert len(d.opcodes) == len(d.commands)
    assert "thermal.set_setpoint" in d.commands and "power.hk" not in d.commands
    out = d.to_json()
    cmd = next(c for c in out["components"]["thermal"]["commands"] if c["name"] == "thermal.set_setpoint")
    assert cmd["args"][0]["min"] == 15.0 and cmd["args"][0]["units"] == "degC"
    for comp in out["components"].values():
        assert all(e["severity"] in ("INFO", "LOW", "MEDIUM", "HIGH") for e in comp["events"])


FAULT = Event("fault_injected", 7, "MEDIUM", "FAULT {fault} value={value:g} for {duration_s:g} s",
              args=(EventArg("fault", "str"), EventArg("value", "float"), EventArg("duration_s", "float", "s"),
                    EventArg("gpu", "int")))
RIG = Component("hal", 2, events=(FAULT,))


@pytest.mark.parametrize("fmt, args, why", [
    ("{fault} at {gpu}", (EventArg("fault", "str"),), "KeyError 'gpu'"),  # format names an undeclared arg
    ("GPU {gpu:.1f}", (EventArg("gpu", "str"),), "ValueError"),  # a float format of a string
    ("0x{id:08x}", (EventArg("id", "float"),), "ValueError"),  # a hex format of a float
    ("{a}", (EventArg("a", "str"), EventArg("a", "int")), "duplicate"),
])
def test_an_event_declaration_must_fit_its_format(fmt, args, why):
    with pytest.raises(ValueError, match=why):
        Event("e", 1, "INFO", fmt, args=args)


def test_an_event_argument_type_must_be_known():
    with pytest.raises(ValueError, match="not one of"):
        EventArg("x", "list")


def test_a_matching_payload_carries_the_arguments_as_fields():
    args = {"fault": "pump_degraded", "value": 0.5, "duration_s": 60, "gpu": np.int64(3)}
    payload = RIG.event_payload("fault_injected", args)
    assert payload == {"severity": "MEDIUM", "message": "FAULT pump_degraded value=0.5 for 60 s", "args": args}


@pytest.mark.parametrize("args, problem", [
    ({"fault": "x", "value": 0.5, "duration_s": 1.0}, "gpu missing"),
    ({"fault": "x", "value": 0.5, "duration_s": 1.0, "gpu": 1, "extra": 2}, "extra not declared"),
    ({"fault": "x", "value": "0.5", "duration_s": 1.0, "gpu": 1}, "value must be float, not str"),
    ({"fault": "x", "value": 0.5, "duration_s": 1.0, "gpu": 1.0}, "gpu must be int, not float"),
    ({"fault": "x", "value": True, "duration_s": 1.0, "gpu": 1}, "value must be float, not bool"),
    ({"fault": 7, "value": 0.5, "duration_s": 1.0, "gpu": 1}, "fault must be str, not int"),
])
def test_a_mismatched_payload_raises_under_test(args, problem, monkeypatch):
    monkeypatch.setenv(STRICT_EVENTS_ENV, "1")
    with pytest.raises(EventArgError, match=f"hal.fault_injected: .*{problem}"):
        RIG.event_payload("fault_injected", args)


def test_in_flight_a_mismatched_payload_still_goes_out_flagged(monkeypatch):
    """A flight process must not die of its own malformed event: the event is emitted with the
    arguments that do match, the template and the problems as its message, and a count."""
    monkeypatch.delenv(STRICT_EVENTS_ENV)
    payload = RIG.event_payload("fault_injected", {"fault": "x", "value": "high", "gpu": 2, "bogus": object()})
    assert payload["severity"] == "MEDIUM" and payload["args"] == {"fault": "x", "gpu": 2}
    assert payload["arg_errors"] == 3
    assert payload["message"].startswith("FAULT {fault} value={value:g} for {duration_s:g} s [malformed arguments: ")
    assert "duration_s missing" in payload["message"] and "value must be float, not str" in payload["message"]
    with pytest.raises(KeyError):
        RIG.event_payload("no_such_event", {})


def test_every_flight_event_declares_typed_arguments_in_the_json_export():
    out = full_dictionary().to_json()
    events = {e["name"]: e for comp in out["components"].values() for e in comp["events"]}
    assert events["hal.fault_injected"]["args"] == [
        {"name": "fault", "type": "str", "units": "", "doc": ""},
        {"name": "value", "type": "float", "units": "", "doc": ""},
        {"name": "target", "type": "str", "units": "", "doc": ""},
        {"name": "duration_s", "type": "float", "units": "s", "doc": ""}]
    assert events["link.contact_lost"]["args"] == []
    for name, ev in events.items():  # every field the text shows is a declared argument
        fields = {f for _, f, _, _ in string.Formatter().parse(ev["format"]) if f}
        assert fields <= {a["name"] for a in ev["args"]}, name
