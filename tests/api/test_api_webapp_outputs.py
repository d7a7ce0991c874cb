"""The page checks what it shows (P3-19): the in-page verifier (verify.js, in Node and in Chromium) refuses a bundle
whose output values, input values, hashes or model id are not the ones the proof's public instances commit to,
exactly as ``proofmarket verify`` does, and a call's answer shows the output the proof commits to, never the
node's own word for it."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import mlp_input
from browser_wallet import chromium_or_skip, fill_request
from fastapi import FastAPI
from served import Served

from proofmarket.core.errors import ProofMarketError
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.verify import verify_bundle

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(mlp_app: FastAPI) -> Iterator[str]:
    with Served(mlp_app) as node:
        yield node.url


@pytest.fixture(scope="module")
def answer(served: str, mlp_id: str) -> dict[str, Any]:
    import httpx

    body: dict[str, Any] = httpx.post(f"{served}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120).json()
    return body


def _edited(bundle: dict[str, Any], what: str) -> dict[str, Any]:
    doc = copy.deepcopy(bundle)
    if what == "output":
        doc["output"]["values"][0][0] += 0.5  # the proof, instances and hashes untouched
    elif what == "input":
        doc["input"]["values"][0][0] += 0.5
    elif what == "output hash":
        doc["output"]["hash"] = "0x" + "11" * 32
    elif what == "input commitment":
        doc["input"]["commitment"] = "0x" + "22" * 32
    elif what == "output scale":
        doc["layout"]["output_scales"] = [s + 1 for s in doc["layout"]["output_scales"]]
        doc["output"]["values"] = [[v / 2 for v in row] for row in doc["output"]["values"]]
    elif what == "instances":
        doc["proof"]["instances"] = doc["proof"]["instances"][:-1]
    return doc


EDITS = {
    "output": "output values are not the ones the proof commits to",
    "input": "input values are not the ones the proof commits to",
    "output hash": "output hash does not match",
    "input commitment": "input commitment does not match",
    "output scale": "instance layout differs",
    "instances": "public instances",
}


def _verify_in_node(url: str, path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, str(ROOT / "scripts" / "verify_bundle.mjs"), url, str(path)],
                          capture_output=True, text=True, timeout=120)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == (0 if result["valid"] else 1)
    return result


def test_the_in_page_verifier_refuses_what_proofmarket_verify_refuses(served: str, answer: dict[str, Any],
                                                                      node_home: Path, tmp_path: Path) -> None:
    bundle = answer["bundle"]
    store = LocalStore(node_home / "store")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bundle))
    result = _verify_in_node(served, good)
    assert result["valid"] is True, result
    assert "the output values are the ones the proof's public instances commit to" in result["checks"]
    for what, reason in EDITS.items():
        doc = _edited(bundle, what)
        with pytest.raises(ProofMarketError):  # the CLI's check refuses it...
            verify_bundle(doc, store)
        path = tmp_path / f"{what.replace(' ', '-')}.json"
        path.write_text(json.dumps(doc))
        result = _verify_in_node(served, path)  # ...and so does the page's
        assert result["valid"] is False and reason in str(result["error"]), (what, result)
    other = copy.deepcopy(bundle)
    other["model"]["id"] = answer["bundle_cid"]  # a CID this node holds, but not a model manifest
    path = tmp_path / "model-id.json"
    path.write_text(json.dumps(other))
    result = _verify_in_node(served, path)
    assert result["valid"] is False and "does not name a model manifest" in str(result["error"]), result


def test_the_page_says_not_valid_for_an_edited_output_and_shows_only_the_proven_output(
        served: str, answer: dict[str, Any], tmp_path: Path) -> None:
    sync_playwright, chromium = chromium_or_skip()
    model_id = answer["bundle"]["model"]["id"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(_edited(answer["bundle"], "output")))
    proven = answer["bundle"]["output"]["values"]
    with sync_playwright() as pw:  # type: ignore[operator]
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1024, "height": 900})
        page.set_default_timeout(90_000)  # a loaded CI machine
        page.goto(f"{served}/app/#model/{model_id}")
        page.wait_for_selector("#model:not([hidden])")
        page.set_input_files("#bundle-file", str(edited))
        page.click("#verify-button")
        page.wait_for_selector("#verify-status.ok, #verify-status.bad", timeout=60_000)
        status = page.text_content("#verify-status") or ""
        assert status.startswith("NOT valid") and "output values" in status, status

        def lying(route: Any) -> None:  # the node's reply names another output than its bundle proves
            response = route.fetch()
            body = response.json()
            body["output"] = [[123456.0, -654321.0]]
            route.fulfill(response=response, body=json.dumps(body))

        page.route("**/infer", lying)
        fill_request(page, mlp_input())
        page.click("#call-button")
        page.wait_for_selector("#call-status.ok, #call-status.bad", timeout=180_000)
        result = page.text_content("#call-result") or ""
        assert "123456" not in result and "654321" not in result, result
        shown = json.loads(page.evaluate("[...document.querySelectorAll('#call-result dt')]"
                                         ".find((d) => d.textContent === 'output').nextElementSibling.textContent"))
        assert len(shown) == len(proven) and all(
            abs(a - b) < 1e-9 for xs, ys in zip(shown, proven, strict=True) for a, b in zip(xs, ys, strict=True))
        assert "verified" in (page.text_content("#call-status") or "")
        browser.close()
