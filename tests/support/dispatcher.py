"""The command dispatcher on real ZeroMQ sockets in a test's own process: ``dispatcher_net``
wires one to a ground DEALER and a subsystem's, ``pump`` lets it route what is waiting."""

import zmq

from flight.core.messages import Encoder
from flight.executive.dispatcher import Dispatcher


def dispatcher_net(dictionary, local, target):
    """A dispatcher on a real ROUTER, a ``ground`` DEALER and one for subsystem ``target``
    (its route made known); yields ``(dispatcher, sockets by name, failures reported)``."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind("inproc://cmd")
    failures = []
    disp = Dispatcher(router, dictionary, "exec", local, lambda *a: failures.append(a))
    sockets = {}
    for name in ("ground", target):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, name.encode())
        s.setsockopt(zmq.LINGER, 0)
        s.connect("inproc://cmd")
        sockets[name] = s
    sockets[target].send(Encoder(target).encode("rsp", "x", {"id": "hello", "stage": "completed"})[1])
    pump(disp)
    yield disp, sockets, failures
    ctx.destroy(linger=0)


def pump(disp, rounds=20):
    for _ in range(rounds):
        if disp.router.poll(20):
            disp.drain()
