"""Attested generation paid over x402 on the devnet: the max_tokens cap is charged once (exact scheme), the
bundle carries payment and receipt, a replayed payment is refused, and a refused request charges nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from x402_helpers import Chain, Served, node_settings, requirements_of

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.sdk.client import Client
from proofmarket.systems.workspace import Workspace

PER_1K = 50_000  # 0.05 USDC per 1,000 output tokens
PAYER_INDEX, OWNER_INDEX = 4, 5


@pytest.fixture(scope="module")
def lm_node(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    home = tmp_path_factory.mktemp("x402-attested")
    settings = node_settings(home, home / "node.db", chain.rpc_url, chain.deployment_file)
    model_id, _ = Workspace(settings).compile_attested(build_tiny_lm(home / "tiny-llama"), max_tokens_cap=64)
    app = create_app(settings)
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    app.state.services.catalog.register(model_id, price_atomic=PER_1K, owner=owner)
    with Served(app) as served:
        yield served, model_id
    app.state.services.close()


@pytest.fixture(scope="module")
def payer() -> LocalAccount:
    return dev_account(PAYER_INDEX, DEVNET_CHAIN_ID)


def test_a_paid_generation_charges_the_cap_once_and_signs_a_receipt(chain: Chain, lm_node: tuple[Served, str],
                                                                    payer: LocalAccount, tmp_path: Path) -> None:
    served, model_id = lm_node
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    before = chain.balances(payer.address, owner)
    with Client(served.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.generate(model_id, "the market", max_tokens=40)
        assert result.payment is not None and result.receipt is not None
        assert int(result.payment["amount"]) == PER_1K * 40 // 1000 == 2_000
        assert any("within the cap" in c for c in result.checks)
        assert any("receipt signed by" in c for c in result.checks)
        assert sdk.verify(result.bundle).mode == "attested"
    after = chain.balances(payer.address, owner)
    assert (before[0] - after[0], after[1] - before[1]) == (2_000, 2_000)


def test_unpaid_and_replayed_calls_are_refused_without_a_second_charge(chain: Chain, lm_node: tuple[Served, str],
                                                                      payer: LocalAccount) -> None:
    from x402_helpers import signed_payload

    served, model_id = lm_node
    url = f"{served.url}/v1/models/{model_id}/generate"
    body = {"prompt": "the market", "max_tokens": 20}
    with httpx.Client(timeout=120) as http:
        unpaid = http.post(url, json=body)
        assert unpaid.status_code == 402 and unpaid.json()["error"]["code"] == "payment_required"
        requirements = requirements_of(unpaid.headers["PAYMENT-REQUIRED"])
        assert int(requirements.amount) == 1_000  # 20 tokens at 0.05 USDC per 1,000
        signature = signed_payload(payer, requirements)
        before = chain.balances(payer.address)[0]
        assert http.post(url, json=body, headers={"PAYMENT-SIGNATURE": signature}).status_code == 200
        replay = http.post(url, json=body, headers={"PAYMENT-SIGNATURE": signature})
        assert replay.status_code in (402, 409) and "replay" in replay.json()["error"]["code"]
        too_long = http.post(url, json={"prompt": "hi", "max_tokens": 65}, headers={"PAYMENT-SIGNATURE": signature})
        assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "max_tokens_over_cap"
        assert before - chain.balances(payer.address)[0] == 1_000


def test_a_refused_payment_is_a_payment_error_in_the_sdk(chain: Chain, lm_node: tuple[Served, str],
                                                         tmp_path: Path) -> None:
    from eth_account import Account

    from proofmarket.core.errors import PaymentError

    served, model_id = lm_node
    broke = Account.create()  # no USDC: the node refuses the signed payment with a 402
    with Client(served.url, account=broke, cache_dir=tmp_path / "cache", devnet=True) as sdk, \
            pytest.raises(PaymentError) as refused:
        sdk.generate(model_id, "the market", max_tokens=20)
    assert refused.value.code.startswith("payment_")


def test_a_paid_stream_delivers_tokens_only_after_settlement(chain: Chain, lm_node: tuple[Served, str],
                                                             payer: LocalAccount, tmp_path: Path) -> None:
    served, model_id = lm_node
    before = chain.balances(payer.address)[0]
    seen: list[str] = []
    with Client(served.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.generate(model_id, "the market", max_tokens=10, on_token=seen.append)
    assert len(seen) == 10 and result.payment is not None and result.receipt is not None
    assert before - chain.balances(payer.address)[0] == PER_1K * 10 // 1000
