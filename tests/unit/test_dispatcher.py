"""The command dispatcher over real ZeroMQ sockets: verification stages, failure codes,
routing of responses, and what happens to commands pending on a subsystem that restarts."""

import itertools

import pytest

from flight.core.component import Arg, Command, Component, Dictionary
from flight.executive.dispatcher import MAX_PENDING_PER_TARGET
from flight.core.messages import Encoder, decode
from tests.support.dispatcher import dispatcher_net, pump

DICT = Dictionary([
    Component("exec", 1, (Command("noop", 1),)),
    Component("thermal", 3, (Command("set_setpoint", 1, (Arg("setpoint_c", "float", "degC", 15, 45),)),)),
    Component("power", 2, (Command("set_soc_floor", 1, (Arg("soc_floor", "float", "", 0.4, 0.9),)),)),
])
_ids = itertools.count()


@pytest.fixture
def net():
    yield from dispatcher_net(DICT, lambda name, args: "no-op", "thermal")


def send(sock, name, args, cmd_id=None):
    cmd_id = cmd_id or f"c{next(_ids)}"
    sock.send(Encoder("ground").encode("cmd", name, {"id": cmd_id, "args": args})[1])
    return cmd_id


def stages(sock, n, timeout_ms=1000):
    out = []
    while len(out) < n and sock.poll(timeout_ms):
        m = decode(sock.recv())
        out.append((m.data["stage"], m.data["code"]))
    return out


def test_valid_command_is_accepted_forwarded_and_its_answers_routed_back(net):
    disp, s, _ = net
    cmd_id = send(s["ground"], "thermal.set_setpoint", {"setpoint_c": 30.0})
    pump(disp, 3)
    assert stages(s["ground"], 1) == [("accepted", "")]
    fwd = decode(s["thermal"].recv())
    assert fwd.name == "thermal.set_setpoint" and fwd.data["id"] == cmd_id
    enc = Encoder("thermal")
    for stage in ("started", "completed"):
        s["thermal"].send(enc.encode("rsp", fwd.name, {"id": cmd_id, "stage": stage, "code": "", "message": ""})[1])
    pump(disp)
    assert stages(s["ground"], 2) == [("started", ""), ("completed", "")]
    assert disp.executed == 1 and not disp.pending


@pytest.mark.parametrize("name, args, code", [
    ("thermal.set_setpoint", {"setpoint_c": 99.0}, "VALIDATION_ERROR"),
    ("thermal.set_setpoint", {"setpoint_c": "hot"}, "FORMAT_ERROR"),
    ("thermal.melt", {}, "INVALID_OPCODE"),
    ("power.set_soc_floor", {"soc_floor": 0.5}, "EXECUTION_ERROR"),  # power is not connected
])
def test_rejected_commands_fail_with_their_code_and_reach_nobody(net, name, args, code):
    disp, s, failures = net
    send(s["ground"], name, args)
    pump(disp, 3)
    assert stages(s["ground"], 1) == [("failed", code)]
    assert s["thermal"].poll(50) == 0 and not disp.pending
    assert failures[-1][1] == code


def test_executive_commands_run_locally(net):
    disp, s, _ = net
    send(s["ground"], "exec.noop", {})
    pump(disp, 3)
    assert stages(s["ground"], 3) == [("accepted", ""), ("started", ""), ("completed", "")]


def test_duplicate_ids_and_too_many_pending_commands_are_refused(net):
    disp, s, _ = net
    send(s["ground"], "thermal.set_setpoint", {"setpoint_c": 20.0}, cmd_id="same")
    send(s["ground"], "thermal.set_setpoint", {"setpoint_c": 20.0}, cmd_id="same")
    pump(disp, 3)
    assert stages(s["ground"], 2) == [("accepted", ""), ("failed", "FORMAT_ERROR")]
    for _ in range(MAX_PENDING_PER_TARGET):
        send(s["ground"], "thermal.set_setpoint", {"setpoint_c": 20.0})
    pump(disp, 10)
    got = stages(s["ground"], MAX_PENDING_PER_TARGET)
    assert got[-1] == ("failed", "BUSY") and got.count(("accepted", "")) == MAX_PENDING_PER_TARGET - 1


def test_a_restart_fails_pending_commands_instead_of_losing_them(net):
    disp, s, _ = net
    send(s["ground"], "thermal.set_setpoint", {"setpoint_c": 30.0})
    pump(disp, 3)
    assert stages(s["ground"], 1) == [("accepted", "")]
    disp.fail_target("thermal", "thermal restarted")
    assert stages(s["ground"], 1) == [("failed", "INTERRUPTED")] and not disp.pending


def test_garbage_on_the_command_socket_is_counted_not_fatal(net):
    disp, s, _ = net
    s["ground"].send(b"\x00garbage")
    s["ground"].send_multipart([b"a", b"b"])
    pump(disp, 3)
    assert disp.rejected_messages == 2
