"""A sliced model's escrow request served by a node on anvil: the request on chain, the input over HTTP, the call
proven by the node's engine on the sliced system (every slice) and fulfilled on chain once by the call settler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from escrow_helpers import OWNER_SHARE_BPS, PRICE, PRICE_UNITS, AppFactory, EscrowEnv, mlp_input, wait_status
from fastapi.testclient import TestClient
from served import Served

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.sliced_verifier import SLICED_VERIFIER
from proofmarket.chain.types import RequestStatus
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.ids import SLICED_SYSTEM

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture(scope="module")
def sliced_id(env: EscrowEnv) -> str:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    model_id = str(env.ws.compile_sliced(sample_path("mlp"), samples, 2, profile=PrivacyProfile(),
                                         candidates=[Candidate(256, 2, 7, 1)]).model_id)
    env.market.register_model(model_id, PRICE, OWNER_SHARE_BPS)
    return model_id


def test_a_sliced_models_escrow_request_is_proven_by_the_node_and_fulfilled_once(env: EscrowEnv, sliced_id: str,
                                                                                 make_app: AppFactory) -> None:
    receipt = env.market.request(sliced_id, mlp_input())
    app = make_app()
    app.state.services.catalog.register(sliced_id, price_atomic=2_500_000)
    with TestClient(app) as client:
        wait_status(client, receipt.request_id, ("seen",), timeout_s=30)
        posted = client.post(f"/v1/requests/{receipt.request_id}/input", json={"input": mlp_input()})
        assert posted.status_code == 202, posted.text
        done = wait_status(client, receipt.request_id, ("fulfilled", "failed"))
        bundle = client.get(f"/v1/proofs/{done['bundle_cid']}",
                            headers={"X-Job-Token": posted.json()["access_token"]}).json()
    assert done["status"] == "fulfilled", done
    assert bundle["kind"] == "proofmarket/sliced-bundle" and len(bundle["slices"]) == 2
    onchain = env.market.market.get_request(receipt.request_id)
    assert onchain.status is RequestStatus.FULFILLED
    assert onchain.output_hash == bytes.fromhex(bundle["output"]["hash"][2:])  # the last slice's output
    jobs = [j for j in app.state.services.calls.repo.recent(50) if j.bundle_cid == done["bundle_cid"]]
    assert jobs and jobs[0].system == SLICED_SYSTEM and jobs[0].rail == "escrow" and jobs[0].status == "settled"


def test_a_sliced_models_proven_x402_call_over_one_transactions_gas_is_settled_in_a_sequence(
        env: EscrowEnv, sliced_id: str, make_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """x402 ``proven`` on a sliced model, on a chain whose per-transaction gas is under the call's whole
    verification: the node records the slices on its SlicedVerifier, then ``fulfillAuthorized`` names them; the
    payer is charged once, after the chain verified every slice and link."""
    import dataclasses

    from eth_account import Account
    from eth_utils.crypto import keccak

    from proofmarket.chain import client as client_module
    from proofmarket.chain import sliced_verifier
    from proofmarket.sdk.client import Client

    verifier = env.market.registry.get_model(env.market.onchain_id(sliced_id)).spec.verifier
    bundle, _ = env.ws.prove_sliced(sliced_id, mlp_input())
    whole, gas = sliced_verifier.check(env.market.client, verifier, bundle.to_doc())
    assert whole
    real = client_module.profile_for
    monkeypatch.setattr(client_module, "profile_for",
                        lambda chain_id: dataclasses.replace(real(chain_id), max_tx_gas=int(gas * 0.9)))
    env.market.setup_prover()  # fulfillAuthorized pays an authorised, staked prover only
    agent = Account.from_key(keccak(text="x402-proven-sliced"))
    env.market.usdc.mint(agent.address, 10 * PRICE_UNITS, env.market.accounts.admin)
    before = env.market.usdc.balance_of(agent.address)
    app = make_app(escrow_watcher="off", payments="on", infer_wait_s=300.0)
    app.state.services.catalog.register(sliced_id, price_atomic=PRICE_UNITS)
    with Served(app) as node, Client(node.url, account=agent, scheme="proven", market=env.market.market.address,
                                     rpc_url=env.rpc_url, cache_dir=tmp_path / "c", devnet=True) as sdk:
        result = sdk.infer(sliced_id, mlp_input())
    assert result.payment is not None and result.payment["scheme"] == "proven"
    assert result.payment["verified_on_chain"] is True
    assert env.market.usdc.balance_of(agent.address) == before - PRICE_UNITS
    receipt = env.market.client.w3.eth.get_transaction_receipt(result.payment["transaction"])
    assert receipt["gasUsed"] < gas  # the settlement named recorded slices: their proofs were checked before
    contract = env.market.client.w3.eth.contract(address=verifier, abi=load_artifact(SLICED_VERIFIER).abi)
    assert sorted(int(e["args"]["slice"]) for e in contract.events.SliceRecorded().get_logs(from_block=0)) == [0, 1]
