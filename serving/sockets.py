"""The service's listening sockets."""

from __future__ import annotations

import socket

from features.errors import InputError


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """The listening socket, or a one-paragraph error when the address cannot be had.

    Made with IPPROTO_TCP named: asyncio sets TCP_NODELAY only on connections of such a
    socket, and without it every small response waits ~40 ms for the client's delayed ACK.
    `reuse_port`: one of several workers' sockets on the same port, among which the kernel
    spreads new connections evenly (one shared socket lets whichever worker wakes first take
    every waiting connection)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another program (or another "
            "`sunshine serve`) may be using the port: stop it, or pick another with --port."
        ) from None
    sock.set_inheritable(True)
    return sock
