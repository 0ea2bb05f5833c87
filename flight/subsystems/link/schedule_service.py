"""PUS-C service 11: the time-based schedule of the link (:mod:`flight.subsystems.link.schedule`).

TC[11,4] inserts time-tagged TCs into the durable schedule. Each embedded TC is a whole TC
as it would be sent alone, authenticated as one at insertion (its own MAC and a fresh
sequence number, admitted to the replay guard then, so it can never also be sent or
scheduled again), and checked as far as it can be without acting: its service, its data, a
TC[8,1]'s or TC[20,3]'s arguments against the dictionary, a release time after onboard now.
Nested scheduling (an embedded TC[11,x]) is refused. At its release time (onboard UTC) the
activity is removed from the schedule, its MAC is checked again against the station keys
and their states of now (a TC signed with a key deactivated since is refused with
KEY_NOT_ACTIVE), and it runs through the normal route
(:class:`~flight.subsystems.link.routing.Router`) with or without contact, its verification reports (as its own ack flags ask) kept in the
``verification`` packet store for the next pass. TC[11,1]/[11,2] enable/disable releasing,
TC[11,3] deletes every activity, TC[11,5] deletes by request id, TC[11,16] answers with
TM[11,10]. An activity whose time passed while the link was down, or while the schedule was
disabled, is released on the first tick it can be, late (the ``link.tc_released`` event
says by how much).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Dictionary
from flight.spacelink import codec, pus11_scheduling as pus11
from flight.spacelink.framing import TC_APID, request_id
from flight.spacelink.pus17_test import is_ping
from flight.spacelink.pus20_parameters import PARAMETER_SERVICE, PARAMETER_SET
from flight.spacelink.pus8_functions import decode_function, is_function
from flight.spacelink.sdls import AuthenticationError
from flight.subsystems.link.reporting import parse_empty
from flight.subsystems.link.routing import Router, TcRoute
from flight.subsystems.link.schedule import SCHEDULE_FILE, Activity, ScheduleFull, ScheduleStore
from flight.subsystems.link.state import EventBudget, LinkCounters, LinkState, OnboardSource, TcSource
from flight.subsystems.link.uplink import Authenticator
from flight.subsystems.link.verification import Verification


def _schedule_change(change: Callable[[], Any]) -> Callable[[], None]:
    """``change`` of the schedule with its refusals as failure codes: a full schedule BUSY,
    an unknown or repeated request id VALIDATION_ERROR."""
    def run() -> None:
        try:
            change()
        except ScheduleFull as exc:
            raise CommandError("BUSY", str(exc)) from None
        except KeyError as exc:
            raise CommandError("VALIDATION_ERROR", str(exc.args[0])) from None
    return run


def _sent_on_board(activity: Activity) -> bool:
    """Whether the activity's TC goes on board through the pending-TC store (TC[8,1], TC[20,3]),
    which then answers for it across a crash (:mod:`flight.subsystems.link.schedule`)."""
    tc = PusTc.unpack(activity.tc)
    return is_function(tc) or (tc.service, tc.message_subtype) == (PARAMETER_SERVICE, PARAMETER_SET)


class ScheduleService:
    """Service 11 (see the module). ``event`` publishes an event outside the per-tick budget
    (each release is reported); released TCs go through ``router``."""

    def __init__(self, dictionary: Dictionary, auth: Authenticator, router: Router, verification: Verification,
                 state: LinkState, counters: LinkCounters, budget: EventBudget, event: Callable[..., None]) -> None:
        self._dictionary = dictionary
        self._auth = auth
        self._router = router
        self._verification = verification
        self._state = state
        self._counters = counters
        self._budgeted = budget
        self._event = event
        self.schedule: ScheduleStore | None = None
        self._onboard = OnboardSource()

    def open(self, data_path: Path, recorded: set[bytes]) -> None:
        """Open the schedule in ``data_path``; ``recorded`` are the TC packets the pending-TC
        store holds from before a restart: an activity among them was released and recorded
        before a crash kept it from being deleted here (its record answers for it), so it goes.

        Raises:
            sqlite3.Error: the schedule file cannot be opened, read or changed.
        """
        self.schedule = ScheduleStore(data_path / SCHEDULE_FILE)
        self.schedule.drop_recorded(recorded)

    def close(self) -> None:
        if self.schedule is not None:
            self.schedule.close()
            self.schedule = None

    def routes(self) -> dict[tuple[int, int], TcRoute]:
        return {
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_ENABLE): TcRoute(parse_empty, self._enable),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DISABLE): TcRoute(parse_empty, self._disable),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_RESET): TcRoute(parse_empty, self._reset),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_INSERT): TcRoute(self._parse_insert, self._insert),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DELETE): TcRoute(lambda tc, data: pus11.parse_request_ids(data),
                                                                 self._delete),
            (pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_REPORT_ALL): TcRoute(parse_empty, self._report),
        }

    # -- release ---------------------------------------------------------------------------
    def release_due(self) -> None:
        """Release every scheduled activity whose time has come (called each tick)."""
        nxt = self.schedule.next_release_utc_s() if self.schedule is not None else None
        now_utc = self._state.utc_now()
        if nxt is None or nxt > now_utc or not self.schedule.enabled:
            return
        try:
            due = self.schedule.pop_due(now_utc, keep_stored=_sent_on_board)
        except sqlite3.Error as exc:
            self._budgeted("schedule_failed", why=f"cannot release: {str(exc)[:140]}")
            return
        for activity in due:
            self._release(activity, now_utc)
            if _sent_on_board(activity):  # recorded in the pending-TC store by now (or refused)
                try:
                    self.schedule.released([activity.request_id])
                except sqlite3.Error as exc:  # the next start finds it recorded
                    self._budgeted("schedule_failed", why=f"cannot delete a released TC: {str(exc)[:120]}")

    def _release(self, activity: Activity, now_utc: float) -> None:
        tc = PusTc.unpack(activity.tc)
        self._counters.tc_released += 1
        self._event("tc_released", service=tc.service, subtype=tc.message_subtype, request_id=activity.request_id,
                    late_s=now_utc - activity.release_utc_s)
        try:
            data = self._auth.data(tc)
        except AuthenticationError as exc:  # its key was deactivated since it was inserted
            self._verification.reject(self._onboard, tc, exc.code, str(exc))
            return
        self._router.route(self._onboard, tc, data)

    # -- insertion -------------------------------------------------------------------------
    def _check_embedded(self, tc: PusTc, data: bytes) -> None:
        """Check an embedded TC as far as possible without acting on it.

        Raises:
            CommandError: what executing it now would fail with at acceptance.
        """
        if tc.apid != TC_APID:
            raise CommandError("INVALID_OPCODE", f"no application process at APID {tc.apid}")
        if tc.service == pus11.SCHEDULE_SERVICE:
            raise CommandError("INVALID_OPCODE", "a TC[11,x] cannot itself be scheduled")
        route = self._router.routes.get((tc.service, tc.message_subtype))
        if is_ping(tc):
            codec.parse_empty(17, 1, data)
        elif is_function(tc):
            self._dictionary.validate_command(*decode_function(self._dictionary, data))
        elif route is not None:
            route.parse(tc, data)
        else:
            raise CommandError("INVALID_OPCODE", f"TC[{tc.service},{tc.message_subtype}] cannot be scheduled")

    def _parse_insert(self, _: PusTc, data: bytes) -> list[tuple[float, PusTc]]:
        now_utc = self._state.utc_now()
        out = []
        for i, (release, tc) in enumerate(pus11.parse_insert(data), start=1):
            if release <= now_utc:
                raise CommandError("VALIDATION_ERROR", f"activity {i}: release time {release:.3f} is not after "
                                                       f"onboard now {now_utc:.3f} (UTC s)")
            try:
                inner = self._auth.data(tc)
            except AuthenticationError as exc:
                raise type(exc)(f"scheduled TC: {exc}") from None
            try:
                self._check_embedded(tc, inner)
            except CommandError as exc:
                raise CommandError(exc.code, f"activity {i} TC[{tc.service},{tc.message_subtype}]: "
                                             f"{exc.message}") from None
            out.append((release, tc))
        return out

    def _insert(self, source: TcSource, tc: PusTc, timed: list[tuple[float, PusTc]]) -> None:
        activities = [Activity(release, request_id(inner), bytes(inner.pack())) for release, inner in timed]
        try:
            self._auth.admit([inner for _, inner in timed])
        except AuthenticationError as exc:
            self._verification.reject(source, tc, exc.code, f"scheduled TC: {exc}")
            return
        except sqlite3.Error as exc:
            self._verification.reject(source, tc, "EXECUTION_ERROR", f"cannot store the sequence number: {exc}")
            return
        self._verification.complete_change(source, tc, "the schedule",
                                           _schedule_change(lambda: self.schedule.insert(activities)))

    def _delete(self, source: TcSource, tc: PusTc, request_ids: list[int]) -> None:
        self._verification.complete_change(source, tc, "the schedule",
                                           _schedule_change(lambda: self.schedule.delete(request_ids)))

    def _enable(self, source: TcSource, tc: PusTc, _: None) -> None:
        self._verification.complete_change(source, tc, "the schedule state", lambda: self.schedule.set_enabled(True))

    def _disable(self, source: TcSource, tc: PusTc, _: None) -> None:
        self._verification.complete_change(source, tc, "the schedule state",
                                           lambda: self.schedule.set_enabled(False))

    def _reset(self, source: TcSource, tc: PusTc, _: None) -> None:
        self._verification.complete_change(source, tc, "the schedule", self.schedule.reset)

    def _report(self, source: TcSource, tc: PusTc, _: None) -> None:
        chunks = pus11.schedule_report_data([(a.release_utc_s, a.tc) for a in self.schedule.activities()])
        self._verification.complete_locally(source, tc, lambda: [
            self._verification.report(tc, pus11.SCHEDULE_SERVICE, pus11.SCHEDULE_DETAIL_REPORT, chunk) for chunk in chunks])
