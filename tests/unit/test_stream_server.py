"""The space link's TCP server (flight.subsystems.link.stream_server) on loopback: connections come and go
as events, bytes a slow reader cannot take yet are kept and arrive whole and in order, the
bound on what is kept refuses a send instead of growing, and a flood is read in bounded
slices."""

import select
import socket
import time

import pytest

from flight.subsystems.link import stream_server
from flight.subsystems.link.stream_server import Sent, StreamServer
from tests.support.predicates import wait_until


@pytest.fixture
def server():
    s = StreamServer("127.0.0.1", 0)
    yield s
    s.close_all()


def _serve_until(server: StreamServer, want, timeout_s: float = 5.0) -> list:
    """Service the server until ``want(events so far)`` holds."""
    events: list = []

    def served() -> bool:
        select.select([server.fileno()], [], [], 0.05)
        events.extend(server.service())
        return want(events)

    wait_until(served, lambda: f"such events; {events}", timeout_s, 0)
    return events


def _read_while_servicing(server: StreamServer, client: socket.socket, n_bytes: int, timeout_s: float = 20.0) -> bytes:
    """Service the server (it writes what it kept as the socket drains) and read ``client``
    until ``n_bytes`` have arrived, waiting on the socket between reads."""
    received = bytearray()
    client.setblocking(False)

    def all_in() -> bool:
        server.service()
        select.select([client], [], [], 0.001)
        try:
            received.extend(client.recv(1 << 20))
        except BlockingIOError:
            pass
        return len(received) >= n_bytes

    wait_until(all_in, lambda: f"{n_bytes} bytes, {len(received)} read", timeout_s, 0)
    return bytes(received)


def _connect(server: StreamServer) -> tuple[socket.socket, bytes]:
    host, port = server.endpoint.rsplit(":", 1)
    client = socket.create_connection((host, int(port)))
    (event,) = _serve_until(server, lambda ev: ev)
    kind, identity, peer = event
    assert kind == "connected" and peer == "127.0.0.1:%d" % client.getsockname()[1]
    return client, identity


def _read_exactly(client: socket.socket, n: int, timeout_s: float = 10.0) -> bytes:
    client.settimeout(timeout_s)
    got = bytearray()
    while len(got) < n:
        chunk = client.recv(1 << 20)
        assert chunk, "the server closed the connection"
        got += chunk
    return bytes(got)


def test_connections_data_and_closes_come_as_events(server):
    client, identity = _connect(server)
    client.sendall(b"hello")
    events = _serve_until(server, lambda ev: ev)
    assert events == [("data", identity, b"hello")]
    assert server.send(identity, b"down") is Sent.SENT
    assert _read_exactly(client, 4) == b"down"
    client.close()
    assert _serve_until(server, lambda ev: ev) == [("closed", identity, "")]
    assert server.send(identity, b"x") is Sent.GONE


def test_what_a_slow_reader_cannot_take_yet_is_kept_and_arrives_whole_in_order(server):
    client, identity = _connect(server)
    blocks = [bytes([i]) * 100_000 for i in range(250)]  # 25 MB, unread: more than the kernel buffers hold
    assert all(server.send(identity, block) is Sent.SENT for block in blocks)
    assert server.waiting_bytes(identity), "the kernel took everything: the test proves nothing"
    assert _read_while_servicing(server, client, len(blocks) * 100_000) == b"".join(blocks)
    assert server.waiting_bytes(identity) == 0


def test_a_send_past_the_bound_is_refused_whole_and_the_connection_stays(server, monkeypatch):
    monkeypatch.setattr(stream_server, "SEND_BUFFER_BYTES", 64_000)
    client, identity = _connect(server)
    results = [server.send(identity, bytes([i % 256]) * 10_000) for i in range(2500)]  # 25 MB, unread
    assert Sent.FULL in results and Sent.GONE not in results
    kept = [i for i, r in enumerate(results) if r is Sent.SENT]
    assert 0 < server.waiting_bytes(identity) <= 64_000
    expected = b"".join(bytes([i % 256]) * 10_000 for i in kept)
    assert _read_while_servicing(server, client, len(expected)) == expected  # only the accepted sends, each whole, in order


def test_a_flood_is_read_in_bounded_slices(server, monkeypatch):
    monkeypatch.setattr(stream_server, "READS_PER_SERVICE", 3)
    monkeypatch.setattr(stream_server, "RECV_BYTES", 1000)
    client, identity = _connect(server)
    client.sendall(b"z" * 20_000)  # on loopback all of it is in the server's socket when this returns
    assert select.select([server.fileno()], [], [], 5)[0], "the flood is there to read"
    first = server.service()
    assert len(first) == 3 and all(kind == "data" and len(data) <= 1000 for kind, _, data in first)
    rest = _serve_until(server, lambda ev: sum(len(d) for _, _, d in ev) >= 20_000 - 3000)
    assert b"".join(d for _, _, d in first + rest) == b"z" * 20_000


def test_close_drops_the_connection_without_an_event_and_the_peer_sees_it(server):
    client, identity = _connect(server)
    server.close(identity)
    assert server.service() == []
    client.settimeout(5)
    assert client.recv(10) == b""
    assert server.send(identity, b"x") is Sent.GONE


def test_a_client_that_reconnects_while_the_server_is_busy_has_each_close_before_its_next_connect(server):
    """The link counts open connections against its limit at each ``connected``: a connection
    the client has already closed must be gone by then, or a quick reconnect is refused."""
    first, first_identity = _connect(server)
    first.close()
    host, port = server.endpoint.rsplit(":", 1)
    for n in range(6):  # more than the link's MAX_CONNECTIONS, all while nobody services the server
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"tc%d" % n)
    time.sleep(0.2)  # the point: the server stays busy (unserviced) while the clients come and go
    events = server.service()
    open_now, most_open = set(), 0
    for kind, identity, _ in events:
        if kind == "connected":
            open_now.add(identity)
            most_open = max(most_open, len(open_now))
        elif kind == "closed":
            open_now.discard(identity)
    assert events[0] == ("closed", first_identity, "")
    assert [kind for kind, _, _ in events[1:]] == ["connected", "data", "closed"] * 6
    assert [data for kind, _, data in events if kind == "data"] == [b"tc%d" % n for n in range(6)]
    assert most_open == 1 and not open_now
