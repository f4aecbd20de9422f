"""What happens around every request: its id, the body limit, the bound of requests in hand,
metrics and the audit trail.

A plain ASGI middleware rather than Starlette's `BaseHTTPMiddleware`, which runs each request
through a task group and memory streams: on the one-row risk answer that machinery cost about
as much as the route. The audit entry is written when the response starts, before its first
byte is sent, so no answer leaves without its entry.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from serving.access.audit_chain import Entry
from serving.access.roles import User
from serving.api.admission import Admission, Bound
from serving.api.page_headers import PAGE_HEADERS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from serving.api.deps import Services

# counted on the Content-Length a client announces and on the bytes it sends, before any
# route, authentication or parsing reads them
MAX_BODY_BYTES = 4 * 1024 * 1024
# every API call and web page, refused ones and admin calls included (not the style sheet)
AUDITED = ("/v1/", "/app")
NOT_AUDITED = "/app/static/"
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection first
# Past the bound of requests in hand (serving/api/admission.py: 8 while a worker has idle
# time, 2 once it is saturated), a worker sheds the excess at once (503 with Retry-After,
# audited) rather than queue it: a queue only makes every answer late.
# never counted nor shed: the probes, and the pages' style sheet and the docs' files (static)
UNBOUNDED = ("/healthz", "/readyz", "/metrics")
STATIC = (NOT_AUDITED, "/docs/assets/")
# what a browser shows when the service is busy: a page in both languages, not JSON
BUSY_PAGE = (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>系统繁忙</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
    "<main><h1>系统繁忙</h1><p>请稍候几秒钟再试。</p>"
    '<p lang="en">The service is busy; please try again in a few seconds.</p></main>'
    "</body></html>"
)


class BodyTooLarge(Exception):
    """The request's body went past MAX_BODY_BYTES while a route was reading it."""


class Observe:
    """The one middleware. `direct` answers the hot route's plain requests itself (saying
    whether it did); FastAPI answers the rest."""

    def __init__(
        self,
        app: ASGIApp,
        svc: Services,
        in_flight: Bound,
        direct: Callable[[Scope, Receive, Send], Awaitable[bool]],
    ) -> None:
        self.app, self.svc, self.direct = app, svc, direct
        self.admission = Admission(in_flight)
        svc.metrics.bound.set_function(lambda: self.admission.bound or 0)

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        # the server's own id: a client's is kept apart, and only if it is a plausible one
        state["request_id"] = request_id = uuid.uuid4().hex
        offered = header(scope, b"x-request-id")
        state["client_request_id"] = offered if CLIENT_REQUEST_ID.fullmatch(offered) else None
        state["audit"] = []
        start = time.perf_counter()
        path: str = scope["path"]
        audited = path.startswith(AUDITED) and not path.startswith(NOT_AUDITED)
        metrics = self.svc.metrics
        audit = self.svc.audit
        coming = audited  # its entries are still to come, which the audit's writer may await
        if coming:
            audit.coming += 1

        async def record(status: int, route: str) -> None:
            nonlocal coming
            entries = _entries(Request(scope), status, route)
            coming, audit.coming = False, audit.coming - 1
            # the commit waits on the audit's writer thread, not on the loop
            await audit.record(entries)

        body = _Body(scope, receive)
        answered = False

        async def started(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                status = message["status"]
                route = _route(scope)
                metrics.requests.labels(route, str(status)).inc()
                metrics.latency.labels(route).observe(time.perf_counter() - start)
                extra = [(b"x-request-id", request_id.encode())]
                if body.pending:  # answered before the whole body came: the rest is not read
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
                if audited:
                    await record(status, route)
            await send(message)

        counted = path not in UNBOUNDED and not path.startswith(STATIC)
        held: bool | None = False  # taken in hand, so to be released (a refusal never was)
        try:
            held = await self._admit(scope, receive, started, body, counted)
            if held is None:
                return
            await self._answer(scope, body.receive, started)
        except BodyTooLarge:
            if not answered:
                await _too_large(scope, receive, started)
        except ClientDisconnect:
            # gone before its whole body came: no answer to give, and no server error to
            # log; its entry says so with nginx's "client closed request"
            if coming:
                await record(CLIENT_GONE, _route(scope))
        finally:
            if held:
                self.admission.release(time.monotonic())
            if coming:  # never answered: the request was cancelled
                audit.coming -= 1

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The hot route's plain request directly, anything else through FastAPI."""
        if not await self.direct(scope, receive, send):
            await self.app(scope, receive, send)

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send, body: _Body, counted: bool
    ) -> bool | None:
        """Whether the request was taken in hand; None when it was refused and answered (a
        body announced too large, or shed past the bound)."""
        if body.announced > MAX_BODY_BYTES:
            await _too_large(scope, receive, send)
            return None
        if counted and not self.admission.admit(time.monotonic()):
            await self._busy(scope, receive, send)
            return None
        return counted

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.svc.metrics.shed.inc()
        busy: Response
        if scope["path"].startswith("/app"):
            busy = HTMLResponse(BUSY_PAGE, 503, headers={**PAGE_HEADERS, "Retry-After": "1"})
        else:
            busy = JSONResponse(
                {"detail": f"busy: {self.in_flight} requests in hand; retry in a second"},
                503,
                headers={"Retry-After": "1"},
            )
        await busy(scope, receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    """The refusal of a body over MAX_BODY_BYTES (made only for such a request)."""
    refusal = JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes"}, 413)
    await refusal(scope, receive, send)


class _Body:
    """A request's body as the route reads it, counted: past MAX_BODY_BYTES the reading
    stops (BodyTooLarge), and `pending` says whether some of it was never read."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        size = header(scope, b"content-length")
        self.announced = int(size) if size.isdigit() else 0
        self.pending = self.announced > 0 or bool(header(scope, b"transfer-encoding"))
        self.received = 0
        self._receive = receive

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.pending = message.get("more_body", False)
            if self.received > MAX_BODY_BYTES:
                raise BodyTooLarge
        return message


def _route(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", "unmatched")


def header(scope: Scope, name: bytes) -> str:
    """A request header's first value (latin-1, as HTTP carries it); "" when it is absent."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def _entries(request: Request, status: int, path: str) -> list[Entry]:
    """The request's audit entries (or one for a refused request), with who and where."""
    user: User | None = getattr(request.state, "user", None)
    entries = request.state.audit or [Entry(path, request.state.request_id, status)]
    params = request.path_params
    for e in entries:
        e.status = status if status >= 400 else e.status
        e.route = path
        e.user = user.user if user else None
        e.role = user.role if user else None
        e.token_id = user.token_id if user else None
        e.client = request.client.host if request.client else None
        e.client_request_id = request.state.client_request_id
        e.person_id = e.person_id or _bounded(params.get("person_id"))
        e.task = e.task or _bounded(request.query_params.get("task") or params.get("task"))
        e.as_of = e.as_of or _date_or_none(request.query_params.get("as_of"))
    return entries


def _bounded(value: str | None, limit: int = 64) -> str | None:
    """What a client sent, as the audit trail keeps it: at most `limit` characters."""
    return None if value is None else value[:limit]


def _date_or_none(value: str | None) -> str | None:
    try:
        return dt.date.fromisoformat(value).isoformat() if value else None
    except ValueError:
        return "invalid"
