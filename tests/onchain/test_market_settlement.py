"""The escrow with real proofs on anvil: exact splits, tampered proofs, proofs for another input or
model, a second fulfilment, refunds, pause, prover authorisation and the fee bound."""

from __future__ import annotations

import json
import stat

import pytest
from market_helpers import OWNER_SHARE_BPS, PRICE_UNITS, SALT, Balances, Listed, Proofs, flip_byte, mlp_input

from proofmarket.chain import RequestStatus, advance_time, dev_account, instances_hash
from proofmarket.core.errors import ChainError, ContractReverted
from proofmarket.onchain import Market
from proofmarket.systems.ezkl.profile import SALT_ELEMENTS

pytestmark = [pytest.mark.slow, pytest.mark.chain]

FEE_BPS = 250


def expected_splits(price: int = PRICE_UNITS, fee_bps: int = FEE_BPS) -> tuple[int, int, int]:
    fee = price * fee_bps // 10_000
    owner = price * OWNER_SHARE_BPS // 10_000
    return owner, price - fee - owner, fee


@pytest.mark.parametrize("profile", ["public", "hashed"])
def test_valid_proof_pays_the_exact_splits(market: Market, models: Listed, profile: str) -> None:
    model_id = getattr(models, profile)
    balances = Balances(market)
    platform_before = market.market.platform_balance()
    accounts = [market.accounts.owner.address, market.accounts.prover.address]
    owed_before = [market.market.owed(a) for a in accounts]
    fulfilled_before = market.market.get_prover(market.accounts.prover.address).fulfilled

    # Given a request escrowing the price for the sample input
    receipt = market.request(model_id, mlp_input(), salt=SALT if profile == "hashed" else None)
    assert balances.delta()["consumer"] == -PRICE_UNITS and balances.delta()["escrow"] == PRICE_UNITS

    # When the prover proves the stored input and fulfils
    result = market.fulfill(receipt.request_id)

    # Then owner 70%, platform 2.5% and the prover the rest are paid, to the unit
    owner, prover, fee = expected_splits()
    s = result.settlement
    assert s.valid and (s.owner_amount, s.prover_amount, s.platform_fee) == (owner, prover, fee)
    # credited on chain (the fulfilment sends no USDC), then paid out by one withdrawMany
    assert balances.delta() == {"consumer": -PRICE_UNITS, "owner": 0, "prover": 0, "escrow": PRICE_UNITS}
    assert [market.market.owed(a) - b for a, b in zip(accounts, owed_before, strict=True)] == [owner, prover]
    paid = market.withdraw(accounts).paid
    assert paid == {accounts[0]: owed_before[0] + owner, accounts[1]: owed_before[1] + prover}
    assert balances.delta() == {"consumer": -PRICE_UNITS, "owner": paid[accounts[0]], "prover": paid[accounts[1]],
                                "escrow": PRICE_UNITS - paid[accounts[0]] - paid[accounts[1]]}
    assert market.market.platform_balance() == platform_before + fee
    # and the output is recorded on chain, the prover's reputation goes up
    bundle = market.workspace.store.get_json(result.bundle_cid)
    assert bundle["input"]["commitment"] == receipt.commitment
    assert s.output_hash == bytes.fromhex(bundle["output"]["hash"][2:]) == instances_hash(s.outputs)
    request = market.market.get_request(receipt.request_id)
    assert request.status is RequestStatus.FULFILLED and request.output_hash == s.output_hash
    assert market.market.get_prover(market.accounts.prover.address).fulfilled == fulfilled_before + 1
    assert result.output == bundle["output"]["values"]


def test_hashed_input_request_stores_input_and_salt_for_the_prover_only(market: Market, models: Listed) -> None:
    receipt = market.request(models.hashed, mlp_input())  # salt drawn by the service
    path = market.home.request_file(market.client.chain_id, receipt.request_id)
    record = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert record["salt"] == receipt.salt and len(receipt.salt or []) == SALT_ELEMENTS
    assert record["inputs"] == mlp_input()
    assert market.market.get_request(receipt.request_id).input_commitment.hex() == receipt.commitment[2:]


@pytest.mark.parametrize("position", [100, -100], ids=["commitment-byte", "evaluation-byte"])
def test_tampered_proof_refunds_in_full_slashes_and_lowers_reputation(
    market: Market, models: Listed, proofs: Proofs, position: int
) -> None:
    prover = market.accounts.prover.address
    balances = Balances(market)
    stake_before = market.market.get_prover(prover).stake
    platform_before = market.market.platform_balance()
    receipt = market.request(models.public, mlp_input())

    settlement = market.submit_proof(receipt.request_id, flip_byte(proofs.mlp, position))

    # the claim locked the bond out of the stake; the slash share is of what stays staked, and the bond is
    # forfeited on top: both go to the platform
    bond = market.market.params().claim_bond
    slashed = (stake_before - bond) * market.market.slash_bps() // 10_000
    assert settlement.status is RequestStatus.REJECTED and not settlement.valid
    assert (settlement.refunded, settlement.slashed) == (PRICE_UNITS, slashed)
    assert balances.delta() == {"consumer": 0, "owner": 0, "prover": 0, "escrow": 0}  # nothing released
    after = market.market.get_prover(prover)
    assert after.stake == stake_before - bond - slashed and after.failed == 1 and after.fulfilled == 0
    assert market.market.platform_balance() == platform_before + slashed + bond
    assert market.market.get_request(receipt.request_id).status is RequestStatus.REJECTED


def test_proof_for_another_input_is_refused(market: Market, models: Listed, proofs: Proofs) -> None:
    receipt = market.request(models.public, mlp_input())
    balances = Balances(market)

    with pytest.raises(ContractReverted, match="another input") as info:
        market.submit_proof(receipt.request_id, proofs.other_input)

    assert info.value.details["error"] == "InputCommitmentMismatch"
    # refused, not slashed: the request stays claimed by the prover
    assert market.market.get_request(receipt.request_id).status is RequestStatus.ACCEPTED
    assert market.market.get_prover(market.accounts.prover.address).failed == 0
    assert balances.delta() == {"consumer": 0, "owner": 0, "prover": 0, "escrow": 0}
    # the request stays open for the right proof
    assert market.submit_proof(receipt.request_id, proofs.mlp).valid


def test_proof_of_the_same_input_by_another_model_never_pays(market: Market, models: Listed, proofs: Proofs) -> None:
    """Fixed weights: the model's own verifier is its identity. Another circuit's proof of the very same
    input matches the commitment but fails the verifier: the consumer is refunded, the prover slashed."""
    receipt = market.request(models.public, mlp_input())
    assert proofs.other_model.input.commitment == receipt.commitment
    assert proofs.other_model.model.vk_digest != proofs.mlp.model.vk_digest
    balances = Balances(market)

    settlement = market.submit_proof(receipt.request_id, proofs.other_model)

    assert settlement.status is RequestStatus.REJECTED and settlement.refunded == PRICE_UNITS
    assert balances.delta()["consumer"] == PRICE_UNITS and balances.delta()["owner"] == 0


def test_proof_from_another_privacy_profile_is_refused(market: Market, models: Listed, proofs: Proofs) -> None:
    public = market.request(models.public, mlp_input())
    hashed = market.request(models.hashed, mlp_input(), salt=SALT)
    assert proofs.hashed.input.commitment == hashed.commitment

    with pytest.raises(ContractReverted) as info:
        market.submit_proof(public.request_id, proofs.hashed)
    assert info.value.details["error"] in ("InstanceCountMismatch", "InputCommitmentMismatch")
    with pytest.raises(ContractReverted, match="another input|public instances"):
        market.submit_proof(hashed.request_id, proofs.mlp)
    assert market.submit_proof(hashed.request_id, proofs.hashed).valid


def test_second_fulfil_is_refused(market: Market, models: Listed, proofs: Proofs) -> None:
    receipt = market.request(models.public, mlp_input())
    assert market.submit_proof(receipt.request_id, proofs.mlp).valid

    with pytest.raises(ContractReverted, match="already settled"):
        market.submit_proof(receipt.request_id, proofs.mlp)
    with pytest.raises(ChainError, match="already settled"):  # the service checks before proving
        market.fulfill(receipt.request_id)


def test_refund_only_after_the_deadline_and_in_full(market: Market, models: Listed) -> None:
    balances = Balances(market)
    receipt = market.request(models.public, mlp_input(), ttl_s=600)
    with pytest.raises(ContractReverted, match="only after its deadline"):
        market.refund(receipt.request_id)

    advance_time(market.client, 601)
    with pytest.raises(ChainError, match="expired"):
        market.fulfill(receipt.request_id)
    refund = market.refund(receipt.request_id)

    assert refund.amount == PRICE_UNITS
    assert balances.delta() == {"consumer": 0, "owner": 0, "prover": 0, "escrow": 0}
    assert market.market.get_request(receipt.request_id).status is RequestStatus.REFUNDED
    record = market.home.request(market.client.chain_id, receipt.request_id)
    assert record.settlement is not None and record.settlement["status"] == "REFUNDED"


def test_paused_market_refuses_new_requests(market: Market, models: Listed) -> None:
    market.market.pause(market.accounts.admin)
    with pytest.raises(ContractReverted, match="paused"):
        market.request(models.public, mlp_input())
    market.market.unpause(market.accounts.admin)
    assert market.request(models.public, mlp_input()).request_id >= 1


def test_only_authorised_staked_provers_fulfil(market: Market, models: Listed, proofs: Proofs) -> None:
    receipt = market.request(models.public, mlp_input())
    chain_id = market.client.chain_id
    stranger = market.with_accounts(prover=dev_account(6, chain_id))
    with pytest.raises(ChainError, match="not an authorised prover"):  # refused before proving
        stranger.fulfill(receipt.request_id)
    with pytest.raises(ContractReverted, match="not an authorised prover"):
        stranger.submit_proof(receipt.request_id, proofs.mlp)

    unstaked = dev_account(5, chain_id)
    market.market.set_prover_authorized(unstaked.address, True, market.accounts.admin)
    with pytest.raises(ContractReverted, match="below the minimum"):
        market.with_accounts(prover=unstaked).submit_proof(receipt.request_id, proofs.mlp)
    assert market.market.get_request(receipt.request_id).status is RequestStatus.OPEN


def test_platform_fee_is_bounded_and_applies_to_new_requests(market: Market, models: Listed, proofs: Proofs) -> None:
    with pytest.raises(ContractReverted, match="above the maximum of 1000 bps"):
        market.change_params(platform_fee_bps=1_001)
    with pytest.raises(ContractReverted, match="not the contract owner"):
        market.with_accounts(admin=market.accounts.consumer).change_params(platform_fee_bps=500)
    market.change_params(platform_fee_bps=1_000)
    receipt = market.request(models.public, mlp_input())

    settlement = market.submit_proof(receipt.request_id, proofs.mlp)

    assert (settlement.owner_amount, settlement.prover_amount, settlement.platform_fee) == expected_splits(
        fee_bps=1_000)


def test_eip3009_request_escrows_without_an_allowance(market: Market, models: Listed, proofs: Proofs) -> None:
    consumer = market.accounts.consumer.address
    market.usdc.approve(market.market.address, 0, market.accounts.consumer)
    balances = Balances(market)

    receipt = market.request(models.public, mlp_input(), payment="eip3009")

    assert receipt.approve_tx is None and market.usdc.allowance(consumer, market.market.address) == 0
    assert balances.delta()["consumer"] == -PRICE_UNITS
    assert market.submit_proof(receipt.request_id, proofs.mlp).valid


def test_register_again_reuses_the_verifier_and_updates_the_price(market: Market, models: Listed) -> None:
    assert market.deploy_verifier(models.public).reused
    again = market.register_model(models.public, "2.5", OWNER_SHARE_BPS)
    assert again.action == "unchanged" and again.tx is None
    cheaper = market.register_model(models.public, "0.000001")
    assert cheaper.action == "price updated" and cheaper.spec.price == 1
    assert market.request(models.public, mlp_input()).amount == 1
