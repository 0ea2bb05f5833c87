"""The link manager's operations services: PUS-C 3 (housekeeping control), 5 (event
reporting control), 11 (time-based scheduling) and 20 (parameter management).

:class:`LinkOperations` is a mixin of :class:`flight.subsystems.link.manager.LinkManager`; the wire
format is :mod:`flight.spacelink.pus_ops`'s. Every operations TC is authenticated first, like
any TC; then its data is decoded and checked completely before anything changes, so a TC
that fails (TM[1,2] with its code) changes nothing.

Service 3
    One housekeeping structure per component (structure id = component id), its channels
    the component's declared telemetry in order. TC[3,5]/[3,6] switch its periodic TM[3,25]
    generation on or off; TC[3,31] gives it its own collection interval (otherwise
    ``link.hk_interval_s``); TC[3,9] answers with one TM[3,10] per structure.
Service 5
    TC[5,6] stops generating TM[5,x] for the listed event ids (the event is still recorded
    on board), TC[5,5] resumes, TC[5,7] answers with TM[5,8], the disabled list.
    Structure and event settings are stored in :data:`SETTINGS_FILE` and survive a restart.
Service 11
    TC[11,4] inserts time-tagged TCs into the durable schedule (:mod:`flight.subsystems.link.schedule`).
    Each embedded TC is a whole TC as it would be sent alone, authenticated as one at
    insertion (its own MAC and a fresh sequence number, admitted to the replay guard then,
    so it can never also be sent or scheduled again), and checked as far as it can be
    without acting: its service, its data, a TC[8,1]'s or TC[20,3]'s arguments against the
    dictionary, a release time after onboard now. Nested scheduling (an embedded TC[11,x])
    is refused. At its release time (onboard UTC) the activity is removed from the schedule,
    its MAC is checked again against the station keys loaded now, and it runs through the
    normal command path with or without contact, its verification reports (as its own ack
    flags ask) kept in the ``verification`` packet store for the next pass. TC[11,1]/[11,2]
    enable/disable releasing, TC[11,3] deletes every activity, TC[11,5] deletes by request
    id, TC[11,16] answers with TM[11,10]. An activity whose time passed while the link was
    down, or while the schedule was disabled, is released on the first tick it can be, late
    (the ``link.tc_released`` event says by how much).
Service 20
    TC[20,1] answers with TM[20,2] from the parameter file (:mod:`flight.core.parameters`: the
    owners keep it current; a parameter whose owner has not started reports its declared
    default). TC[20,3] is checked against the parameter's declaration here, then becomes
    the owner's ``set_parameter`` command through the dispatcher, verified as a TC[8,1]; the
    owner applies and stores the value before it completes.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from spacepackets.ecss.pus_1_verification import MessageSubtype as Verif
from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Component
from flight.core.storage import open_durable
from flight.spacelink import (
    codec,
    pus11_scheduling as pus11,
    pus20_parameters as pus20,
    pus3_housekeeping as pus3,
    pus5_events as pus5,
)
from flight.spacelink.framing import ACK_ACCEPTANCE, ACK_COMPLETION, ACK_START, TC_APID, request_id
from flight.spacelink.pus17_test import is_ping
from flight.spacelink.pus8_functions import decode_function, is_function
from flight.spacelink.sdls import AuthenticationError, unprotect
from flight.subsystems.link.schedule import SCHEDULE_FILE, Activity, ScheduleFull, ScheduleStore
from flight.core.parameters import PARAMETERS_FILE, ParameterStore

SETTINGS_FILE = "link_settings.sqlite"
"""Housekeeping structure and event report settings (services 3 and 5) in the run data directory."""
ONBOARD = b""
"""Connection identity of TCs released from the onboard schedule: their reports are stored
for the ground, not sent to one connection."""


@dataclass(frozen=True)
class OnboardSource:
    """Where a released scheduled TC comes from, in place of a ground connection."""

    identity: bytes = ONBOARD
    peer: str = "onboard schedule"


class _Settings:
    """Services 3 and 5 settings as JSON values by key in SQLite (WAL, synchronous=FULL).

    Raises:
        sqlite3.Error: the file cannot be opened or read.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_durable(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS setting (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str, default: Any) -> Any:
        row = self._db.execute("SELECT value FROM setting WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute("INSERT INTO setting (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def close(self) -> None:
        self._db.close()


class LinkOperations:
    """Services 3, 5, 11 and 20 of the link manager (a mixin: it uses the manager's
    ``_reply``, ``_reject``, ``_route``, ``_dispatch_command``, ``tm``, ``keys``, ``lab``,
    ``_replay``, ``dictionary``, ``config`` and ``event``)."""

    def _ops_init(self) -> None:
        self.schedule: ScheduleStore | None = None
        self._settings: _Settings | None = None
        self._parameters: ParameterStore | None = None
        self.hk_disabled: set[int] = set()
        """Structure ids whose periodic TM[3,25] generation is off."""
        self.hk_intervals_s: dict[int, float] = {}
        """Collection interval per structure id set by TC[3,31] (others: ``hk_interval_s``)."""
        self._hk_next_s: dict[int, float] = {}
        self.events_disabled: set[int] = set()
        self.events_filtered = self.tc_released = 0
        self._onboard = OnboardSource()
        self._ops_handlers: dict[tuple[int, int], tuple[Callable, Callable]] = {
            (pus3.HK_SERVICE, pus3.HK_ENABLE): (self._parse_sids(pus3.HK_ENABLE), self._hk_enable),
            (pus3.HK_SERVICE, pus3.HK_DISABLE): (self._parse_sids(pus3.HK_DISABLE), self._hk_disable),
            (pus3.HK_SERVICE, pus3.HK_REPORT_STRUCTURES): (self._parse_sids(pus3.HK_REPORT_STRUCTURES),
                                                           self._hk_structures),
            (pus3.HK_SERVICE, pus3.HK_MODIFY_INTERVAL): (lambda d: pus3.parse_intervals(self.dictionary, d),
                                                         self._hk_modify_intervals),
            (pus5.EVENT_SERVICE, pus5.EVENT_ENABLE): (self._parse_events(pus5.EVENT_ENABLE), self._events_enable),
            (pus5.EVENT_SERVICE, pus5.EVENT_DISABLE): (self._parse_events(pus5.EVENT_DISABLE), self._events_disable),
            (pus5.EVENT_SERVICE, pus5.EVENT_REPORT_DISABLED): (self._parse_empty(5, 7), self._events_report),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_ENABLE): (self._parse_empty(11, 1), self._schedule_enable),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DISABLE): (self._parse_empty(11, 2), self._schedule_disable),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_RESET): (self._parse_empty(11, 3), self._schedule_reset),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT): (self._parse_insert, self._schedule_insert),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DELETE): (pus11.parse_request_ids, self._schedule_delete),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_REPORT_ALL): (self._parse_empty(11, 16), self._schedule_report),
            (pus20.PARAMETER_SERVICE, pus20.PARAMETER_REPORT_VALUES): (
                lambda d: pus20.parse_parameter_ids(self.dictionary, d), self._parameters_report),
            (pus20.PARAMETER_SERVICE, pus20.PARAMETER_SET): (lambda d: pus20.parse_set_parameter(self.dictionary, d),
                                                             self._parameter_set),
        }

    def _ops_start(self) -> None:
        """Open the schedule, settings and parameter files in the run data directory.

        Raises:
            sqlite3.Error: one cannot be opened or read.
        """
        data = self.config.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.schedule = ScheduleStore(data / SCHEDULE_FILE)
        self._settings = _Settings(data / SETTINGS_FILE)
        self.hk_disabled = set(self._settings.get("hk_disabled", []))
        self.hk_intervals_s = {int(k): float(v) for k, v in self._settings.get("hk_intervals_s", {}).items()}
        self.events_disabled = set(self._settings.get("events_disabled", []))
        self._parameters = ParameterStore(data / PARAMETERS_FILE)

    def _ops_stop(self) -> None:
        for store in (self.schedule, self._settings, self._parameters):
            if store is not None:
                store.close()
        self.schedule = self._settings = self._parameters = None

    # -- hooks for the manager ---------------------------------------------------------
    def _ops_tc(self, conn: Any, tc: PusTc, data: bytes) -> bool:
        """Serve ``tc`` if it is an operations TC (whether it was)."""
        handlers = self._ops_handlers.get((tc.service, tc.message_subtype))
        if handlers is None:
            return False
        parse, act = handlers
        try:
            parsed = parse(data)
        except CommandError as exc:
            self._reject(conn, tc, exc.code, exc.message)
            return True
        except AuthenticationError as exc:  # an embedded TC of TC[11,4]
            self._reject(conn, tc, "AUTHENTICATION_ERROR", f"scheduled TC: {exc}")
            return True
        act(conn, tc, parsed)
        return True

    def _hk_due(self, component: Component) -> bool:
        """Whether a TM[3,25] of ``component`` is due now (generation on, its interval
        passed); marks it generated when it is."""
        sid = component.component_id
        if sid in self.hk_disabled or self.time_s < self._hk_next_s.get(sid, 0.0):
            return False
        self._hk_next_s[sid] = self.time_s + self.hk_intervals_s.get(sid, self.hk_interval_s)
        return True

    def _hk_gate_interval_s(self) -> float:
        """Onboard seconds until housekeeping must be looked at again: the shortest interval."""
        return min([self.hk_interval_s, *self.hk_intervals_s.values()])

    def _event_disabled(self, qualified: str) -> bool:
        """Whether TM[5,x] generation is off for event ``qualified`` (counted when it is)."""
        if not self.events_disabled or self.dictionary.event_id(qualified) not in self.events_disabled:
            return False
        self.events_filtered += 1
        return True

    def _release_due(self) -> None:
        """Release every scheduled activity whose time has come (called each tick)."""
        nxt = self.schedule.next_release_utc_s() if self.schedule is not None else None
        now_utc = self._utc_at(self.time_s)
        if nxt is None or nxt > now_utc or not self.schedule.enabled:
            return
        try:
            due = self.schedule.pop_due(now_utc)
        except sqlite3.Error as exc:
            self._budgeted_event("schedule_failed", why=f"cannot release: {str(exc)[:140]}")
            return
        for activity in due:
            self._release(activity, now_utc)

    def _release(self, activity: Activity, now_utc: float) -> None:
        tc = PusTc.unpack(activity.tc)
        self.tc_released += 1
        self.event("tc_released", service=tc.service, subtype=tc.message_subtype, request_id=activity.request_id,
                   late_s=now_utc - activity.release_utc_s)
        try:
            data = self._embedded_data(tc)
        except AuthenticationError as exc:  # its key was removed since it was inserted
            self._reject(self._onboard, tc, "AUTHENTICATION_ERROR", str(exc))
            return
        self._route(self._onboard, tc, data)

    # -- verification of locally served TCs ----------------------------------------------
    def _complete_locally(self, conn: Any, tc: PusTc, reports: list[bytes]) -> None:
        """Serve a TC the link answers itself: acceptance and start success as its ack flags
        ask, its ``reports``, then completion success as asked."""
        self.tc_accepted += 1
        utc = self._utc_at(self.time_s)
        flags = tc.pus_tc_sec_header.ack_flags
        for flag, subtype in ((ACK_ACCEPTANCE, Verif.TM_ACCEPTANCE_SUCCESS), (ACK_START, Verif.TM_START_SUCCESS)):
            if flags & flag:
                self._reply(conn.identity, self.tm.verification(subtype, tc, utc_unix_s=utc))
        for report in reports:
            self._reply(conn.identity, report)
        if flags & ACK_COMPLETION:
            self._reply(conn.identity, self.tm.verification(Verif.TM_COMPLETION_SUCCESS, tc, utc_unix_s=utc))

    def _report(self, tc: PusTc, service: int, subtype: int, data: bytes) -> bytes:
        return self.tm.packet(TC_APID, service, subtype, data, utc_unix_s=self._utc_at(self.time_s),
                              dest_id=tc.source_id)

    def _change(self, conn: Any, tc: PusTc, what: str, change: Callable[[], Any]) -> bool:
        """Run ``change`` (durable: all or nothing) and complete ``tc``; or reject it: a full
        schedule BUSY, an unknown or repeated request id VALIDATION_ERROR, a storage error
        EXECUTION_ERROR. Whether it changed."""
        try:
            change()
        except ScheduleFull as exc:
            self._reject(conn, tc, "BUSY", str(exc))
        except KeyError as exc:
            self._reject(conn, tc, "VALIDATION_ERROR", str(exc.args[0]))
        except sqlite3.Error as exc:
            self._reject(conn, tc, "EXECUTION_ERROR", f"cannot store {what}: {exc}")
        else:
            self._complete_locally(conn, tc, [])
            return True
        return False

    # -- service 3 -------------------------------------------------------------------------
    def _parse_sids(self, subtype: int) -> Callable[[bytes], list[int]]:
        return lambda data: pus3.parse_sids(self.dictionary, subtype, data)

    def _hk_set_enabled(self, conn: Any, tc: PusTc, sids: list[int], enabled: bool) -> None:
        disabled = (self.hk_disabled - set(sids)) if enabled else (self.hk_disabled | set(sids))
        if self._change(conn, tc, "housekeeping settings", lambda: self._settings.put("hk_disabled", sorted(disabled))):
            self.hk_disabled = disabled

    def _hk_enable(self, conn: Any, tc: PusTc, sids: list[int]) -> None:
        self._hk_set_enabled(conn, tc, sids, True)

    def _hk_disable(self, conn: Any, tc: PusTc, sids: list[int]) -> None:
        self._hk_set_enabled(conn, tc, sids, False)

    def _hk_structures(self, conn: Any, tc: PusTc, sids: list[int]) -> None:
        components = [c for c in self.dictionary.components.values() if c.telemetry
                      and (not sids or c.component_id in sids)]
        self._complete_locally(conn, tc, [
            self._report(tc, pus3.HK_SERVICE, pus3.HK_STRUCTURE_REPORT, pus3.hk_structure_data(
                c, c.component_id not in self.hk_disabled, self.hk_intervals_s.get(c.component_id, self.hk_interval_s)))
            for c in components])

    def _hk_modify_intervals(self, conn: Any, tc: PusTc, intervals_s: dict[int, float]) -> None:
        merged = {**self.hk_intervals_s, **intervals_s}
        if self._change(conn, tc, "housekeeping settings",
                        lambda: self._settings.put("hk_intervals_s", {str(k): v for k, v in merged.items()})):
            self.hk_intervals_s = merged
            self._hk_interval_changed()

    def cmd_set_hk_interval(self, interval_s: float) -> str:
        """``link.set_hk_interval``: one interval for every structure (their own TC[3,31]
        intervals are dropped)."""
        try:
            if self._settings is not None:
                self._settings.put("hk_intervals_s", {})
        except sqlite3.Error as exc:
            raise CommandError("EXECUTION_ERROR", f"cannot store the housekeeping settings: {exc}") from None
        self.hk_intervals_s = {}
        self.hk_interval_s = interval_s
        self._hk_interval_changed()
        return f"housekeeping every {interval_s:g} s"

    def cmd_set_parameter(self, name: str, value: float) -> str:
        done = super().cmd_set_parameter(name, value)
        if name == "hk_interval_s":
            self._hk_interval_changed()
        return done

    def _hk_interval_changed(self) -> None:
        """A shorter interval applies from now, not after the longer one has run out."""
        for sid, next_s in self._hk_next_s.items():
            self._hk_next_s[sid] = min(next_s, self.time_s + self.hk_intervals_s.get(sid, self.hk_interval_s))
        self._next_hk_s = min(self._next_hk_s, self.time_s + self._hk_gate_interval_s())

    # -- service 5 -------------------------------------------------------------------------
    def _parse_events(self, subtype: int) -> Callable[[bytes], list[int]]:
        return lambda data: pus5.parse_event_ids(self.dictionary, subtype, data)

    def _parse_empty(self, service: int, subtype: int) -> Callable[[bytes], None]:
        return lambda data: codec.parse_empty(service, subtype, data)

    def _events_set(self, conn: Any, tc: PusTc, disabled: set[int]) -> None:
        if self._change(conn, tc, "event settings", lambda: self._settings.put("events_disabled", sorted(disabled))):
            self.events_disabled = disabled

    def _events_enable(self, conn: Any, tc: PusTc, ids: list[int]) -> None:
        self._events_set(conn, tc, self.events_disabled - set(ids))

    def _events_disable(self, conn: Any, tc: PusTc, ids: list[int]) -> None:
        self._events_set(conn, tc, self.events_disabled | set(ids))

    def _events_report(self, conn: Any, tc: PusTc, _: None) -> None:
        self._complete_locally(conn, tc, [self._report(tc, pus5.EVENT_SERVICE, pus5.EVENT_DISABLED_REPORT,
                                                       pus5.event_list_data(sorted(self.events_disabled)))])

    # -- service 11 ------------------------------------------------------------------------
    def _embedded_data(self, tc: PusTc) -> bytes:
        """The service data of an embedded TC whose MAC checks (as it is in lab mode). The
        sequence number is not admitted here.

        Raises:
            AuthenticationError: no security fields, an unknown SPI or a MAC mismatch.
        """
        return bytes(tc.app_data) if self.lab else unprotect(tc, self.keys).data

    def _check_embedded(self, tc: PusTc, data: bytes) -> None:
        """Check an embedded TC as far as possible without acting on it.

        Raises:
            CommandError: what executing it now would fail with at acceptance.
        """
        if tc.apid != TC_APID:
            raise CommandError("INVALID_OPCODE", f"no application process at APID {tc.apid}")
        if tc.service == pus11.SCHEDULE_SERVICE:
            raise CommandError("INVALID_OPCODE", "a TC[11,x] cannot itself be scheduled")
        if is_ping(tc):
            codec.parse_empty(17, 1, data)
        elif is_function(tc):
            self.dictionary.validate_command(*decode_function(self.dictionary, data))
        elif (tc.service, tc.message_subtype) in self._ops_handlers:
            self._ops_handlers[(tc.service, tc.message_subtype)][0](data)
        else:
            raise CommandError("INVALID_OPCODE", f"TC[{tc.service},{tc.message_subtype}] cannot be scheduled")

    def _parse_insert(self, data: bytes) -> list[tuple[float, PusTc]]:
        now_utc = self._utc_at(self.time_s)
        out = []
        for i, (release, tc) in enumerate(pus11.parse_insert(data), start=1):
            if release <= now_utc:
                raise CommandError("VALIDATION_ERROR", f"activity {i}: release time {release:.3f} is not after "
                                                       f"onboard now {now_utc:.3f} (UTC s)")
            inner = self._embedded_data(tc)
            try:
                self._check_embedded(tc, inner)
            except CommandError as exc:
                raise CommandError(exc.code, f"activity {i} TC[{tc.service},{tc.message_subtype}]: "
                                             f"{exc.message}") from None
            out.append((release, tc))
        return out

    def _schedule_insert(self, conn: Any, tc: PusTc, timed: list[tuple[float, PusTc]]) -> None:
        activities = [Activity(release, request_id(inner), bytes(inner.pack())) for release, inner in timed]
        if not self.lab:
            try:
                for _, inner in timed:
                    auth = unprotect(inner, self.keys)
                    self._replay.admit(auth.spi, auth.arsn)
            except AuthenticationError as exc:
                self._reject(conn, tc, "AUTHENTICATION_ERROR", f"scheduled TC: {exc}")
                return
            except sqlite3.Error as exc:
                self._reject(conn, tc, "EXECUTION_ERROR", f"cannot store the sequence number: {exc}")
                return
        self._change(conn, tc, "the schedule", lambda: self.schedule.insert(activities))

    def _schedule_delete(self, conn: Any, tc: PusTc, request_ids: list[int]) -> None:
        self._change(conn, tc, "the schedule", lambda: self.schedule.delete(request_ids))

    def _schedule_enable(self, conn: Any, tc: PusTc, _: None) -> None:
        self._change(conn, tc, "the schedule state", lambda: self.schedule.set_enabled(True))

    def _schedule_disable(self, conn: Any, tc: PusTc, _: None) -> None:
        self._change(conn, tc, "the schedule state", lambda: self.schedule.set_enabled(False))

    def _schedule_reset(self, conn: Any, tc: PusTc, _: None) -> None:
        self._change(conn, tc, "the schedule", self.schedule.reset)

    def _schedule_report(self, conn: Any, tc: PusTc, _: None) -> None:
        chunks = pus11.schedule_report_data([(a.release_utc_s, a.tc) for a in self.schedule.activities()])
        self._complete_locally(conn, tc, [self._report(tc, pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DETAIL_REPORT, chunk)
                                          for chunk in chunks])

    # -- service 20 ------------------------------------------------------------------------
    def _parameters_report(self, conn: Any, tc: PusTc, names: list[str]) -> None:
        try:
            stored = self._parameters.load(names)
        except sqlite3.Error as exc:
            self._reject(conn, tc, "EXECUTION_ERROR", f"cannot read the parameters: {exc}")
            return
        values = {n: stored.get(n, self.dictionary.parameters[n].default) for n in names}
        self._complete_locally(conn, tc, [self._report(tc, pus20.PARAMETER_SERVICE, pus20.PARAMETER_VALUE_REPORT,
                                                       pus20.parameter_report_data(self.dictionary, values))])

    def _parameter_set(self, conn: Any, tc: PusTc, name_value: tuple[str, Any]) -> None:
        name, value = name_value
        owner, _, local = name.partition(".")
        self._dispatch_command(conn, tc, f"{owner}.set_parameter", {"name": local, "value": float(value)})

