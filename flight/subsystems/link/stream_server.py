"""The space link's TCP server: non-blocking sockets behind one selector, served from the link
manager's own thread (no I/O thread to hand each send to).

A connection is known by an ``identity`` (4 bytes, never reused while the server runs).
:meth:`StreamServer.service` accepts connections and reads what arrived, as events;
:meth:`StreamServer.send` writes at once what the kernel takes and keeps the rest, in order,
until the socket is writable again, up to :data:`SEND_BUFFER_BYTES` per connection (the bound
on memory a client that stops reading can make the satellite hold). :meth:`StreamServer.fileno`
is the selector's descriptor: a ZeroMQ poller wakes on it when any connection needs service.
"""

from __future__ import annotations

import enum
import selectors
import socket
from dataclasses import dataclass, field

RECV_BYTES = 8192
"""Most bytes one read takes from one connection."""
READS_PER_SERVICE = 256
"""Most reads (and accepts) one :meth:`StreamServer.service` does, so a flood cannot hold the
link's thread: what is left is read on the next call."""
SEND_BUFFER_BYTES = 32 * 2**20
"""Bytes kept per connection that the kernel has not taken yet; a send past it is refused
(the link counts the packets as dropped and keeps stored ones for later). At the backlog's
2,000 packets per tick (~1.4 MB) a client that stopped reading is cut off from new telemetry
after ~20 ticks; 4 such clients hold at most 128 MiB."""
LISTEN_BACKLOG = 16
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S = 30, 10
"""TCP keepalive, so a client that vanished without a FIN frees its connection slot."""


class Sent(enum.Enum):
    """What :meth:`StreamServer.send` did."""

    SENT = "sent"
    """Written or queued, whole."""
    FULL = "full"
    """Refused, nothing queued: the connection's send buffer would pass its bound."""
    GONE = "gone"
    """Refused: no such connection, or it failed and is closed now (no ``closed`` event follows)."""


@dataclass
class _Peer:
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)
    """Bytes kept back; those before ``head`` are written already. They are cut off only once
    they are half of ``out``, so draining a large backlog moves each byte in memory at most
    about once more (cutting the front off at every write would move the whole rest)."""
    head: int = 0

    @property
    def waiting(self) -> int:
        return len(self.out) - self.head


def _host_port(address: tuple) -> str:
    """``HOST:PORT`` of a socket address, an IPv6 host in brackets."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StreamServer:
    """A TCP server on ``host:port`` (port 0: any free one; IPv6 literal hosts bind IPv6).

    Raises:
        OSError: the address cannot be bound.
    """

    def __init__(self, host: str, port: int) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self._listener = socket.socket(family, kind, proto)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(address)
        self._listener.listen(LISTEN_BACKLOG)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._peers: dict[bytes, _Peer] = {}
        self._serial = 0
        self.endpoint = _host_port(self._listener.getsockname())
        """``HOST:PORT`` actually bound."""

    def fileno(self) -> int:
        return self._selector.fileno()

    def waiting_bytes(self, identity: bytes) -> int:
        """Bytes kept for the connection that the kernel has not taken yet (0 if it is gone)."""
        peer = self._peers.get(identity)
        return 0 if peer is None else peer.waiting

    def service(self) -> list[tuple[str, bytes, bytes | str]]:
        """Accept and read what is waiting, and write what was kept back where the socket
        takes it now. Returns events in order: ``("connected", identity, "HOST:PORT")``,
        ``("data", identity, bytes)``, ``("closed", identity, "")`` (the peer closed or the
        connection failed; it is gone here)."""
        events: list[tuple[str, bytes, bytes | str]] = []
        budget = READS_PER_SERVICE
        accept = False
        for key, mask in self._selector.select(0):
            if key.fileobj is self._listener:
                accept = True
                continue
            identity = key.data
            if mask & selectors.EVENT_WRITE and not self._flush(identity):
                events.append(("closed", identity, ""))
                continue
            if mask & selectors.EVENT_READ:
                budget = self._read(identity, events, budget)
        # Connections before the listener, and each new one read as soon as it is accepted:
        # a client that closed and reconnected while the link was busy has its ``closed``
        # before the next ``connected``, so a slot is never held by a connection already gone.
        if accept:
            budget = self._accept(events, budget)
        return events

    def send(self, identity: bytes, data: bytes) -> Sent:
        """Write ``data`` to the connection, whole or not at all."""
        peer = self._peers.get(identity)
        if peer is None:
            return Sent.GONE
        if peer.waiting:  # earlier bytes still wait: these go after them
            if peer.waiting + len(data) > SEND_BUFFER_BYTES:
                return Sent.FULL
            peer.out += data
            return Sent.SENT
        try:
            written = peer.sock.send(data)
        except BlockingIOError:
            written = 0
        except OSError:
            self.close(identity)
            return Sent.GONE
        if written < len(data):  # the rest follows what the kernel took, even past the bound
            peer.out += memoryview(data)[written:]
            self._selector.modify(peer.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, identity)
        return Sent.SENT

    def close(self, identity: bytes) -> None:
        """Close the connection now, dropping what it had not been sent; no ``closed`` event."""
        peer = self._peers.pop(identity, None)
        if peer is not None:
            self._selector.unregister(peer.sock)
            peer.sock.close()

    def close_all(self) -> None:
        """Close every connection and stop listening."""
        for identity in list(self._peers):
            self.close(identity)
        self._selector.unregister(self._listener)
        self._listener.close()
        self._selector.close()

    def _accept(self, events: list, budget: int) -> int:
        while budget > 0:
            budget -= 1
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                break
            except OSError:  # e.g. the client reset before we took it, or out of descriptors
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a verification report goes at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS has its own name and defaults
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            self._serial += 1
            identity = self._serial.to_bytes(4, "big")
            self._peers[identity] = _Peer(sock)
            self._selector.register(sock, selectors.EVENT_READ, identity)
            events.append(("connected", identity, _host_port(address)))
            budget = self._read(identity, events, budget)
        return budget

    def _read(self, identity: bytes, events: list, budget: int) -> int:
        peer = self._peers[identity]
        while budget > 0:
            budget -= 1
            try:
                data = peer.sock.recv(RECV_BYTES)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.close(identity)
                events.append(("closed", identity, ""))
                break
            events.append(("data", identity, data))
        return budget

    def _flush(self, identity: bytes) -> bool:
        """Write what was kept back; whether the connection is still up."""
        peer = self._peers[identity]
        try:
            with memoryview(peer.out) as kept:
                written = peer.sock.send(kept[peer.head:])
        except BlockingIOError:
            return True
        except OSError:
            self.close(identity)
            return False
        peer.head += written
        if not peer.waiting:
            peer.out.clear()
            peer.head = 0
            self._selector.modify(peer.sock, selectors.EVENT_READ, identity)
        elif peer.head > len(peer.out) // 2:
            del peer.out[:peer.head]
            peer.head = 0
        return True
