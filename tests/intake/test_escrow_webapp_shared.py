"""The web page verifies on chain, through the wallet, a model listed on the shared verifier (the clone pinning its
VKA, checked against the manifest) and a batched bundle (its batch circuit's verifier, named by the registry); a
flipped byte is refused by both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_wallet import DevWallet, chromium_or_skip, connect
from escrow_helpers import (
    MLP_CANDIDATE,
    OWNER_SHARE_BPS,
    PRICE,
    PRICE_UNITS,
    AppFactory,
    EscrowEnv,
    compile_mlp,
    sample_inputs,
    serve,
)
from eth_account import Account

from proofmarket.chain.shared import parse_clone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_model(env: EscrowEnv) -> str:
    """The sample MLP with a batch circuit of 4 calls, listed on the shared verifier (and its batch verifier)."""
    model_id = compile_mlp(env.ws, "public", MLP_CANDIDATE, batch_sizes=(4,), name="mlp-web-shared").model_id
    registration = env.market.register_model(model_id, PRICE, OWNER_SHARE_BPS, verifier="shared")
    assert registration.verifier is not None and registration.verifier.shared
    return model_id


@pytest.fixture
def served(make_app: AppFactory, shared_model: str) -> Iterator[str]:
    app = make_app()
    app.state.services.catalog.register(shared_model, price_atomic=PRICE_UNITS)
    yield from serve(app)


def _status(page: object) -> str:
    page.wait_for_selector("#chain-status.ok, #chain-status.bad", timeout=120_000)  # type: ignore[attr-defined]
    text = page.text_content("#chain-status") or ""  # type: ignore[attr-defined]
    page.evaluate("document.querySelector('#chain-status').className = ''")  # type: ignore[attr-defined]
    return text


def test_the_page_verifies_shared_and_batched_proofs_on_chain(env: EscrowEnv, served: str, shared_model: str,
                                                              tmp_path: Path) -> None:
    sync_playwright, chromium = chromium_or_skip()
    docs = sample_inputs(4)
    alone = env.ws.prover.prove(shared_model, docs[0]).bundle
    batched = env.ws.prover.prove_together(shared_model, docs, 4)[2].bundle
    files = {"alone": tmp_path / "alone.json", "batched": tmp_path / "batched.json"}
    files["alone"].write_text(json.dumps(alone.to_doc()))
    files["batched"].write_text(json.dumps(batched.to_doc()))
    key = env.market.onchain_id(shared_model)
    clone = env.market.registry.get_model(key).spec.verifier
    assert parse_clone(env.market.client.code_at(clone)) is not None
    batch_verifier = env.market.registry.batch_verifier(key, 4).address
    wallet = DevWallet(Account.create(), env.rpc_url, env.market.client.chain_id)  # reads only: no funds needed
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = b.new_page()
        page.set_default_timeout(90_000)  # a loaded CI machine
        wallet.install(page)
        page.goto(f"{served}/app/#model/{shared_model}")
        connect(page)
        for name, verifier in (("alone", clone), ("batched", batch_verifier)):
            page.set_input_files("#bundle-file", str(files[name]))
            page.wait_for_selector("#chain-verify-button:enabled")  # a selector: the CSP forbids string eval
            page.click("#chain-verify-button")
            status = _status(page)
            assert status.startswith("valid on chain") and str(verifier) in status, (name, status)
            page.click("#chain-tamper-button")
            assert "NOT valid on chain" in _status(page), name
        b.close()
    assert wallet.sent == []
