"""Attested generation paid with x402 ``upto`` on the devnet: the payer authorizes the ceiling (max_tokens at the rate)
through Permit2 and is charged the tokens generated, once; a generation that stops early costs less than its
ceiling; the OpenAI-compatible route charges its usage; without a Permit2 approval the payment is refused with what to
do; a replayed authorization is refused; a client that pays only with exact still pays the ceiling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from x402.http import decode_payment_required_header
from x402_helpers import Chain, Served, funded_wallet, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.errors import PaymentError
from proofmarket.core.units import per_thousand
from proofmarket.sdk.client import Client
from proofmarket.sdk.pay import payment_signature_header
from proofmarket.systems.workspace import Workspace

PER_1K = 50_000  # 0.05 USDC per 1,000 output tokens
OWNER_INDEX = 7
MAX_TOKENS = 64


@pytest.fixture(scope="module")
def lm_node(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    home = tmp_path_factory.mktemp("upto-attested")
    settings = node_settings(home, home / "node.db", chain.rpc_url, chain.deployment_file)
    # trained on its corpus: a line's start is completed and ends (end of sequence) well before max_tokens
    folder = build_tiny_lm(home / "tiny-llama", train_steps=150)
    model_id, _ = Workspace(settings).compile_attested(folder, max_tokens_cap=MAX_TOKENS)
    app = create_app(settings)
    app.state.services.catalog.register(model_id, price_atomic=PER_1K,
                                        owner=dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address)
    with Served(app) as served:
        yield served, model_id
    app.state.services.close()


def _approved(chain: Chain, served: Served, tag: str, tmp_path: Path) -> LocalAccount:
    payer = funded_wallet(chain, tag, 100_000)
    with Client(served.url, account=payer, cache_dir=tmp_path / "approve", devnet=True) as sdk:
        done = sdk.approve_permit2(chain.rpc_url)
        assert done["transaction"] and sdk.approve_permit2(chain.rpc_url)["transaction"] is None  # once
    return payer


def test_a_generation_that_stops_early_is_charged_the_tokens_it_generated(
        chain: Chain, lm_node: tuple[Served, str], tmp_path: Path) -> None:
    served, model_id = lm_node
    payer, owner = _approved(chain, served, "upto-early", tmp_path), dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    before = chain.balances(payer.address, owner)
    with Client(served.url, account=payer, cache_dir=tmp_path / "cache", devnet=True, scheme="upto") as sdk:
        result = sdk.generate(model_id, "validators re-execute", max_tokens=MAX_TOKENS)
    assert result.finish_reason == "stop" and len(result.tokens) < MAX_TOKENS, result.text
    charged = per_thousand(PER_1K, len(result.tokens))
    ceiling = per_thousand(PER_1K, MAX_TOKENS)
    assert result.payment is not None and result.payment["scheme"] == "upto"
    assert int(result.payment["amount"]) == charged < ceiling
    assert int(result.payment["authorized"]) == ceiling
    assert result.receipt is not None and int(result.receipt["typedData"]["message"]["amount"]) == charged
    assert any("receipt signed by" in c for c in result.checks)
    after = chain.balances(payer.address, owner)
    assert (before[0] - after[0], after[1] - before[1]) == (charged, charged)


def test_the_openai_route_charges_its_usage(chain: Chain, lm_node: tuple[Served, str], tmp_path: Path) -> None:
    served, model_id = lm_node
    payer = _approved(chain, served, "upto-openai", tmp_path)
    body = {"model": model_id, "prompt": "validators re-execute", "max_tokens": MAX_TOKENS}
    url = f"{served.url}/openai/v1/completions"
    before = chain.balances(payer.address)[0]
    with httpx.Client(timeout=120) as http:
        unpaid = http.post(url, json=body)  # OpenAI's 401 for a paid model, with the x402 terms
        assert unpaid.status_code == 401 and "PAYMENT-REQUIRED" in unpaid.headers
        terms = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert [a.scheme for a in terms.accepts][:2] == ["upto", "exact"]  # upto first for a metered call
        signature = payment_signature_header(payer, unpaid.headers["PAYMENT-REQUIRED"], 10**6, scheme="upto",
                                             assets=[(chain.network, chain.usdc.address)])
        paid = http.post(url, json=body, headers={"PAYMENT-SIGNATURE": signature})
        assert paid.status_code == 200, paid.text
        usage = paid.json()["usage"]
        replay = http.post(url, json=body, headers={"PAYMENT-SIGNATURE": signature})
        assert replay.status_code in (402, 409) and "replay" in replay.json()["error"]["code"]
    assert usage["completion_tokens"] < MAX_TOKENS
    assert before - chain.balances(payer.address)[0] == per_thousand(PER_1K, usage["completion_tokens"])


def test_without_permit2_approved_the_payment_is_refused_with_what_to_do(
        chain: Chain, lm_node: tuple[Served, str], tmp_path: Path) -> None:
    served, model_id = lm_node
    payer = funded_wallet(chain, "upto-unapproved", 100_000)
    before = chain.balances(payer.address)[0]
    with Client(served.url, account=payer, cache_dir=tmp_path / "cache", devnet=True, scheme="upto") as sdk, \
            pytest.raises(PaymentError) as refused:
        sdk.generate(model_id, "validators re-execute", max_tokens=8)
    assert refused.value.code == "payment_allowance_required" and "Permit2" in refused.value.message
    assert chain.balances(payer.address)[0] == before


def test_an_exact_only_client_still_pays_the_ceiling(chain: Chain, lm_node: tuple[Served, str],
                                                      tmp_path: Path) -> None:
    served, model_id = lm_node
    payer = funded_wallet(chain, "upto-exact-client", 100_000)
    before = chain.balances(payer.address)[0]
    with Client(served.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.generate(model_id, "validators re-execute", max_tokens=MAX_TOKENS)
    assert result.payment is not None and result.payment["scheme"] == "exact"
    assert before - chain.balances(payer.address)[0] == per_thousand(PER_1K, MAX_TOKENS)
