"""A busy service sheds what it cannot serve: past its bound of requests in hand, the excess
is answered 503 at once with Retry-After, and audited; liveness and readiness are answered
all the same, and once the work in hand is done the next request is served."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
from conftest import until, use_mlflow

from benchmarks.servers import ServerThread
from features.storage.store import Store
from features.tasks import get_task
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.api.admission import Bound
from serving.app import create_app
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.service import build_state


def test_past_its_bound_the_service_sheds_at_once_and_keeps_answering_probes(served, tmp_path):
    use_mlflow(served)
    tokens = TokenStore([])
    analyst = tokens.create("li", "analyst")
    state = build_state(Store(served / "city"), load_champions())
    audit = AuditLog(tmp_path / "audit.db")
    app = create_app(state, tokens, audit, load_interventions(), in_flight=Bound(2))
    person = state.caseload(get_task("relapse")).frame.index[0]
    headers = {"Authorization": f"Bearer {analyst}"}
    with ServerThread(app) as server:
        where = urlsplit(server.url)
        # bodies refused for their size were never in hand, so they do not widen the bound
        # (each once lowered the count by one for good)
        for _ in range(3):
            with socket.create_connection((where.hostname, where.port), timeout=10) as con:
                con.sendall(
                    b"POST /v1/score/relapse HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 5242880\r\n\r\n{"
                )
                assert con.recv(64).startswith(b"HTTP/1.1 413")
        assert _in_flight(app) == 0
        held = []
        for _ in range(2):  # two requests in hand: each waits for the rest of its body
            con = socket.create_connection((where.hostname, where.port), timeout=10)
            con.sendall(
                b"POST /v1/score/relapse HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + analyst.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            held.append(con)
        until(lambda: _in_flight(app) == 2)
        started = time.perf_counter()
        busy = httpx.get(f"{server.url}/v1/persons/{person}/risk", headers=headers, timeout=10)
        assert busy.status_code == 503 and time.perf_counter() - started < 1.0
        assert busy.headers["retry-after"] == "1" and busy.json()["detail"].startswith("busy")
        assert "x-request-id" in busy.headers
        for probe in ("/healthz", "/readyz", "/app/static/app.css"):  # never counted nor shed
            assert httpx.get(server.url + probe, timeout=5).status_code == 200
        page = httpx.get(server.url + "/app/caseload", timeout=5)  # a browser gets a page
        assert page.status_code == 503 and "系统繁忙" in page.text
        assert page.headers["retry-after"] == "1" and page.headers["x-frame-options"] == "DENY"
        shed = audit.query().tail(2)
        assert shed.status.tolist() == [503, 503] and set(shed.route) == {"unmatched"}
        for con in held:
            con.close()
        until(lambda: _in_flight(app) == 0)
        served_now = httpx.get(
            f"{server.url}/v1/persons/{person}/risk", headers=headers, timeout=30
        )
        assert served_now.status_code == 200
        metrics = httpx.get(server.url + "/metrics", timeout=5).text
        assert "sunshine_shed_total 2.0" in metrics
        assert "sunshine_in_flight_bound 2.0" in metrics


def _in_flight(app) -> int:
    """The requests the service's middleware holds in hand now."""
    stack = app.middleware_stack
    while stack is not None and not hasattr(stack, "in_flight"):
        stack = getattr(stack, "app", None)
    return stack.in_flight if stack is not None else -1
