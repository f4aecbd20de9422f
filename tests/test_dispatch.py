"""The parent's hand-out of connections (serving.dispatch), with real sockets on loopback and
the test playing the workers: in turn among those that said they are ready, never to one
still loading or gone; with none ready, a client waits in the backlog for the next."""

from __future__ import annotations

import socket
import threading

import pytest

from serving.dispatch import READY, Dispatcher
from serving.sockets import listen


@pytest.fixture
def dispatcher():
    listener = listen("127.0.0.1", 0)
    d = Dispatcher(listener)
    threading.Thread(target=d.serve_forever, daemon=True).start()
    yield d, listener.getsockname()[1]
    listener.close()


def handed(worker: socket.socket, timeout: float = 10) -> socket.socket:
    """The next connection handed to a worker's end of its channel."""
    worker.settimeout(timeout)
    _, fds, _, _ = socket.recv_fds(worker, 16, 1)
    return socket.socket(fileno=fds[0])


def client(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_connections_go_in_turn_to_the_ready_workers_and_never_to_a_gone_one(dispatcher):
    d, port = dispatcher
    first, second = d.attach(0), d.attach(1)
    first.send(READY)
    second.send(READY)
    clients = [client(port) for _ in range(4)]
    got = [handed(first), handed(second), handed(first), handed(second)]
    # each handed socket is one of the clients' connections, whole: bytes reach the client
    for conn in got:
        conn.sendall(b"hello")
    assert sorted(c.recv(5) for c in clients) == [b"hello"] * 4
    # the second worker dies: everything goes to the first
    second.close()
    late = [client(port) for _ in range(3)]
    for _ in late:
        handed(first).sendall(b"still")
    assert [c.recv(5) for c in late] == [b"still"] * 3


def test_a_worker_not_yet_ready_is_handed_nothing_and_with_none_left_a_client_is_closed(
    dispatcher,
):
    d, port = dispatcher
    loading, ready = d.attach(0), d.attach(1)
    ready.send(READY)
    waiting = [client(port) for _ in range(2)]
    handed(ready)
    handed(ready)
    loading.settimeout(0.3)
    with pytest.raises(TimeoutError):
        socket.recv_fds(loading, 16, 1)  # still loading: none for it
    ready.close()
    loading.close()
    for c in waiting:
        c.close()
    # no worker left: the parent stops accepting; a new client waits in the backlog ...
    pending = client(port)
    pending.settimeout(0.5)
    with pytest.raises(TimeoutError):
        pending.recv(1)
    # ... and is served by the next worker that says it is ready
    fresh = d.attach(0)
    fresh.send(READY)
    handed(fresh).sendall(b"late")
    pending.settimeout(10)
    assert pending.recv(4) == b"late"
