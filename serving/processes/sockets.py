"""The service's listening sockets."""

from __future__ import annotations

import socket

from features.core.errors import InputError


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-paragraph error when the address cannot be had.

    Made with IPPROTO_TCP named: asyncio sets TCP_NODELAY only on connections of such a
    socket, and without it every small response waits ~40 ms for the client's delayed ACK.
    With several workers the parent alone listens and hands connections over
    (serving.processes.dispatch)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another program (or another "
            "`sunshine serve`) may be using the port: stop it, or pick another with --port."
        ) from None
    return sock
