"""Test harness of the link manager: a LinkManager on a free loopback port run as its process
runtime runs it (``LinkHarness``), a ground station that talks to it over real TCP and reads
every TM with spacepackets' own readers (``Ground``), and the packets tests send."""


import socket
import struct
import threading
import time
from collections import deque
from dataclasses import replace
from functools import partial
from typing import NoReturn

import zmq
from spacepackets.ccsds.spacepacket import PacketId, PacketType, parse_space_packets
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.pus_1_verification import ManagedParamsVerification, Service1Tm
from spacepackets.ecss.pus_17_test import Service17Tm
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import ManagedParams, PusTm

from flight.core.bus import Broker, BusAddress, drain
from flight.core.config import RunConfig
from flight.core.component import CommandError
from flight.core.dictionary import full_dictionary, subsystem_class
from flight.core.runtime import BusRuntime, report_decode_error
from flight.executive.dispatcher import Dispatcher
from flight.spacelink import keys, tm_sdls
from flight.spacelink import framing, pus17_test as pus17, pus8_functions as pus8
from flight.spacelink.sdls import ArsnCounter, protect
from flight.core.messages import Encoder, Message, decode
from flight.subsystems.link.manager import LinkManager

DICT = full_dictionary()
UTC0 = 1_767_225_600.0
"""Onboard UTC at simulation time 0 (2026-01-01T00:00:00Z)."""
BUS = BusAddress("inproc://unused-pub", "inproc://unused-sub", "inproc://unused-cmd")
"""The bus of a LinkManager built outside a harness: its ports are functions, the bus unused."""
RECEIVE_TIMEOUT_S = 3.0
THERMAL = DICT.components["thermal"]
JOBS = DICT.components["jobs"]
"""Its per-GPU arrays are of every array type: int, bool and float."""


def hk_values(component) -> dict:
    """A value for every channel of ``component``, each of its channel's type (arrays too)."""
    return {ch.name: [{"float": 0.5 * i, "int": i, "bool": i % 2 == 0}[ch.type] for i in range(ch.size)] if ch.size
            else {"float": 1.25 + k, "int": k, "bool": k % 2 == 0, "str": f"s{k}"}[ch.type]
            for k, ch in enumerate(component.telemetry)}


THERMAL_HK = hk_values(THERMAL)
JOBS_HK = hk_values(JOBS)


def _expected_hk_data(component, values) -> bytes:
    """TM[3,25] source data written out from the wire format's definition, independently of flight.spacelink."""
    out = struct.pack(">H", component.component_id)
    for ch in component.telemetry:
        v = values[ch.name]
        if ch.size:
            out += struct.pack(f">H{len(v)}" + {"float": "d", "int": "i", "bool": "B"}[ch.type], len(v), *v)
        elif ch.type == "str":
            out += bytes([len(v.encode())]) + v.encode()
        else:
            out += struct.pack({"float": ">d", "int": ">q", "bool": ">B"}[ch.type], v)
    return out


def _bus_message(kind: str, name: str, data, t: float = 0.0, tick: int = 0, src: str = "bus") -> Message:
    """``data`` as it arrives off the bus: through the envelope codec and back."""
    return decode(Encoder(src).encode(kind, name, data, tick, t)[1])


TARGETS = ("power", "thermal", "jobs")
"""The subsystems that answer commands in a harness, each a real instance run as its process
runtime runs it (the link is the fourth)."""
SETTLE_TIMEOUT_S = 3.0
"""How long :meth:`LinkHarness.pump` waits, past its own seconds, for every command to be answered."""


def no_executive(name: str, _args: dict) -> NoReturn:
    """The dispatcher's handler of the executive's own commands in a harness, which runs no
    executive: every one fails (EXECUTION_ERROR), as it would if the supervisor could not run it."""
    raise CommandError("EXECUTION_ERROR", f"{name}: no executive runs in the link harness")


class LinkHarness:
    """A LinkManager on a free loopback port, run the way its process runtime runs it: the
    TCP server polled, sensor frames and bus messages handed in, its own telemetry and
    events looped back as the bus proxy does (it subscribes to them).

    Its commands take the real command path: the link's DEALER (its
    :class:`~flight.core.runtime.BusRuntime`) sends them to the real
    :class:`~flight.executive.dispatcher.Dispatcher` on the bus's ROUTER (inproc, one ZeroMQ
    context per harness), which validates them against the dictionary and routes them to
    their owner: the link itself, or one of :data:`TARGETS`, a real subsystem built on
    ``tmp_path/targets``; each answers through its own DEALER with the runtime's verification
    stages (:meth:`~flight.core.runtime.BusRuntime.serve_commands`). What the targets emit
    reaches the link as the proxy would deliver it (the topics it subscribes to), stamped
    with the link's clock. ``script`` stands in for dispatcher and owner when a test needs
    answers the real ones do not give. Its one station key is ``self.key`` and its
    telemetry keys ``self.tm_keys`` (in ``tmp_path/keys``), unless ``lab`` runs it
    unauthenticated."""

    def __init__(self, tmp_path, contact: str = "passes", lab: bool = False) -> None:
        keys_dir = tmp_path / "keys"
        self.key = keys.load_key(keys_dir) if (keys_dir / "local.key").exists() else keys.create_key(keys_dir)
        tm_sdls.ensure_tm_key(keys_dir)
        self.tm_keys = None if lab else tm_sdls.verifying_keys(keys_dir)
        """The telemetry keys by SPI, for a ground's LinkClient (``None`` in lab mode)."""
        self._ctx = zmq.Context()
        address = BusAddress(*(f"inproc://link-harness-{part}" for part in ("pub", "sub", "cmd")))
        self._broker = Broker(self._ctx, address)
        self.config = RunConfig(bus=address, data_dir=str(tmp_path), contact=contact, link_endpoint="127.0.0.1:0",
                                hk_period_ticks=1, keys_dir=str(keys_dir), unauthenticated_lab=lab)
        self.emitted: list[Message] = []
        self.commands: list[tuple[str, str, dict]] = []
        self.script = None
        """``None`` for the real dispatcher, or a list of (stage, code, message) every command
        is answered with instead (the dispatcher and the owner never see it)."""
        self._scripted: set[str] = set()
        self._script_encoder = Encoder("exec")
        self._inbox: deque[Message] = deque()
        self.dispatcher = Dispatcher(self._broker.router, DICT, "exec", no_executive, self._command_failed)
        self._link_bus = BusRuntime(self.config, "link", (), self._clock, ctx=self._ctx)
        self.link = LinkManager(self.config, self._emit, self._send_command, dictionary=DICT)
        served = [(self.link, self._link_bus)]
        self.targets = {}
        """The real subsystems of :data:`TARGETS` by name, as their processes run them."""
        target_config = replace(self.config, data_dir=str(tmp_path / "targets"))
        target_config.data_path.mkdir(exist_ok=True)  # as the executive makes a run's directory
        for name in TARGETS:
            runtime = BusRuntime(target_config, name, (), self._clock, ctx=self._ctx)
            self.targets[name] = subsystem_class(name)(target_config, partial(self._publish, name), runtime.command)
            served.append((self.targets[name], runtime))
        self._handlers = {self._broker.router: self._on_router}
        self._commands_poller = zmq.Poller()
        self._commands_poller.register(self._broker.router, zmq.POLLIN)
        for subsystem, runtime in served:
            runtime.on_decode_error = report_decode_error(subsystem)
            subsystem.on_start()
            self._handlers[runtime.dealer] = partial(runtime.serve_commands, subsystem)
            self._commands_poller.register(runtime.dealer, zmq.POLLIN)
        ((fd, on_readable),) = self.link.poll_items()
        self._handlers[fd] = on_readable
        self._poller = zmq.Poller()
        for sock in self._handlers:
            self._poller.register(sock, zmq.POLLIN)
        self.tick = 0

    @property
    def port(self) -> int:
        return framing.parse_endpoint(self.link.endpoint)[1]

    def _clock(self) -> tuple[int, float]:
        return self.link.tick, self.link.time_s

    def _emit(self, kind: str, name: str, data) -> None:
        self.emitted.append(self._publish("link", kind, name, data))

    def _publish(self, src: str, kind: str, name: str, data) -> Message:
        """``data`` published by ``src``, handed to the link when it subscribes to its topic."""
        msg = _bus_message(kind, name, data, self.link.time_s, self.link.tick, src)
        if msg.topic.startswith(self.link.SUBSCRIBE):
            self._inbox.append(msg)
        return msg

    def _command_failed(self, name: str, code: str, message: str) -> None:
        """What the executive does when a command fails: its ``command_failed`` event."""
        self._publish("exec", "ev", "exec.command_failed", DICT.components["exec"].event_payload(
            "command_failed", {"command": name, "code": code, "message": message[:160]}))

    def _send_command(self, command_id: str, qualified: str, args: dict) -> None:
        self.commands.append((command_id, qualified, args))
        self._link_bus.command(command_id, qualified, args)

    def _on_router(self) -> None:
        if self.script is None:
            self.dispatcher.drain()
            return
        for identity, *_, body in drain(self._broker.router):
            msg = decode(body)
            command_id = msg.data["id"]
            for stage, code, message in self.script:
                data = {"id": command_id, "stage": stage, "code": code, "message": message}
                self._broker.router.send_multipart([identity, self._script_encoder.encode("rsp", msg.name, data)[1]])
            self._scripted.add(command_id)

    def _settled(self) -> bool:
        """Nothing left on the command sockets, and every command the link holds pending is
        one ``script`` answered (and so never will be further)."""
        return not self._commands_poller.poll(0) and self._scripted.issuperset(self.link.verification.pending)

    def publish(self, kind: str, name: str, data, t: float | None = None) -> None:
        """Another process's telemetry or event, as the bus delivers it."""
        self._inbox.append(_bus_message(kind, name, data, self.link.time_s if t is None else t))

    def pump(self, seconds: float = 0.0) -> None:
        """Serve the sockets (the link's TCP server, the dispatcher's ROUTER, every DEALER) and
        deliver queued bus messages, for at least one round and ``seconds``, then until every
        command has been answered.

        Raises:
            TimeoutError: commands still unanswered :data:`SETTLE_TIMEOUT_S` after ``seconds``.
        """
        deadline = time.monotonic() + seconds
        while True:
            for sock, _ in self._poller.poll(5):
                self._handlers[sock]()
            while self._inbox:
                msg = self._inbox.popleft()
                (self.link.on_response if msg.kind == "rsp" else self.link.on_message)(msg)
            self.dispatcher.expire()
            now = time.monotonic()
            if now >= deadline and self._settled():
                return
            if now >= deadline + SETTLE_TIMEOUT_S:
                raise TimeoutError(f"commands unanswered after {SETTLE_TIMEOUT_S} s: "
                                   f"{sorted(self.link.verification.pending)}")

    def frame(self, contact: bool = True, **fields) -> None:
        """Hand the link the sensor frame of the next tick (1 s of onboard time per tick)."""
        self.tick += 1
        frame = {"ground_contact": contact, "utc_unix_s": UTC0 + self.tick, "transmitter_on": contact,
                 "downlink_rate_bps": 2e9 if contact else 0.0, "ground_station_id": 0.0 if contact else -1.0,
                 "ground_elevation_deg": 12.5 if contact else -30.0, **fields}
        self.link.on_frame(self.tick, float(self.tick), _bus_message("hw", "hal.frame", frame).data)
        self._emit("hw", "hal.done", {"tick": self.tick, "actuate": self.link.actuation})  # as the runtime does
        self.link.actuation = {}
        self.link.run_after_done()
        self.pump()

    def hk(self) -> dict:
        return next(m.data for m in reversed(self.emitted) if m.name == "link.hk")

    def events(self, name: str) -> list[Message]:
        return [m for m in self.emitted if m.kind == "ev" and m.name == f"link.{name}"]

    def close(self) -> None:
        """Stop the link and the targets, close every socket; once (a second call does nothing)."""
        if self._ctx.closed:
            return
        self.link.on_stop()
        for target in self.targets.values():
            target.on_stop()
        self._broker.close()
        self._ctx.destroy(linger=0)


class Ground:
    """A plain TCP client of the link that frames TM with spacepackets' parser and checks
    every packet with spacepackets' readers; it signs TCs with the harness's station key
    and checks the seal of every TM, then strips it (or neither, for a lab-mode link)."""

    PACKET_IDS = [PacketId(PacketType.TM, True, c.component_id) for c in DICT.components.values()]

    def __init__(self, harness: LinkHarness) -> None:
        self.harness = harness
        self.sock = socket.create_connection(("127.0.0.1", harness.port), timeout=RECEIVE_TIMEOUT_S)
        self.sock.setblocking(False)
        self._buf = bytearray()
        self.closed = False
        self.arsn = ArsnCounter()
        harness.pump(0.05)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def signed(self, tc: PusTc) -> PusTc:
        """``tc`` as this ground sends it: signed with a fresh sequence number (as is in lab mode)."""
        return tc if self.harness.link.auth.lab else protect(tc, self.harness.key, self.arsn.next())

    def send_tc(self, tc: PusTc) -> PusTc:
        """Send ``tc`` signed; return what was sent."""
        tc = self.signed(tc)
        self.send(bytes(tc.pack()))
        return tc

    def _read(self) -> list[bytes]:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return []
        if not chunk:
            self.closed = True
            return []
        self._buf += chunk
        result = parse_space_packets(bytes(self._buf), self.PACKET_IDS)
        del self._buf[:result.scanned_bytes]
        assert not result.skipped_ranges, "the link sent bytes that are not a TM packet"
        if self.harness.tm_keys is None:
            return [bytes(p) for p in result.tm_list]
        verifier = tm_sdls.TmVerifier(self.harness.tm_keys)
        for p in result.tm_list:
            verifier.verify(bytes(p))  # raises for a TM the link did not seal
        return [tm_sdls.strip(bytes(p)) for p in result.tm_list]

    def read(self, packet: bytes) -> tuple[int, int, int, PusTm]:
        """(service, subtype, apid, tm) after spacepackets' checks of ``packet``."""
        tm = PusTm.unpack(packet, timestamp_len=CdsShortTimestamp.TIMESTAMP_SIZE)  # CRC checked here
        stamp = CdsShortTimestamp.unpack(tm.timestamp).as_unix_seconds()
        assert UTC0 <= stamp <= UTC0 + self.harness.tick + 1
        assert tm.apid in {c.component_id for c in DICT.components.values()}
        if tm.service == 1:
            Service1Tm.unpack(packet, ManagedParams(timestamp_len=7), ManagedParamsVerification())
        elif tm.service == 17:
            assert Service17Tm.unpack(packet, timestamp_len=7).message_subtype == 2
        return tm.service, tm.message_subtype, tm.apid, tm

    def collect(self, until=lambda got: False, seconds: float = RECEIVE_TIMEOUT_S, keep=(1, 17)) -> list:
        """Packets received until ``until(got)`` or ``seconds`` pass, each read and checked;
        only those of the services in ``keep`` are returned (by default: the answers to TCs)."""
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until(got) and not self.closed:
            self.harness.pump(0.01)
            for packet in self._read():
                item = (*self.read(packet), packet)
                if item[0] in keep:
                    got.append(item)
        return got

    def expect(self, n: int, **kw) -> list:
        got = self.collect(lambda g: len(g) >= n, **kw)
        assert len(got) == n, [(s, t) for s, t, *_ in got]
        return got

    def close(self) -> None:
        self.sock.close()


def _kinds(got) -> list[tuple[int, int]]:
    return [(service, subtype) for service, subtype, *_ in got]


def _verification(item) -> Service1Tm:
    return Service1Tm.unpack(item[-1], ManagedParams(timestamp_len=7), ManagedParamsVerification())


def _ping(seq: int = 1, flags: int = framing.ACK_NONE) -> PusTc:
    return pus17.ping_tc(seq_count=seq, source_id=0x1234, ack_flags=flags)


def _setpoint(value: float = 30.0, flags: int = framing.ACK_ALL, seq: int = 2) -> PusTc:
    return pus8.function_tc(DICT, "thermal.set_setpoint", {"setpoint_c": value}, seq_count=seq, source_id=0x1234,
                            ack_flags=flags)


FRAME_PERIOD_S = 0.05
"""Wall seconds per served tick (one onboard second each)."""
STOP_TIMEOUT_S = 30.0
"""How long :meth:`ServedLink.close` waits for its thread, which may be in the middle of a
:meth:`LinkHarness.pump` (up to :data:`SETTLE_TIMEOUT_S` past its own time) on a loaded machine."""


class ServedLink:
    """The harness's LinkManager served from its own thread, ticking every FRAME_PERIOD_S;
    ``call(fn)`` runs ``fn(harness)`` once in that thread (the link is single-threaded),
    ``each_tick(harness)`` after every tick."""

    def __init__(self, tmp_path, contact: bool = True) -> None:
        self.harness = LinkHarness(tmp_path)
        self.contact = contact
        self.endpoint = f"127.0.0.1:{self.harness.port}"
        self._calls: list = []
        self.each_tick = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        """What ended the serving thread early, if anything."""
        self.harness.frame(contact=contact)  # contact is known before any client can connect
        self._thread = threading.Thread(target=self._serve, name="link", daemon=True)
        self._thread.start()

    def call(self, fn) -> None:
        with self._lock:
            self._calls.append(fn)

    def _serve(self) -> None:
        next_frame = time.monotonic() + FRAME_PERIOD_S
        try:
            while not self._stop.is_set():
                with self._lock:
                    calls, self._calls = self._calls, []
                for fn in calls:
                    fn(self.harness)
                self.harness.pump(0.005)
                if time.monotonic() >= next_frame:
                    self.harness.frame(contact=self.contact)
                    if self.each_tick is not None:
                        self.each_tick(self.harness)
                    next_frame = time.monotonic() + FRAME_PERIOD_S
        except BaseException as exc:
            self.error = exc  # close() raises it in the test's thread: a link that died mid-test fails it
            raise

    def close(self) -> None:
        """Stop the thread, then close the harness, and raise what ended the thread early.

        Raises:
            RuntimeError: the thread did not stop within :data:`STOP_TIMEOUT_S`; its sockets are
                then left open, since destroying their ZeroMQ context under a thread that still
                uses them aborts the whole process (a libzmq assertion), test runner included.
        """
        self._stop.set()
        self._thread.join(timeout=STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError(f"the served link's thread did not stop within {STOP_TIMEOUT_S:g} s")
        self.harness.close()
        if self.error is not None:
            raise RuntimeError("the served link's thread failed") from self.error
