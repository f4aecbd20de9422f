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
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


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
    """Screenshot the page, and fail on any serious or critical accessibility violation."""
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=OUT / f"{name}-{viewport}.png", full_page=True)
    page.evaluate(AXE.read_text())
    violations = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ')')"
    )
    assert violations == [], f"{name} ({viewport}): {violations}"
    # the page fits the screen: nothing wider than the viewport but scrollable tables
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} ({viewport}) is {overflow} px wider than the screen"


def sign_in(page, url: str, token: str) -> None:
    page.goto(url + "/app/signin")
    page.fill("#token", token)
    page.click("button.primary")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_caseworkers_day(browser, service, viewport, tmp_path):
    state = service["state"]
    frame = state.caseload(get_task("relapse")).frame
    context = browser.new_context(viewport=VIEWPORTS[viewport], accept_downloads=True)
    page = context.new_page()
    url = service["url"]

    page.goto(url + "/app/signin")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    check_page(page, "signin", viewport)
    sign_in(page, url, service["tokens"]["cw_youth"])
    assert page.url.endswith("/app/caseload")
    assert page.get_by_role("heading", level=1).inner_text().startswith("我的帮扶对象")
    check_page(page, "caseload", viewport)

    # ranked: the probabilities down the page never rise
    shown = page.locator("tbody td:nth-child(6)").all_inner_texts()
    probabilities = [float(p.rstrip("%")) for p in shown]
    assert len(probabilities) == 25 and probabilities == sorted(probabilities, reverse=True)

    page.get_by_label("只看风险上升").check()
    page.get_by_role("button", name="显示").click()
    assert "rising=true" in page.url
    rows = page.locator("tbody tr")
    assert rows.count() > 0
    for text in rows.all_inner_texts():
        assert "风险上升" in text
    rising_first = page.locator("tbody tr a").first.inner_text()
    mine = frame[frame["district"].isin(["huaxi", "nanming"]) & frame["rising"]]
    assert rising_first == mine.index[0]

    with page.expect_download() as download:
        page.get_by_role("link", name="导出 Excel").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert list(pd.read_excel(saved)["人员"]) == list(mine.index)

    page.locator("tbody tr a").first.click()
    assert f"/app/persons/{rising_first}" in page.url
    assert "在同类人员中" in page.locator(".sentence").inner_text()
    assert page.locator("svg.chart circle").count() == 12  # one point a month
    check_page(page, "person", viewport)

    page.get_by_role("button", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="Why: what raises and what lowers the risk").count()
    assert f"/app/persons/{rising_first}" in page.url  # the same page, now in English
    check_page(page, "person-en", viewport)

    option = page.locator("select[name=option] option").nth(1)
    label = option.inner_text()
    page.select_option("select[name=option]", option.get_attribute("value"))
    page.get_by_label("Declined").check()
    note = f"called on the {viewport}"
    page.fill("textarea[name=note]", note)
    page.get_by_role("button", name="Record follow-up").click()
    entry = page.locator("#followups ~ ul.timeline li").first
    assert label in entry.inner_text() and "Declined" in entry.inner_text()
    assert note in entry.inner_text()

    other = frame[frame["district"] == "yunyan"].index[0]
    response = page.goto(f"{url}/app/persons/{other}")
    assert response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Person not found."
    check_page(page, "not-found", viewport)

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
    ranks = [
        int(re.search(r"#(\d+)", t).group(1))
        for t in page.locator("tbody tr td:nth-child(2)").all_inner_texts()[:10]
        if "#" in t
    ]
    assert ranks == sorted(ranks)  # best composite first
    check_page(page, "programme", viewport)
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
