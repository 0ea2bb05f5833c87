"""The command dispatcher: validates every command against the dictionary, routes it to
the subsystem that owns it and routes each response back to whoever sent the command.

Verification (PUS service 1, F Prime response codes): the dispatcher answers ``accepted``
or ``failed`` (INVALID_OPCODE, FORMAT_ERROR, VALIDATION_ERROR, BUSY, EXECUTION_ERROR when
the owner is unreachable); the owner answers ``started`` then ``completed`` or ``failed``.
A command once accepted stays in :attr:`Dispatcher.pending` until it completes, fails, its
owner restarts (failed: INTERRUPTED) or :data:`COMMAND_TIMEOUT_S` passes.

A command of the owner's own may hand itself on (:class:`Forward`): ``exec.set_mode`` becomes
``power.set_mode``, the mode manager's, and completes when that does. The owner issues
commands of its own with :meth:`Dispatcher.issue` (nobody to answer; a failure is reported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from flight.core.bus import drain
from flight.core.component import FINAL_STAGES, CommandError, Dictionary
from flight.core.messages import DecodeError, Encoder, decode

MAX_PENDING_PER_TARGET = 32
COMMAND_TIMEOUT_S = 30.0
MAX_ID_LEN = 64


@dataclass(frozen=True)
class Forward:
    """What a local handler returns to hand its command on: ``name`` (qualified) with ``args``
    goes to its owner under the same id and origin, and its answers complete the original."""

    name: str
    args: dict


@dataclass
class Pending:
    origin: bytes | None
    target: str
    name: str
    since: float


class Dispatcher:
    """Owns the command ROUTER's traffic. ``local`` runs commands addressed to ``owner``
    (the executive's own) and returns their completion message or raises CommandError."""

    def __init__(self, router: zmq.Socket, dictionary: Dictionary, owner: str,
                 local: Callable[[str, dict], str], on_failure: Callable[[str, str, str], None]) -> None:
        self.router = router
        self.dictionary = dictionary
        self.owner = owner
        self.local = local
        self.on_failure = on_failure
        self.encoder = Encoder(owner)
        self.pending: dict[str, Pending] = {}
        self.executed = 0
        self.rejected_messages = 0

    def _reply(self, origin: bytes | None, command_id: str, name: str, stage: str, code: str = "",
               message: str = "") -> None:
        body = self.encoder.encode("rsp", name, {"id": command_id, "stage": stage, "code": code, "message": message})[1]
        self._send(origin, body)
        if stage == "failed":
            self.on_failure(name, code, message)
        elif stage == "completed":
            self.executed += 1

    def drain(self) -> None:
        for frames in drain(self.router):
            if len(frames) != 2:
                self.rejected_messages += 1
                continue
            self.handle(frames[0], frames[1])

    def handle(self, identity: bytes, body: bytes) -> None:
        try:
            msg = decode(body)
        except DecodeError:
            self.rejected_messages += 1
            return
        data = msg.data if isinstance(msg.data, dict) else {}
        command_id = data.get("id")
        if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID_LEN:
            self.rejected_messages += 1
            return
        if msg.kind == "rsp":
            self._route_response(command_id, body, data)
        elif msg.kind == "cmd":
            self._dispatch(identity, command_id, msg.name, data.get("args"), body)
        else:
            self.rejected_messages += 1

    def _dispatch(self, origin: bytes, command_id: str, name: str, args: Any, body: bytes) -> None:
        if command_id in self.pending:
            self._reply(origin, command_id, name, "failed", "FORMAT_ERROR", "duplicate command id")
            return
        try:
            checked = self.dictionary.validate_command(name, args)
        except CommandError as exc:
            self._reply(origin, command_id, name, "failed", exc.code, exc.message)
            return
        if name.partition(".")[0] == self.owner:
            self._run_local(origin, command_id, name, checked)
        elif self._route(origin, command_id, name, name, body):
            self._reply(origin, command_id, name, "accepted")

    def _run_local(self, origin: bytes | None, command_id: str, name: str, checked: dict) -> None:
        try:
            result = self.local(name, checked)
        except CommandError as exc:
            result = exc
        self._reply(origin, command_id, name, "accepted")
        if isinstance(result, Forward):
            body = self.encoder.encode("cmd", result.name, {"id": command_id, "args": result.args})[1]
            self._route(origin, command_id, name, result.name, body)
            return
        self._reply(origin, command_id, name, "started")
        if isinstance(result, CommandError):
            self._reply(origin, command_id, name, "failed", result.code, result.message)
        else:
            self._reply(origin, command_id, name, "completed", message=result)

    def _route(self, origin: bytes | None, command_id: str, name: str, routed: str, body: bytes) -> bool:
        """Send command ``body`` (qualified name ``routed``) to its owner, pending as ``name``;
        False (and the command failed) when the owner is busy or unreachable."""
        target = routed.partition(".")[0]
        if sum(p.target == target for p in self.pending.values()) >= MAX_PENDING_PER_TARGET:
            self._reply(origin, command_id, name, "failed", "BUSY", f"{target} has too many commands pending")
            return False
        try:
            self.router.send_multipart([target.encode(), body], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._reply(origin, command_id, name, "failed", "EXECUTION_ERROR", f"{target} unreachable: {exc}")
            return False
        self.pending[command_id] = Pending(origin, target, name, time.monotonic())
        return True

    def issue(self, command_id: str, name: str, args: dict) -> None:
        """Send a command of the owner's own (the executive ordering SAFE): validated and
        routed as any other, its answers go nowhere; a failure reaches ``on_failure``."""
        try:
            checked = self.dictionary.validate_command(name, args)
        except CommandError as exc:
            self.on_failure(name, exc.code, exc.message)
            return
        body = self.encoder.encode("cmd", name, {"id": command_id, "args": checked})[1]
        self._route(None, command_id, name, name, body)

    def _send(self, origin: bytes | None, body: bytes) -> None:
        if origin is None:
            return  # the owner's own command: nobody waits for its answers
        try:
            self.router.send_multipart([origin, body], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the origin is gone: nobody is left to tell

    def _route_response(self, command_id: str, body: bytes, data: dict) -> None:
        pending = self.pending.get(command_id)
        if pending is None:
            return  # a late answer to a command already failed by timeout or restart
        self._send(pending.origin, body)
        stage = data.get("stage")
        if stage in FINAL_STAGES:
            del self.pending[command_id]
            if stage == "completed":
                self.executed += 1
            else:
                self.on_failure(pending.name, str(data.get("code")), str(data.get("message")))

    def fail_target(self, target: str, why: str) -> None:
        """Fail every command pending on ``target`` (it died or restarted)."""
        for command_id, p in list(self.pending.items()):
            if p.target == target:
                del self.pending[command_id]
                self._reply(p.origin, command_id, p.name, "failed", "INTERRUPTED", why)

    def expire(self) -> None:
        now = time.monotonic()
        for command_id, p in list(self.pending.items()):
            if now - p.since > COMMAND_TIMEOUT_S:
                del self.pending[command_id]
                self._reply(p.origin, command_id, p.name, "failed", "EXECUTION_ERROR",
                            f"no answer within {COMMAND_TIMEOUT_S:g} s")
