"""Link manager: the only process that talks to the ground.

It serves the space link on ``config.link_endpoint`` (``HOST:PORT``) as a TCP server
(:class:`~flight.subsystems.link.stream_server.StreamServer`: non-blocking sockets served from this
process's thread, polled by the process runtime through :meth:`LinkManager.poll_items`).
The wire format is a stream of CCSDS Space Packets carrying ECSS PUS-C (CCSDS 133.0-B-2,
ECSS-E-ST-70-41C), built and parsed only in :mod:`flight.spacelink.pus`, where data fields and
failure codes are documented. APIDs: every TC goes to APID 4 (this component's id);
verification and ping TM come from APID 4; housekeeping and event TM carry the APID
(= component id) of the component they describe.

Authentication
    Every TC must carry the SDLS-style security header and MAC of :mod:`flight.spacelink.sdls`
    (HMAC-SHA256 with a per-ground-station key chosen by its SPI, CCSDS 355.0-B-2 manner)
    and a sequence number (ARSN) it has not accepted before. The station keys are every
    ``*.key`` in ``config.keys_dir`` (:mod:`flight.spacelink.keys`), loaded at start; the
    highest ARSN accepted per SPI is stored in :data:`REPLAY_STATE_FILE` in the run data
    directory before the TC is acted on, so a restarted link still refuses old numbers.
    A TC that fails (no security fields, unknown SPI, MAC mismatch, replayed or stale
    ARSN) gets TM[1,2] AUTHENTICATION_ERROR with the reason, is counted (``tc_rejected``
    and ``tc_auth_failed``), reported by a MEDIUM event, and nothing of it is executed,
    not even a ping. The verdict goes only to the connection that sent it.

    The link still binds only loopback addresses: telemetry is neither authenticated nor
    encrypted and goes to every connection, so exposing the port needs SDLS on the
    downlink as well.

Lab mode
    With ``config.unauthenticated_lab`` (``flight run --unauthenticated-lab``) TCs carry
    no security fields and are not checked; the link says so with a HIGH event
    (``link.lab_mode``) on its first tick.

Contact
    The link is up while the latest sensor frame says ``ground_contact`` (or always with
    ``config.contact == "always"``). The transmitter is switched to match. While it is
    down arriving TCs are dropped (``tc_dropped_no_contact``) and TM that is not kept in a
    packet store (verification, ping) is not sent (``tm_dropped_no_contact``).

Store and forward (:mod:`flight.subsystems.link.packet_stores`)
    Every TM[3,25], TM[5,x] and TM[140,1] (job results, looked for in the job runner's
    ``jobs.sqlite`` every housekeeping interval and read when it has committed since) is
    stored in its onboard packet store whether or not there is contact, and in contact sent
    at once (real time). On each tick in contact the rest of the budget goes to the
    backlog: events, then verification reports, then housekeeping, then job results, oldest
    first, within the tick's share of the frame's ``downlink_rate_bps``
    (``rate × tick_s / 8`` bytes, real time included; in ``always`` contact without a pass
    rate :data:`LAB_DOWNLINK_RATE_BPS`) and at most
    :data:`BACKLOG_PACKETS_PER_TICK` packets. Real time goes to every connection; the
    backlog only to *archiving* connections, those that have sent a TC[15,130] downlink
    acknowledgement (the number of TM packets that connection has received; 0 to start).
    A stored packet sent to archiving connections is done once one acknowledges it, and
    goes back to the backlog when every one it went to closed without acknowledging it;
    with no archiving connection it waits on board. TC[15,1]/[15,2] enable/disable
    storage per store, TC[15,9] queues a store's packets in a time range for downlink
    again, TC[15,11] deletes up to a time, TC[15,12] answers with TM[15,13] (each store's
    count, unacknowledged packets, time span and retention counters) to its sender.

    What a tick stores is committed at the end of the tick once
    :data:`STORE_COMMIT_INTERVAL_S` of wall time has passed since the last commit (every
    tick at real-time speed; a group of ticks when the simulation runs faster); a store
    change commanded by TC[15,x] is committed before its completion is reported. A crash
    loses at most that interval of stored telemetry, never a store change the ground was
    told was done; a packet sent before the crash and stored again after it is the same
    bytes, which the ground archive keeps once. Acknowledgements are committed with the
    telemetry: one lost to a crash only sends its packets again.

Services (PUS-C)
    ===========  ==========================================================================
    TC[17,1]     answered with TM[17,2]; verification reports as its ack flags ask
    TC[8,1]      decoded into an internal command sent to the dispatcher; its responses
                 become TM[1,1]/[1,2] acceptance, TM[1,3]/[1,4] start, TM[1,5] progress,
                 TM[1,7]/[1,8] completion. Acceptance and completion success are always
                 sent; start and progress success only when the TC's ack flags ask; failures
                 always (ECSS-E-ST-70-41C 6.1.3).
    TM[3,25]     every ``hk_interval_s`` of onboard time (or the structure's own TC[3,31]
                 interval; none after TC[3,6]): each component's latest ``<name>.hk``
                 packet, timed at its sampling time
    TM[5,1..4]   every bus event, at once while in contact
    3,x 5,x      housekeeping structures on/off and intervals, event reports on/off;
    11,x 20,x    the time-based schedule and parameters (:mod:`flight.subsystems.link.operations`)
    ===========  ==========================================================================

    A TC that frames and passes its CRC but cannot be accepted gets TM[1,2]: an APID other
    than :data:`~flight.spacelink.pus.TC_APID` or an unsupported service → INVALID_OPCODE;
    TC[8,1] data that does not decode → FORMAT_ERROR or INVALID_OPCODE; too many TCs in
    flight → BUSY. Bytes that do not frame as a TC (garbage, bad CRC) cannot be answered
    (their request id is not trustworthy): they are discarded up to the next plausible
    header, counted (``tc_rejected``, ``bytes_discarded``) and reported by event.

Bounds
    :data:`MAX_CONNECTIONS` clients (more are refused and counted); one partial packet per
    connection (``TcStreamParser``: overflow drops the connection and is counted); a
    partial packet left for :data:`STALL_S` without new bytes is discarded; a TC is at
    most :data:`~flight.spacelink.pus.MAX_TC_LEN` bytes (longer ones do not frame); each
    connection may send :data:`TC_RATE_PER_S` TCs per wall second with bursts of
    :data:`TC_BURST` (a token bucket, checked before any authentication work), the rest are
    dropped unanswered and counted (``tc_rate_limited``); at most :data:`MAX_PENDING`
    TC[8,1] in flight; at most :data:`EVENT_BUDGET_PER_TICK` events of the link's own per
    tick (the rest only counted in ``events_suppressed``). The replay state holds at most
    :data:`~flight.spacelink.sdls.REPLAY_WINDOW` numbers per station key.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq
from spacepackets.ecss.pus_1_verification import MessageSubtype as Verif
from spacepackets.ecss.tc import PusTc

from flight.core.config import RunConfig
from flight.core.component import Arg, Channel, Command, CommandError, Component, Dictionary, Event, EventArg, Parameter
from flight.spacelink.keys import load_all
from flight.spacelink.pus import (
    ACK_PROGRESS,
    ACK_START,
    DELETE_UP_TO,
    DISABLE_STORAGE,
    DOWNLINK_ACK,
    ENABLE_STORAGE,
    FAILURE_CODE_NUMBERS,
    LINK_COMPONENT_ID,
    MAX_TC_LEN,
    OVERFLOW,
    RETRIEVE_BY_TIME_RANGE,
    STORAGE_SERVICE,
    TC_APID,
    Rejection,
    TcStreamParser,
    TmEncoder,
    decode_function,
    decode_storage_tc,
    is_function,
    is_loopback,
    is_ping,
    job_result_report,
    parse_endpoint,
    store_status_report,
)
from flight.spacelink.sdls import AuthenticationError, ReplayGuard, StationKey, unprotect
from flight.subsystems.link.operations import ONBOARD, LinkOperations
from flight.subsystems.link.stream_server import Sent, StreamServer
from flight.core.messages import Message
from flight.subsystems.link.packet_stores import DOWNLINK_ORDER, STORE_BY_ID, STORE_BY_NAME, STORE_FILE, PacketStores
from flight.core.subsystem import Emit, SendCommand, Subsystem

MAX_CONNECTIONS = 4
RX_BUFFER_BYTES = 4 * MAX_TC_LEN
"""Per-connection receive buffer cap (a partial TC waiting for its remaining bytes)."""
STALL_S = 2.0
"""Wall seconds a partial packet may wait for its remaining bytes before it is discarded."""
MAX_PENDING = 64
PENDING_TIMEOUT_S = 60.0
"""Backstop for a TC[8,1] whose command never gets a final answer (the dispatcher's own
timeout is 30 s; this covers a dispatcher that is gone)."""
EVENT_BUDGET_PER_TICK = 8
DEFAULT_HK_INTERVAL_S = 10.0
TC_RATE_PER_S = 10.0
TC_BURST = 20.0
"""Per-connection TC token bucket: sustained TCs per wall second, and the burst allowed."""
REPLAY_STATE_FILE = "link_replay.sqlite"
"""Anti-replay state (highest accepted ARSN per SPI) in the run data directory."""
BACKLOG_PACKETS_PER_TICK = 2000
"""Most stored packets sent per tick: bounds the tick's time (~10 ms) however large the backlog."""
LAB_DOWNLINK_RATE_BPS = 2e9
"""Downlink rate in ``always`` contact when the frame gives none: DESIGN's Ka-band 2 Gbit/s."""
STORE_COMMIT_INTERVAL_S = 0.1
"""Most wall seconds between packet-store commits: a SQLite WAL commit costs ~0.1 ms, which
per tick was a quarter of the link's time per housekeeping packet at full simulation speed
(``tools/bench_link.py``); a crash loses at most this much of the stored telemetry."""
JOBS_DB = "jobs.sqlite"
"""The job runner's database in the run data directory; only its ``results`` table is read."""


@dataclass
class _TokenBucket:
    """``rate`` tokens per wall second, at most ``burst`` saved up; one token per TC."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class _Connection:
    identity: bytes
    peer: str
    parser: TcStreamParser
    last_rx: float
    bucket: _TokenBucket
    tm_count: int = 0
    """TM packets written to this connection so far (what TC[15,130] acknowledges)."""
    archiving: bool = False
    """It has sent a TC[15,130]: a ground that archives and acknowledges, so it is sent the
    stored backlog and holds what it was sent until it acknowledges it."""


@dataclass
class _PendingTc:
    tc: PusTc
    identity: bytes
    qualified: str
    since: float
    accepted: bool = False
    started: bool = False
    steps: int = 0


class LinkManager(LinkOperations, Subsystem):
    COMPONENT = Component(
        "link", LINK_COMPONENT_ID,
        doc="Ground link: CCSDS/PUS-C telecommands in, telemetry and events out, during contact.",
        commands=(
            Command("set_hk_interval", 1, (Arg("interval_s", "float", "s", 1.0, 3600.0,
                                               doc="Onboard seconds between housekeeping downlinks."),),
                    doc="Change how often each component's housekeeping is downlinked (TM[3,25])."),
        ),
        telemetry=(
            Channel("contact", "bool", "", "Link up: ground station in view (or lab mode 'always')."),
            Channel("clients", "int", "count", "Ground connections open."),
            Channel("tc_received", "int", "count", "Telecommands framed with a good CRC."),
            Channel("tc_accepted", "int", "count", "Telecommands answered or handed to the dispatcher."),
            Channel("tc_rejected", "int", "count", "Telecommands refused and runs of discarded bytes.",
                    yellow=(0, 0)),
            Channel("tc_dropped_no_contact", "int", "count", "Telecommands dropped for lack of contact."),
            Channel("bytes_discarded", "int", "B", "Uplink bytes that did not frame as a telecommand."),
            Channel("tm_sent", "int", "count", "Telemetry packets sent (one per client)."),
            Channel("tm_dropped", "int", "count", "Telemetry packets not sent: client queue full or gone.",
                    yellow=(0, 0)),
            Channel("tm_dropped_no_contact", "int", "count", "Telemetry packets not sent for lack of contact."),
            Channel("tm_errors", "int", "count", "Housekeeping or events that could not be encoded.",
                    yellow=(0, 0)),
            Channel("bytes_up", "int", "B", "Bytes received from the ground."),
            Channel("bytes_down", "int", "B", "Bytes sent to the ground."),
            Channel("connections_refused", "int", "count", f"Connections over the {MAX_CONNECTIONS}-client limit."),
            Channel("buffer_overflows", "int", "count", "Connections dropped for overflowing the receive buffer."),
            Channel("commands_pending", "int", "count", "TC[8,1] sent on board and not yet final."),
            Channel("hk_interval_s", "float", "s", "Onboard seconds between housekeeping downlinks."),
            Channel("events_suppressed", "int", "count", "Link events over the per-tick budget, not published."),
            Channel("tc_auth_failed", "int", "count",
                    "Telecommands rejected for a missing or wrong MAC, unknown key or replayed sequence number.",
                    yellow=(0, 0)),
            Channel("tc_rate_limited", "int", "count", "Telecommands dropped over a connection's rate limit.",
                    yellow=(0, 0)),
            Channel("tm_backlog_sent", "int", "count", "Stored packets sent from the backlog (after real time)."),
            Channel("tm_acknowledged", "int", "count", "Stored packets the ground acknowledged (TC[15,130])."),
            Channel("tm_requeued", "int", "count",
                    "Stored packets back in the backlog: their connections closed unacknowledged."),
            Channel("tm_dropped_retention", "int", "count",
                    "Unacknowledged stored packets dropped by a store's retention limit.", yellow=(0, 0)),
            Channel("store_errors", "int", "count", "Packet store or job database errors.", yellow=(0, 0)),
            Channel("schedule_enabled", "bool", "", "Time-based schedule releases its TCs (TC[11,1]/[11,2])."),
            Channel("schedule_activities", "int", "count", "Time-tagged TCs waiting in the schedule."),
            Channel("tc_released", "int", "count", "Scheduled TCs released at their time."),
            Channel("hk_structures_disabled", "int", "count", "Housekeeping structures with TM[3,25] off."),
            Channel("events_disabled", "int", "count", "Event ids with TM[5,x] generation off."),
            Channel("events_filtered", "int", "count", "Events not reported: their TM[5,x] generation is off."),
        ),
        events=(
            Event("lab_mode", 1, "HIGH",
                  "space link UNAUTHENTICATED lab mode on {endpoint}: telecommands are not authenticated, "
                  "loopback only",
                  args=(EventArg("endpoint", "str"),)),
            Event("client_connected", 2, "INFO", "ground client {peer} connected ({clients} open)",
                  args=(EventArg("peer", "str"), EventArg("clients", "int", "count"))),
            Event("client_disconnected", 3, "INFO", "ground client {peer} disconnected ({clients} open)",
                  args=(EventArg("peer", "str"), EventArg("clients", "int", "count"))),
            Event("connection_refused", 4, "MEDIUM", "refused ground client {peer}: {clients} of {limit} open",
                  args=(EventArg("peer", "str"), EventArg("clients", "int", "count"),
                        EventArg("limit", "int", "count"))),
            Event("bytes_rejected", 5, "LOW", "discarded {nbytes} byte(s) from {peer}: {why}",
                  args=(EventArg("nbytes", "int", "bytes"), EventArg("peer", "str"), EventArg("why", "str"))),
            Event("tc_rejected", 6, "LOW", "rejected TC[{service},{subtype}] from {peer}: {code} {why}",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"),
                        EventArg("code", "str"), EventArg("why", "str"))),
            Event("tc_dropped_no_contact", 7, "LOW", "dropped TC[{service},{subtype}] from {peer}: no contact",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"))),
            Event("buffer_overflow", 8, "MEDIUM", "dropped ground client {peer}: over {limit} bytes buffered",
                  args=(EventArg("peer", "str"), EventArg("limit", "int", "bytes"))),
            Event("contact_acquired", 9, "INFO",
                  "contact acquired: station {station:g} at {elevation_deg:.1f} deg elevation",
                  args=(EventArg("station", "float"), EventArg("elevation_deg", "float", "deg"))),
            Event("contact_lost", 10, "INFO", "contact lost"),
            Event("tm_encode_failed", 11, "LOW", "cannot downlink {what}: {why}",
                  args=(EventArg("what", "str"), EventArg("why", "str"))),
            Event("authenticated", 12, "INFO",
                  "space link on {endpoint}: telecommands authenticated (HMAC-SHA256, SDLS manner) "
                  "with {count} station key(s): {stations}",
                  args=(EventArg("endpoint", "str"), EventArg("count", "int", "count"), EventArg("stations", "str"))),
            Event("tc_auth_failed", 13, "MEDIUM",
                  "rejected TC[{service},{subtype}] from {peer}: AUTHENTICATION_ERROR {why}",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"),
                        EventArg("why", "str"))),
            Event("tc_rate_limited", 14, "LOW", "dropped TC[{service},{subtype}] from {peer}: over {rate:g} TC/s",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"),
                        EventArg("rate", "float", "TC/s"))),
            Event("store_failed", 30, "MEDIUM", "packet store {store}: {why}",
                  args=(EventArg("store", "str"), EventArg("why", "str"))),
            Event("storage_changed", 31, "INFO", "{what} for packet store(s) {stores}",
                  args=(EventArg("what", "str"), EventArg("stores", "str"))),
            Event("tc_released", 40, "INFO",
                  "released scheduled TC[{service},{subtype}] 0x{request_id:08x}, {late_s:.1f} s after its time",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("request_id", "int"),
                        EventArg("late_s", "float", "s"))),
            Event("schedule_failed", 41, "MEDIUM", "time-based schedule: {why}",
                  args=(EventArg("why", "str"),)),
        ),
        parameters=(
            Parameter("hk_interval_s", 1, "float", "s", 1.0, 3600.0, DEFAULT_HK_INTERVAL_S,
                      "Onboard seconds between TM[3,25] of a structure without its own TC[3,31] interval."),
        ),
    )
    RATE_GROUPS = ((1, "step"),)
    SUBSCRIBE = (b"tm/", b"ev/")

    def __init__(self, config: RunConfig, emit: Emit, send_command: SendCommand | None = None,
                 dictionary: Dictionary | None = None, **ports: Any) -> None:
        """``dictionary`` defaults to the full flight dictionary, loaded on first use.

        Raises:
            ValueError: a link endpoint that is not ``HOST:PORT`` on a loopback host; without
                ``config.unauthenticated_lab``, no station key or a bad key file in
                ``config.keys_dir``.
            OSError: the key directory or a key file cannot be read.
        """
        super().__init__(config, emit, send_command, **ports)
        self.host, self.port = parse_endpoint(config.link_endpoint)
        if not is_loopback(self.host):
            raise ValueError(
                f"link endpoint {config.link_endpoint} is not loopback: the downlink is neither authenticated "
                "nor encrypted, so the link binds only 127.0.0.1, ::1 or localhost")
        self.lab = config.unauthenticated_lab
        self.keys: dict[int, StationKey] = {}
        if not self.lab:
            self.keys = load_all(Path(config.keys_dir)) if config.keys_dir else {}
            if not self.keys:
                raise ValueError(f"no station keys in {config.keys_dir or '(no keys directory)'}: create one "
                                 "with `flight keys init`, or fly with --unauthenticated-lab")
        self._replay: ReplayGuard | None = None
        self._dictionary = dictionary
        self.endpoint = ""
        """``HOST:PORT`` actually bound (port 0 asks for any free port)."""
        self.tm = TmEncoder()
        self.contact = config.contact == "always"
        self.hk_interval_s = DEFAULT_HK_INTERVAL_S
        self._next_hk_s = 0.0
        self._utc_offset_s: float | None = None
        self._latest_hk: dict[str, tuple[float, dict]] = {}
        self._conns: dict[bytes, _Connection] = {}
        self._pending: dict[str, _PendingTc] = {}
        self._id_prefix = f"link-{os.getpid()}-"
        self._serial = 0
        self._first_tick = True
        self._committed_at = -float("inf")
        self._event_budget = EVENT_BUDGET_PER_TICK
        self.tc_received = self.tc_accepted = self.tc_rejected = self.tc_dropped_no_contact = 0
        self.bytes_discarded = self.tm_sent = self.tm_dropped = self.tm_dropped_no_contact = 0
        self.tm_errors = self.bytes_up = self.bytes_down = self.connections_refused = 0
        self.buffer_overflows = self.events_suppressed = self.tc_auth_failed = self.tc_rate_limited = 0
        self._server: StreamServer | None = None
        self._ops_init()
        self.stores: PacketStores | None = None
        self._jobs_db: sqlite3.Connection | None = None
        self._jobs_path = self.config.data_path / JOBS_DB
        self._results_read_version: int | None = None
        """``PRAGMA data_version`` of ``jobs.sqlite`` at the last read that left no result waiting."""
        self._stored_hk_t: dict[str, float] = {}
        self._results_done: set[int] = set()
        self._budget_bytes = 0.0
        # no count of packets stored in telemetry: the executive's housekeeping follows the wall
        # clock, so it would make a lockstep run's telemetry differ (TM[15,13] reports the counts)
        self.tm_backlog_sent = self.tm_acknowledged = self.tm_requeued = self.store_errors = 0

    @property
    def dictionary(self) -> Dictionary:
        if self._dictionary is None:
            from flight.executive.supervisor import full_dictionary  # imports every subsystem, this one included

            self._dictionary = full_dictionary()
        return self._dictionary

    # -- socket lifecycle --------------------------------------------------------------
    def on_start(self) -> None:
        self.config.data_path.mkdir(parents=True, exist_ok=True)
        self.stores = PacketStores(self.config.data_path / STORE_FILE)
        if not self.lab:
            self.config.data_path.mkdir(parents=True, exist_ok=True)
            self._replay = ReplayGuard(self.config.data_path / REPLAY_STATE_FILE)
        self._ops_start()
        self._server = StreamServer(self.host, self.port)
        self.endpoint = self._server.endpoint

    def poll_items(self) -> list[tuple[Any, Callable[[], None]]]:
        return [(self._server.fileno(), self.on_stream)]  # a poller answers a plain descriptor by its number

    def on_stop(self) -> None:
        if self._server is not None:
            self._server.close_all()
            self._server = None
        if self._replay is not None:
            self._replay.close()
            self._replay = None
        self._ops_stop()
        if self.stores is not None:
            self.stores.close()
            self.stores = None
        if self._jobs_db is not None:
            self._jobs_db.close()
            self._jobs_db = None
            self._results_read_version = None  # a version counts commits seen by one connection only

    # -- rate group --------------------------------------------------------------------
    def step(self, frame: dict[str, Any]) -> None:
        self._event_budget = EVENT_BUDGET_PER_TICK
        if self._first_tick:
            # on the first tick, not in on_start: by now the bus has delivered our publisher's
            # subscriptions, so the warning reaches the recorder instead of being dropped
            self._first_tick = False
            if self.lab:
                self.event("lab_mode", endpoint=self.endpoint)
            else:
                self.event("authenticated", endpoint=self.endpoint, count=len(self.keys),
                           stations=", ".join(f"{k.station} (SPI {k.spi})" for k in self.keys.values()))
        self._utc_offset_s = float(frame["utc_unix_s"]) - self.time_s
        self._update_contact(frame)
        now = time.monotonic()
        for command_id, p in list(self._pending.items()):
            if now - p.since > PENDING_TIMEOUT_S:
                self._final_failure(command_id, p, "EXECUTION_ERROR", f"no answer within {PENDING_TIMEOUT_S:g} s")
        for conn in list(self._conns.values()):
            if conn.parser.buffered and now - conn.last_rx > STALL_S:
                self._handle(conn, conn.parser.flush_stalled())
        rate_bps = float(frame["downlink_rate_bps"])
        if self.config.contact == "always" and rate_bps <= 0:
            rate_bps = LAB_DOWNLINK_RATE_BPS
        self._budget_bytes = rate_bps * self.config.tick_s / 8
        self._release_due()
        if self.time_s >= self._next_hk_s:
            self._next_hk_s = self.time_s + self._hk_gate_interval_s()
            self._downlink_hk()
            self._store_results()
        if self.contact:
            self._downlink_backlog()
        self._commit_stores()

    def housekeeping(self) -> None:
        self.telemetry(
            contact=self.contact, clients=len(self._conns), tc_received=self.tc_received,
            tc_accepted=self.tc_accepted, tc_rejected=self.tc_rejected,
            tc_dropped_no_contact=self.tc_dropped_no_contact, bytes_discarded=self.bytes_discarded,
            tm_sent=self.tm_sent, tm_dropped=self.tm_dropped, tm_dropped_no_contact=self.tm_dropped_no_contact,
            tm_errors=self.tm_errors, bytes_up=self.bytes_up, bytes_down=self.bytes_down,
            connections_refused=self.connections_refused, buffer_overflows=self.buffer_overflows,
            commands_pending=len(self._pending), hk_interval_s=self.hk_interval_s,
            events_suppressed=self.events_suppressed, tc_auth_failed=self.tc_auth_failed,
            tc_rate_limited=self.tc_rate_limited, tm_backlog_sent=self.tm_backlog_sent,
            tm_acknowledged=self.tm_acknowledged, tm_requeued=self.tm_requeued,
            tm_dropped_retention=self.stores.dropped if self.stores is not None else 0,
            store_errors=self.store_errors, schedule_enabled=self.schedule is not None and self.schedule.enabled,
            schedule_activities=len(self.schedule) if self.schedule is not None else 0,
            tc_released=self.tc_released, hk_structures_disabled=len(self.hk_disabled),
            events_disabled=len(self.events_disabled), events_filtered=self.events_filtered,
        )

    def _update_contact(self, frame: dict[str, Any]) -> None:
        contact = bool(frame["ground_contact"]) or self.config.contact == "always"
        if contact != self.contact:
            self.contact = contact
            if contact:
                self.event("contact_acquired", station=float(frame["ground_station_id"]),
                           elevation_deg=float(frame["ground_elevation_deg"]))
            else:
                self.event("contact_lost")
        if bool(frame["transmitter_on"]) != contact:
            self.actuate(transmitter_on=contact)

    # -- downlink ----------------------------------------------------------------------
    def _utc_at(self, sim_time_s: float) -> float:
        # before the first frame onboard UTC is unknown; the host clock stands in for an RTC
        return time.time() if self._utc_offset_s is None else sim_time_s + self._utc_offset_s

    def _send(self, identity: bytes, packet: bytes) -> bool:
        """Write one TM to one connection; whether it went."""
        return self._send_many(identity, [packet])

    def _send_many(self, identity: bytes, packets: list[bytes]) -> bool:
        """Write TM packets to one connection in one write (TCP is a byte stream, so the
        ground frames them apart); whether they went, all or none."""
        if not self.contact:
            self.tm_dropped_no_contact += len(packets)
            return False
        data = packets[0] if len(packets) == 1 else b"".join(packets)
        sent = self._server.send(identity, data)
        if sent is not Sent.SENT:  # its send buffer is full, or it closed under us
            self.tm_dropped += len(packets)
            if sent is Sent.GONE:
                self._forget(identity)
            return False
        conn = self._conns.get(identity)
        if conn is not None:
            conn.tm_count += len(packets)
        self.tm_sent += len(packets)
        self.bytes_down += len(data)
        return True

    def _broadcast(self, packet: bytes) -> None:
        if not self.contact:
            self.tm_dropped_no_contact += 1
            return
        for identity in list(self._conns):
            self._send(identity, packet)

    def _reply(self, identity: bytes, packet: bytes) -> None:
        """Send to the client that sent the TC, or to every client once it is gone, so a
        verdict on an accepted command is never lost while anyone is listening. Reports about
        a TC released from the onboard schedule are stored for the ground."""
        if identity == ONBOARD:
            self._store_tm("verification", packet, self.time_s)
        elif identity in self._conns:
            self._send(identity, packet)
        else:
            self._broadcast(packet)

    def _downlink_hk(self) -> None:
        reports: list[tuple[bytes, float, float]] = []
        components = self.dictionary.components
        for name, (sampled_t, values) in self._latest_hk.items():
            if self._stored_hk_t.get(name) == sampled_t:
                continue  # no new sample since the last report: storing it twice adds nothing
            component = components[name]
            if not self._hk_due(component):
                continue  # TM[3,25] generation off, or the structure's own interval not yet passed
            self._stored_hk_t[name] = sampled_t
            utc = self._utc_at(sampled_t)
            try:
                packet = self.tm.hk_report(component, values, utc_unix_s=utc)
            except ValueError as exc:
                self.tm_errors += 1
                self._budgeted_event("tm_encode_failed", what=f"{name}.hk", why=str(exc)[:160])
                continue
            reports.append((packet, sampled_t, utc))
        self._store_many("hk", reports)

    def _budgeted_event(self, name: str, **args: Any) -> None:
        if self._event_budget > 0:
            self._event_budget -= 1
            self.event(name, **args)
        else:
            self.events_suppressed += 1

    # -- bus inputs --------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        if msg.kind == "tm" and msg.name.endswith(".hk"):
            name = msg.name[:-3]
            if name in self.dictionary.components and isinstance(msg.data, dict):
                self._latest_hk[name] = (msg.t, msg.data)
        elif msg.kind == "ev":
            message = msg.data.get("message") if isinstance(msg.data, dict) else None
            try:
                if msg.name not in self.dictionary.events or not isinstance(message, str):
                    raise ValueError("not a declared event with a message")
                if self._event_disabled(msg.name):
                    return
                packet = self.tm.event_report(self.dictionary, msg.name, message, utc_unix_s=self._utc_at(msg.t))
            except ValueError:  # no event about it: events about events could feed on themselves
                self.tm_errors += 1
                return
            self._store_tm("events", packet, msg.t)

    def on_response(self, msg: Message) -> None:
        data = msg.data if isinstance(msg.data, dict) else {}
        command_id = data.get("id")
        p = self._pending.get(command_id) if isinstance(command_id, str) else None
        if p is None:
            return  # not ours, or already final
        stage = data.get("stage")
        if stage == "failed":
            code = data.get("code")
            code = code if code in FAILURE_CODE_NUMBERS else "EXECUTION_ERROR"
            self._final_failure(command_id, p, code, str(data.get("message", "")))
            return
        if not p.accepted:
            p.accepted = True
            self._verify(p, Verif.TM_ACCEPTANCE_SUCCESS)
        if stage == "started" and not p.started:
            p.started = True
            if p.tc.pus_tc_sec_header.ack_flags & ACK_START:
                self._verify(p, Verif.TM_START_SUCCESS)
        elif stage == "progress":
            p.steps += 1
            if p.tc.pus_tc_sec_header.ack_flags & ACK_PROGRESS:
                self._verify(p, Verif.TM_STEP_SUCCESS, step=p.steps)
        elif stage == "completed":
            del self._pending[command_id]
            self._verify(p, Verif.TM_COMPLETION_SUCCESS)

    def _final_failure(self, command_id: str, p: _PendingTc, code: str, message: str) -> None:
        del self._pending[command_id]
        subtype = (Verif.TM_ACCEPTANCE_FAILURE if not p.accepted
                   else Verif.TM_START_FAILURE if not p.started else Verif.TM_COMPLETION_FAILURE)
        self._verify(p, subtype, code=code, message=message)

    def _verify(self, p: _PendingTc, subtype: int, **fields: Any) -> None:
        self._reply(p.identity, self.tm.verification(subtype, p.tc, utc_unix_s=self._utc_at(self.time_s), **fields))

    # -- uplink ------------------------------------------------------------------------
    def on_stream(self) -> None:
        """Handler of the link's server (:class:`~flight.subsystems.link.stream_server.StreamServer`):
        connections opened and closed, uplink bytes, held-back downlink written."""
        for kind, identity, payload in self._server.service():
            if kind == "connected":
                self._connected(identity, payload)
            elif kind == "closed":
                conn = self._forget(identity)
                if conn is not None:
                    self._budgeted_event("client_disconnected", peer=conn.peer, clients=len(self._conns))
            elif (conn := self._conns.get(identity)) is not None:  # else: bytes of a connection we closed
                self.bytes_up += len(payload)
                conn.last_rx = time.monotonic()
                self._handle(conn, conn.parser.feed(payload))

    def _connected(self, identity: bytes, peer: str) -> None:
        if len(self._conns) >= MAX_CONNECTIONS:
            self.connections_refused += 1
            self._close(identity)
            self._budgeted_event("connection_refused", peer=peer, clients=len(self._conns), limit=MAX_CONNECTIONS)
            return
        now = time.monotonic()
        self._conns[identity] = _Connection(identity, peer, TcStreamParser(RX_BUFFER_BYTES), now,
                                            _TokenBucket(TC_RATE_PER_S, TC_BURST, TC_BURST, now))
        self._budgeted_event("client_connected", peer=peer, clients=len(self._conns))

    def _close(self, identity: bytes) -> None:
        self._server.close(identity)

    def _handle(self, conn: _Connection, items: list[PusTc | Rejection]) -> None:
        for item in items:
            if isinstance(item, PusTc):
                self._on_tc(conn, item)
                continue
            self.tc_rejected += 1
            self.bytes_discarded += item.nbytes
            if item.reason == OVERFLOW:
                self.buffer_overflows += 1
                self._forget(conn.identity)
                self._close(conn.identity)
                self._budgeted_event("buffer_overflow", peer=conn.peer, limit=RX_BUFFER_BYTES)
            else:
                self._budgeted_event("bytes_rejected", peer=conn.peer, nbytes=item.nbytes, why=item.reason)

    def _on_tc(self, conn: _Connection, tc: PusTc) -> None:
        self.tc_received += 1
        if not conn.bucket.take(time.monotonic()):
            # unanswered: a reply per flooded TC would let the flood out again as downlink
            self.tc_rate_limited += 1
            self._budgeted_event("tc_rate_limited", peer=conn.peer, service=tc.service,
                                 subtype=tc.message_subtype, rate=TC_RATE_PER_S)
            return
        if not self.contact:
            self.tc_dropped_no_contact += 1
            self._budgeted_event("tc_dropped_no_contact", peer=conn.peer, service=tc.service,
                                 subtype=tc.message_subtype)
            return
        data = self._authenticate(conn, tc)
        if data is not None:
            self._route(conn, tc, data)

    def _route(self, conn: _Connection, tc: PusTc, data: bytes) -> None:
        """Serve an authenticated TC (from a ground connection or released from the schedule)."""
        if tc.apid != TC_APID:
            self._reject(conn, tc, "INVALID_OPCODE", f"no application process at APID {tc.apid}")
        elif is_ping(tc):
            self._ping(conn, tc, data)
        elif is_function(tc):
            self._function(conn, tc, data)
        elif tc.service == STORAGE_SERVICE:
            self._storage(conn, tc, data)
        elif not self._ops_tc(conn, tc, data):
            self._reject(conn, tc, "INVALID_OPCODE", "service not supported")

    def _authenticate(self, conn: _Connection, tc: PusTc) -> bytes | None:
        """The TC's own data once its MAC checked and its ARSN was admitted (and stored);
        ``None`` after rejecting it. In lab mode: the application data as it is."""
        if self.lab:
            return bytes(tc.app_data)
        try:
            auth = unprotect(tc, self.keys)
            self._replay.admit(auth.spi, auth.arsn)
        except AuthenticationError as exc:
            self._reject(conn, tc, "AUTHENTICATION_ERROR", str(exc))
            return None
        except sqlite3.Error as exc:  # not stored, so not admitted: acting on it would reopen replay
            self._reject(conn, tc, "EXECUTION_ERROR", f"cannot store the sequence number: {exc}")
            return None
        return auth.data

    def _ping(self, conn: _Connection, tc: PusTc, data: bytes) -> None:
        if data:
            self._reject(conn, tc, "FORMAT_ERROR", "TC[17,1] carries no application data")
            return
        self._complete_locally(conn, tc, [self.tm.ping_reply(tc, utc_unix_s=self._utc_at(self.time_s))])

    def _function(self, conn: _Connection, tc: PusTc, data: bytes) -> None:
        try:
            qualified, args = decode_function(self.dictionary, data)
        except CommandError as exc:
            self._reject(conn, tc, exc.code, exc.message)
            return
        self._dispatch_command(conn, tc, qualified, args)

    def _dispatch_command(self, conn: _Connection, tc: PusTc, qualified: str, args: dict[str, Any]) -> None:
        """Send ``tc`` on board as internal command ``qualified(**args)``; its responses
        become ``tc``'s verification reports (:meth:`on_response`)."""
        if len(self._pending) >= MAX_PENDING:
            self._reject(conn, tc, "BUSY", f"{MAX_PENDING} telecommands already in flight")
            return
        self._serial += 1
        command_id = f"{self._id_prefix}{self._serial}"
        self._pending[command_id] = _PendingTc(tc, conn.identity, qualified, time.monotonic())
        try:
            self.command(command_id, qualified, args)
        except zmq.ZMQError as exc:
            del self._pending[command_id]
            self._reject(conn, tc, "EXECUTION_ERROR", f"dispatcher unreachable: {exc}")
            return
        self.tc_accepted += 1

    def _reject(self, conn: _Connection, tc: PusTc, code: str, why: str) -> None:
        self.tc_rejected += 1
        self._reply(conn.identity, self.tm.verification(Verif.TM_ACCEPTANCE_FAILURE, tc, code=code, message=why,
                                                        utc_unix_s=self._utc_at(self.time_s)))
        if code == "AUTHENTICATION_ERROR":
            self.tc_auth_failed += 1
            self._budgeted_event("tc_auth_failed", peer=conn.peer, service=tc.service, subtype=tc.message_subtype,
                                 why=why[:160])
        else:
            self._budgeted_event("tc_rejected", peer=conn.peer, service=tc.service, subtype=tc.message_subtype,
                                 code=code, why=why[:160])

    # -- store and forward (flight.subsystems.link.packet_stores) ----------------------------------------
    def _forget(self, identity: bytes) -> _Connection | None:
        """Drop a connection: what it was sent and did not acknowledge goes back to the backlog."""
        conn = self._conns.pop(identity, None)
        if conn is not None and self.stores is not None:
            self.tm_requeued += self.stores.closed(identity)
        return conn

    def _store_tm(self, store: str, packet: bytes, time_s: float) -> None:
        """Keep ``packet`` (timed at onboard ``time_s``) in ``store`` and, in contact, send it
        at once; with storage disabled for that store it is only sent, if in contact."""
        self._store_many(store, [(packet, time_s, self._utc_at(time_s))])

    def _store_many(self, store: str, items: list[tuple[bytes, float, float]]) -> None:
        """:meth:`_store_tm` for several ``(packet, time_s, utc_unix_s)``, sent in one write."""
        if not items:
            return
        try:
            seqs = self.stores.add_many(store, items)
        except sqlite3.Error as exc:
            self.store_errors += 1
            self._budgeted_event("store_failed", store=store, why=str(exc)[:160])
            seqs = [None] * len(items)
        if seqs[0] is None:  # storage disabled for the store (all or none), or it failed: sent only
            for packet, _, _ in items:
                self._broadcast(packet)
        elif self.contact:
            self._send_stored(STORE_BY_NAME[store].store_id, [(seq, item[0]) for seq, item in zip(seqs, items)])

    def _send_stored(self, store_id: int, items: list[tuple[int, bytes]], backlog: bool = False) -> bool:
        """Send stored ``(seq, packet)`` to every connection (the backlog only to archiving
        ones); the archiving ones hold them until acknowledged. Whether an archiving one took them."""
        sent = False
        packets = [packet for _, packet in items]
        for identity, conn in list(self._conns.items()):
            if backlog and not conn.archiving:
                continue  # a connection that never acknowledges would be sent the whole backlog again and again
            first = conn.tm_count + 1
            if self._send_many(identity, packets) and conn.archiving:
                self.stores.sent_many(identity, first, store_id, [seq for seq, _ in items])
                sent = True
        self._budget_bytes -= sum(map(len, packets))
        return sent

    def _downlink_backlog(self) -> None:
        room = BACKLOG_PACKETS_PER_TICK
        if not any(self.stores.pending_counts.values()) or not any(c.archiving for c in self._conns.values()):
            return
        for spec in DOWNLINK_ORDER:
            while room > 0:
                batch = self.stores.pending(spec.store_id, min(room, 256))
                if not batch:
                    break
                fits, size = [], 0
                for stored in batch:
                    if size + len(stored.packet) > self._budget_bytes:
                        break
                    size += len(stored.packet)
                    fits.append((stored.seq, stored.packet))
                # a lower priority never overtakes: out of budget or queue room, wait for the next tick
                if not fits or not self._send_stored(spec.store_id, fits, backlog=True):
                    return
                room -= len(fits)
                self.tm_backlog_sent += len(fits)
                if len(fits) < len(batch):
                    return

    def _store_results(self) -> None:
        """Store a TM[140,1] for each job result in ``jobs.sqlite`` not stored before.

        The results table is read again only once the job runner has committed since the last
        complete read (``PRAGMA data_version`` of this read-only connection) or that read left
        results waiting, so an interval without a new result costs one pragma, not a table scan.
        """
        try:
            if self._jobs_db is None:
                if not self._jobs_path.exists():
                    return
                self._jobs_db = sqlite3.connect(f"file:{self._jobs_path}?mode=ro", uri=True, timeout=0.05)
                self._results_done = self.stores.results_stored()
            # read before the table: a result committed in between changes it, so it is read next time
            version = self._jobs_db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._results_read_version:
                return
            # only results of earlier ticks: the job runner may be writing this tick's right now,
            # and what a lockstep run stores (and counts in telemetry) must not depend on that race
            new, waiting = [], False
            for job_id, time_s in self._jobs_db.execute("SELECT job_id, time_s FROM results"):
                if job_id in self._results_done:
                    continue
                if time_s < self.time_s:
                    new.append(job_id)
                else:
                    waiting = True
            rows = [self._jobs_db.execute("SELECT job_id, outcome, time_s, work_gpu_s, done_gpu_s, detail "
                                          "FROM results WHERE job_id = ?", (job_id,)).fetchone() for job_id in new]
        except sqlite3.Error as exc:  # not created yet by the job runner, or busy: next interval
            self.store_errors += 1
            self._budgeted_event("store_failed", store="results", why=f"reading {JOBS_DB}: {str(exc)[:120]}")
            return
        component = self.dictionary.components["jobs"]
        for job_id, outcome, time_s, work_gpu_s, done_gpu_s, detail in rows:
            try:
                packet = job_result_report(self.tm, component, job_id, outcome, work_gpu_s, done_gpu_s, detail,
                                           utc_unix_s=self._utc_at(time_s))
                seq = self.stores.add_result(job_id, packet, time_s, self._utc_at(time_s))
            except ValueError as exc:
                self.tm_errors += 1
                self._budgeted_event("tm_encode_failed", what=f"job {job_id} result", why=str(exc)[:160])
                continue
            except sqlite3.Error as exc:
                self.store_errors += 1
                self._budgeted_event("store_failed", store="results", why=str(exc)[:160])
                return
            self._results_done.add(job_id)
            if self.contact and seq is not None:
                self._send_stored(STORE_BY_NAME["results"].store_id, [(seq, packet)])
        if not waiting:  # a result that did not encode would not encode the next time either
            self._results_read_version = version

    def _commit_stores(self) -> None:
        now = time.monotonic()
        if now - self._committed_at < STORE_COMMIT_INTERVAL_S:
            return
        self._committed_at = now
        try:
            self.stores.commit()
        except sqlite3.Error as exc:
            self.store_errors += 1
            self._budgeted_event("store_failed", store="all", why=f"commit: {str(exc)[:140]}")

    def _storage(self, conn: _Connection, tc: PusTc, data: bytes) -> None:
        """TC[15,x] (:func:`flight.spacelink.pus.storage_tc`), done at once and verified by its ack
        flags like a ping; a packet store error refuses it (EXECUTION_ERROR)."""
        try:
            request = decode_storage_tc(tc.message_subtype, data)
            unknown = [i for i in request.store_ids if i not in STORE_BY_ID]
            if unknown:
                raise CommandError("VALIDATION_ERROR", f"no packet store {unknown} (stores: "
                                   + ", ".join(f"{s.store_id} {s.name}" for s in STORE_BY_ID.values()) + ")")
        except CommandError as exc:
            self._reject(conn, tc, exc.code, exc.message)
            return
        names = ", ".join(STORE_BY_ID[i].name for i in request.store_ids)
        reports: list[bytes] = []
        try:
            if request.subtype == DOWNLINK_ACK:
                if conn.identity in self._conns:
                    self._conns[conn.identity].archiving = True
                self.tm_acknowledged += self.stores.acknowledged(conn.identity, request.received)
            elif request.subtype in (ENABLE_STORAGE, DISABLE_STORAGE):
                enable = request.subtype == ENABLE_STORAGE
                self.stores.set_enabled(request.store_ids, enable)
                self._budgeted_event("storage_changed", what="storage enabled" if enable else "storage disabled",
                                     stores=names)
            elif request.subtype == RETRIEVE_BY_TIME_RANGE:
                n = self.stores.retrieve(request.store_ids[0], request.from_utc_unix_s, request.to_utc_unix_s)
                self._budgeted_event("storage_changed", what=f"{n} packet(s) queued for downlink", stores=names)
            elif request.subtype == DELETE_UP_TO:
                n = self.stores.delete_up_to(request.store_ids, request.to_utc_unix_s)
                self._budgeted_event("storage_changed", what=f"{n} packet(s) deleted", stores=names)
            else:
                wanted = set(request.store_ids or STORE_BY_ID)
                entries = [st for st in self.stores.status() if st.store_id in wanted]
                reports.append(store_status_report(self.tm, entries, dest_id=tc.source_id,
                                                   utc_unix_s=self._utc_at(self.time_s)))
        except sqlite3.Error as exc:
            self.store_errors += 1
            self._reject(conn, tc, "EXECUTION_ERROR", f"packet store: {exc}")
            return
        self._complete_locally(conn, tc, reports)
