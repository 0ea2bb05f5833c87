"""Housekeeping and event reports to the ground, and their control: PUS-C services 3 and 5.

TM[3,25]
    Every ``interval_s`` of onboard time (``link.hk_interval_s``, or the structure's own
    TC[3,31] interval; none after TC[3,6]): each component's latest ``<name>.hk`` packet off
    the bus, timed at its sampling time, stored in the ``hk`` packet store
    (:mod:`flight.subsystems.link.downlink`); a sample already reported is not reported again.
TM[5,1..4]
    Every declared bus event with its typed arguments, at once, into the ``events`` store,
    unless its generation is off.
Service 3
    One housekeeping structure per component (structure id = component id), its channels
    the component's declared telemetry in order. TC[3,5]/[3,6] switch its periodic TM[3,25]
    generation on or off; TC[3,31] gives it its own collection interval (otherwise
    ``link.hk_interval_s``); TC[3,9] answers with one TM[3,10] per structure.
Service 5
    TC[5,6] stops generating TM[5,x] for the listed event ids (the event is still recorded
    on board), TC[5,5] resumes, TC[5,7] answers with TM[5,8], the disabled list.

Structure and event settings are stored in :data:`SETTINGS_FILE` and survive a restart.
Every TC's data is decoded and checked completely (the service modules of :mod:`flight.spacelink`) before
anything changes, so a TC that fails (TM[1,2] with its code) changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError, Component, Dictionary
from flight.core.messages import Message
from flight.core.storage import open_durable
from flight.spacelink import codec, pus3_housekeeping as pus3, pus5_events as pus5
from flight.subsystems.link.downlink import Downlink, StoreItem
from flight.subsystems.link.routing import TcRoute
from flight.subsystems.link.state import EventBudget, LinkCounters, LinkState, TcSource
from flight.subsystems.link.verification import Verification

SETTINGS_FILE = "link_settings.sqlite"
"""Housekeeping structure and event report settings (services 3 and 5) in the run data directory."""


class Settings:
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


class Reporting:
    """TM[3,25] and TM[5,x] generation and services 3 and 5 (see the module); ``interval_s``
    is the default housekeeping interval (onboard s)."""

    def __init__(self, dictionary: Dictionary, verification: Verification, downlink: Downlink, state: LinkState,
                 counters: LinkCounters, budget: EventBudget, interval_s: float) -> None:
        self._dictionary = dictionary
        self._verification = verification
        self._downlink = downlink
        self._state = state
        self._counters = counters
        self._event = budget
        self.interval_s = interval_s
        self.hk_disabled: set[int] = set()
        """Structure ids whose periodic TM[3,25] generation is off."""
        self.hk_intervals_s: dict[int, float] = {}
        """Collection interval per structure id set by TC[3,31] (others: ``interval_s``)."""
        self.events_disabled: set[int] = set()
        self._settings: Settings | None = None
        self._hk_next_s: dict[int, float] = {}
        self._next_gate_s = 0.0
        self._latest_hk: dict[str, tuple[float, dict]] = {}
        self._stored_hk_t: dict[str, float] = {}

    def open(self, data_path: Path) -> None:
        """Load the settings from ``data_path``.

        Raises:
            sqlite3.Error: the settings file cannot be opened or read.
        """
        self._settings = Settings(data_path / SETTINGS_FILE)
        self.hk_disabled = set(self._settings.get("hk_disabled", []))
        self.hk_intervals_s = {int(k): float(v) for k, v in self._settings.get("hk_intervals_s", {}).items()}
        self.events_disabled = set(self._settings.get("events_disabled", []))

    def close(self) -> None:
        if self._settings is not None:
            self._settings.close()
            self._settings = None

    def routes(self) -> dict[tuple[int, int], TcRoute]:
        d = self._dictionary
        return {
            (pus3.HK_SERVICE, pus3.HK_ENABLE): TcRoute(self._parse_sids, self._hk_enable),
            (pus3.HK_SERVICE, pus3.HK_DISABLE): TcRoute(self._parse_sids, self._hk_disable),
            (pus3.HK_SERVICE, pus3.HK_REPORT_STRUCTURES): TcRoute(self._parse_sids, self._hk_structures),
            (pus3.HK_SERVICE, pus3.HK_MODIFY_INTERVAL): TcRoute(lambda tc, data: pus3.parse_intervals(d, data),
                                                              self._hk_modify_intervals),
            (pus5.EVENT_SERVICE, pus5.EVENT_ENABLE): TcRoute(self._parse_events, self._events_enable),
            (pus5.EVENT_SERVICE, pus5.EVENT_DISABLE): TcRoute(self._parse_events, self._events_disable),
            (pus5.EVENT_SERVICE, pus5.EVENT_REPORT_DISABLED): TcRoute(parse_empty, self._events_report),
        }

    # -- reports -----------------------------------------------------------------------------
    def on_hk(self, msg: Message) -> None:
        """A component's ``<name>.hk`` off the bus: the latest sample of it."""
        name = msg.name[:-3]
        if name in self._dictionary.components and isinstance(msg.data, dict):
            self._latest_hk[name] = (msg.t, msg.data)

    def on_event(self, msg: Message) -> None:
        """A bus event: stored as TM[5,x] unless its generation is off; one that is not a
        declared event with a message only counts in ``tm_errors`` (no event about it:
        events about events could feed on themselves)."""
        message = msg.data.get("message") if isinstance(msg.data, dict) else None
        try:
            if msg.name not in self._dictionary.events or not isinstance(message, str):
                raise ValueError("not a declared event with a message")
            if self._event_disabled(msg.name):
                return
            args = msg.data.get("args")
            packet = self._verification.tm.event_report(self._dictionary, msg.name, message,
                                                       utc_unix_s=self._state.utc_at(msg.t),
                                                       args=args if isinstance(args, dict) else None)
        except ValueError:
            self._counters.tm_errors += 1
            return
        self._downlink.store("events", [(packet, msg.t, self._state.utc_at(msg.t))])

    def due(self) -> bool:
        """Whether housekeeping must be looked at now (the shortest interval has passed since
        the last time); the next time is set when it is."""
        if self._state.time_s < self._next_gate_s:
            return False
        self._next_gate_s = self._state.time_s + self._gate_interval_s()
        return True

    def downlink_hk(self) -> None:
        """Store a TM[3,25] of each component whose report is due and has a new sample."""
        reports: list[StoreItem] = []
        components = self._dictionary.components
        for name, (sampled_t, values) in self._latest_hk.items():
            if self._stored_hk_t.get(name) == sampled_t:
                continue  # no new sample since the last report: storing it twice adds nothing
            component = components[name]
            if not self._hk_due(component):
                continue  # TM[3,25] generation off, or the structure's own interval not yet passed
            self._stored_hk_t[name] = sampled_t
            utc = self._state.utc_at(sampled_t)
            try:
                packet = self._verification.tm.hk_report(component, values, utc_unix_s=utc)
            except ValueError as exc:
                self._counters.tm_errors += 1
                self._event("tm_encode_failed", what=f"{name}.hk", why=str(exc)[:160])
                continue
            reports.append((packet, sampled_t, utc))
        self._downlink.store("hk", reports)

    def _hk_due(self, component: Component) -> bool:
        """Whether a TM[3,25] of ``component`` is due now (generation on, its interval
        passed); marks it generated when it is."""
        sid = component.component_id
        if sid in self.hk_disabled or self._state.time_s < self._hk_next_s.get(sid, 0.0):
            return False
        self._hk_next_s[sid] = self._state.time_s + self.hk_intervals_s.get(sid, self.interval_s)
        return True

    def _gate_interval_s(self) -> float:
        """Onboard seconds until housekeeping must be looked at again: the shortest interval."""
        return min([self.interval_s, *self.hk_intervals_s.values()])

    def _event_disabled(self, qualified: str) -> bool:
        """Whether TM[5,x] generation is off for event ``qualified`` (counted when it is)."""
        if not self.events_disabled or self._dictionary.event_id(qualified) not in self.events_disabled:
            return False
        self._counters.events_filtered += 1
        return True

    # -- intervals -----------------------------------------------------------------------------
    def set_interval(self, interval_s: float) -> None:
        """One interval for every structure (their own TC[3,31] intervals are dropped).

        Raises:
            CommandError: EXECUTION_ERROR when the settings cannot be stored (nothing changed).
        """
        try:
            if self._settings is not None:
                self._settings.put("hk_intervals_s", {})
        except sqlite3.Error as exc:
            raise CommandError("EXECUTION_ERROR", f"cannot store the housekeeping settings: {exc}") from None
        self.hk_intervals_s = {}
        self.interval_s = interval_s
        self.interval_changed()

    def interval_changed(self) -> None:
        """A shorter interval applies from now, not after the longer one has run out."""
        now = self._state.time_s
        for sid, next_s in self._hk_next_s.items():
            self._hk_next_s[sid] = min(next_s, now + self.hk_intervals_s.get(sid, self.interval_s))
        self._next_gate_s = min(self._next_gate_s, now + self._gate_interval_s())

    # -- service 3 -------------------------------------------------------------------------
    def _parse_sids(self, tc: PusTc, data: bytes) -> list[int]:
        return pus3.parse_sids(self._dictionary, tc.message_subtype, data)

    def _hk_set_enabled(self, source: TcSource, tc: PusTc, sids: list[int], enabled: bool) -> None:
        disabled = (self.hk_disabled - set(sids)) if enabled else (self.hk_disabled | set(sids))
        if self._verification.complete_change(source, tc, "housekeeping settings",
                                              lambda: self._settings.put("hk_disabled", sorted(disabled))):
            self.hk_disabled = disabled

    def _hk_enable(self, source: TcSource, tc: PusTc, sids: list[int]) -> None:
        self._hk_set_enabled(source, tc, sids, True)

    def _hk_disable(self, source: TcSource, tc: PusTc, sids: list[int]) -> None:
        self._hk_set_enabled(source, tc, sids, False)

    def _hk_structures(self, source: TcSource, tc: PusTc, sids: list[int]) -> None:
        components = [c for c in self._dictionary.components.values() if c.telemetry
                      and (not sids or c.component_id in sids)]
        self._verification.complete_locally(source, tc, lambda: [
            self._verification.report(tc, pus3.HK_SERVICE, pus3.HK_STRUCTURE_REPORT, pus3.hk_structure_data(
                c, c.component_id not in self.hk_disabled, self.hk_intervals_s.get(c.component_id, self.interval_s)))
            for c in components])

    def _hk_modify_intervals(self, source: TcSource, tc: PusTc, intervals_s: dict[int, float]) -> None:
        merged = {**self.hk_intervals_s, **intervals_s}
        if self._verification.complete_change(
                source, tc, "housekeeping settings",
                lambda: self._settings.put("hk_intervals_s", {str(k): v for k, v in merged.items()})):
            self.hk_intervals_s = merged
            self.interval_changed()

    # -- service 5 -------------------------------------------------------------------------
    def _parse_events(self, tc: PusTc, data: bytes) -> list[int]:
        return pus5.parse_event_ids(self._dictionary, tc.message_subtype, data)

    def _events_set(self, source: TcSource, tc: PusTc, disabled: set[int]) -> None:
        if self._verification.complete_change(source, tc, "event settings",
                                              lambda: self._settings.put("events_disabled", sorted(disabled))):
            self.events_disabled = disabled

    def _events_enable(self, source: TcSource, tc: PusTc, ids: list[int]) -> None:
        self._events_set(source, tc, self.events_disabled - set(ids))

    def _events_disable(self, source: TcSource, tc: PusTc, ids: list[int]) -> None:
        self._events_set(source, tc, self.events_disabled | set(ids))

    def _events_report(self, source: TcSource, tc: PusTc, _: None) -> None:
        self._verification.complete_locally(source, tc, lambda: [self._verification.report(
            tc, pus5.EVENT_SERVICE, pus5.EVENT_DISABLED_REPORT, pus5.event_list_data(sorted(self.events_disabled)))])


def parse_empty(tc: PusTc, data: bytes) -> None:
    """Route parse of a TC that carries no data.

    Raises:
        CommandError: FORMAT_ERROR for any data.
    """
    codec.parse_empty(tc.service, tc.message_subtype, data)
