"""Connections handed to the workers in turn: the parent accepts, each worker serves.

With one listening socket per worker (SO_REUSEPORT) the kernel picks a worker by a hash of
each connection's addresses: even on average, but a handful of long-lived keep-alive
connections (a proxy's pool, a load generator's eight) often landed five to three, six to
two, or all on one worker, which then did all the work while the other idled (measured: an
even split in 10 of 40 tries). So the parent holds the one listening socket, accepts, and
passes each connection's descriptor to the next ready worker over a Unix socket pair
(SCM_RIGHTS), as Node's cluster module does by default; the worker serves it as if it had
accepted it. A worker is handed connections only once it says it is ready, so none waits on
one still loading.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
import socket
import threading

import uvicorn

READY = b"r"


class Dispatcher:
    """The parent's side: its listening socket and one channel per worker slot."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.channels: dict[int, socket.socket] = {}  # slot -> the parent's end
        self.ready: list[int] = []  # slots whose worker said it is ready, in slot order
        self.turn = 0
        self.waker_r, self.waker_w = socket.socketpair()
        self.selector.register(self.waker_r, selectors.EVENT_READ, "wake")
        self.listening = False

    def attach(self, slot: int) -> socket.socket:
        """A new channel for the worker (re)started in `slot`; returns the worker's end."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self.lock:
            if slot in self.channels:
                self._drop(slot)
            self.channels[slot] = ours
            self.selector.register(ours, selectors.EVENT_READ, slot)
        self.waker_w.send(b"x")
        return theirs

    def _drop(self, slot: int) -> None:
        """Forget a worker's channel: gone, broken, or replaced by a restarted worker's."""
        chan = self.channels.pop(slot)
        if slot in self.ready:
            self.ready.remove(slot)
        self.selector.unregister(chan)
        chan.close()

    def serve_forever(self) -> None:
        """The accept loop, on a thread of its own: accept only while some worker is ready
        (until then connections wait in the listening socket's backlog)."""
        while True:
            with self.lock:
                self._listen_while_ready()
            for key, _ in self.selector.select():
                with self.lock:
                    if key.data == "wake":
                        self.waker_r.recv(64)
                    elif key.data == "listener":
                        self._accept_all()
                    elif self.channels.get(key.data) is key.fileobj:
                        self._heard(key.data, key.fileobj)

    def _listen_while_ready(self) -> None:
        if self.ready and not self.listening:
            self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        elif not self.ready and self.listening:
            self.selector.unregister(self.listener)
        self.listening = bool(self.ready)

    def _heard(self, slot: int, chan: socket.socket) -> None:
        """A worker's word: ready, or (end of file) gone."""
        try:
            said = chan.recv(16)
        except OSError:
            said = b""
        if said == READY and slot not in self.ready:
            self.ready.append(slot)
            self.ready.sort()
        elif not said:
            self._drop(slot)

    def _accept_all(self) -> None:
        while self.ready:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        """To the next ready worker; one whose channel is broken is dropped and the next
        tried. With none left the connection is closed: the client sees a reset and retries,
        as it would when a single process restarts."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while self.ready:
                slot = self.ready[self.turn % len(self.ready)]
                self.turn += 1
                try:
                    socket.send_fds(self.channels[slot], [b"c"], [conn.fileno()])
                    return
                except OSError:
                    self._drop(slot)
        finally:
            conn.close()  # the worker holds its own copy


class HandedServer(uvicorn.Server):
    """A worker's uvicorn with no listening socket of its own: it serves the connections the
    parent hands it over `channel`, and tells the parent when it is ready for them."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.opening: set[asyncio.Task] = set()  # held, or the loop may lose them

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if not self.started:
            return
        loop = asyncio.get_running_loop()
        protocol = functools.partial(
            self.config.http_protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._take, loop, protocol)
        self.channel.send(READY)

    def _take(self, loop: asyncio.AbstractEventLoop, protocol) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.channel, 16, 16)
        except (BlockingIOError, InterruptedError):
            return
        if not message:  # the parent is gone: stop, as a worker of a dead parent should
            loop.remove_reader(self.channel.fileno())
            self.should_exit = True
            return
        for fd in fds:
            conn = socket.socket(fileno=fd)
            conn.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(protocol, conn))
            self.opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task) -> None:
        self.opening.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the client left before its connection was taken up: nothing to serve
            task.exception()
