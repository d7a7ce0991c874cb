"""Consumer contracts receive verified outputs in a callback (contracts/InferenceConsumer.sol), with real proofs on
anvil: the example RiskGate decides on the proven score; a consumer whose callback reverts, burns its gas or
re-enters the market never blocks the payment, and a failed callback is delivered again; a prover cannot starve a
callback of its gas; an unanswered request gives the consumer back its price and tip."""

from __future__ import annotations

from typing import Any

import pytest
from market_helpers import (
    OWNER_SHARE_BPS,
    Listed,
    Proofs,
    commitment_of,
    consumer_contract,
    mlp_input,
    request_with_callback,
)
from py_ecc.bn128 import curve_order as FIELD  # BN254's scalar field, EZKL's: from the curve library, not our code

from proofmarket.chain import RequestStatus
from proofmarket.core.errors import ChainError
from proofmarket.onchain import Market

pytestmark = [pytest.mark.slow, pytest.mark.chain]
GAS, TIP = 200_000, 50_000  # the callback's gas, and the prover's tip for it (0.05 USDC)


def _request(market: Market, consumer: Any, model_id: str, *, gas: int = GAS, tip: int = TIP) -> int:
    return request_with_callback(market, consumer, model_id, mlp_input(), gas=gas, tip=tip)


def _ask(market: Market, gate: Any, model_id: str, ttl_s: int) -> tuple[int, int]:
    """RiskGate asks for the owner's score on the sample input: (request id, the listing's price)."""
    key = market.onchain_id(model_id)
    price = market.registry.get_model(key).spec.price
    tx = market.client.transact(gate.functions.requestScore(
        market.accounts.owner.address, key, commitment_of(market, model_id, mlp_input()),
        market.client.timestamp() + ttl_s, price, GAS, TIP), market.accounts.consumer)
    return int(market.market.decode_events(tx, "RequestCreated")[0]["requestId"]), price


def _signed(felt: int) -> int:
    return felt - FIELD if felt > FIELD // 2 else felt


@pytest.mark.parametrize("value", [-0.32, -1.0, -1e-3, 0.0, 0.5, 3.25, -40.0])
def test_the_consumer_base_decodes_what_ezkl_encodes_negative_values_included(market: Market, value: float) -> None:
    """``InferenceConsumer._signed`` gives back the fixed-point integer EZKL encoded (its own ``float_to_felt``):
    a negative output -v is the field's modulus minus v, and the base must use BN254's modulus to see it."""
    import ezkl

    consumer = consumer_contract(market, "TestConsumer", 0)
    felt = int.from_bytes(bytes.fromhex(ezkl.float_to_felt(value, 10)), "little")  # EZKL's encoding, 2^10 scale
    assert consumer.functions.signedOf(felt).call() == round(value * 2**10)


def test_a_consumer_contract_acts_on_the_verified_score(market: Market, models: Listed, proofs: Proofs) -> None:
    gate = consumer_contract(market, "RiskGate", 0, 0)  # approves a score of at most 0, reads output 0
    before = market.usdc.balance_of(gate.address)
    rid, price = _ask(market, gate, models.public, 600)
    assert market.market.callback_of(rid).gas == GAS and market.usdc.balance_of(gate.address) == before - price - TIP

    settled = market.submit_proof(rid, proofs.mlp)
    assert settled.valid and settled.callback_ok is True
    score = _signed(settled.outputs[0])
    applicant, decided, approved, stored = gate.functions.applications(rid).call()
    assert decided and stored == score and approved is (score <= 0) and applicant == market.accounts.owner.address
    # the prover took its share and the whole tip; the owner and the platform their shares of the price alone
    fee = price * market.market.params().platform_fee_bps // 10_000
    assert settled.owner_amount == price * OWNER_SHARE_BPS // 10_000 and settled.platform_fee == fee
    assert settled.prover_amount == price - fee - settled.owner_amount + TIP
    # only the market calls the callback
    with pytest.raises(Exception, match="NotTheMarket"):
        market.client.transact(gate.functions.onInferenceResult(rid, market.onchain_id(models.public), [0, 0, 0]),
                               market.accounts.consumer)


@pytest.mark.parametrize("mode", [1, 2], ids=["reverts", "burns-its-gas"])
def test_a_failing_callback_never_blocks_the_payment_and_is_delivered_again(
        market: Market, models: Listed, proofs: Proofs, mode: int) -> None:
    consumer = consumer_contract(market, "TestConsumer", mode)
    rid = _request(market, consumer, models.public)
    settled = market.submit_proof(rid, proofs.mlp)
    assert settled.valid and settled.callback_ok is False  # paid, the failure recorded
    assert market.market.get_request(rid).status is RequestStatus.FULFILLED
    assert market.market.callback_of(rid).owed and settled.tx.gas_used < 1_500_000  # the burner had GAS only
    assert market.market.earned(market.accounts.prover.address) >= settled.prover_amount

    stranger = market.accounts.owner  # anyone may deliver it again, with the outputs the market recorded
    with pytest.raises(ChainError, match="OutputsMismatch"):
        market.market.retry_callback(rid, [v + 1 for v in settled.outputs], stranger)
    with pytest.raises(ChainError):  # the consumer still fails: the retry reverts and stays owed
        market.market.retry_callback(rid, settled.outputs, stranger)
    assert market.market.callback_of(rid).owed
    market.client.transact(consumer.functions.setMode(0), market.accounts.consumer)
    market.market.retry_callback(rid, settled.outputs, stranger)
    assert consumer.functions.received().call() == 1 and consumer.functions.lastOutputs().call() == settled.outputs
    assert not market.market.callback_of(rid).owed
    with pytest.raises(ChainError, match="NoCallbackOwed"):
        market.market.retry_callback(rid, settled.outputs, stranger)


def test_a_callback_cannot_reenter_the_market(market: Market, models: Listed, proofs: Proofs) -> None:
    consumer = consumer_contract(market, "TestConsumer", 3)  # tries refund and retryCallback from inside its callback
    rid = _request(market, consumer, models.public)
    settled = market.submit_proof(rid, proofs.mlp)
    assert settled.callback_ok is True and consumer.functions.reentryRefused().call()
    assert market.market.get_request(rid).status is RequestStatus.FULFILLED


def test_a_prover_cannot_starve_the_callback_of_its_gas(market: Market, models: Listed, proofs: Proofs) -> None:
    consumer = consumer_contract(market, "TestConsumer", 0)
    rid = _request(market, consumer, models.public, gas=1_000_000)
    request = market.market.get_request(rid)
    market.claim(request, check=False)
    assert request.terms is not None
    proof = market.chain_proof(models.public, request.terms.verifier, bytes.fromhex(proofs.mlp.proof.hex[2:]))
    instances = [int(v, 16) for v in proofs.mlp.proof.instances]
    # enough for the proof's verification, not for the callback's million: the fulfilment reverts, nobody is paid
    with pytest.raises(ChainError):
        market.market.fulfill(rid, proof, instances, market.accounts.prover, gas=900_000)
    assert market.market.get_request(rid).status is RequestStatus.ACCEPTED
    settled = market.market.fulfill(rid, proof, instances, market.accounts.prover)
    assert settled.valid and settled.callback_ok is True and consumer.functions.received().call() == 1


def test_callback_terms_are_bounded_and_an_unanswered_request_refunds_the_tip(market: Market, models: Listed) -> None:
    consumer = consumer_contract(market, "TestConsumer", 0)
    for bad in (0, 2_000_001):
        with pytest.raises(ChainError, match="BadCallbackGas"):
            _request(market, consumer, models.public, gas=bad)
    before = market.usdc.balance_of(consumer.address)
    rid = _request(market, consumer, models.public)
    assert market.market.get_request(rid).amount == market.registry.get_model(
        market.onchain_id(models.public)).spec.price + TIP
    market.client.rpc("evm_increaseTime", [601])
    market.client.rpc("evm_mine", [])
    # the consumer contract takes its escrow back (the test consumer has no refund function: the market's own
    # consumer check refuses anyone else)
    with pytest.raises(ChainError, match="is not the consumer"):
        market.market.refund(rid, market.accounts.consumer)
    gate = consumer_contract(market, "RiskGate", 0, 0)
    gate_rid, price = _ask(market, gate, models.public, 120)
    funded = market.usdc.balance_of(gate.address)
    market.client.rpc("evm_increaseTime", [121])
    market.client.rpc("evm_mine", [])
    market.client.transact(gate.functions.refund(gate_rid), market.accounts.consumer)
    assert market.usdc.balance_of(gate.address) == funded + price + TIP
    assert market.usdc.balance_of(consumer.address) == before - price - TIP  # still escrowed: only it may refund


def test_a_dapp_computes_the_input_commitment_with_the_sdk_alone(market_workspace: Any, models: Listed,
                                                                  proofs: Proofs, tmp_path: Any) -> None:
    """Issue 71: the commitment a dApp escrows, from ``Client.input_commitment`` with nothing but artifacts fetched
    by CID (here a cache holding them; no home, no node key): the one the proof's instances carry, for a public
    input and for a hashed input with its salt; another input commits to another value."""
    import shutil

    from market_helpers import SALT

    from proofmarket import Client

    cache = tmp_path / "cache"
    shutil.copytree(market_workspace.settings.store_dir, cache)
    with Client("http://127.0.0.1:9", devnet=True, cache_dir=cache) as sdk:
        public = sdk.input_commitment(models.public, mlp_input())
        hashed = sdk.input_commitment(models.hashed, mlp_input(), salt=SALT)
        other = sdk.input_commitment(models.public, {"input_data": [[0.5] * 8]})
    assert public["commitment"] == proofs.mlp.input.commitment
    assert hashed["commitment"] == proofs.hashed.input.commitment
    assert other["commitment"] != public["commitment"]
    import json

    from typer.testing import CliRunner

    from proofmarket.cli.main import app as cli

    doc = tmp_path / "input.json"
    doc.write_text(json.dumps(mlp_input()))
    home = ["--home", str(market_workspace.settings.home)]
    printed = CliRunner().invoke(cli, ["commitment", models.hashed, "--input", str(doc), "--salt",
                                       ",".join(map(str, SALT)), "--json", *home])
    assert printed.exit_code == 0 and json.loads(printed.stdout)["commitment"] == hashed["commitment"]
    from proofmarket.store import cid_for_bytes

    missing = CliRunner().invoke(cli, ["commitment", cid_for_bytes(b"no such model"), "--input", str(doc), *home])
    assert missing.exit_code != 0 and "pass --node" in missing.output


FOREIGN_CONSUMER = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {InferenceConsumer, IInferenceMarketCallbacks} from "proofmarket/InferenceConsumer.sol";

/// A dApp's own consumer, written against the shipped base only (not one of this repository's contracts).
contract ScoreBoard is InferenceConsumer {
    mapping(uint256 => int256[]) private results;

    constructor(IInferenceMarketCallbacks market_) InferenceConsumer(market_) {}

    function ask(bytes32 modelId, bytes32 commitment, uint64 deadline, uint96 price, uint24 gas, uint96 tip)
        external returns (uint256) {
        return _requestInference(modelId, commitment, deadline, price, gas, tip);
    }

    function _onResult(uint256 requestId, bytes32, uint256[] calldata outputs) internal override {
        for (uint256 i = 0; i < outputs.length; i++) results[requestId].push(_signed(outputs[i]));
    }

    function resultOf(uint256 requestId) external view returns (int256[] memory) { return results[requestId]; }

    function decode(uint256 felt) external pure returns (int256) { return _signed(felt); }
}
"""


def test_a_dapps_own_consumer_built_on_the_shipped_base_receives_the_bundles_values(
        market: Market, models: Listed, proofs: Proofs, tmp_path: Any) -> None:
    """The guide's steps, as a Solidity developer outside this repository takes them (issue 71): the base comes from
    the installed package (``proofmarket chain solidity``: its folder and remapping), OpenZeppelin from npm; the
    dApp's contract, compiled with solcjs against them, gets each output of a real proof as the signed fixed-point
    value the bundle holds (decoded here with the curve library's modulus), and decodes zero and negatives alike."""
    import ezkl
    from dapp_build import build_dapp_contract, shipped_folder

    folder = shipped_folder()
    assert folder["remapping"] == f"proofmarket/={folder['path']}/" and "InferenceConsumer.sol" in folder["files"]
    art = build_dapp_contract(tmp_path, "ScoreBoard", FOREIGN_CONSUMER)
    address, _ = market.client.deploy(art, market.accounts.consumer, market.market.address)
    market.usdc.mint(address, 10 * 10**6, market.accounts.admin)
    board = market.client.contract(address, art.abi)

    for value in (-0.32, 0.0, 2.5):  # both sides of zero, and zero, as EZKL encodes them
        felt = int.from_bytes(bytes.fromhex(ezkl.float_to_felt(value, 10)), "little")
        assert board.functions.decode(felt).call() == round(value * 2**10)
    key = market.onchain_id(models.public)
    price = market.registry.get_model(key).spec.price
    tx = market.client.transact(board.functions.ask(key, commitment_of(market, models.public, mlp_input()),
                                                    market.client.timestamp() + 600, price, GAS, TIP),
                                market.accounts.consumer)
    rid = int(market.market.decode_events(tx, "RequestCreated")[0]["requestId"])
    settled = market.submit_proof(rid, proofs.mlp)
    assert settled.valid and settled.callback_ok is True
    assert board.functions.resultOf(rid).call() == [_signed(felt) for felt in settled.outputs]


def test_risk_gate_decides_on_both_sides_of_its_threshold(market: Market, models: Listed, proofs: Proofs) -> None:
    """The same proven score against a threshold just below it (refused) and at it (approved): a decoding with the
    wrong modulus (a negative score read as a huge positive one) fails one side whatever the score's sign."""
    first = consumer_contract(market, "RiskGate", 0, 0)  # learn the proven score once
    rid, _ = _ask(market, first, models.public, 600)
    score = _signed(market.submit_proof(rid, proofs.mlp).outputs[0])
    for threshold, approved in ((score - 1, False), (score, True)):
        gate = consumer_contract(market, "RiskGate", threshold, 0)
        asked, _ = _ask(market, gate, models.public, 600)
        assert market.submit_proof(asked, proofs.mlp).callback_ok is True
        assert gate.functions.applications(asked).call()[1:3] == [True, approved]
