"""A flight process's first messages reach the bus: a ZeroMQ PUB drops what it sends before
the proxy's subscriptions reach it, so a process restarted mid-run (frames come at once)
could lose its first tick's events; :meth:`BusRuntime.await_bus` waits for its own
probe to come back through the proxy first, and keeps what arrived meanwhile. A tick's data
products travel inside the producer's ``hal.done`` on the lockstep channel, relayed inside
the next frame."""

import tempfile
from pathlib import Path

import zmq

from flight.core import bus, lockstep
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



def test_a_ticks_data_products_ride_in_its_hal_done_and_reach_their_consumer_inside_the_next_frame():
    """Thermal's headroom for tick 1 goes to the bridge inside its ``hal.done`` on the lockstep
    channel, not on the bus; the bridge relays that answer inside frame 2, and the power
    manager gets it as the ``data`` message it consumes before it handles frame 2."""
    with tempfile.TemporaryDirectory(prefix="rf-") as run_dir:
        addr = BusAddress.in_dir(Path(run_dir))
        ctx = zmq.Context()
        broker = bus.Broker(ctx, addr)
        frames, answers = lockstep.bridge_sockets(ctx, addr)
        config = RunConfig(bus=addr, data_dir=run_dir)
        thermal = ProcessRunner(subsystem_class("thermal"), config)
        power = ProcessRunner(subsystem_class("power"), config)
        encoder = Encoder("sim")
        ready: set[str] = set()
        try:
            def synced() -> bool:  # the handshake of a run: ctl/sync until each answers ctl/ready
                frames.send(encoder.encode("ctl", "sync", {"expected": ["power", "thermal"]})[1])
                for runner in (thermal, power):
                    runner.on_lockstep()
                while answers.poll(20):
                    ready.add(decode(answers.recv()).data["name"])
                return ready == {"power", "thermal"}

            wait_until(synced, "both participants hear the frames channel", 10, 0)
            # answers count their own seq: the executive's gap count over the bus stays 0
            assert thermal.bus.encoder.seq["ctl"] == power.bus.encoder.seq["ctl"] == 0
            sat = Satellite(load_tle(DEFAULT_TLE_PATH)[1])
            sat.step(1.0)
            frames.send(lockstep.frame_body(encoder, sat.frame(), 1, 1.0))
            answered = []

            def thermal_done() -> bool:  # a late sync's ctl/ready may come first: the bridge ignores it
                thermal.frames.poll(20)
                thermal.on_lockstep()
                while answers.poll(20):
                    answered.append(answers.recv())
                return any(decode(b).name == "hal.done" for b in answered)

            wait_until(thermal_done, "thermal's hal.done for tick 1", 10, 0)
            [body] = [b for b in answered if decode(b).name == "hal.done"]
            done = decode(body)
            assert (done.name, done.src, done.tick) == ("hal.done", "thermal", 1)
            [(kind, name, headroom)] = lockstep.outputs_of(done)  # one message for the tick, products inside
            assert (kind, name) == ("data", "thermal.headroom") and "actuate" in done.data
            sat.step(1.0)
            frames.send_multipart(lockstep.frame_parts(lockstep.frame_body(encoder, sat.frame(), 2, 2.0),
                                                       [("thermal", body)]))
            seen = []
            power.subsystem.on_message = seen.append

            def power_framed() -> bool:
                power.frames.poll(20)
                power.on_lockstep()
                return power.last_tick == 2

            wait_until(power_framed, "power handles frame 2", 10, 0)
            assert [(m.src, m.kind, m.name, m.tick) for m in seen] == [("thermal", "data", "thermal.headroom", 1)]
            assert (seen[0].data["gpu_headroom_w"] == headroom["gpu_headroom_w"]).all()
        finally:
            thermal.bus.close()
            power.bus.close()
            broker.close()
            ctx.destroy(linger=0)


def test_a_frame_that_is_not_a_packed_sensor_frame_is_counted_and_reported_and_the_next_one_is_handled():
    """A ``hw/hal.frame`` whose data is not a packed sensor frame (here the map a rig sends
    the bridge) is a decode error for the participant: counted, announced, not answered; the
    next sound frame is handled as usual."""
    with tempfile.TemporaryDirectory(prefix="rf-") as run_dir:
        addr = BusAddress.in_dir(Path(run_dir))
        ctx = zmq.Context()
        broker = bus.Broker(ctx, addr)
        frames, answers = lockstep.bridge_sockets(ctx, addr)
        thermal = ProcessRunner(subsystem_class("thermal"), RunConfig(bus=addr, data_dir=run_dir))
        encoder = Encoder("sim")
        reported = []
        thermal.subsystem.event = lambda event, **args: reported.append((event, args))
        try:
            def synced() -> bool:
                frames.send(encoder.encode("ctl", "sync", {"expected": ["thermal"]})[1])
                thermal.frames.poll(20)
                thermal.on_lockstep()
                return answers.poll(20) > 0 and decode(answers.recv()).name == "ready"

            wait_until(synced, "thermal hears the frames channel", 10, 0)
            sat = Satellite(load_tle(DEFAULT_TLE_PATH)[1])
            sat.step(1.0)
            frames.send(encoder.encode("hw", "hal.frame", sat.frame(), 1, 1.0)[1])
            wait_until(lambda: thermal.frames.poll(20) > 0, "the unpacked frame reaches thermal", 10, 0)
            thermal.on_lockstep()
            assert thermal.subsystem.decode_errors == 1 and thermal.last_tick == 0
            assert reported == [("decode_error", {"topic": "frames",
                                                  "why": "packed sensor frame of dict, not 5032 bytes"})]
            assert not answers.poll(100), "no hal.done for a frame it could not read"
            frames.send(lockstep.frame_body(encoder, sat.frame(), 1, 1.0))
            wait_until(lambda: thermal.frames.poll(20) > 0, "the packed frame reaches thermal", 10, 0)
            thermal.on_lockstep()
            done = decode(answers.recv()) if answers.poll(2000) else None
            assert done is not None and (done.name, done.tick) == ("hal.done", 1)
        finally:
            thermal.bus.close()
            broker.close()
            ctx.destroy(linger=0)
