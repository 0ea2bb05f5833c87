"""A flight process's first messages reach the bus: a ZeroMQ PUB drops what it sends before
the proxy's subscriptions reach it, so a process restarted mid-run (frames come at once)
could lose its first tick's events; :meth:`BusRuntime.await_bus` waits for its own
probe to come back through the proxy first, and keeps what arrived meanwhile. A tick's data
products travel inside the producer's ``hal.done``."""

import tempfile
from pathlib import Path

import zmq

from flight.core import bus
from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.messages import Encoder, decode
from flight.core.runtime import ProcessRunner
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from flight.core.dictionary import subsystem_class
from sim_hw.satellite import Satellite
from tests.support.predicates import wait_until

EVENTS = 200


def test_after_await_bus_every_message_of_a_new_publisher_arrives_and_none_held_is_lost():
    with tempfile.TemporaryDirectory(prefix="rf-") as run_dir:  # ipc paths must stay short
        addr = BusAddress.in_dir(Path(run_dir))
        ctx = zmq.Context()
        broker = bus.Broker(ctx, addr)
        recorder = bus.subscriber(ctx, addr, (b"ev/",))
        feeder = bus.publisher(ctx, addr)
        probe = Encoder("probe")

        def subscribed() -> bool:  # the old-timers' subscriptions are in place, as in a run under way
            feeder.send_multipart(probe.encode("ev", "probe.ready", {}))
            return recorder.poll(50) > 0 and any(True for _ in bus.drain(recorder))

        wait_until(subscribed, "the recorder's subscription through the broker", 10, 0)
        runner = ProcessRunner(subsystem_class("thermal"), RunConfig(bus=addr, data_dir=run_dir))
        try:
            feeder.send_multipart(Encoder("hal").encode("ctl", "sync", {"expected": ["thermal"]}))  # may arrive while it waits
            held = runner.bus.await_bus()
            assert [msg.topic for msg, _ in held] in ([], [b"ctl/sync"])  # kept for the loop, not lost
            for n in range(EVENTS):
                runner.subsystem.event("setpoint_changed", old_c=20.0, new_c=20.0 + n)
            got = 0
            while recorder.poll(2000):
                got += sum(1 for frames in bus.drain(recorder) if decode(frames[1]).src == "thermal")
            assert got == EVENTS
        finally:
            runner.bus.close()
            broker.close()
            ctx.destroy(linger=0)



def test_a_ticks_data_products_travel_inside_its_hal_done_and_reach_their_consumer_before_the_next_frame():
    """Thermal's headroom for tick 1 goes out inside its ``hal.done`` (one publish for the
    tick, topic ``hw/hal.done/thermal/products``); the power manager, subscribed to thermal's tick
    output, gets it as the ``data`` message it consumes."""
    with tempfile.TemporaryDirectory(prefix="rf-") as run_dir:
        addr = BusAddress.in_dir(Path(run_dir))
        ctx = zmq.Context()
        broker = bus.Broker(ctx, addr)
        bridge = bus.subscriber(ctx, addr, (b"hw/hal.done", b"data/"))
        config = RunConfig(bus=addr, data_dir=run_dir)
        thermal = ProcessRunner(subsystem_class("thermal"), config)
        power = ProcessRunner(subsystem_class("power"), config)
        try:
            power.bus.await_bus()
            thermal.bus.await_bus()
            feeder = bus.publisher(ctx, addr)

            def subscribed():
                feeder.send_multipart(Encoder("probe").encode("data", "probe.ready", {}))
                return bridge.poll(50) > 0 and any(True for _ in bus.drain(bridge))

            wait_until(subscribed, "the test's own subscription through the proxy", 10, 0)
            sat = Satellite(load_tle(DEFAULT_TLE_PATH)[1])
            sat.step(1.0)
            frame = Encoder("sim").encode("hw", "hal.frame", sat.frame(), 1, 1.0)[1]
            thermal.handle([(decode(frame), frame)])
            out = []
            while not out and bridge.poll(2000):
                out += [(topic, body) for topic, body in bus.drain(bridge) if not topic.endswith(b".bus_probe") and not topic.startswith(b"data/probe.")]
            [(topic, body)] = out  # one message for the tick: no separate data/thermal.headroom
            done = decode(body)
            assert topic == b"hw/hal.done/thermal/products" and (done.name, done.src, done.tick) == ("hal.done", "thermal", 1)
            assert set(done.data["products"]) == {"thermal.headroom"} and "actuate" in done.data
            got = []
            while not any(m.name == "hal.done" for m, _ in got) and power.bus.sub.poll(2000):
                got += list(power.bus.decoded(power.bus.sub))
            power.handle(got)
            assert (power.subsystem.cap_w == done.data["products"]["thermal.headroom"]["gpu_headroom_w"]).all()
        finally:
            thermal.bus.close()
            power.bus.close()
            broker.close()
            ctx.destroy(linger=0)
