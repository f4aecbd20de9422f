"""The parent's hand-out of connections (serving.processes.dispatch), with real sockets on
loopback and the test playing the workers: in turn among those that said they are ready, never to
one still loading or gone; with none ready, a client waits in the backlog for the next."""

from __future__ import annotations

import socket
import threading

import pytest

from serving.processes.dispatch import READY, Dispatcher
from serving.processes.sockets import listen


class Loopback:
    """The dispatcher under test, and every socket the test opens (the clients', the workers'
    ends and the connections handed to them), closed when the test ends."""

    def __init__(self, d: Dispatcher, port: int) -> None:
        self.d, self.port, self.opened = d, port, []

    def keep(self, sock: socket.socket) -> socket.socket:
        self.opened.append(sock)
        return sock

    def attach(self, slot: int) -> socket.socket:
        return self.keep(self.d.attach(slot))

    def client(self) -> socket.socket:
        return self.keep(socket.create_connection(("127.0.0.1", self.port), timeout=10))

    def handed(self, worker: socket.socket, timeout: float = 10) -> socket.socket:
        """The next connection handed to a worker's end of its channel."""
        worker.settimeout(timeout)
        _, fds, _, _ = socket.recv_fds(worker, 16, 1)
        return self.keep(socket.socket(fileno=fds[0]))


@pytest.fixture
def dispatcher():
    listener = listen("127.0.0.1", 0)
    d = Dispatcher(listener)
    threading.Thread(target=d.serve_forever, daemon=True).start()
    loop = Loopback(d, listener.getsockname()[1])
    yield loop
    for sock in loop.opened:
        sock.close()
    listener.close()


def test_connections_go_in_turn_to_the_ready_workers_and_never_to_a_gone_one(dispatcher):
    lo = dispatcher
    first, second = lo.attach(0), lo.attach(1)
    first.send(READY)
    second.send(READY)
    clients = [lo.client() for _ in range(4)]
    got = [lo.handed(first), lo.handed(second), lo.handed(first), lo.handed(second)]
    # each handed socket is one of the clients' connections, whole: bytes reach the client
    for conn in got:
        conn.sendall(b"hello")
    assert sorted(c.recv(5) for c in clients) == [b"hello"] * 4
    # the second worker dies: everything goes to the first
    second.close()
    late = [lo.client() for _ in range(3)]
    for _ in late:
        lo.handed(first).sendall(b"still")
    assert [c.recv(5) for c in late] == [b"still"] * 3


def test_a_worker_not_yet_ready_is_handed_nothing_and_with_none_left_a_client_is_closed(
    dispatcher,
):
    lo = dispatcher
    loading, ready = lo.attach(0), lo.attach(1)
    ready.send(READY)
    waiting = [lo.client() for _ in range(2)]
    lo.handed(ready)
    lo.handed(ready)
    loading.settimeout(0.3)
    with pytest.raises(TimeoutError):
        socket.recv_fds(loading, 16, 1)  # still loading: none for it
    ready.close()
    loading.close()
    for c in waiting:
        c.close()
    # no worker left: the parent stops accepting; a new client waits in the backlog ...
    pending = lo.client()
    pending.settimeout(0.5)
    with pytest.raises(TimeoutError):
        pending.recv(1)
    # ... and is served by the next worker that says it is ready
    fresh = lo.attach(0)
    fresh.send(READY)
    lo.handed(fresh).sendall(b"late")
    pending.settimeout(10)
    assert pending.recv(4) == b"late"
