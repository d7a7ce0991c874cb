"""The web app as a new visitor uses it (Chromium through Playwright, no JSON typed): finds a model by its task in
the catalogue, reads its card (safe Markdown: an owner's script never runs, only http(s) links, opened noopener),
tries it from the generated number fields and sliders (the owner's range) and reads a verdict and the top classes
by their labels; axe-core finds no serious or critical accessibility violation on the catalogue or the card, at
desktop and phone widths; every section of the page at 320 to 1,920 px without sideways scrolling, axe-clean and
photographed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import AppFactory, mlp_input
from browser_wallet import AXE, chromium_or_skip, serious_violations
from fastapi import FastAPI
from served import Served

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"
DESCRIPTION = ("Classifies **synthetic** points into three classes.\n\n- 8 features\n- logits out\n\n"
               "See [the data](https://example.org/data) and [this](javascript:alert(1)).\n\n"
               "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">")
LABELS = ["alpha", "beta", "gamma"]


@pytest.fixture
def served(mlp_app: FastAPI, mlp_id: str) -> Iterator[str]:
    entry = {"description": DESCRIPTION, "task": "classification", "tags": ["tabular", "demo"], "license": "MIT",
             "outputs": [{"name": "logits", "description": "one score per class", "labels": LABELS}],
             "inputs": [{"name": "features", "description": "8 measurements", "range": [-6, 4]}]}
    mlp_app.state.services.catalog.repo.upsert(mlp_id, name="three-classes", price_atomic=10_000, catalog=entry)
    with Served(mlp_app) as node:
        yield node.url


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))  # the context bypasses the CSP for this test-only script
    return serious_violations(page)


def _until_text(page: Any, selector: str, start: str, timeout_s: float = 60.0) -> str:
    """The element's text once it starts with ``start`` (polled here: the page's CSP forbids string eval)."""
    deadline = time.monotonic() + timeout_s
    while not (text := page.text_content(selector) or "").startswith(start):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    return text


def test_a_visitor_finds_reads_and_tries_a_model_without_json(served: str, mlp_id: str) -> None:
    if not AXE.is_file():
        pytest.fail("axe-core is one of the npm tools (make setup)")
    sync_playwright, chromium = chromium_or_skip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(90_000)  # a loaded CI machine
        page.goto(f"{served}/app/")
        page.wait_for_selector("#models:not([hidden])")
        page.select_option("#task-filter", "classification")
        page.wait_for_selector(f"#models a[href='#model/{mlp_id}']")
        row = page.locator("#models tbody tr").first.inner_text()
        assert "three-classes" in row and "Proven" in row and "tabular" in row and "classifies" in row, row
        assert _axe(page) == []

        page.click(f"#models a[href='#model/{mlp_id}']")
        page.wait_for_selector("#model:not([hidden])")
        assert page.locator("#model-description strong").inner_text() == "synthetic"
        assert page.locator("#model-description li").count() == 2
        links = page.locator("#model-description a")
        assert links.count() == 1 and links.get_attribute("href") == "https://example.org/data"
        assert "noopener" in (links.get_attribute("rel") or "")
        assert page.locator("#model-description script, #model-description img").count() == 0
        assert page.evaluate("window.pwned === undefined")
        assert "<script>" in page.inner_text("#model-description")  # shown as the text it is
        facts = page.inner_text("#model-details")
        assert "classification" in facts and "MIT" in facts and "zero-knowledge proof" in facts
        assert "Usage:" in _until_text(page, "#model-usage", "Usage:")  # read after the stats answer
        assert not page.is_visible("#model-verification-list")  # one click away
        page.click("#model-verification summary")
        assert mlp_id in page.inner_text("#model-verification-list")
        assert page.locator("#model-verification-list button.copy").count() >= 3

        fields = page.locator("#call-fields input[type=number]")
        values = mlp_input()["input_data"][0]
        assert fields.count() == len(values)
        # the owner's range for the input: a slider beside each field, every value starting at its midpoint
        sliders = page.locator("#call-fields input[type=range]")
        assert sliders.count() == len(values)
        assert (sliders.first.get_attribute("min"), sliders.first.get_attribute("max")) == ("-6", "4")
        assert json.loads(page.input_value("#call-json"))["inputs"] == {"x": [[-1] * len(values)]}
        sliders.nth(2).evaluate("(el) => { el.value = '2.5'; el.dispatchEvent(new Event('input')); }")
        assert fields.nth(2).input_value() == "2.5"
        assert json.loads(page.input_value("#call-json"))["inputs"]["x"][0][2] == 2.5
        for i, value in enumerate(values):
            fields.nth(i).fill(str(value))
        assert json.loads(page.input_value("#call-json"))["inputs"]  # the form wrote the request
        page.click("#call-button")
        page.wait_for_selector("#call-answer .verdict")
        verdict = page.inner_text("#call-answer .verdict")
        assert verdict.startswith("Verified in this browser in") and "ms" in verdict, verdict
        proves = page.inner_text("#call-answer .proves")  # in plain words: what the proof says, and what it does not
        assert "What this proves" in proves and "three-classes" in proves
        assert "not prove the model is accurate" in proves
        top = page.locator("#call-answer .top-classes li")
        assert top.count() == 3 and all(any(t.startswith(label) for label in LABELS) for t in top.all_inner_texts())
        page.click("#copy-python")  # the same request for developers (the clipboard may be refused headless)
        page.wait_for_selector("#copy-python[data-snippet]")  # set by the click's handler, before the clipboard
        python = page.get_attribute("#copy-python", "data-snippet") or ""
        assert f'client.infer("{mlp_id}", json.loads(' in python and "from proofmarket import Client" in python
        page.click("#copy-curl")
        page.wait_for_selector("#copy-curl[data-snippet]")
        curl = page.get_attribute("#copy-curl", "data-snippet") or ""
        assert curl.startswith(f"curl -s '{served}/v1/models/{mlp_id}/infer'") and "-d '{" in curl
        page.click("#call-answer .evidence summary")
        assert page.locator("#call-answer .evidence li").count() >= 3
        assert _axe(page) == []
        SHOTS.mkdir(exist_ok=True)
        page.locator("#model").screenshot(path=str(SHOTS / "app-model-card.png"))

        for width in (320, 375, 768, 1920):  # no layout breaks: nothing scrolls sideways
            page.set_viewport_size({"width": width, "height": 800})
            assert page.evaluate("document.documentElement.scrollWidth") <= width, width
        page.set_viewport_size({"width": 375, "height": 800})
        assert _axe(page) == []

        page.evaluate("document.getElementById('model-verification').open = false")  # keyboard: open it again
        page.focus("#model-verification summary")
        page.keyboard.press("Enter")
        assert page.evaluate("document.getElementById('model-verification').open")
        page.locator("#model").screenshot(path=str(SHOTS / "app-model-card-375px.png"))
        browser.close()


SECTIONS = ("wallet", "model", "verify", "history", "owner", "prover", "access")  # a model's page: no catalogue


def test_every_section_reads_at_every_width_and_passes_axe(served: str, mlp_id: str) -> None:
    """The page's every section (the model's card open) from 320 to 1,920 px: nothing scrolls sideways, axe-core finds
    no serious or critical violation at 375 and 1,440 px, and each section is photographed at both (test
    artifacts in tests/screenshots, not committed)."""
    if not AXE.is_file():
        pytest.fail("axe-core is one of the npm tools (make setup)")
    sync_playwright, chromium = chromium_or_skip()
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True).new_page()
        page.set_default_timeout(90_000)
        page.goto(f"{served}/app/#model/{mlp_id}")
        page.wait_for_selector("#model:not([hidden])")
        _until_text(page, "#model-title", "three-classes")
        for width in (320, 375, 768, 1440, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"at {width} px the page is {wide} px wide"
            if width != 1920:
                assert _axe(page) == [], width
            if width in (375, 1440):
                for section in SECTIONS:
                    assert page.locator(f"#{section}").is_visible(), section
                    page.locator(f"#{section}").screenshot(path=str(SHOTS / f"app-{section}-{width}.png"))
                page.screenshot(path=str(SHOTS / f"app-page-{width}.png"), full_page=True)
        page.evaluate("window.scrollTo(0, 0); document.activeElement.blur()")
        reached: list[str] = []  # the sections the Tab key reaches, in order
        for _ in range(600):
            page.keyboard.press("Tab")
            where = page.evaluate("(document.activeElement.closest('section') || {}).id || ''")
            if where and (not reached or reached[-1] != where):
                reached.append(where)
            if where == SECTIONS[-1]:
                break
        assert [s for s in SECTIONS if s in reached] == list(SECTIONS), reached
        page.click("#model .back a")  # back to the catalogue: the model's page steps aside
        page.wait_for_selector("#catalog", state="visible")
        assert page.locator(".hero").is_visible() and _axe(page) == []
        browser.close()


def test_the_catalogue_says_what_to_do_when_the_node_does_not_answer(served: str, mlp_id: str) -> None:
    """The catalogue's error state: the node did not answer the search; the page says so and what to do, and its
    "Try again" reads the catalogue once the node answers."""
    sync_playwright, chromium = chromium_or_skip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.set_default_timeout(90_000)
        page.route("**/v1/models?*", lambda route: route.abort())  # the node's search does not answer
        page.goto(f"{served}/app/")
        page.wait_for_selector("#catalog-status.bad")
        said = page.text_content("#catalog-status") or ""
        assert "could not be read" in said and "try again" in said, said
        assert page.is_visible("#catalog-retry")
        page.unroute("**/v1/models?*")
        page.click("#catalog-retry")
        page.wait_for_selector(f"#models a[href='#model/{mlp_id}']")
        assert not page.is_visible("#catalog-retry")
        browser.close()


def test_a_cards_usage_is_a_chart_of_calls_per_day(make_app: AppFactory, mlp_id: str) -> None:
    """The card's usage: the words, and a chart of calls per day over 30 days whose caption says it in words."""
    from datetime import UTC, datetime, timedelta

    from proofmarket.db import CallKind, CallRow, CallStatus

    app = make_app(stats_min_calls=1)
    services = app.state.services
    services.catalog.register(mlp_id, price_atomic=10_000, name="charted")
    now = datetime.now(UTC)
    with services.db.session() as s:  # calls as the lifecycle leaves them: two now, one three days before
        for i, days_ago in enumerate((0, 0, 3)):
            at = now - timedelta(days=days_ago)
            s.add(CallRow(id=f"chart{i}", kind=CallKind.PROVE, model_id=mlp_id, status=CallStatus.PROVED,
                          system="ezkl-halo2-kzg-bn254", rail="free", input={}, request_hash="x", result={},
                          created_at=at, started_at=at, finished_at=at + timedelta(seconds=1)))
    sync_playwright, chromium = chromium_or_skip()
    with Served(app) as node, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.set_default_timeout(90_000)
        page.goto(f"{node.url}/app/#model/{mlp_id}")
        page.wait_for_selector("#model-usage-chart figcaption")
        caption = page.text_content("#model-usage-chart figcaption") or ""
        assert caption.startswith("calls per day: 3 calls over 30 days, at most 2 calls on "), caption
        assert page.locator("#model-usage-chart svg rect").count() == 30
        assert "3 calls in the last 30 days" in (page.text_content("#model-usage") or "")
        browser.close()
