"""The browser helpers can fail: axe-core finds a known fault, a too-wide page is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web import DESKTOP, PHONE, PageFactory, axe_violations, no_horizontal_scroll, screenshot

pytestmark = pytest.mark.integration

FAULTY = "<!doctype html><html><head><title>t</title></head><body><main><img src='x.png'></main></body></html>"
FINE = (
    "<!doctype html><html lang='en'><head><title>t</title></head>"
    "<body><main><h1>Fine</h1><p>Nothing wrong here.</p></main></body></html>"
)


async def test_axe_finds_what_is_wrong_and_nothing_else(page: PageFactory) -> None:
    tab = await page(DESKTOP)
    await tab.set_content(FAULTY)
    rules = {v["id"] for v in await axe_violations(tab)}
    assert {"image-alt", "html-has-lang"} <= rules
    await tab.set_content(FINE)
    assert await axe_violations(tab) == []


async def test_horizontal_scroll_is_seen_on_a_phone(
    page: PageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tab = await page(PHONE)
    await tab.set_content(FINE)
    assert await no_horizontal_scroll(tab)
    await tab.set_content(FINE.replace("<h1>", "<h1 style='width: 600px'>"))
    assert not await no_horizontal_scroll(tab)
    monkeypatch.setenv("KAFKAML_SCREENSHOTS", str(tmp_path))
    assert await screenshot(tab, "wide") == tmp_path / "wide.png"
    assert (tmp_path / "wide.png").stat().st_size > 1000
