"""The simulator's HAL server over ipc:// in a temporary directory: lockstep, paced, rejects,
re-hello, and a clean exit of the real process on SIGTERM."""

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from flight.hal import protocol as hal
from flight.core.messages import Encoder
from flight.core.tle import load_tle
from sim_hw.satellite import Satellite
from sim_hw.server import HalServer, main
from tests.support.hal_client import HalClient

TLE = load_tle("flight/data/tle-real.txt")[1]
TIMEOUT_S = 5.0


def client(ctx: zmq.Context, endpoint: str) -> HalClient:
    """The HAL test client on the test's context, every receive bounded by TIMEOUT_S."""
    return HalClient(endpoint, timeout_s=TIMEOUT_S, ctx=ctx, name="test")


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def endpoint(tmp_path):
    return f"ipc://{tmp_path}/hal"


def serve(endpoint, **kw):
    server = HalServer(endpoint, Satellite(TLE, seed=1), **kw)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def lockstep(endpoint):
    server, thread = serve(endpoint)
    yield server
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_hello_welcome_and_lockstep_round_trip(ctx, endpoint, lockstep):
    c = client(ctx, endpoint)
    w = c.hello()
    assert w["version"] == hal.HAL_VERSION and w["n_gpus"] == hal.N_GPUS and w["n_zones"] == hal.N_ZONES
    assert w["tick_s"] == 1.0 and w["lockstep"] is True and w["epoch_utc"].startswith("2020-05-07")
    for n in range(1, 6):
        frame = c.recv("hal.frame")
        assert frame.tick == n and frame.t == float(n) and frame.kind == "hw" and frame.src == "sim"
        assert hal.check_frame(frame.data) == []
        assert c.quiet(0.1), "lockstep: no frame before tick_done"
        if n == 2:
            c.send("hal.actuate", {"gpu_power_limit_w": np.full(hal.N_GPUS, 450.0),
                                   "gpu_load_frac": np.ones(hal.N_GPUS)})
        c.send("hal.tick_done", {"tick": n})
    assert np.all(frame.data["gpu_power_w"] <= 450.0)
    assert np.all(frame.data["gpu_power_limit_w"] == 450.0) and not c.rejects
    c.close()


def test_malformed_messages_are_rejected_counted_and_change_nothing(ctx, endpoint, lockstep):
    c = client(ctx, endpoint)
    c.hello()
    first = c.recv("hal.frame")
    bad = [
        {"gpu_power_limit_w": np.full(3, 500.0)},               # bad shape
        {"pump_speed_frac": float("nan")},                      # NaN
        {"radiator_valve_frac": np.full(hal.N_ZONES, 2.0)},     # out of range
        {"warp_drive_on": True},                                # unknown field
        {"pump_speed_frac": 0.2, "transmitter_on": "yes"},      # one bad field spoils the message
        [1, 2, 3],                                              # not a map
    ]
    for data in bad:
        c.send("hal.actuate", data)
    c.sock.send(b"\xc1 definitely not msgpack")                 # garbage bytes
    c.sock.send_multipart([b"two", b"frames"])                  # wrong framing
    c.send("hal.tick_done", {"tick": "one"})                    # malformed tick_done
    c.send("hal.teleport", {})                                  # unknown message
    c.sock.send(Encoder("x").encode("tm", "hal.actuate", {"pump_speed_frac": 0.2})[1])  # wrong kind
    expected = len(bad) + 5
    c.send("hal.tick_done", {"tick": first.tick})
    frame = c.recv("hal.frame")
    assert frame.data["hal_rejected_count"] == expected == len(c.rejects)
    assert all(r["reason"] and r["rejected_count"] >= 1 for r in c.rejects)
    assert [r["rejected_count"] for r in c.rejects] == list(range(1, expected + 1))
    for key in ("pump_speed_frac", "radiator_valve_frac", "gpu_power_limit_w", "transmitter_on"):
        assert np.array_equal(frame.data[key], first.data[key]), f"{key} changed"
    assert lockstep.decode_errors == 1
    c.send("hal.tick_done", {"tick": frame.tick})
    assert c.recv("hal.frame").tick == frame.tick + 1, "still serving"
    c.close()


def test_strangers_are_rejected_and_a_new_hello_takes_over_without_restarting(ctx, endpoint, lockstep):
    a = client(ctx, endpoint)
    a.hello()
    f1 = a.recv("hal.frame")
    stranger = client(ctx, endpoint)
    stranger.send("hal.actuate", {"pump_speed_frac": 0.1})
    assert "hal.hello" in stranger.recv("hal.reject").data["reason"]
    stranger.send("hal.hello", {"version": 99})
    stranger.recv("hal.reject")
    b = client(ctx, endpoint)
    b.hello()
    f2 = b.recv("hal.frame")
    assert f2.tick == f1.tick + 1 and f2.data["time_s"] == f1.data["time_s"] + 1.0
    assert f2.data["hal_rejected_count"] == 2
    a.send("hal.tick_done", {"tick": f1.tick})          # the old client is no longer heard
    assert a.recv("hal.reject") and b.quiet(0.2)
    b.send("hal.hello", {"version": hal.HAL_VERSION})   # a repeated hello does not step
    b.recv("hal.welcome")
    assert b.quiet(0.2)
    b.send("hal.bye", {})
    assert b.quiet(0.3), "no frames after bye"
    b.hello()
    assert b.recv("hal.frame").tick == f2.tick + 1
    for c in (a, b, stranger):
        c.close()


def test_paced_mode_sends_frames_on_the_clock_and_stops_after_the_duration(ctx, endpoint):
    server, thread = serve(endpoint, speed=50.0, duration_s=20.0)  # a frame every 20 ms
    try:
        c = client(ctx, endpoint)
        assert c.hello()["lockstep"] is False
        t0 = time.monotonic()
        ticks = [c.recv("hal.frame").tick for _ in range(20)]   # no tick_done sent at all
        elapsed = time.monotonic() - t0
        assert ticks == list(range(1, 21)) and 0.25 < elapsed < 2.0
        thread.join(timeout=5)
        assert not thread.is_alive() and server.sat.time_s == pytest.approx(20.0)
        c.close()
    finally:
        server.stop()
        thread.join(timeout=5)


def test_lockstep_duration_ends_after_the_last_tick_is_done(ctx, endpoint):
    server, thread = serve(endpoint, duration_s=3.0)
    c = client(ctx, endpoint)
    c.hello()
    for n in (1, 2, 3):
        assert c.recv("hal.frame").tick == n
        c.send("hal.tick_done", {"tick": n})
    thread.join(timeout=5)
    assert not thread.is_alive() and server.tick == 3
    c.close()


def test_main_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--bind", "ipc:///x", "--speed", "-3"])
    assert main(["--bind", f"ipc://{tmp_path}/a", "--tle", str(tmp_path / "missing.txt")]) == 2


def test_the_process_serves_and_exits_cleanly_on_sigterm(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/hal"
    proc = subprocess.Popen([sys.executable, "-m", "sim_hw.server", "--bind", endpoint, "--seed", "2",
                             "--speed", "max", "--tick-s", "2"])
    try:
        c = client(ctx, endpoint)
        c.await_welcome(timeout_s=20)  # the process needs a moment to import and bind
        assert c.recv("hal.frame").data["time_s"] == 2.0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not (tmp_path / "hal").exists(), "the ipc socket file is removed"
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_faults_over_the_protocol_are_applied_acknowledged_and_end(ctx, endpoint, lockstep):
    c = client(ctx, endpoint)
    c.hello()
    frame = c.recv("hal.frame")
    c.send("hal.fault", {"id": "a", "action": "inject", "fault": "gpu_dead", "value": 0.0, "target": "4",
                         "duration_s": 2.0})
    assert c.recv("hal.fault_ack").data == {"id": "a", "ok": True, "reason": "gpu_dead injected"}
    c.send("hal.fault", {"id": "b", "action": "inject", "fault": "pump_degraded", "value": 7.0, "target": "",
                         "duration_s": 0.0})
    refused = c.recv("hal.fault_ack").data
    assert refused["id"] == "b" and refused["ok"] is False and "flow fraction" in refused["reason"]
    c.send("hal.fault", {"action": "inject", "fault": "gpu_dead", "target": "5"})  # no id: not answerable
    c.send("hal.tick_done", {"tick": frame.tick})
    frame = c.recv("hal.frame")
    assert not frame.data["gpu_online"][4] and frame.data["gpu_online"].sum() == hal.N_GPUS - 1
    assert frame.data["coolant_flow_kg_s"] > 0 and lockstep.sat.thermal.flow_capacity_frac == 1.0
    assert len(c.rejects) == 1 and "id" in c.rejects[0]["reason"]
    c.send("hal.tick_done", {"tick": frame.tick})
    assert c.recv("hal.fault_ended").data == {"fault": "gpu_dead", "target": "4"}
    frame = c.recv("hal.frame")  # the step it ended in: the GPU was still dead during it
    c.send("hal.tick_done", {"tick": frame.tick})
    assert c.recv("hal.frame").data["gpu_online"].all()
    c.close()
