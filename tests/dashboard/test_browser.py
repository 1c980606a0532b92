"""The dashboard in a real headless Chromium against a real server: it loads with no console
errors, searches, shows a tweet ingested through the API without a reload, and changes a user's
recommendations live when an interaction is sent. Screenshots of every view are kept under
``bench/results/screenshots/``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import IN_CI
from tests.dashboard.conftest import NOW, conversations, dashboard_app, item_records, tweet_records
from tests.servers import running_server
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "bench" / "results" / "screenshots"
DAY_AGO = (NOW - timedelta(days=1)).isoformat()
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect


@dataclass
class Site:
    base: str
    http: httpx.AsyncClient
    browser: Any
    errors: list[str] = field(default_factory=list)

    async def page(self, view: str, width: int = 1280, height: int = 900) -> Any:
        """A fresh page on ``view``, its console errors and uncaught exceptions collected."""
        page = await self.browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        await page.goto(f"{self.base}/#{view}")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=20_000)
        return page


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if IN_CI:
        pytest.fail("chromium is missing: apt-get install -y chromium")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


async def launch(pw: Any) -> Any:
    return await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    require_chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    app = dashboard_app(tmp_path_factory.mktemp("dashboard"))
    async with (
        running_server(app) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
        playwright_api.async_playwright() as pw,
    ):
        for collection, records in (("tweets", tweet_records()), ("items", item_records())):
            r = await http.post(f"/v1/collections/{collection}/records?wait=true", json={"records": records})
            assert r.status_code == 200, r.text
        r = await http.post("/api/v1/conversations", json=conversations())
        assert r.status_code == 202, r.text
        await eventually(
            lambda: http.get("/api/v1/insights/summary", params={"start_time": DAY_AGO, "end_time": NOW.isoformat()}),
            until=lambda r: r.json()["metadata"]["total_count"] >= len(conversations()),
            timeout=60,
        )
        browser = await launch(pw)
        try:
            yield Site(base, http, browser)
        finally:
            await browser.close()


async def test_page_loads_with_no_console_errors_in_any_view(site: Site) -> None:
    page = await site.page("live")
    # the marker bench/dashboard.py times the first load to: backlog shown, every stream watched
    await expect(page.locator("body")).to_have_attribute("data-live", "ready", timeout=20_000)
    await expect(page.locator("#live-status")).to_have_text("connected")
    marks = await page.evaluate("performance.getEntriesByType('mark').map((m) => m.name)")
    assert {"shoal:ws-open", "shoal:live-ready"} <= set(marks)
    for view in ("insights", "recs", "health", "live"):
        await page.click(f"#tab-{view}")
        await expect(page.locator(f"#view-{view}")).to_be_visible()
    await expect(page.locator("#health-cards .tile")).to_have_count(10)
    timing = await page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
    assert timing["loadEventEnd"] > 0
    await page.close()
    assert site.errors == []


async def test_search_returns_results(site: Site) -> None:
    page = await site.page("live")
    await page.fill("#q", "rust programming")
    await page.click("#search-form button[type=submit]")
    results = page.locator("#search-results li")
    await expect(results.first).to_contain_text("Rust", timeout=20_000)
    await page.fill("#search-user", "bob")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-status")).to_contain_text("2 results")
    await expect(results).to_have_count(2)
    await page.close()
    assert site.errors == []


async def test_a_tweet_ingested_through_the_api_appears_live_with_similar_items(site: Site) -> None:
    page = await site.page("live")
    await expect(page.locator("#live-status")).to_have_text("connected", timeout=20_000)
    r = await site.http.post(
        "/v1/collections/tweets/records",
        json={
            "records": [
                {
                    "id": "live-1",
                    "text": "Rust async runtimes are fun",
                    "payload": {"user_id": "dave", "username": "dave"},
                }
            ]
        },
    )
    assert r.status_code == 202, r.text
    item = page.locator('#live-feed [data-id="live-1"]')
    await expect(item).to_contain_text("Rust async runtimes are fun", timeout=20_000)
    await expect(item.locator(".similar li").first).to_contain_text("Rust", timeout=20_000)
    await expect(page.locator("#live-feed > li").first).to_have_attribute("data-id", "live-1")
    await page.fill("#q", "travel delays")
    await page.select_option("#search-sentiment", "negative")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-results .badge.negative").first).to_be_visible(timeout=20_000)
    await page.close()
    assert site.errors == []


async def test_a_conversation_posted_through_the_api_appears_live_with_its_analysis(site: Site) -> None:
    page = await site.page("live")
    backlog = page.locator('#live-feed li.backlog[data-kind="conversation"]')
    await expect(backlog.first.locator(".analysis .badge")).to_be_visible(timeout=20_000)  # stored analyses
    await expect(page.locator("#live-status")).to_have_text("connected", timeout=20_000)
    text = "My parcel is two weeks late, terrible service and nobody answers"
    r = await site.http.post("/api/v1/conversations", json={"text": text, "author": "erin"})
    assert r.status_code == 202, r.text
    item = page.locator(f'#live-feed [data-id="{r.json()["conversation_id"]}"]')
    await expect(item).to_contain_text(text, timeout=20_000)
    await expect(page.locator("#live-feed > li").first).to_have_attribute("data-kind", "conversation")
    await expect(item.locator(".kind")).to_have_text("Conversation")
    await expect(item).to_contain_text("erin")
    # sentiment and topic come with the match or in the analysis push that follows it
    await expect(item.locator(".analysis .badge")).to_have_text(
        re.compile(r"^(positive|neutral|negative) "), timeout=20_000
    )
    await expect(item.locator(".analysis .topic")).not_to_be_empty()
    await expect(item.locator(".similar li").first).to_contain_text(re.compile("deliver|package|order", re.I))
    # the search box's filters work on conversations: author, time range, sentiment
    await page.select_option("#search-collection", "conversations")
    await page.fill("#q", "late parcel")
    await page.fill("#search-user", "erin")
    await page.fill("#search-from", (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    await page.select_option("#search-sentiment", "negative")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-status")).to_contain_text("1 result", timeout=20_000)
    await expect(page.locator("#search-results li").first).to_contain_text(text)
    await page.screenshot(path=str(SHOTS / "dashboard-live.png"), full_page=True, animations="disabled")
    await page.fill("#search-from", (datetime.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-status")).to_contain_text("0 results")
    await page.close()
    assert site.errors == []


async def test_send_interaction_changes_recommendations_without_reload(site: Site) -> None:
    page = await site.page("recs")
    await page.fill("#rec-user", "shopper")
    await page.click("#rec-user-form button[type=submit]")
    panel = page.locator("#rec-list")
    await expect(panel).to_have_attribute("data-updates", "1", timeout=20_000)
    before = await panel.inner_text()
    await page.fill("#catalog-q", "noise cancelling headphones")
    await page.click("#catalog-form button[type=submit]")
    await expect(page.locator("#catalog li.item").first).to_contain_text("oise", timeout=20_000)
    await page.locator("#catalog button.send-interaction").first.click()
    await expect(panel).to_have_attribute("data-updates", re.compile(r"^([2-9]|\d\d+)$"), timeout=20_000)
    await expect(page.locator("#rec-source")).to_have_text("realtime")
    assert await panel.inner_text() != before
    await expect(page.locator("#similar-list li.item").first).to_be_visible()
    await page.screenshot(path=str(SHOTS / "dashboard-recs.png"), full_page=True, animations="disabled")
    await page.close()
    assert site.errors == []


async def test_insights_show_sentiment_and_clusters_with_their_conversations(site: Site) -> None:
    everything = {"start_time": "2000-01-01T00:00:00Z", "end_time": "2100-01-01T00:00:00Z", "bucket": "30d"}
    analysed = (await site.http.get("/api/v1/insights/summary", params=everything)).json()["metadata"]["total_count"]
    assert analysed >= len(conversations())  # the seeds, and what other tests of this module posted
    page = await site.page("insights")
    await expect(page.locator("#insights-totals")).to_contain_text(f"{analysed} analysed", timeout=20_000)
    await expect(page.locator("#sentiment-chart svg rect").first).to_be_attached()
    cluster = page.locator("#clusters button.cluster").first
    await cluster.click()
    await expect(cluster).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#conversations li.result").first).to_be_visible(timeout=20_000)
    await page.screenshot(path=str(SHOTS / "dashboard-insights.png"), full_page=True, animations="disabled")
    await page.close()
    assert site.errors == []


async def test_pipeline_health_reads_the_metrics(site: Site) -> None:
    page = await site.page("health")
    await expect(page.locator("#health-status")).to_contain_text("Ready", timeout=20_000)
    await expect(page.locator('[data-metric="coverage"] .tile-value')).to_have_text("100.0 %")
    await expect(page.locator('[data-metric="indexed"] .tile-value')).not_to_have_text("–", timeout=20_000)
    await expect(page.locator("#collections tr")).not_to_have_count(0)
    await page.screenshot(path=str(SHOTS / "dashboard-health.png"), full_page=True, animations="disabled")
    await page.close()
    assert site.errors == []


async def test_keyboard_and_narrow_screen(site: Site) -> None:
    page = await site.page("live", width=640, height=900)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 640, "no horizontal scrolling at 640 px"
    await page.focus("#tab-live")
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#tab-insights")).to_be_focused()
    await expect(page.locator("#tab-insights")).to_have_attribute("aria-selected", "true")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "focus is visible"
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#view-live")).to_be_visible()
    unlabeled = await page.evaluate(
        """[...document.querySelectorAll('input, select')].filter(
             el => !el.labels?.length && !el.getAttribute('aria-label')).map(el => el.id)"""
    )
    assert unlabeled == []
    await page.screenshot(path=str(SHOTS / "dashboard-live-640.png"), full_page=True, animations="disabled")
    await page.close()
    assert site.errors == []


UNLABELLED = """[...document.querySelectorAll('input, select, textarea, button')].filter((el) => {
  const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
  return !(named || (el.tagName === 'BUTTON' ? el.textContent.trim() : el.labels?.length));
}).map((el) => el.id || el.outerHTML.slice(0, 80))"""
OVERFLOW = """() => ({
  scrolls: document.documentElement.scrollWidth > innerWidth,
  wider: [...document.querySelectorAll('body *')]
    .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > innerWidth + 0.5)
    .map((el) => el.id || `${el.tagName.toLowerCase()}.${el.className}`),
})"""
HALF_LAPTOP = {"width": 683, "height": 768}  # half of a 1366 × 768 laptop screen


async def tab_to(page: Any, selector: str, key: str = "Tab", presses: int = 80) -> None:
    """Press ``key`` until the focused element matches ``selector``: reachable with the keyboard alone."""
    for _ in range(presses):
        if await page.evaluate("(s) => !!document.activeElement?.matches(s)", selector):
            return
        await page.keyboard.press(key)
    raise AssertionError(f"{selector} is not reachable with {key}")


async def fits(page: Any, view: str) -> None:
    overflow = await page.evaluate(OVERFLOW)
    assert overflow == {"scrolls": False, "wider": []}, f"{view}: wider than {HALF_LAPTOP['width']} px"


async def test_every_view_works_from_the_keyboard_and_fits_half_a_laptop_screen(site: Site) -> None:
    page = await site.page("live", **HALF_LAPTOP)
    selected_tab = '[role="tab"][aria-selected="true"]'
    await tab_to(page, selected_tab)
    await expect(page.locator("#tab-live")).to_be_focused()
    await tab_to(page, "#q")  # Tab leaves the tab list into the view
    await page.keyboard.type("rust")
    await page.keyboard.press("Enter")
    await expect(page.locator("#search-results li").first).to_contain_text("Rust", timeout=20_000)
    await expect(page.locator("#live-feed > li").first).to_be_visible()
    await fits(page, "live")

    async def open_next(view: str) -> None:
        await tab_to(page, selected_tab, key="Shift+Tab")
        await page.keyboard.press("ArrowRight")
        await page.keyboard.press("Enter")
        await expect(page.locator(f"#tab-{view}")).to_be_focused()
        await expect(page.locator(f"#view-{view}")).to_be_visible()

    await open_next("insights")
    await expect(page.locator("#clusters button.cluster").first).to_be_visible(timeout=20_000)
    await tab_to(page, "#clusters button.cluster")
    await page.keyboard.press("Enter")
    await expect(page.locator("#clusters button.cluster:focus")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#conversations li.result").first).to_be_visible(timeout=20_000)
    await fits(page, "insights")

    await open_next("recs")
    await tab_to(page, "#catalog-q")
    await page.keyboard.type("wireless headphones")
    await page.keyboard.press("Enter")
    await expect(page.locator("#catalog li.item").first).to_contain_text("eadphones", timeout=20_000)
    await tab_to(page, "#catalog button.send-interaction")
    await page.keyboard.press("Enter")
    await expect(page.locator("#similar-list li.item").first).to_be_visible(timeout=20_000)
    await fits(page, "recs")

    await open_next("health")
    await expect(page.locator("#collections tr").first).to_be_visible(timeout=20_000)
    await tab_to(page, "details.raw summary")
    await page.keyboard.press("Enter")
    await expect(page.locator("details.raw")).to_have_attribute("open", "")
    await expect(page.locator("#raw-metrics tr").first).to_be_visible()
    await fits(page, "health")

    # every control, including those the views built from data, has a name a screen reader reads
    assert await page.evaluate(UNLABELLED) == []
    await page.close()
    assert site.errors == []


async def test_with_auth_on_the_token_is_asked_for_kept_and_sent(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "/" itself cannot be public yet (a public path ending in "/" is a prefix): use /dashboard.
    monkeypatch.setenv("SHOAL_AUTH_PUBLIC_PATHS", '["/health", "/ready", "/dashboard", "/static/"]')
    app = dashboard_app(tmp_path, api_keys="alice:alice-key", admin_api_keys="admin-key")
    async with running_server(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        page = await site.browser.new_page(viewport={"width": 1280, "height": 900})
        failures: list[str] = []
        page.on("pageerror", lambda e: failures.append(str(e)))
        await page.goto(f"{base}/dashboard#live")
        await expect(page.locator("#banner")).to_contain_text("Authentication required", timeout=20_000)
        await expect(page.locator("#token")).to_be_focused()
        await page.fill("#token", "alice-key")
        await page.click("#token-form button[type=submit]")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=20_000)
        await expect(page.locator("#banner")).to_be_hidden()
        await page.reload()  # the token survives a reload (sessionStorage), and rides the WebSocket
        await expect(page.locator("#live-status")).to_have_text("connected", timeout=20_000)
        r = await http.post(
            "/v1/collections/tweets/records",
            json={"records": [{"id": "a-1", "text": "Alice likes tea", "payload": {"user_id": "alice"}}]},
            headers={"authorization": "Bearer alice-key"},
        )
        assert r.status_code == 202, r.text
        await expect(page.locator('#live-feed [data-id="a-1"]')).to_be_visible(timeout=20_000)
        await page.click("#tab-recs")
        await expect(page.locator("#rec-user")).to_have_value("alice")
        await expect(page.locator("#rec-status")).to_have_text("connected", timeout=20_000)
        await page.close()
        assert failures == []


async def test_views_of_missing_features_say_so_without_errors(site: Site, tmp_path: Path) -> None:
    from shoal.app import CoreFeature, create_app
    from shoal.dashboard import DashboardFeature
    from tests.app_fixtures import make_settings

    app = create_app(make_settings(tmp_path), [CoreFeature(), DashboardFeature()])
    async with running_server(app) as base:
        alone = Site(base, site.http, site.browser)
        page = await alone.page("live")
        await expect(page.locator("#live-status")).to_have_text("tweet stream off")
        await page.click("#tab-insights")
        await expect(page.locator("#insights-totals")).to_contain_text("not enabled")
        await page.click("#tab-recs")
        await expect(page.locator("#rec-status")).to_have_text("recommendations off")
        await page.click("#tab-health")
        await expect(page.locator("#health-status")).to_contain_text("Ready", timeout=20_000)
        await page.close()
        assert alone.errors == []
