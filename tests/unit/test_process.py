"""A flight process's first messages reach the bus: a ZeroMQ PUB drops what it sends before
the proxy's subscriptions reach it, so a process restarted mid-run (frames come at once)
could lose its first tick's events; :meth:`ProcessRunner.await_bus` waits for its own
probe to come back through the proxy first, and keeps what arrived meanwhile."""

import tempfile
from pathlib import Path

import zmq

from flight.core import bus
from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.messages import Encoder, decode
from flight.core.runtime import ProcessRunner
from flight.subsystems import subsystem_class
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
            held = runner.await_bus()
            assert [frames[0] for frames in held] in ([], [b"ctl/sync"])  # kept for the loop, not lost
            for n in range(EVENTS):
                runner.subsystem.event("setpoint_changed", old_c=20.0, new_c=20.0 + n)
            got = 0
            while recorder.poll(2000):
                got += sum(1 for frames in bus.drain(recorder) if decode(frames[1]).src == "thermal")
            assert got == EVENTS
        finally:
            runner.ctx.destroy(linger=0)
            broker.close()
            ctx.destroy(linger=0)
