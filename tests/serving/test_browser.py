"""The web pages in a real browser: Debian's Chromium driven by Playwright, against the real
server, on a desktop and on a 390-px phone, with axe-core checking each page.

Screenshots of every page go to test-output/browser/ (SUNSHINE_TEST_OUTPUT overrides the
folder). Outside CI the tests are skipped, saying what is missing, when Chromium, a Chinese
font or axe-core is not installed (`make browser` installs them); under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from features.tasks import get_task
from serving.access.passwords import FREE_FAILURES, Passwords
from serving.storage.web_records import WebStore

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
OUT = Path(os.environ.get("SUNSHINE_TEST_OUTPUT", ROOT / "test-output")) / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as root, without a sandbox; no background traffic to a network this machine does not have
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


def _missing() -> list[str]:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("Debian's Chromium (apt-get install chromium)")
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    if not fonts.stdout.strip():
        missing.append("a Chinese font (apt-get install fonts-wqy-zenhei)")
    if not AXE.exists():
        missing.append("axe-core (npm ci --prefix tests/browser)")
    return missing


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        message = "browser tests need " + ", ".join(missing) + "; `make browser` installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def check_page(page, name: str, viewport: str) -> None:
    """Screenshot the page, and fail on any accessibility violation axe-core finds."""
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=OUT / f"{name}-{viewport}.png", full_page=True)
    page.evaluate(AXE.read_text())
    violations = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ')')"
    )
    assert violations == [], f"{name} ({viewport}): {violations}"
    # the page fits the screen: nothing wider than the viewport but scrollable tables
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} ({viewport}) is {overflow} px wider than the screen"


def sign_in(page, url: str, token: str) -> None:
    """Sign in as a program would, with a token (behind its fold on the page)."""
    page.goto(url + "/app/signin")
    page.get_by_text("使用访问令牌登录").click()
    page.fill("#token", token)
    page.click("button.primary")


# what a Chinese page may show in Latin letters: person ids, user names, the switch to English
LATIN_ALLOWED = re.compile(r"\bP\d+\b|\bzhao\b|\bwang\b|English")


def small_targets(page) -> list[str]:
    """Every visible control smaller than 44 x 44 px (a checkbox or radio button counts by
    its label, which a tap on it also hits)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('a, button, select, input, textarea, summary')]
        .filter(e => e.type !== 'hidden' && e.offsetParent !== null && !e.closest('.skip'))
        .map(e => (e.type === 'checkbox' || e.type === 'radio') && e.closest('label')
             ? e.closest('label') : e)
        .map(e => [e, e.getBoundingClientRect()])
        .filter(([e, r]) => r.width < 44 || r.height < 44)
        .map(([e, r]) => e.tagName + ' "' + e.innerText.slice(0, 20) + '" '
             + Math.round(r.width) + 'x' + Math.round(r.height))"""
    )


def latin_words(page) -> list[str]:
    """English words or codes in the visible text of a Chinese page."""
    text = LATIN_ALLOWED.sub("", page.locator("body").inner_text())
    return re.findall(r"[A-Za-z_]{3,}", text)


def first_screen_people(page, height: int) -> int:
    return page.evaluate(
        f"() => [...document.querySelectorAll('li.person')]"
        f".filter(e => e.getBoundingClientRect().bottom <= {height}).length"
    )


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_caseworkers_day(browser, service, viewport, tmp_path):
    state = service["state"]
    frame = state.caseload(get_task("relapse")).frame
    size = VIEWPORTS[viewport]
    context = browser.new_context(viewport=size, accept_downloads=True)
    page = context.new_page()
    url = service["url"]

    # the admin's one-time code; the caseworker sets a password and signs in with it
    code = Passwords(WebStore(service["service_db"]).engine).issue_code("zhao")
    page.goto(url + "/app/setup")
    check_page(page, "setup", viewport)
    assert small_targets(page) == [] and latin_words(page) == []
    page.get_by_label("用户名").fill("zhao")
    page.get_by_label("管理员给您的一次性验证码").fill(code)
    page.get_by_label("新密码（至少 10 个字符）").fill("morning tea 2026")
    page.get_by_label("再次输入新密码").fill("morning tea 2026")
    page.get_by_role("button", name="设置密码").click()
    assert page.url.endswith("/app/signin?done=true")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    check_page(page, "signin", viewport)
    assert small_targets(page) == []
    page.get_by_label("用户名").fill("zhao")
    page.get_by_label("密码", exact=True).fill("morning tea 2026")
    page.get_by_label("在此设备上保持登录 5 天").check()
    page.get_by_role("button", name="登录").click()
    assert page.url.endswith("/app/caseload")
    assert page.get_by_role("heading", level=1).inner_text().startswith("我的帮扶对象")
    check_page(page, "caseload", viewport)
    # who to contact today: at least five people on the first screen, ranked as 第1名...
    assert first_screen_people(page, size["height"]) >= 5
    ranks = page.locator("li.person .rank").all_inner_texts()
    assert ranks[:3] == ["第1名", "第2名", "第3名"] and len(ranks) == 25
    mine = frame[frame["district"].isin(["huaxi", "nanming"])]
    assert page.locator("li.person .pid").all_inner_texts() == list(mine.index[:25])
    assert small_targets(page) == [] and latin_words(page) == []
    # a risk is never written as 100%, nor anyone's standing as "前100%" (a reason may well
    # say a positive rate of 100%)
    shown = " ".join(page.locator("li.person").all_inner_texts())
    assert not re.search(r"(?<![\d.])100(\.0)?%（约为|前100%", shown)

    page.locator("details.filters summary").click()
    page.get_by_label("只看风险上升").check()
    page.get_by_role("button", name="显示").click()
    assert "rising=true" in page.url
    cards = page.locator("li.person")
    assert cards.count() > 0
    for text in cards.all_inner_texts():
        assert "风险上升" in text
    rising = mine[mine["rising"]]
    assert page.locator("li.person .pid").first.inner_text() == rising.index[0]
    with page.expect_download() as download:
        page.get_by_role("link", name="导出 Excel").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    book = pd.read_excel(saved, sheet_name=None)
    assert list(book) == ["我的帮扶对象 复吸风险"]  # the page's language, not a code
    assert list(book["我的帮扶对象 复吸风险"]["人员"]) == list(rising.index)

    # the to-follow-up view; a follow-up saved takes the person out of it at once
    page.get_by_role("link", name=re.compile("待跟进")).first.click()
    assert "view=todo" in page.url
    todo = page.locator("li.person .pid").all_inner_texts()
    assert todo
    chosen = todo[0]
    page.locator("li.person a").first.click()
    assert f"/app/persons/{chosen}" in page.url
    assert "在同类人员中" in page.locator(".sentence").inner_text()
    check_page(page, "person", viewport)
    assert small_targets(page) == [] and latin_words(page) == []
    # the risk, three reasons, the support and the form within two phone screens
    form = page.locator("form.followup").bounding_box()
    assert form["y"] < 2 * 844, form
    assert page.locator("#why ~ ul.reasons").first.locator("li").count() == 3
    assert page.locator("input[name=outcome]:checked").count() == 0  # nothing preselected
    # the history: a labelled percent axis never past 100%, Chinese months, gaps not points
    words = page.locator("svg.chart text").all_text_contents()
    assert words[0] == "概率 (%)" and max(int(w[:-1]) for w in words if w.endswith("%")) <= 100
    assert [w for w in words if re.fullmatch(r"\d{4}年\d{1,2}月", w)]
    history = state.caseload(get_task("relapse")).frame  # in the cohort today, at least
    assert 1 <= page.locator("svg.chart circle").count() <= 12 and chosen in history.index
    page.get_by_label("已拒绝").check()
    page.fill("textarea[name=note]", f"电话联系（{viewport}）")
    page.get_by_role("button", name="保存跟进记录").click()
    assert "已保存" in page.locator("p.saved").inner_text()
    entry = page.locator("#followups ~ ul.timeline li").first
    assert "已拒绝" in entry.inner_text() and "年" in entry.inner_text()
    page.goto(url + "/app/caseload?view=todo")
    assert chosen not in page.locator("li.person .pid").all_inner_texts()
    page.goto(url + f"/app/caseload?q={chosen}")
    today = pd.Timestamp.today()
    assert (
        f"{today.year}年{today.month}月{today.day}日"
        in page.locator("li.person").first.inner_text()
    )

    page.goto(f"{url}/app/persons/{chosen}")
    page.get_by_role("button", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="Main reasons").count()
    assert f"/app/persons/{chosen}" in page.url  # the same page, now in English
    check_page(page, "person-en", viewport)

    other = frame[frame["district"] == "yunyan"].index[0]
    response = page.goto(f"{url}/app/persons/{other}")
    assert response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Person not found."
    check_page(page, "not-found", viewport)
    response = page.goto(f"{url}/app/xyz")  # an unknown page: a page, with every header
    assert response.status == 404 and "content-security-policy" in response.headers
    assert page.get_by_role("heading", level=1).inner_text() == "There is no such page."

    page.get_by_role("button", name="中文").click()  # back to Chinese for the next run
    page.get_by_role("button", name="退出登录").click()
    assert page.url.endswith("/app/signin")
    page.goto(url + "/app/caseload")
    assert page.url.endswith("/app/signin")  # signed out: refused, back to sign-in
    context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_programme_page(browser, service, viewport):
    context = browser.new_context(viewport=VIEWPORTS[viewport])
    page = context.new_page()
    sign_in(page, service["url"], service["tokens"]["analyst"])
    page.goto(service["url"] + "/app/programme")
    assert page.get_by_role("heading", level=1).inner_text() == "禁毒工作指标"
    assert page.locator("tbody th").count() == 11  # ten districts and the city
    # the composite: each district's score with its rank's range, best score first
    cells = page.locator("tbody tr td:nth-child(2)").all_inner_texts()[:10]
    scores = [float(c.split()[0]) for c in cells if re.search(r"第\d+(–\d+)?名", c)]
    assert len(scores) >= 5 and scores == sorted(scores, reverse=True)
    check_page(page, "programme", viewport)
    assert latin_words(page) == [] and small_targets(page) == []
    # a funnel per registry indicator, each saying which districts lie apart, or that none does
    funnels = page.locator(".funnels figcaption").all_inner_texts()
    assert len(funnels) >= 3
    assert all("全市" in c for c in funnels)
    # each trend has an axis from 0, Chinese months, a band, and says which way is better
    captions = page.locator(".city figcaption").all_inner_texts()
    assert captions and all("越高越好" in c or "越低越好" in c for c in captions)
    assert page.locator(".city svg polygon.band").count() >= len(captions)
    for chart in page.locator(".city svg").all():
        words = chart.locator("text").all_text_contents()
        assert re.fullmatch(r"0(\.0+)?", words[1])  # the axis starts at 0
        assert [w for w in words if re.fullmatch(r"\d{4}年\d{1,2}月", w)]
    context.close()


def test_the_api_docs_work_under_their_content_security_policy(browser, service):
    """/docs forbids any script but its own files and its one inline start, any framing and
    any outside request: Swagger UI still lists the API's operations, and nothing the page
    does is refused by its policy."""
    page = browser.new_context().new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    answer = page.goto(service["url"] + "/docs")
    headers = answer.headers
    assert "script-src 'self' 'sha256-" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() >= 8
    assert refused == []


def test_wrong_passwords_slow_down_on_a_phone(browser, service):
    """A caseworker who mistypes their password a few times is told to wait, in Chinese, and
    the right password is heard again once the wait has passed."""
    store = service["token_store"]
    service["tokens"]["cw_slow"] = store.create("sun", "caseworker", ["huaxi"])
    passwords = Passwords(WebStore(service["service_db"]).engine)
    assert passwords.set_password("sun", passwords.issue_code("sun"), "river stone 2026")
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    page = context.new_page()
    try:
        for attempt in range(FREE_FAILURES + 1):
            page.goto(service["url"] + "/app/signin")
            page.get_by_label("用户名").fill("sun")
            page.get_by_label("密码", exact=True).fill(f"wrong guess {attempt}")
            page.get_by_role("button", name="登录").click()
        alert = page.get_by_role("alert").inner_text()
        assert "尝试次数过多" in alert and "秒后再试" in alert, alert
        check_page(page, "signin-throttled", "phone")
        passwords.succeeded("user:sun", "address:127.0.0.1")  # as if the wait had passed
        page.get_by_label("用户名").fill("sun")
        page.get_by_label("密码", exact=True).fill("river stone 2026")
        page.get_by_role("button", name="登录").click()
        assert page.url.endswith("/app/caseload")
    finally:
        passwords.succeeded("user:sun", "address:127.0.0.1")
        context.close()
