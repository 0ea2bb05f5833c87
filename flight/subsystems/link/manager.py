"""Link manager: the only process that talks to the ground.

It serves the space link on ``config.link_endpoint`` (``HOST:PORT``, loopback only: telemetry
is authenticated (:mod:`flight.spacelink.tm_sdls`) but not encrypted and goes to every
connection, so exposing the port needs SDLS encryption on the downlink as well) as a TCP server polled by the process runtime through
:meth:`LinkManager.poll_items`. The wire format is a stream of CCSDS Space Packets carrying
ECSS PUS-C (CCSDS 133.0-B-2, ECSS-E-ST-70-41C), built and parsed only in
the service modules of :mod:`flight.spacelink` (framing, codec, pus1 ... pus140), where data
fields and failure codes are documented. APIDs: every TC goes to APID 4 (this component's id); verification and
ping TM come from APID 4; housekeeping and event TM carry the APID (= component id) of the
component they describe.

This module declares the component (commands, telemetry, events, parameters) and wires its
parts, each built here with the parts it uses:

=====================================================  ====================================================
:mod:`~flight.subsystems.link.state`                   counters, onboard clock and contact, event budget
:mod:`~flight.subsystems.link.connections`             TCP server, open connections, per-connection bounds
:mod:`~flight.subsystems.link.uplink`                  TC framing, rate limit, contact, authentication
:mod:`~flight.subsystems.link.key_store`               station keys and their states, durable
:mod:`~flight.subsystems.link.key_service`             service 141, key management by TC
:mod:`~flight.subsystems.link.routing`                 (service, subtype) → the service that serves it
:mod:`~flight.subsystems.link.verification`            TCs in flight, PUS service 1 reports
:mod:`~flight.subsystems.link.pending`                 TCs in flight, durable across restarts
:mod:`~flight.subsystems.link.downlink`                real time, store and forward, backlog budget
:mod:`~flight.subsystems.link.function_service`        TC[17,1] ping, TC[8,1] functions
:mod:`~flight.subsystems.link.store_service`           PUS 15 over the packet stores
:mod:`~flight.subsystems.link.reporting`               TM[3,25] and TM[5,x], services 3 and 5
:mod:`~flight.subsystems.link.schedule_service`        service 11 (store: :mod:`~flight.subsystems.link.schedule`)
:mod:`~flight.subsystems.link.parameter_service`       service 20
:mod:`~flight.subsystems.link.job_results`             data product ``jobs.result`` → TM[140,1], acknowledged
=====================================================  ====================================================

Lab mode
    With ``config.unauthenticated_lab`` (``flight run --unauthenticated-lab``) TCs carry
    no security fields and are not checked, and TM is not sealed; the link says so with a HIGH event
    (``link.lab_mode``) on its first tick.
Contact
    The link is up while the latest sensor frame says ``ground_contact`` (or always with
    ``config.contact == "always"``). The transmitter is switched to match. While it is
    down arriving TCs are dropped (``tc_dropped_no_contact``) and TM that is not kept in a
    packet store (verification, ping) is not sent (``tm_dropped_no_contact``).
Data products
    Consumes ``jobs.result`` (:class:`flight.subsystems.jobs.store.JobResult`); publishes
    ``link.result_ack`` (``job_ids``: results stored and committed for downlink).
Bounds
    See :mod:`~flight.subsystems.link.connections` (clients, buffer, TC rate),
    :mod:`~flight.subsystems.link.uplink` (stalled packets),
    :mod:`~flight.subsystems.link.verification` (TCs in flight),
    :mod:`~flight.subsystems.link.downlink` (backlog per tick) and
    :data:`~flight.subsystems.link.state.EVENT_BUDGET_PER_TICK` (link events per tick, the
    rest only counted in ``events_suppressed``). The replay state holds at most
    :data:`~flight.spacelink.sdls.REPLAY_WINDOW` numbers per station key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from flight.core.component import (
    Arg, Channel, Command, Component, DataProduct, Dictionary, Event, EventArg, Parameter, ProductField,
)
from flight.core.config import RunConfig
from flight.core.messages import Message
from flight.core.orbit import WGS84, Orbit
from flight.core.subsystem import Emit, SendCommand, Subsystem
from flight.hal.onboard_clock import MissionError, read_mission
from flight.spacelink.keys import load_all, load_keks
from flight.spacelink.framing import LINK_COMPONENT_ID, is_loopback, parse_endpoint
from flight.spacelink.pus140_results import RESULT_COMPONENT
from flight.spacelink.services import TmEncoder
from flight.spacelink.tm_sdls import TmSealer, signing_key, tm_keys_dir
from flight.subsystems.link import connections
from flight.subsystems.link.connections import Connections
from flight.subsystems.link.downlink import Downlink
from flight.subsystems.link.function_service import FunctionService
from flight.subsystems.link.key_service import KeyService
from flight.subsystems.link.job_results import JobResults
from flight.subsystems.link.parameter_service import ParameterService
from flight.subsystems.link.reporting import Reporting
from flight.subsystems.link.routing import Router
from flight.subsystems.link.schedule_service import ScheduleService
from flight.subsystems.link.state import EventBudget, LinkCounters, LinkState
from flight.subsystems.link.store_service import StoreService
from flight.subsystems.link.uplink import Authenticator, Uplink
from flight.subsystems.link.pending import PENDING_FILE, PendingStore
from flight.subsystems.link.verification import Verification

DEFAULT_HK_INTERVAL_S = 10.0


class LinkManager(Subsystem):
    COMPONENT = Component(
        "link", LINK_COMPONENT_ID,
        doc="Ground link: CCSDS/PUS-C telecommands in, telemetry and events out, during contact.",
        commands=(
            Command("set_hk_interval", 1, (Arg("interval_s", "float", "s", 1.0, 3600.0,
                                               doc="Onboard seconds between housekeeping downlinks."),),
                    doc="Change how often each component's housekeeping is downlinked (TM[3,25]).", idempotent=True),
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
            Channel("connections_refused", "int", "count",
                    f"Connections over the {connections.MAX_CONNECTIONS}-client limit."),
            Channel("buffer_overflows", "int", "count", "Connections dropped for overflowing the receive buffer."),
            Channel("commands_pending", "int", "count", "TC[8,1] sent on board and not yet final."),
            Channel("hk_interval_s", "float", "s", "Onboard seconds between housekeeping downlinks."),
            Channel("events_suppressed", "int", "count", "Link events over the per-tick budget, not published."),
            Channel("tc_auth_failed", "int", "count",
                    "Telecommands rejected for a missing or wrong MAC, unknown key or replayed sequence number.",
                    yellow=(0, 0)),
            Channel("tc_rate_limited", "int", "count", "Telecommands over a connection's rate limit (not executed).",
                    yellow=(0, 0)),
            Channel("tm_backlog_sent", "int", "count", "Stored packets sent from the backlog (after real time)."),
            Channel("tm_acknowledged", "int", "count", "Stored packets the ground acknowledged (TC[15,130])."),
            Channel("tm_requeued", "int", "count",
                    "Stored packets back in the backlog: their connections closed unacknowledged."),
            Channel("tm_dropped_retention", "int", "count",
                    "Unacknowledged stored packets dropped by a store's retention limit.", yellow=(0, 0)),
            Channel("store_errors", "int", "count", "Packet store errors.", yellow=(0, 0)),
            Channel("schedule_enabled", "bool", "", "Time-based schedule releases its TCs (TC[11,1]/[11,2])."),
            Channel("schedule_activities", "int", "count", "Time-tagged TCs waiting in the schedule."),
            Channel("tc_released", "int", "count", "Scheduled TCs released at their time."),
            Channel("hk_structures_disabled", "int", "count", "Housekeeping structures with TM[3,25] off."),
            Channel("events_disabled", "int", "count", "Event ids with TM[5,x] generation off."),
            Channel("events_filtered", "int", "count", "Events not reported: their TM[5,x] generation is off."),
            Channel("tc_rate_limited_unreported", "int", "count",
                    "Telecommands over the rate limit not even answered by TM[1,2] RATE_LIMITED: a flood.",
                    yellow=(0, 0)),
            Channel("tc_key_not_active", "int", "count",
                    "Telecommands correctly signed with a key not active (deactivated or pre-active): refused.",
                    yellow=(0, 0)),
            Channel("keys_active", "int", "count", "Station keys active in the onboard key store."),
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
            Event("tc_rate_limited", 14, "LOW",
                  "refused TC[{service},{subtype}] from {peer}: over {rate:g} TC/s (RATE_LIMITED)",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"),
                        EventArg("rate", "float", "TC/s"))),
            Event("key_changed", 50, "MEDIUM",
                  "key SPI {spi} ({station}) is now {state} (TC[{service},{subtype}] from {peer})",
                  args=(EventArg("spi", "int"), EventArg("station", "str"), EventArg("state", "str"),
                        EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"))),
            Event("tc_key_not_active", 51, "HIGH",
                  "refused TC[{service},{subtype}] from {peer}: KEY_NOT_ACTIVE {why}",
                  args=(EventArg("service", "int"), EventArg("subtype", "int"), EventArg("peer", "str"),
                        EventArg("why", "str"))),
            Event("key_file_not_on_board", 52, "INFO",
                  "key file of station {station} (SPI {spi}) is not in the onboard key store: only its first run "
                  "takes key files; upload it by TC[141,1] (flight ground keys upload {station})",
                  args=(EventArg("station", "str"), EventArg("spi", "int"))),
            Event("keys_reprovisioned", 53, "HIGH",
                  "the onboard key store was damaged and no copy survived: the {count} key(s) of the key files are "
                  "active again ({stations}) and every key change since launch is lost; deactivate any revoked "
                  "one again (TC[141,3])",
                  args=(EventArg("count", "int", "count"), EventArg("stations", "str"))),
            Event("security_mirror_behind", 54, "MEDIUM",
                  "{count} change(s) of the key store or the anti-replay state reached their file but not its "
                  "mirror ({total} this run): the next start rebuilds the mirror; until then damage to the file "
                  "would lose them",
                  args=(EventArg("count", "int", "count"), EventArg("total", "int", "count"))),
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
        publishes=(DataProduct("result_ack", (
            ProductField("job_ids", "int64", "", (-1,), "Jobs whose result is stored and committed for downlink."),
        ), doc="Acknowledges jobs.result once the result is in the results packet store."),),
        consumes=("jobs.result",),
        actuates=("transmitter_on",),
    )
    RATE_GROUPS = ((1, "step"),)
    SUBSCRIBE = (b"tm/", b"ev/")

    def __init__(self, config: RunConfig, emit: Emit, send_command: SendCommand | None = None,
                 dictionary: Dictionary | None = None, **ports: Any) -> None:
        """``dictionary`` defaults to the full flight dictionary.

        Raises:
            ValueError: a link endpoint that is not ``HOST:PORT`` on a loopback host; without
                ``config.unauthenticated_lab``, no station key, no telemetry key or a bad key
                file in ``config.keys_dir``.
            OSError: the key directory or a key file cannot be read.
        """
        super().__init__(config, emit, send_command, **ports)
        host, port = parse_endpoint(config.link_endpoint)
        if not is_loopback(host):
            raise ValueError(
                f"link endpoint {config.link_endpoint} is not loopback: the downlink is not encrypted, "
                "so the link binds only 127.0.0.1, ::1 or localhost")
        keys, keks = {}, {}
        self.tm_sealer: TmSealer | None = None
        """Seals every TM with the telemetry key; ``None`` in lab mode."""
        if not config.unauthenticated_lab:
            keys = load_all(Path(config.keys_dir)) if config.keys_dir else {}
            if not keys:
                raise ValueError(f"no station keys in {config.keys_dir or '(no keys directory)'}: create one "
                                 "with `flight keys init`, or fly with --unauthenticated-lab")
            keks = load_keks(Path(config.keys_dir))
            try:
                self.tm_sealer = TmSealer(signing_key(Path(config.keys_dir)))
            except FileNotFoundError:
                raise ValueError(f"no telemetry key in {tm_keys_dir(Path(config.keys_dir))}: create it with "
                                 "`flight keys init --telemetry`, or fly with --unauthenticated-lab") from None
        if dictionary is None:
            from flight.core.dictionary import full_dictionary  # every subsystem, this one included

            dictionary = full_dictionary()
        self.dictionary = dictionary
        always = config.contact == "always"
        self.counters = LinkCounters()
        self.state = LinkState(always)
        budget = EventBudget(self.event, self.counters)
        self.budget = budget
        self.auth = Authenticator(keys, config.unauthenticated_lab, keks)
        tm = TmEncoder(self.tm_sealer)
        # a closed connection's unacknowledged packets go back to the downlink's backlog
        self.connections = Connections(host, port, self.counters, lambda identity: self.downlink.connection_closed(
            identity))
        self.downlink = Downlink(self.connections, self.state, self.counters, budget, config.tick_s, always)
        self.verification = Verification(tm, self.state, self.counters, budget, self.downlink.reply, self.command)
        self.router = Router(self.verification.reject)
        self.uplink = Uplink(self.connections, self.state, self.counters, budget, self.auth, self.router,
                             self.verification.reject, self.verification.acceptance_failure)
        self.reporting = Reporting(dictionary, self.verification, self.downlink, self.state, self.counters, budget,
                                   DEFAULT_HK_INTERVAL_S)
        self.schedule_service = ScheduleService(dictionary, self.auth, self.router, self.verification,
                                                self.state, self.counters, budget, self.event)
        self.parameters = ParameterService(dictionary, self.verification)
        self.results = JobResults(dictionary.components[RESULT_COMPONENT], tm, self.downlink, self.state,
                                  self.counters, budget)
        for service in (FunctionService(dictionary, self.verification, self.state),
                        StoreService(self.downlink, self.verification, self.state, self.counters, budget),
                        self.reporting, self.schedule_service, self.parameters):
            self.router.add(service.routes())
        if not config.unauthenticated_lab:  # no keys to manage
            self.router.add(KeyService(self.auth, self.verification, self.event).routes())
        self._first_tick = True
        self._mirror_failures_reported = 0
        """Mirror failures of the security state already announced (``security_mirror_behind``)."""
        self._recovered = False

    @property
    def hk_interval_s(self) -> float:
        """Parameter ``link.hk_interval_s``: the default housekeeping interval, onboard s."""
        return self.reporting.interval_s

    @hk_interval_s.setter
    def hk_interval_s(self, interval_s: float) -> None:
        self.reporting.interval_s = interval_s

    @property
    def endpoint(self) -> str:
        """``HOST:PORT`` actually bound (port 0 asks for any free port); "" before start."""
        return self.connections.endpoint

    # -- life cycle --------------------------------------------------------------------
    def on_start(self) -> None:
        data = self.config.data_path
        data.mkdir(parents=True, exist_ok=True)
        if self.tm_sealer is not None:
            self.tm_sealer.open(data)
        self.state.utc_start_s = self._utc_start_s(data)
        self.downlink.open(data)
        self.results.open()
        self.auth.open(data)
        self.verification.open(PendingStore(data / PENDING_FILE), self.config.parent_pid,
                               lambda qualified: getattr(self.dictionary.commands.get(qualified), "idempotent", False))
        self.schedule_service.open(data, self.verification.recorded_tcs())
        self.reporting.open(data)
        self.parameters.open(data)
        self.connections.start()

    def _utc_start_s(self, data: Path) -> float | None:
        """Onboard UTC where this run starts, before its first frame says (see
        :attr:`LinkState.utc_start_s`): the mission's floor after a reboot, else the element-set
        epoch of a new mission on the simulator (its run epoch), else unknown."""
        try:
            mission = read_mission(data)
        except MissionError:
            mission = None  # the run refuses a malformed record before it starts the link
        if mission is not None and mission.utc_floor_s is not None:
            return mission.utc_floor_s
        if not self.config.hal_endpoint and len(self.config.tle_lines) == 2:
            return Orbit.from_tle(*self.config.tle_lines, WGS84()).epoch_utc.timestamp()
        return None

    def poll_items(self) -> list[tuple[Any, Callable[[], None]]]:
        return [(self.connections.fileno(), self.uplink.service)]  # a poller answers a plain descriptor by its number

    def on_stop(self) -> None:
        self.connections.close_all()
        try:
            self.downlink.close()  # commits the stores: the final reports stored in them are durable there
            self.verification.committed()
        finally:
            for part in (self.auth, self.schedule_service, self.reporting, self.parameters, self.verification):
                part.close()
            if self.tm_sealer is not None:
                self.tm_sealer.close()

    # -- rate group --------------------------------------------------------------------
    def step(self, frame: dict[str, Any]) -> None:
        self.state.time_s = self.time_s
        self.budget.reset()
        if self._first_tick:
            # on the first tick, not in on_start: by now the bus has delivered our publisher's
            # subscriptions, so the warning reaches the recorder instead of being dropped
            self._first_tick = False
            if self.auth.lab:
                self.event("lab_mode", endpoint=self.endpoint)
            else:
                active = self.auth.store.active()
                stations = ", ".join(f"{k.station} (SPI {k.spi})" for k in active)
                self.event("authenticated", endpoint=self.endpoint, count=len(active), stations=stations)
                if self.auth.store.lost:
                    self.event("keys_reprovisioned", count=len(active), stations=stations)
                for key in self.auth.file_keys.values():
                    if self.auth.store.get(key.spi) is None:
                        self.event("key_file_not_on_board", station=key.station, spi=key.spi)
        failures = self.auth.mirror_failures
        if failures > self._mirror_failures_reported:
            self.event("security_mirror_behind", count=failures - self._mirror_failures_reported, total=failures)
            self._mirror_failures_reported = failures
        self.state.set_utc(float(frame["utc_unix_s"]))
        self._update_contact(frame)
        now = time.monotonic()
        if not self._recovered:
            self._recovered = True  # once the clock and the stores are up: TCs in flight before a restart
            self.verification.recover(now)
        self.verification.expire(now)
        self.uplink.flush_stalled(now)
        self.downlink.new_tick(float(frame["downlink_rate_bps"]))
        self.schedule_service.release_due()
        if self.downlink.commit():
            self.results.committed()
            self.verification.committed()
        acknowledged = self.results.acknowledgements()
        if acknowledged:
            self.publish_data("result_ack", job_ids=acknowledged)

    def after_done(self) -> None:
        """The tick's downlink, which nobody on board waits for: housekeeping reports and
        job results when reporting is due, then the backlog in contact, within the tick's
        budget. What it stores is committed with the next tick's commit (at most
        :data:`~flight.subsystems.link.downlink.STORE_COMMIT_INTERVAL_S` later), and a result
        is acknowledged to the job runner once committed, as before."""
        if self.reporting.due():
            self.reporting.downlink_hk()
            self.results.store_due()
        if self.state.contact:
            self.downlink.backlog()

    def _update_contact(self, frame: dict[str, Any]) -> None:
        contact = bool(frame["ground_contact"]) or self.config.contact == "always"
        if contact != self.state.contact:
            self.state.contact = contact
            if contact:
                self.event("contact_acquired", station=float(frame["ground_station_id"]),
                           elevation_deg=float(frame["ground_elevation_deg"]))
            else:
                self.event("contact_lost")
        if bool(frame["transmitter_on"]) != contact:
            self.actuate(transmitter_on=contact)

    def housekeeping(self) -> None:
        c = self.counters
        stores, schedule, reporting = self.downlink.stores, self.schedule_service.schedule, self.reporting
        self.telemetry(
            contact=self.state.contact, clients=len(self.connections), tc_received=c.tc_received,
            tc_accepted=c.tc_accepted, tc_rejected=c.tc_rejected, tc_dropped_no_contact=c.tc_dropped_no_contact,
            bytes_discarded=c.bytes_discarded, tm_sent=c.tm_sent, tm_dropped=c.tm_dropped,
            tm_dropped_no_contact=c.tm_dropped_no_contact, tm_errors=c.tm_errors, bytes_up=c.bytes_up,
            bytes_down=c.bytes_down, connections_refused=c.connections_refused, buffer_overflows=c.buffer_overflows,
            commands_pending=len(self.verification.pending), hk_interval_s=self.hk_interval_s,
            events_suppressed=c.events_suppressed, tc_auth_failed=c.tc_auth_failed,
            tc_rate_limited=c.tc_rate_limited, tm_backlog_sent=c.tm_backlog_sent,
            tm_acknowledged=c.tm_acknowledged, tm_requeued=c.tm_requeued,
            tm_dropped_retention=stores.dropped if stores is not None else 0,
            store_errors=c.store_errors, schedule_enabled=schedule is not None and schedule.enabled,
            schedule_activities=len(schedule) if schedule is not None else 0,
            tc_released=c.tc_released, hk_structures_disabled=len(reporting.hk_disabled),
            events_disabled=len(reporting.events_disabled), events_filtered=c.events_filtered,
            tc_rate_limited_unreported=c.tc_rate_limited_unreported, tc_key_not_active=c.tc_key_not_active,
            keys_active=len(self.auth.store.active()) if self.auth.store is not None else 0,
        )

    # -- bus inputs --------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        if msg.kind == "tm" and msg.name.endswith(".hk"):
            self.reporting.on_hk(msg)
        elif msg.kind == "ev":
            self.reporting.on_event(msg)
        elif msg.kind == "data" and msg.name == "jobs.result":
            try:
                self.results.on_product(msg.data)
            except ValueError as exc:
                self.decode_errors += 1
                self.budget("decode_error", topic=msg.topic.decode(errors="replace")[:40], why=str(exc)[:120])

    def on_response(self, msg: Message) -> None:
        self.verification.on_response(msg.data if isinstance(msg.data, dict) else {})

    # -- commands ----------------------------------------------------------------------
    def cmd_set_hk_interval(self, interval_s: float) -> str:
        """``link.set_hk_interval``: one interval for every structure (their own TC[3,31]
        intervals are dropped)."""
        self.reporting.set_interval(interval_s)
        return f"housekeeping every {interval_s:g} s"

    def cmd_set_parameter(self, name: str, value: float) -> str:
        done = super().cmd_set_parameter(name, value)
        if name == "hk_interval_s":
            self.reporting.interval_changed()
        return done
