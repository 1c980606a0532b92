"""A real headless Chromium loads the example extension page, connects with a JWT (as the
``bearer`` subprotocol), sends a batch and shows the pushed similar tweets. Screenshot kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.staticfiles import StaticFiles

from tests.conftest import IN_CI
from tests.servers import identity_provider, running_server
from tests.tweets.conftest import tweet_app

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PRESENT = CHROMIUM.exists()
SCREENSHOT = ROOT / "bench" / "results" / "screenshots" / "extension.png"
SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)

pytestmark = pytest.mark.browser


async def test_extension_page_connects_sends_and_shows_pushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CHROMIUM_PRESENT:
        if IN_CI:
            pytest.fail("chromium is missing: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with identity_provider() as idp:
        monkeypatch.setenv("SHOAL_AUTH_ISSUER", idp.issuer)
        app = tweet_app(tmp_path, auth_jwks_url=idp.jwks_url)
        app.mount("/examples", StaticFiles(directory=ROOT / "examples"), name="examples")
        async with running_server(app) as base, playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
            )
            try:
                page = await browser.new_page(viewport={"width": 1000, "height": 900})
                await page.goto(f"{base}/examples/extension/index.html?user=alice")
                await page.fill("#token", idp.token(sub="alice"))
                await page.click("#connect")
                await playwright_api.expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
                await page.click("#subscribe")
                await page.click("#send")
                similar = page.locator(".similar")
                await playwright_api.expect(similar).to_have_count(3, timeout=30_000)
                await playwright_api.expect(page.locator(".match").first).to_be_visible(timeout=20_000)
                text = await page.locator("#log").inner_text()
                assert "Rust makes systems programming safe" in text and "ack:" in text
                shot = await page.screenshot(path=str(SCREENSHOT), full_page=True)
                assert shot
            finally:
                await browser.close()
