"""The web app as a visitor sees it (issue 76), at 320, 375, 768, 1,440 and 1,920 px, light and dark: no sideways
scrolling, the sections' navigation on one line, amounts in USDC (never "atomic"), model names whole, every view
free of serious axe violations. Each view's screenshot is kept in tests/screenshots/views/ to be looked at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_wallet import chromium_or_skip, serious_violations, with_axe
from fastapi import FastAPI
from served import Served

pytestmark = pytest.mark.slow
SHOTS = Path(__file__).resolve().parents[2] / "tests" / "screenshots" / "views"
WIDTHS = [320, 375, 768, 1440, 1920]


@pytest.fixture(scope="module")
def served(mlp_app: FastAPI) -> Iterator[str]:
    with Served(mlp_app) as node:
        yield node.url


def _layout(page: object) -> dict[str, object]:
    return page.evaluate("""() => ({  // type: ignore[attr-defined]
      scroll: document.documentElement.scrollWidth,
      navHeight: document.querySelector('nav').getBoundingClientRect().height,
      navLink: document.querySelector('nav a').getBoundingClientRect().height,
      text: document.body.innerText,
      names: [...document.querySelectorAll('.model-name')].map((n) => getComputedStyle(n).wordBreak),
    })""")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_view_fits_every_width_in_both_schemes(served: str, mlp_id: str, scheme: str) -> None:
    sync_playwright, chromium = chromium_or_skip()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:  # type: ignore[operator]
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = with_axe(browser.new_page(viewport={"width": WIDTHS[0], "height": 900}, color_scheme=scheme))
        page.set_default_timeout(90_000)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{served}/app/")
            page.wait_for_selector(f"#models a[href='#model/{mlp_id}']")
            seen = _layout(page)
            assert seen["scroll"] <= width, (width, seen["scroll"])  # no sideways scrolling
            assert seen["navHeight"] < 2 * seen["navLink"], width  # one line of sections (it scrolls sideways)
            assert "atomic" not in str(seen["text"]).lower() and "USDC" in str(seen["text"])
            assert seen["names"] and set(seen["names"]) <= {"normal", "keep-all"}  # names never broken mid-word
            assert serious_violations(page) == [], (width, scheme)
            page.screenshot(path=str(SHOTS / f"landing-{scheme}-{width}.png"))
            page.click(f"#models a[href='#model/{mlp_id}']")
            page.wait_for_selector("#model:not([hidden])")
            price = page.input_value("#call-max")
            for _ in range(100):  # the form is built from the model's page (no eval: the page's CSP forbids it)
                if price:
                    break
                page.wait_for_timeout(100)
                price = page.input_value("#call-max")
            assert price.replace(".", "", 1).isdigit() and float(price) < 1000, price  # USDC, not atomic units
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            assert serious_violations(page) == [], (width, scheme, "model")
            page.screenshot(path=str(SHOTS / f"model-{scheme}-{width}.png"))
        browser.close()
