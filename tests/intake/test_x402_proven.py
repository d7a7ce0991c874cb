"""x402 ``proven`` end to end on a devnet node: an agent with the official x402 client and the project's scheme
(``ProvenEvmScheme``, registered in the SDK's client like its own schemes) pays a proven call that the chain settles
only after verifying its proof (``InferenceMarket.fulfillAuthorized``); a proof the chain refuses costs the payer
nothing and leaves its authorization unused; a payment signed for another input is refused before anything is proven;
the SDK's ``Client(scheme="proven")`` pays and verifies the same way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from escrow_helpers import PRICE_UNITS as PRICE
from escrow_helpers import AppFactory, EscrowEnv, mlp_input, other_input
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from served import Served
from web3.logs import DISCARD
from x402 import x402ClientSync
from x402.http import decode_payment_required_header
from x402.http.clients import x402_requests

from proofmarket.payments.proven.client import ProvenEvmScheme
from proofmarket.sdk.client import Client

pytestmark = [pytest.mark.chain]


@pytest.fixture
def node(env: EscrowEnv, make_app: AppFactory) -> Iterator[Served]:
    env.market.setup_prover()  # fulfillAuthorized pays an authorised, staked prover only
    with Served(make_app(escrow_watcher="off", payments="on", infer_wait_s=300.0)) as served:
        yield served


def payer(env: EscrowEnv, name: str) -> LocalAccount:
    account: LocalAccount = Account.from_key(keccak(text=f"x402-proven-{name}"))
    env.market.usdc.mint(account.address, 10 * PRICE, env.market.accounts.admin)
    return account


def agent_session(env: EscrowEnv, account: LocalAccount, commitment: str) -> requests.Session:
    """The x402 SDK's client with the proven scheme alone, allowed the devnet's USDC."""
    client = x402ClientSync()
    network = f"eip155:{env.market.client.chain_id}"
    scheme = ProvenEvmScheme(account, lambda _requirements: commitment, market=env.market.market.address)
    client.register(network, scheme)  # type: ignore[arg-type]
    client.set_spend_controls({"allowed_assets": [{"network": network, "asset": env.market.usdc.address}]})
    return x402_requests(client)


def own_commitment(node: Served, model_id: str, inputs: dict[str, Any], cache: Path) -> str:
    """The agent's input commitment, computed from the model's public artifacts (the node's word is not taken)."""
    with Client(node.url, cache_dir=cache, devnet=True) as sdk:
        return str(sdk.input_commitment(model_id, inputs)["commitment"])


def test_the_terms_offer_proven_beside_exact_paid_to_the_market(env: EscrowEnv, node: Served) -> None:
    refused = requests.post(f"{node.url}/v1/models/{env.public}/infer", json=mlp_input(), timeout=60)
    assert refused.status_code == 402
    terms = decode_payment_required_header(refused.headers["PAYMENT-REQUIRED"])
    proven = next(a for a in terms.accepts if a.scheme == "proven")
    listing = requests.get(f"{node.url}/v1/models/{env.public}", timeout=30).json()["registry"]
    assert proven.pay_to.lower() == env.market.market.address.lower() and int(proven.amount) == PRICE
    assert (proven.extra or {})["modelId"] == listing["onchain_id"] and proven.extra["model"] == env.public
    assert proven.extra["prover"].lower() == env.market.accounts.prover.address.lower()
    assert any(a.scheme == "exact" for a in terms.accepts)


def test_an_agent_pays_a_proven_call_the_chain_settles_only_after_verifying_its_proof(
        env: EscrowEnv, node: Served, tmp_path: Path) -> None:
    market, usdc, accounts = env.market.market, env.market.usdc, env.market.accounts
    agent = payer(env, "agent")
    owner = accounts.owner.address
    before = (usdc.balance_of(agent.address), usdc.balance_of(market.address), market.earned(owner))
    session = agent_session(env, agent, own_commitment(node, env.public, mlp_input(), tmp_path / "c"))
    answer = session.post(f"{node.url}/v1/models/{env.public}/infer", json=mlp_input(), timeout=600)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    payment = body["payment"]
    assert payment["scheme"] == "proven" and payment["verified_on_chain"] is True
    assert payment["payer"] == agent.address and int(payment["amount"]) == PRICE
    # the chain verified the proof in the transaction that moved the money: its events, read from the chain
    receipt = env.market.client.w3.eth.get_transaction_receipt(payment["transaction"])
    authorized = market.contract.events.AuthorizedCall().process_receipt(receipt, errors=DISCARD)
    (fulfilled,) = [e.args for e in market.contract.events.RequestFulfilled().process_receipt(receipt, errors=DISCARD)]
    assert len(authorized) == 1 and authorized[0].args["consumer"] == agent.address
    assert "0x" + bytes(fulfilled["outputHash"]).hex() == body["bundle"]["output"]["hash"]
    after = (usdc.balance_of(agent.address), usdc.balance_of(market.address), market.earned(owner))
    assert after[0] == before[0] - PRICE and after[1] == before[1] + PRICE
    assert after[2] - before[2] == fulfilled["ownerAmount"] > 0
    with Client(node.url, cache_dir=tmp_path / "c", devnet=True) as sdk:  # the bundle, checked by the agent
        assert sdk.verify(body["bundle"]).output == body["output"]


def test_a_proof_the_chain_refuses_costs_the_payer_nothing(env: EscrowEnv, node: Served, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    usdc = env.market.usdc
    agent = payer(env, "refused")
    rail = next(r for r in node.app.state.services.rails.all() if r.name == "proven")
    send = rail.chain.fulfill
    sent: list[bytes] = []

    def tampered(payment: Any, model_id: bytes, model_cid: str, bundle: dict[str, Any]) -> str:
        """The node sends a proof the verifier rejects (one byte of it changed)."""
        sent.append(payment.nonce)
        proof = bytearray(bytes.fromhex(bundle["proof"]["hex"].removeprefix("0x")))
        proof[len(proof) // 2] ^= 0x01
        return send(payment, model_id, model_cid, {**bundle, "proof": {**bundle["proof"], "hex": "0x" + proof.hex()}})

    monkeypatch.setattr(rail.chain, "fulfill", tampered)
    before = (usdc.balance_of(agent.address), usdc.balance_of(env.market.market.address))
    session = agent_session(env, agent, own_commitment(node, env.public, mlp_input(), tmp_path / "c"))
    answer = session.post(f"{node.url}/v1/models/{env.public}/infer", json=mlp_input(), timeout=600)
    assert answer.status_code >= 400, answer.text
    assert "nothing was charged" in json.dumps(answer.json())
    assert (usdc.balance_of(agent.address), usdc.balance_of(env.market.market.address)) == before
    assert sent and not usdc.authorization_state(agent.address, sent[0])  # unused: it lapses at validBefore


def test_a_payment_signed_for_another_input_is_refused_before_proving(env: EscrowEnv, node: Served,
                                                                      tmp_path: Path) -> None:
    agent = payer(env, "other-input")
    before = env.market.usdc.balance_of(agent.address)
    session = agent_session(env, agent, own_commitment(node, env.public, other_input(), tmp_path / "c"))
    answer = session.post(f"{node.url}/v1/models/{env.public}/infer", json=mlp_input(), timeout=120)
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "payment_mismatch", answer.text
    assert "another input" in answer.json()["error"]["message"]
    assert env.market.usdc.balance_of(agent.address) == before


def test_the_sdk_client_pays_with_proven_and_verifies(env: EscrowEnv, node: Served, tmp_path: Path) -> None:
    agent = payer(env, "sdk")
    before = env.market.usdc.balance_of(agent.address)
    with Client(node.url, account=agent, scheme="proven", market=env.market.market.address, rpc_url=env.rpc_url,
                cache_dir=tmp_path / "c", devnet=True) as sdk:
        result = sdk.infer(env.public, mlp_input())
    assert result.payment is not None and result.payment["scheme"] == "proven"
    assert any("receipt" in c for c in result.checks)
    assert env.market.usdc.balance_of(agent.address) == before - PRICE


def test_the_escrow_watcher_leaves_a_proven_call_to_its_rail_and_books_it_once(env: EscrowEnv, node: Served,
                                                                                tmp_path: Path) -> None:
    """The market's RequestFulfilled of a proven call is the rail's capture: the escrow watcher does not book it a
    second time (the payer debited once), while it still books an escrow fulfilment."""
    from proofmarket.db import Database, EscrowRepo, ModelRepo
    from proofmarket.db.market_book import fulfilment_ref
    from proofmarket.intake.escrow import EscrowService
    from proofmarket.onchain import Market

    db = Database(f"sqlite:///{tmp_path}/watch.db")
    db.migrate()
    ModelRepo(db).upsert(env.public, name="mlp", price_atomic=PRICE)
    repo = EscrowRepo(db)
    watcher = EscrowService(Market.open(workspace=env.ws), repo, lambda: [env.public], confirmations=0)
    watcher.run_once()  # everything before this test
    agent = payer(env, "watched")
    session = agent_session(env, agent, own_commitment(node, env.public, mlp_input(), tmp_path / "c"))
    answer = session.post(f"{node.url}/v1/models/{env.public}/infer", json=mlp_input(), timeout=600)
    assert answer.status_code == 200, answer.text
    receipt = env.market.client.w3.eth.get_transaction_receipt(answer.json()["payment"]["transaction"])
    (made,) = env.market.market.contract.events.AuthorizedCall().process_receipt(receipt, errors=DISCARD)
    escrowed = env.market.request(env.public, other_input())  # and an escrowed call, fulfilled as ever
    env.market.fulfill(escrowed.request_id)
    watcher.run_once()
    book = repo.book
    chain_id, market = env.market.client.chain_id, env.market.market.address
    assert book.transfer(fulfilment_ref(chain_id, market, int(made.args["requestId"]))) is None
    assert book.transfer(fulfilment_ref(chain_id, market, escrowed.request_id)) is not None


def test_the_sdk_refuses_terms_naming_a_listing_whose_verifier_is_not_the_models_own(env: EscrowEnv, node: Served,
                                                                                     tmp_path: Path) -> None:
    """A node naming another listing of the model in the proven terms (a squatter's, whose verifier answers true to
    anything), or terms of another model: the payer's check on chain (its RPC, the trusted market's registry)
    refuses before anything is signed; the node's own honest listing passes."""
    refused = requests.post(f"{node.url}/v1/models/{env.public}/infer", json=mlp_input(), timeout=60)
    terms = next(a for a in decode_payment_required_header(refused.headers["PAYMENT-REQUIRED"]).accepts
                 if a.scheme == "proven")
    market = env.market.market.address
    snapshot = env.market.client.rpc("evm_snapshot", [])  # the squatter's listing is undone for the other tests
    try:
        _check_against_a_squatter(env, terms, market, tmp_path, node)
    finally:
        env.market.client.rpc("evm_revert", [snapshot])


def _check_against_a_squatter(env: EscrowEnv, terms: Any, market: str, tmp_path: Path, node: Served) -> None:
    from chain_helpers import mock_verifier_artifact

    from proofmarket.chain.commitments import model_id_for, model_key
    from proofmarket.core.errors import RegistryMismatch
    from proofmarket.sdk.proven_check import check_proven_terms

    squatter = payer(env, "squatter")
    env.market.client.rpc("anvil_setBalance", [squatter.address, hex(10 ** 20)])
    fake, _ = env.market.client.deploy(mock_verifier_artifact(), squatter)
    honest = env.market.registry.get_model(bytes.fromhex(terms.extra["modelId"][2:])).spec
    env.market.registry.register(model_key(env.public), dataclasses.replace(honest, verifier=fake), squatter)
    squatted = "0x" + model_id_for(squatter.address, env.public).hex()
    with Client(node.url, cache_dir=tmp_path / "c", devnet=True) as sdk:
        assert check_proven_terms(sdk, env.public, terms, market, env.rpc_url) == terms.extra["modelId"]
        with pytest.raises(RegistryMismatch, match="not the one compiled from its manifest"):
            check_proven_terms(sdk, env.public, terms.model_copy(update={"extra": {**terms.extra,
                                                                                   "modelId": squatted}}),
                               market, env.rpc_url)
        with pytest.raises(RegistryMismatch, match="terms are for model"):
            check_proven_terms(sdk, env.hashed, terms, market, env.rpc_url)
