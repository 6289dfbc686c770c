"""Browser tests: fixtures and helpers around Playwright driving the system's Chromium.

Playwright's own browser download is never used: Chromium comes from Debian (`make tools`
installs it when it can), and axe-core, the accessibility checker injected into pages, comes
pinned from npm into the venv's clients folder (`make tools`). Loaded for every test by
``pytest_plugins`` in tests/conftest.py, so any test may ask for ``browser`` or ``page``.

>>> async def test_x(page: PageFactory) -> None:
...     tab = await page(PHONE)
...     await sign_in(tab, base, token)
...     await tab.goto(base + "/models")
...     assert not await axe_violations(tab)
...     assert await no_horizontal_scroll(tab)
...     await screenshot(tab, "models-phone")
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
DESKTOP = (1280, 800)
PHONE = (390, 844)
AXE = Path(sys.prefix) / "clients" / "axe-core" / "axe.min.js"
# Containers run as root: Chromium's sandbox needs user namespaces they do not have.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

PageFactory = Callable[..., Awaitable[Page]]


def chromium() -> str | None:
    """The system's Chromium, where it is installed."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    if executable is None:
        pytest.skip("no chromium on this machine (`make tools` installs it from Debian when it runs as root)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[PageFactory]:
    """Makes pages, each in a context of its own (its own cookies): ``await page(PHONE)``."""
    contexts: list[BrowserContext] = []

    async def make(viewport: tuple[int, int] = DESKTOP) -> Page:
        width, height = viewport
        context = await browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        return await context.new_page()

    yield make
    for context in contexts:
        await context.close()


async def sign_in(page: Page, base_url: str, token: str) -> str:
    """Signs the page's context in with the API token (its session cookie); the CSRF token."""
    answer = await page.request.post(f"{base_url}/api/v1/session", data={"token": token})
    assert answer.status == 204, f"sign-in answered {answer.status}: {await answer.text()}"
    session = await page.request.get(f"{base_url}/api/v1/session")
    assert session.status == 200, f"the new session is not recognised: {session.status}"
    csrf: str = (await session.json())["csrf_token"]
    return csrf


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """What axe-core finds wrong on the page now: each rule broken, with the elements breaking it."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}: run `make tools` (it fetches the pinned package with npm)")
    # Evaluated through DevTools, not as a <script>: a page's Content-Security-Policy does not apply.
    await page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
        }))"""
    )
    return found


async def no_horizontal_scroll(page: Page) -> bool:
    """True when nothing sticks out sideways (the page fits its viewport's width)."""
    fits: bool = await page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return fits


async def screenshot(page: Page, name: str) -> Path | None:
    """Keeps a full-page picture named ``name`` in $KAFKAML_SCREENSHOTS (for a person to look at)."""
    folder = os.environ.get("KAFKAML_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path
