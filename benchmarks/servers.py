"""A real uvicorn server on a free loopback port, run in a thread for the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int):
    """The process that listens on `port` (a server, whatever started it), as psutil sees it."""
    import psutil

    for conn in psutil.net_connections("tcp"):
        listens = conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN
        if listens and conn.pid:
            return psutil.Process(conn.pid)
    raise SystemExit(f"nothing listens on {port}")


class ServerThread:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", proxy_headers=False
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 300, log=None) -> None:
    """Wait until a server process answers 200 at url; fail, with what it wrote (its stderr
    pipe, or the `log` file it writes to), if it exits first."""
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            if log is not None:
                log.seek(0)
            said = log.read() if log is not None else proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"server exited: {said}")
        if time.time() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout} s")
        time.sleep(0.3)


@contextlib.contextmanager
def server_process(
    cmd: list, port: int, ready: str, cwd=None, env=None, timeout: float = 120
) -> Iterator[str]:
    """Start a server command, wait until GET `ready` answers 200, yield its base URL, stop it
    and every process it started (it runs in a process group of its own)."""
    # a file, not a pipe: a server that logs every request would fill a pipe and stall
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + ready, proc, timeout, log)
            yield url
        except BaseException:
            log.seek(0)  # what the server said goes with the failure, in the test's report
            print(f"--- {cmd[0]} {cmd[1]} wrote:\n{log.read()[-20000:]}", file=sys.stderr)
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def every_worker(url: str, looks: int = 40) -> dict[int, dict]:
    """/readyz over fresh connections, which the kernel spreads over the workers: each
    worker's latest answer, by process id."""
    seen = {}
    for _ in range(looks):
        body = httpx.get(f"{url}/readyz", timeout=30, headers={"Connection": "close"}).json()
        seen[body["worker"]["pid"]] = body
    return seen


def create_token(env: dict, *args: str, cwd: object = None) -> str:
    """`sunshine tokens create ARGS` as an operator runs it; the printed token."""
    from pathlib import Path

    sunshine = str(Path(sys.executable).with_name("sunshine"))
    return subprocess.run(
        [sunshine, "tokens", "create", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
