"""Job results to the ground: data product ``jobs.result`` in, TM[140,1] in the ``results``
packet store out, acknowledged back to the job runner with data product ``link.result_ack``.

Durability (each result downlinked exactly once, through restarts of either process)
    The bus loses what is published while nobody listens, so delivery is a handshake over two
    declared data products, with the durable state at both ends:

    * the job runner commits a result to ``jobs.sqlite`` first, then publishes it
      (:class:`~flight.subsystems.jobs.store.JobResult`), and publishes it again with every
      housekeeping packet until it is acknowledged: a result finished while the link was
      down or restarting reaches it within one housekeeping period of its return;
    * the link stores the TM[140,1] and marks the job id stored
      (:meth:`~flight.subsystems.link.packet_stores.PacketStores.add_result`) in one packet
      store transaction, committed before the packet is sent
      (:meth:`~flight.subsystems.link.downlink.Downlink.store_result`: one result, one packet,
      whatever crashes), and acknowledges only job ids whose transaction has committed; a
      result offered again after it was stored is not stored again, only acknowledged
      again (the acknowledgement itself may have been lost);
    * the runner records acknowledgements durably and stops offering those results.

    A crash of the link before its commit loses the stored packet and its mark together, and
    the runner, not acknowledged, offers the result again; a crash after it leaves the mark,
    so the result is not stored twice. Nothing is lost and nothing is stored twice.
Timing
    Results are stored at the link's housekeeping ticks, and only those of earlier ticks
    (``time_s`` before the link's onboard time): the job runner may be publishing this
    tick's right now, and what a lockstep run stores (and counts in telemetry) must not
    depend on that race. In lockstep a result of tick N arrives inside the frame of tick
    N + 1 (it rides in the runner's ``hal.done``, :mod:`flight.core.lockstep`), so which
    results a tick stores follows from the ticks alone.
Bad input
    A product that does not read as a job result raises ValueError (the manager counts it as
    a decode error and reports it); a result that cannot be encoded as TM[140,1] is counted
    (``tm_errors``), reported (``link.tm_encode_failed``) and acknowledged, as it never will
    encode.
"""

from __future__ import annotations

from flight.core.component import Component
from flight.spacelink.pus140_results import job_result_report
from flight.spacelink.services import TmEncoder
from flight.subsystems.jobs.store import JobResult
from flight.subsystems.link.downlink import Downlink
from flight.subsystems.link.state import EventBudget, LinkCounters, LinkState


class JobResults:
    """Job results from data product ``jobs.result`` into the results store (see the module).
    ``component`` is the job runner's (the TM[140,1] carry its APID)."""

    def __init__(self, component: Component, tm: TmEncoder, downlink: Downlink, state: LinkState,
                 counters: LinkCounters, budget: EventBudget) -> None:
        self._component = component
        self._tm = tm
        self._downlink = downlink
        self._state = state
        self._counters = counters
        self._event = budget
        self._waiting: dict[int, JobResult] = {}
        """Received and not yet stored, by job id."""
        self._stored: set[int] = set()
        self._uncommitted: list[int] = []
        """Stored in the packet store's open transaction: acknowledged once it commits."""
        self._to_acknowledge: set[int] = set()

    def open(self) -> None:
        """Learn which results the (open) results store already holds.

        Raises:
            sqlite3.Error: the store cannot be read.
        """
        self._stored = self._downlink.stores.results_stored()

    def on_product(self, data: object) -> None:
        """A ``jobs.result`` data product.

        Raises:
            ValueError: it is not a job result (nothing changed).
        """
        result = JobResult.from_product(data)
        if result.job_id not in self._stored:
            self._waiting[result.job_id] = result
        elif result.job_id not in self._uncommitted:
            self._to_acknowledge.add(result.job_id)  # the runner missed our acknowledgement

    def store_due(self) -> None:
        """Store a TM[140,1] for each waiting result of an earlier tick, by job id; in contact
        it is sent at once. A store error leaves the rest waiting for the next call."""
        for job_id in sorted(self._waiting):
            result = self._waiting[job_id]
            if result.time_s >= self._state.time_s:
                continue
            utc = self._state.utc_at(result.time_s)
            try:
                packet = job_result_report(self._tm, self._component, job_id, result.outcome, result.work_gpu_s,
                                           result.done_gpu_s, result.detail, utc_unix_s=utc)
            except ValueError as exc:
                self._counters.tm_errors += 1
                self._event("tm_encode_failed", what=f"job {job_id} result", why=str(exc)[:160])
                del self._waiting[job_id]
                self._to_acknowledge.add(job_id)
                continue
            if not self._downlink.store_result(job_id, (packet, result.time_s, utc)):
                return
            del self._waiting[job_id]
            self._stored.add(job_id)
            self._uncommitted.append(job_id)

    def committed(self) -> None:
        """The packet stores committed: what was stored since is durable, so acknowledged."""
        self._to_acknowledge.update(self._uncommitted)
        self._uncommitted.clear()

    def acknowledgements(self) -> list[int]:
        """Job ids to acknowledge now (each once per call that returns it), ascending."""
        ids = sorted(self._to_acknowledge)
        self._to_acknowledge.clear()
        return ids
