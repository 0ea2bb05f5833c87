"""PUS-C service 15 (on-board storage and retrieval) over the link's packet stores.

TC[15,130] (mission) acknowledges the TM packets its connection has received and makes it an
*archiving* connection (:mod:`flight.subsystems.link.downlink`); TC[15,1]/[15,2] enable/disable
storage per store, TC[15,9] queues a store's packets in a time range for downlink again,
TC[15,11] deletes up to a time, TC[15,12] answers with TM[15,13] (each store's count,
unacknowledged packets, time span and retention counters) to its sender. Each is done at
once, committed before its completion is reported, and verified by its ack flags like a
ping; a packet store error refuses it (EXECUTION_ERROR). The wire format is
:func:`flight.spacelink.pus15_storage.storage_tc`'s.
"""

from __future__ import annotations

import sqlite3

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError
from flight.spacelink.pus15_storage import (
    DELETE_UP_TO,
    DISABLE_STORAGE,
    DOWNLINK_ACK,
    ENABLE_STORAGE,
    REPORT_STORE_STATUS,
    RETRIEVE_BY_TIME_RANGE,
    STORAGE_SERVICE,
    STORAGE_TC_SUBTYPES,
    StorageRequest,
    decode_storage_tc,
    store_status_report,
)
from flight.subsystems.link.downlink import Downlink
from flight.spacelink.pus15_storage import STORE_BY_ID
from flight.subsystems.link.routing import TcRoute
from flight.subsystems.link.state import EventBudget, LinkCounters, LinkState, TcSource
from flight.subsystems.link.verification import Verification


class StoreService:
    """Service 15 over ``downlink``'s stores and connections."""

    def __init__(self, downlink: Downlink, verification: Verification, state: LinkState, counters: LinkCounters,
                 budget: EventBudget) -> None:
        self._downlink = downlink
        self._verification = verification
        self._state = state
        self._counters = counters
        self._event = budget

    def routes(self) -> dict[tuple[int, int], TcRoute]:
        return {(STORAGE_SERVICE, subtype): TcRoute(self.parse, self.serve) for subtype in STORAGE_TC_SUBTYPES}

    @staticmethod
    def parse(tc: PusTc, data: bytes) -> StorageRequest:
        """Raises:
            CommandError: as :func:`~flight.spacelink.pus15_storage.decode_storage_tc`; VALIDATION_ERROR
                for a store id no store has.
        """
        request = decode_storage_tc(tc.message_subtype, data)
        unknown = [i for i in request.store_ids if i not in STORE_BY_ID]
        if unknown:
            raise CommandError("VALIDATION_ERROR", f"no packet store {unknown} (stores: "
                               + ", ".join(f"{s.store_id} {s.name}" for s in STORE_BY_ID.values()) + ")")
        return request

    def serve(self, source: TcSource, tc: PusTc, request: StorageRequest) -> None:
        stores = self._downlink.stores
        names = ", ".join(STORE_BY_ID[i].name for i in request.store_ids)
        entries = []
        try:
            if request.subtype == DOWNLINK_ACK:
                conn = self._downlink.connections.table.get(source.identity)
                if conn is not None:
                    conn.archiving = True
                self._counters.tm_acknowledged += stores.acknowledged(source.identity, request.received)
            elif request.subtype in (ENABLE_STORAGE, DISABLE_STORAGE):
                enable = request.subtype == ENABLE_STORAGE
                stores.set_enabled(request.store_ids, enable)
                self._event("storage_changed", what="storage enabled" if enable else "storage disabled", stores=names)
            elif request.subtype == RETRIEVE_BY_TIME_RANGE:
                n = stores.retrieve(request.store_ids[0], request.from_utc_unix_s, request.to_utc_unix_s)
                self._event("storage_changed", what=f"{n} packet(s) queued for downlink", stores=names)
            elif request.subtype == DELETE_UP_TO:
                n = stores.delete_up_to(request.store_ids, request.to_utc_unix_s)
                self._event("storage_changed", what=f"{n} packet(s) deleted", stores=names)
            else:
                wanted = set(request.store_ids or STORE_BY_ID)
                entries = [st for st in stores.status() if st.store_id in wanted]
        except sqlite3.Error as exc:
            self._counters.store_errors += 1
            self._verification.reject(source, tc, "EXECUTION_ERROR", f"packet store: {exc}")
            return
        if request.subtype != REPORT_STORE_STATUS:
            self._verification.complete_locally(source, tc)
            return
        self._verification.complete_locally(source, tc, lambda: [store_status_report(
            self._verification.tm, entries, dest_id=tc.source_id, utc_unix_s=self._state.utc_now())])
