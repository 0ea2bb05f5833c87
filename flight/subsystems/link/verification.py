"""Verification of TCs (PUS-C service 1): TCs in flight on board and their reports.

A TC[8,1] (or a TC[20,3], which becomes the owner's ``set_parameter``) is sent on board as an
internal command through the dispatcher (:meth:`Verification.dispatch`); its responses become
TM[1,1]/[1,2] acceptance, TM[1,3]/[1,4] start, TM[1,5] progress and TM[1,7]/[1,8] completion
(:meth:`Verification.on_response`). At most :data:`MAX_PENDING` are in flight (more: BUSY);
one without a final answer within :data:`PENDING_TIMEOUT_S` fails with EXECUTION_ERROR. A TC
the link serves itself is verified the same way (:meth:`Verification.complete_locally`); a
refused one gets TM[1,2] with its code (:meth:`Verification.reject`).

Ack flags
    Every TC, whoever serves it, gets a success report of a stage only when its ack flags
    ask for it: acceptance (TM[1,1]) with 0b1000, start (TM[1,3]) with 0b0100, progress
    (TM[1,5]) with 0b0010, completion (TM[1,7]) with 0b0001 (ECSS-E-ST-70-41C 7.4.4.1, TC
    packet secondary header, and 6.1.3: the acknowledgement flags select the successful
    verification reports). Failure reports (TM[1,2/4/6/8]) are sent whatever the flags say
    (6.1.3), so a TC with flags 0000 that succeeds is answered by its service's reports
    alone, or not at all.
Order
    Each report is built (and so takes its sequence count) when it is sent: a TC's
    acceptance report goes before its service's reports, and those before its completion,
    in count order as on the wire.

Durability: a TC sent on board is recorded in the pending-TC store first and removed once its
final report has left; after a restart :meth:`Verification.recover` gives each one left its
final report (:mod:`flight.subsystems.link.pending`).

Reports go through ``reply(identity, packet)`` (:meth:`flight.subsystems.link.downlink.Downlink.reply`):
to every connection, or into the verification packet store for a TC of the onboard schedule.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq
from spacepackets.ecss.pus_1_verification import MessageSubtype as Verif
from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError
from flight.spacelink.framing import ACK_ACCEPTANCE, ACK_COMPLETION, ACK_PROGRESS, ACK_START, TC_APID
from flight.spacelink.pus1_verification import FAILURE_CODE_NUMBERS
from flight.spacelink.services import TmEncoder
from flight.subsystems.link.pending import RECOVERED_TIMEOUT_S, PendingStore, StoredTc
from flight.subsystems.link.state import ONBOARD, EventBudget, LinkCounters, LinkState, TcSource

MAX_PENDING = 64
PENDING_TIMEOUT_S = 60.0
"""Backstop for a TC[8,1] whose command never gets a final answer (the dispatcher's own
timeout is 30 s; this covers a dispatcher that is gone)."""

Reply = Callable[[bytes, bytes], None]
"""``reply(identity, packet)``: a report about a TC from the connection ``identity``."""
SendCommand = Callable[[str, str, dict], None]
"""``send_command(command_id, qualified, args)``: the port to the dispatcher."""


@dataclass
class PendingTc:
    tc: PusTc
    identity: bytes
    qualified: str
    since: float
    """Wall (monotonic) s it was sent on board."""
    args: dict[str, Any]
    accepted: bool = False
    started: bool = False
    steps: int = 0
    recovered: bool = False
    """Found in the pending-TC store after a restart (:meth:`Verification.recover`)."""


class Verification:
    """TCs in flight and their service 1 reports (see the module). ``tm`` is the link's TM
    encoder, which the services answering TCs share."""

    def __init__(self, tm: TmEncoder, state: LinkState, counters: LinkCounters, budget: EventBudget,
                 reply: Reply, send_command: SendCommand) -> None:
        self.tm = tm
        self._state = state
        self._counters = counters
        self._event = budget
        self._reply = reply
        self._send_command = send_command
        self.pending: dict[str, PendingTc] = {}
        # a random part: a flight computer boots the same way each time, so its link may get the
        # same pid, and an id of the previous boot's may still be in the pending-TC store
        self._id_prefix = f"link-{os.getpid()}-{secrets.token_hex(4)}-"
        self._serial = 0
        self.store: PendingStore | None = None
        """The durable record of TCs in flight (:meth:`open`); ``None``: in memory only."""
        self._exec_pid = 0
        self._idempotent: Callable[[str], bool] = lambda _qualified: False
        self._left: list[StoredTc] = []
        """What the store held when opened: the TCs of processes before this one (:meth:`recover`)."""
        self._stored_finals: list[str] = []
        """TCs whose final report went into the verification packet store and is not committed
        there yet: their records stay until :meth:`committed`."""

    def open(self, store: PendingStore, exec_pid: int, idempotent: Callable[[str], bool]) -> None:
        """Record TCs in flight in ``store``; ``exec_pid`` is the executive dispatching them,
        ``idempotent(qualified)`` whether a command may run again after a restart.

        Raises:
            sqlite3.Error: the store cannot be read.
        """
        self.store, self._exec_pid, self._idempotent = store, exec_pid, idempotent
        # read now, before any TC of this process is recorded: in ``always`` contact TCs are taken
        # before the first frame, and recovering one of those would run it a second time
        self._left = store.load()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- TCs sent on board ---------------------------------------------------------------
    def dispatch(self, source: TcSource, tc: PusTc, qualified: str, args: dict[str, Any]) -> None:
        """Send ``tc`` on board as internal command ``qualified(**args)``."""
        if len(self.pending) >= MAX_PENDING:
            self.reject(source, tc, "BUSY", f"{MAX_PENDING} telecommands already in flight")
            return
        command_id = self._new_id()
        try:
            if self.store is not None:
                self.store.add(StoredTc(command_id, tc.pack(), qualified, args, self._exec_pid))
        except sqlite3.Error as exc:
            self.reject(source, tc, "EXECUTION_ERROR", f"cannot record the TC durably, not executed: {exc}")
            return
        self.pending[command_id] = PendingTc(tc, source.identity, qualified, time.monotonic(), args)
        try:
            self._send_command(command_id, qualified, args)
        except zmq.ZMQError as exc:
            del self.pending[command_id]
            self._forget(command_id)
            self.reject(source, tc, "EXECUTION_ERROR", f"dispatcher unreachable: {exc}")
            return
        self._counters.tc_accepted += 1

    def _new_id(self) -> str:
        self._serial += 1
        return f"{self._id_prefix}{self._serial}"

    def recorded_tcs(self) -> set[bytes]:
        """The TC packets the store held from before a restart (see :meth:`open`)."""
        return {row.tc for row in self._left}

    def recover(self, now: float) -> None:
        """Give every TC the store held from before a restart (when :meth:`open` read it; not
        those this process has taken since) its final report (the rules of
        :mod:`flight.subsystems.link.pending`); ``now`` is wall (monotonic) s."""
        if self.store is None:
            return
        left, self._left = self._left, []
        for row in left:
            if row.final is not None:  # decided before the restart: the same report again
                self._reply(ONBOARD, row.final)
                self._stored_finals.append(row.command_id)
                continue
            try:
                tc = PusTc.unpack(row.tc)
            except ValueError as exc:  # only a damaged file holds one; nothing to report it to
                self._forget(row.command_id)
                self._event("store_failed", store="pending TCs", why=f"unreadable TC dropped: {exc}"[:160])
                continue
            p = PendingTc(tc, ONBOARD, row.qualified, now, row.args, accepted=True, started=True, recovered=True)
            if self._idempotent(row.qualified):
                command_id = self._new_id()
                self._stored(lambda: self.store.renamed(row.command_id, command_id, self._exec_pid))
                self.pending[command_id] = p
                self._send_command(command_id, row.qualified, row.args)
            else:
                self.pending[row.command_id] = p
                if row.exec_pid != self._exec_pid:
                    self._final_failure(row.command_id, p, "INTERRUPTED",
                                        "the flight computer restarted before the command completed")

    def _forget(self, command_id: str) -> None:
        if self.store is not None:
            self._stored(lambda: self.store.remove(command_id))

    def committed(self) -> None:
        """The packet stores committed: the final reports stored since are durable there, so
        their TCs' records go."""
        for command_id in self._stored_finals:
            self._forget(command_id)
        self._stored_finals.clear()

    def _stored(self, change: Callable[[], None]) -> None:
        try:
            change()
        except sqlite3.Error as exc:
            self._counters.store_errors += 1
            self._event("store_failed", store="pending TCs", why=str(exc)[:160])

    def on_response(self, data: dict) -> None:
        """A dispatcher response ``{"id", "stage", "code", "message"}``; others' are ignored."""
        command_id = data.get("id")
        p = self.pending.get(command_id) if isinstance(command_id, str) else None
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
            if p.tc.pus_tc_sec_header.ack_flags & ACK_ACCEPTANCE:
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
            del self.pending[command_id]
            if p.tc.pus_tc_sec_header.ack_flags & ACK_COMPLETION:
                self._verify_final(command_id, p, Verif.TM_COMPLETION_SUCCESS)
            else:
                self._forget(command_id)

    def expire(self, now: float) -> None:
        """Fail every TC in flight longer than :data:`PENDING_TIMEOUT_S` (wall ``now``); one
        recovered after a restart of the link, after :data:`~flight.subsystems.link.pending.RECOVERED_TIMEOUT_S`,
        with INTERRUPTED (its answer, if any, came while the link was down)."""
        for command_id, p in list(self.pending.items()):
            if p.recovered and now - p.since > RECOVERED_TIMEOUT_S:
                self._final_failure(command_id, p, "INTERRUPTED",
                                    "the link restarted while the command was in flight and its final answer "
                                    "never came: it may have taken effect")
            elif now - p.since > PENDING_TIMEOUT_S:
                self._final_failure(command_id, p, "EXECUTION_ERROR", f"no answer within {PENDING_TIMEOUT_S:g} s")

    def _final_failure(self, command_id: str, p: PendingTc, code: str, message: str) -> None:
        del self.pending[command_id]
        # an accepted TC a restart interrupted ends with TM[1,8]: whether it had started is unknown
        subtype = (Verif.TM_ACCEPTANCE_FAILURE if not p.accepted
                   else Verif.TM_START_FAILURE if not p.started and code != "INTERRUPTED"
                   else Verif.TM_COMPLETION_FAILURE)
        self._verify_final(command_id, p, subtype, code=code, message=message)

    def _verify(self, p: PendingTc, subtype: int, **fields: Any) -> None:
        self._reply(p.identity, self.tm.verification(subtype, p.tc, utc_unix_s=self._state.utc_now(), **fields))

    def _verify_final(self, command_id: str, p: PendingTc, subtype: int, **fields: Any) -> None:
        """The final report: kept with the TC's record before it leaves, so a restart before the
        record is removed sends these same bytes again (which the ground archive keeps once)
        rather than a second verdict. One that goes into the verification packet store (a TC
        of the schedule, or recovered) leaves only once that store commits: the record stays
        until then (:meth:`committed`), or a crash before the commit would lose the report."""
        packet = self.tm.verification(subtype, p.tc, utc_unix_s=self._state.utc_now(), **fields)
        if self.store is not None:
            self._stored(lambda: self.store.finished(command_id, packet))
        self._reply(p.identity, packet)
        if p.identity == ONBOARD:
            self._stored_finals.append(command_id)
        else:
            self._forget(command_id)

    # -- TCs served by the link itself ---------------------------------------------------
    def acceptance_failure(self, source: TcSource, tc: PusTc, code: str, why: str) -> None:
        """TM[1,2] with failure ``code`` and ``why``, and nothing else."""
        self._reply(source.identity, self.tm.verification(Verif.TM_ACCEPTANCE_FAILURE, tc, code=code, message=why,
                                                          utc_unix_s=self._state.utc_now()))

    def reject(self, source: TcSource, tc: PusTc, code: str, why: str) -> None:
        """TM[1,2] with failure ``code`` and ``why``; counted and reported by event."""
        self._counters.tc_rejected += 1
        self.acceptance_failure(source, tc, code, why)
        if code == "AUTHENTICATION_ERROR":
            self._counters.tc_auth_failed += 1
            self._event("tc_auth_failed", peer=source.peer, service=tc.service, subtype=tc.message_subtype,
                        why=why[:160])
        elif code == "KEY_NOT_ACTIVE":
            self._counters.tc_auth_failed += 1
            self._counters.tc_key_not_active += 1
            self._event("tc_key_not_active", peer=source.peer, service=tc.service, subtype=tc.message_subtype,
                        why=why[:160])
        else:
            self._event("tc_rejected", peer=source.peer, service=tc.service, subtype=tc.message_subtype,
                        code=code, why=why[:160])

    def complete_locally(self, source: TcSource, tc: PusTc, reports: Callable[[], list[bytes]] = list) -> None:
        """Serve a TC the link answers itself: acceptance and start success as its ack flags
        ask, then the packets ``reports()`` builds, then completion success as asked; each
        built as it is sent, so their sequence counts are in send order."""
        self._counters.tc_accepted += 1
        utc = self._state.utc_now()
        flags = tc.pus_tc_sec_header.ack_flags
        for flag, subtype in ((ACK_ACCEPTANCE, Verif.TM_ACCEPTANCE_SUCCESS), (ACK_START, Verif.TM_START_SUCCESS)):
            if flags & flag:
                self._reply(source.identity, self.tm.verification(subtype, tc, utc_unix_s=utc))
        for report in reports():
            self._reply(source.identity, report)
        if flags & ACK_COMPLETION:
            self._reply(source.identity, self.tm.verification(Verif.TM_COMPLETION_SUCCESS, tc, utc_unix_s=utc))

    def complete_change(self, source: TcSource, tc: PusTc, what: str, change: Callable[[], Any]) -> bool:
        """Run ``change`` (durable: all or nothing) and complete ``tc``; or reject it with
        the code of a :class:`CommandError` it raised, or EXECUTION_ERROR for a storage
        error. Whether it changed."""
        try:
            change()
        except CommandError as exc:
            self.reject(source, tc, exc.code, exc.message)
        except sqlite3.Error as exc:
            self.reject(source, tc, "EXECUTION_ERROR", f"cannot store {what}: {exc}")
        else:
            self.complete_locally(source, tc)
            return True
        return False

    def report(self, tc: PusTc, service: int, subtype: int, data: bytes) -> bytes:
        """A TM[service,subtype] from the link answering ``tc`` (to its source id)."""
        return self.tm.packet(TC_APID, service, subtype, data, utc_unix_s=self._state.utc_now(),
                              dest_id=tc.source_id)
