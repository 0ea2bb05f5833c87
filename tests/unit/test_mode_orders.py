"""One mode writer: ``exec.set_mode`` and the executive's own orders reach the mode manager
(the power manager) as ``power.set_mode`` commands through the real dispatcher."""

import pytest

from flight.core.component import Arg, Command, Component, Dictionary
from flight.core.messages import Encoder, decode
from flight.executive.dispatcher import Forward
from tests.support.dispatcher import dispatcher_net, pump


def mode_dict() -> Dictionary:
    mode = Arg("mode", "str", choices=("NOMINAL", "SAFE"))
    return Dictionary([
        Component("exec", 1, (Command("set_mode", 3, (mode,)),)),
        Component("power", 2, (Command("set_mode", 7, (mode, Arg("why", "str"))),)),
    ])


@pytest.fixture
def net():
    yield from dispatcher_net(mode_dict(), lambda name, args: Forward("power.set_mode", {
        "mode": args["mode"], "why": "commanded"}), "power")


def answer(power, stage):
    """The power manager's side: take the command it was sent, answer ``stage`` for it."""
    assert power.poll(1000)
    cmd = decode(power.recv())
    power.send(Encoder("power").encode("rsp", cmd.name, {"id": cmd.data["id"], "stage": stage, "code": "",
                                                         "message": f"mode {cmd.data['args']['mode']}"})[1])
    return cmd


def test_exec_set_mode_is_handed_to_the_mode_manager_and_completes_when_it_has_taken_it(net):
    disp, s, _ = net
    s["ground"].send(Encoder("ground").encode("cmd", "exec.set_mode", {"id": "g1", "args": {"mode": "SAFE"}})[1])
    pump(disp)
    cmd = answer(s["power"], "completed")
    assert (cmd.name, cmd.data) == ("power.set_mode", {"id": "g1", "args": {"mode": "SAFE", "why": "commanded"}})
    assert "g1" in disp.pending
    pump(disp)
    got = []
    while s["ground"].poll(200):
        got.append(decode(s["ground"].recv()).data["stage"])
    assert got == ["accepted", "completed"], "no completion before the mode manager's"
    assert "g1" not in disp.pending and disp.executed == 1


def test_the_executives_own_order_goes_to_the_mode_manager_and_a_failure_is_reported(net):
    disp, s, failures = net
    disp.issue("exec-mode-1", "power.set_mode", {"mode": "SAFE", "why": "jobs restarted 6 times"})
    pump(disp)
    assert answer(s["power"], "failed").data["args"]["why"] == "jobs restarted 6 times"
    pump(disp)
    assert failures and failures[0][0] == "power.set_mode" and "exec-mode-1" not in disp.pending
    disp.issue("exec-mode-2", "power.set_mode", {"mode": "PANIC", "why": ""})
    assert failures[-1][:2] == ("power.set_mode", "VALIDATION_ERROR")
