"""Signing in as a person does on a phone: a password set through an admin's one-time code,
argon2id hashes only, throttled failures per user and per address, audited, and a device kept
signed in for a working week. Over real HTTP (the shared uvicorn server) and the real CLI."""

from __future__ import annotations

import re
import sqlite3

import httpx
import pytest
from conftest import sunshine

from serving.access.passwords import FREE_FAILURES, Passwords, delay_s, password_problem
from serving.storage.web_records import WebStore

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def form(client: httpx.Client, path: str) -> str:
    return NONCE.search(client.get(path).text).group(1)


def test_delays_grow_after_a_few_failures_and_stop_at_a_ceiling():
    assert [delay_s(n) for n in range(FREE_FAILURES)] == [0.0] * FREE_FAILURES
    assert [delay_s(FREE_FAILURES + k) for k in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert delay_s(100) == 15 * 60


def test_a_new_password_is_checked():
    assert password_problem("wang", "a" * 10, "a" * 11) == "differ"
    assert password_problem("wang", "short", "short") == "length"
    assert password_problem("wangwangwang", "WangWangWang", "WangWangWang") == "user_name"
    assert password_problem("wang", "correct horse", "correct horse") is None


def test_codes_are_one_use_hashed_and_replaced_by_the_next(tmp_path):
    store = Passwords(WebStore(tmp_path / "service.db").engine)
    first = store.issue_code("li")
    second = store.issue_code("li")
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{10}", second)
    assert not store.set_password("li", first, "a long passphrase")  # replaced
    assert not store.set_password("zhang", second, "a long passphrase")  # not theirs
    assert store.set_password("li", second.lower(), "a long passphrase")  # typed in lower case
    assert not store.set_password("li", second, "another passphrase")  # used up
    assert store.check("li", "a long passphrase") and not store.check("li", "a long passphras")
    assert not store.check("nobody", "a long passphrase")
    rows = sqlite3.connect(tmp_path / "service.db").execute("SELECT * FROM passwords").fetchall()
    assert rows[0][1].startswith("$argon2id$") and "a long passphrase" not in str(rows)
    codes = sqlite3.connect(tmp_path / "service.db").execute("SELECT * FROM setup_codes")
    assert all(second not in str(row) for row in codes)


def test_a_caseworker_sets_a_password_signs_in_with_it_and_is_throttled(service, tmp_path):
    store = service["token_store"]
    service["tokens"]["cw_pw"] = store.create("chen", "caseworker", ["huaxi"])
    code = Passwords(WebStore(service["service_db"]).engine).issue_code("chen")
    with httpx.Client(base_url=service["url"], timeout=60) as phone:
        setup = {"user": "chen", "code": code, "password": "spring rain 2026"}
        bad = phone.post(
            "/app/setup", data={**setup, "again": "x", "nonce": form(phone, "/app/setup")}
        )
        assert bad.status_code == 422 and "两次输入的密码不一致" in bad.text
        ok = phone.post(
            "/app/setup",
            data={**setup, "again": setup["password"], "nonce": form(phone, "/app/setup")},
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/app/signin?done=true"
        assert "密码已设置" in phone.get(ok.headers["location"]).text
        again = phone.post(
            "/app/setup",
            data={**setup, "again": setup["password"], "nonce": form(phone, "/app/setup")},
        )
        assert again.status_code == 401  # the code was for one use

        signin = {"user": "chen", "password": "spring rain 2026", "keep": "true"}
        r = phone.post("/app/signin", data={**signin, "nonce": form(phone, "/app/signin")})
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if "sunshine_session=" in h)
        assert "max-age=432000" in cookie.lower()  # five days on this device
        assert "chen" in phone.get("/app/caseload").text

    # wrong passwords: a few are heard, then each further one waits, for the user name
    with httpx.Client(base_url=service["url"], timeout=60) as thief:
        statuses = []
        for _ in range(FREE_FAILURES + 2):
            wrong = {"user": "chen", "password": "guess guess guess"}
            statuses.append(
                thief.post("/app/signin", data={**wrong, "nonce": form(thief, "/app/signin")})
            )
        assert [s.status_code for s in statuses] == [401] * FREE_FAILURES + [429, 429]
        assert int(statuses[-1].headers["retry-after"]) >= 1
        assert "尝试次数过多" in statuses[-1].text
        # the right password waits too while the delay runs: the thief cannot tell
        right = {"user": "chen", "password": "spring rain 2026"}
        late = thief.post("/app/signin", data={**right, "nonce": form(thief, "/app/signin")})
        assert late.status_code == 429
    audit = sqlite3.connect(service["audit"]).execute(
        "SELECT status FROM audit WHERE route = '/app/signin'"
    )
    assert {401, 429} <= {s for (s,) in audit}  # every attempt is in the trail
    setups = sqlite3.connect(service["audit"]).execute(
        "SELECT status FROM audit WHERE route = '/app/setup'"
    )
    assert {422, 303, 401} <= {s for (s,) in setups}  # and every password set-up
    # revoking the user's tokens closes the password's door as well
    store.revoke(user="chen")
    Passwords(WebStore(service["service_db"]).engine).succeeded("user:chen", "address:127.0.0.1")
    with httpx.Client(base_url=service["url"], timeout=60) as phone:
        r = phone.post("/app/signin", data={**right, "nonce": form(phone, "/app/signin")})
        assert r.status_code == 401


def test_the_cli_issues_a_code_only_for_a_user_with_a_token(served_registry, tmp_path):
    env = {"SUNSHINE_TOKENS_FILE": str(tmp_path / "tokens.json")}
    db = tmp_path / "service.db"
    nobody = sunshine(
        served_registry, "users", "invite", "--user", "ma", "--service-db", db, check=False, env=env
    )
    assert nobody.returncode == 2 and "ma has no valid token" in nobody.stderr
    sunshine(served_registry, "tokens", "create", "--user", "ma", "--role", "analyst", env=env)
    code = sunshine(served_registry, "users", "invite", "--user", "ma", "--service-db", db, env=env)
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{10}\n", code.stdout)
    assert Passwords(WebStore(db).engine).set_password("ma", code.stdout.strip(), "a fine password")
    sunshine(served_registry, "users", "remove", "--user", "ma", "--service-db", db, env=env)
    assert not Passwords(WebStore(db).engine).has_password("ma")


@pytest.fixture(autouse=True)
def _forget_failures(service):
    """Each test starts with no failure counted against the loopback address."""
    yield
    Passwords(WebStore(service["service_db"]).engine).succeeded("address:127.0.0.1")


def test_wrong_tokens_from_one_address_are_throttled_too(service):
    """30 wrong tokens in a row no longer get 30 answers: after a few, the address waits."""
    with httpx.Client(base_url=service["url"], timeout=60) as client:
        statuses = [
            client.post(
                "/app/signin", data={"token": "not-a-token", "nonce": form(client, "/app/signin")}
            ).status_code
            for _ in range(FREE_FAILURES + 3)
        ]
    assert statuses == [401] * FREE_FAILURES + [429] * 3
