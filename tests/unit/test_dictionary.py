"""The dictionary: argument validation codes, unique opcodes, the JSON export."""

import math

import pytest

from flight.core.component import Arg, Command, CommandError, Component, Dictionary, Event
from flight.executive.supervisor import full_dictionary

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
