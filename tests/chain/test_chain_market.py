"""InferenceMarket escrow: settlement, refunds, slashing, reputation, admin bounds (MockVerifier)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from chain_helpers import PRICE, USDC, Chain, Listed, deploy_mock_verifier, list_model, set_verifier_mode, stake_prover

from proofmarket.chain import ProofMode, RequestStatus, advance_time, input_commitment, instances_hash
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain

INPUT = [11, 22, 33]
OUTPUT = [101, 202]
VALID = b"\x01" + b"\x00" * 31  # MockVerifier accepts a proof starting with 0x01
INVALID = b"\x02" + b"\x00" * 31


def open_request(chain: Chain, model: Listed, input_felts: list[int] = INPUT, ttl: int = 3600) -> int:
    deadline = chain.client.timestamp() + ttl
    return chain.market.request_inference(
        model.key, input_commitment(input_felts), deadline, chain.accounts.consumer
    ).request_id


def fulfil(chain: Chain, request_id: int, proof: bytes, instances: list[int], prover: object = None,
           **kwargs: object):  # type: ignore[no-untyped-def]
    """Claim first (only the claimer may fulfil), then fulfil."""
    prover = prover or chain.accounts.prover
    chain.market.accept_request(request_id, prover)  # type: ignore[arg-type]
    return chain.market.fulfill(request_id, proof, instances, prover, **kwargs)  # type: ignore[arg-type]


def test_valid_proof_pays_exact_splits(chain: Chain, model: Listed) -> None:
    a, usdc, market = chain.accounts, chain.usdc, chain.market
    parties = [a.consumer.address, a.owner.address, a.prover.address, market.address]
    before = {p: usdc.balance_of(p) for p in parties}
    platform_before = market.platform_balance()

    # Given a request escrowing the price
    request_id = open_request(chain, model)
    assert usdc.balance_of(a.consumer.address) == before[a.consumer.address] - PRICE

    # When the prover fulfils it with a valid proof
    settlement = fulfil(chain, request_id, VALID, INPUT + OUTPUT)

    # Then owner 70%, platform 2.5%, prover the rest, to the unit
    fee = PRICE * 250 // 10_000
    owner_amount = PRICE * 7_000 // 10_000
    prover_amount = PRICE - fee - owner_amount
    assert (settlement.owner_amount, settlement.platform_fee, settlement.prover_amount) == (
        owner_amount,
        fee,
        prover_amount,
    )
    # credited on chain, not transferred (the fulfilment sends no USDC: withdraw pays the shares out)
    owed_before = {p: market.owed(p) - amount for p, amount in
                   ((a.owner.address, owner_amount), (a.prover.address, prover_amount))}
    assert usdc.balance_of(a.owner.address) == before[a.owner.address]
    assert usdc.balance_of(a.prover.address) == before[a.prover.address]
    assert usdc.balance_of(a.consumer.address) == before[a.consumer.address] - PRICE
    assert usdc.balance_of(market.address) == before[market.address] + PRICE
    assert market.platform_balance() == platform_before + fee
    # anyone may pay them out, and the money goes to each account itself, once
    payout = market.withdraw([a.owner.address, a.prover.address], a.stranger)  # type: ignore[arg-type]
    assert payout.paid == {a.owner.address: owed_before[a.owner.address] + owner_amount,
                           a.prover.address: owed_before[a.prover.address] + prover_amount}
    assert usdc.balance_of(a.owner.address) == before[a.owner.address] + payout.paid[a.owner.address]
    assert usdc.balance_of(a.prover.address) == before[a.prover.address] + payout.paid[a.prover.address]
    assert market.owed(a.owner.address) == market.owed(a.prover.address) == 0
    assert market.withdraw([a.owner.address, a.prover.address], a.stranger).paid == {}  # type: ignore[arg-type]
    with pytest.raises(ContractReverted, match="above zero"):
        market._send("withdraw", a.stranger, a.owner.address)  # type: ignore[arg-type]
    # and the output is recorded, reputation up
    assert settlement.valid and settlement.outputs == OUTPUT
    assert settlement.output_hash == instances_hash(OUTPUT)
    request = market.get_request(request_id)
    assert request.status is RequestStatus.FULFILLED and request.output_hash == instances_hash(OUTPUT)
    assert request.prover == a.prover.address
    assert market.get_prover(a.prover.address).fulfilled == 1
    assert market.earned(a.owner.address) == owner_amount and market.earned(a.prover.address) == prover_amount


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["bad-proof", "returns-false", "reverts"])
def test_invalid_proof_refunds_slashes_and_lowers_reputation(chain: Chain, model: Listed, mode: int) -> None:
    a, usdc, market = chain.accounts, chain.usdc, chain.market
    if mode:
        set_verifier_mode(chain, model.verifier, mode)
    consumer_before = usdc.balance_of(a.consumer.address)
    stake_before = market.get_prover(a.prover.address).stake
    bond = market.params().claim_bond
    request_id = open_request(chain, model)

    settlement = fulfil(chain, request_id, INVALID if mode == 0 else VALID, INPUT + OUTPUT)

    slashed = (stake_before - bond) * market.slash_bps() // 10_000
    assert settlement.status is RequestStatus.REJECTED
    assert (settlement.refunded, settlement.slashed) == (PRICE, slashed)
    assert usdc.balance_of(a.consumer.address) == consumer_before
    prover = market.get_prover(a.prover.address)
    assert prover.stake == stake_before - bond - slashed and prover.failed == 1 and prover.fulfilled == 0
    assert market.platform_balance() == slashed + bond  # the claim bond is forfeited too
    assert market.get_request(request_id).status is RequestStatus.REJECTED


def test_slash_reaches_stake_queued_for_unstaking(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    stake_prover(chain, a.prover, amount=190 * USDC, authorize=False)
    staked = market.get_prover(a.prover.address).stake  # 300 USDC
    market.request_unstake(190 * USDC, a.prover)  # 110 active (still eligible), 190 queued
    change(chain, slash_bps=5_000)
    request_id = open_request(chain, model)

    settlement = fulfil(chain, request_id, INVALID, INPUT + OUTPUT)

    bond = market.params().claim_bond
    assert settlement.slashed == (staked - bond) // 2
    after = market.get_prover(a.prover.address)
    assert after.stake == 0 and after.pending_unstake == staked - bond - settlement.slashed  # the queue was reached
    assert market.platform_balance() == settlement.slashed + bond


def test_verifier_out_of_gas_reverts_instead_of_slashing(chain: Chain, model: Listed) -> None:
    set_verifier_mode(chain, model.verifier, 3)
    request_id = open_request(chain, model)
    with pytest.raises(ContractReverted, match="ran out of gas"):
        fulfil(chain, request_id, VALID, INPUT + OUTPUT, gas=400_000)
    assert chain.market.get_request(request_id).status is RequestStatus.ACCEPTED
    assert chain.market.get_prover(chain.accounts.prover.address).failed == 0


def test_proof_for_another_input_is_refused(chain: Chain, model: Listed) -> None:
    request_id = open_request(chain, model)
    with pytest.raises(ContractReverted, match="another input") as info:
        fulfil(chain, request_id, VALID, [11, 22, 34] + OUTPUT)
    assert info.value.details["error"] == "InputCommitmentMismatch"
    assert chain.market.get_request(request_id).status is RequestStatus.ACCEPTED
    assert chain.market.get_prover(chain.accounts.prover.address).failed == 0


def test_proof_for_another_model_is_refused_by_params_commitment(chain: Chain) -> None:
    model = list_model(
        chain,
        "bafy-hashed-params",
        proof_mode=ProofMode.HASHED_INPUT | ProofMode.HASHED_PARAMS,
        params_commitment=777,
        input_instances=1,
        instance_count=3,
    )
    stake_prover(chain, chain.accounts.prover)
    chain.usdc.approve(chain.market.address, PRICE, chain.accounts.consumer)
    request_id = open_request(chain, model, input_felts=[5])
    chain.market.accept_request(request_id, chain.accounts.prover)
    with pytest.raises(ContractReverted, match="another model"):
        chain.market.fulfill(request_id, VALID, [5, 778, 1], chain.accounts.prover)
    with pytest.raises(ContractReverted, match="public instances"):
        chain.market.fulfill(request_id, VALID, [5, 777], chain.accounts.prover)
    assert chain.market.fulfill(request_id, VALID, [5, 777, 1], chain.accounts.prover).outputs == [1]


def test_second_fulfil_is_refused(chain: Chain, model: Listed) -> None:
    request_id = open_request(chain, model)
    fulfil(chain, request_id, VALID, INPUT + OUTPUT)
    with pytest.raises(ContractReverted, match="already settled"):
        chain.market.fulfill(request_id, VALID, INPUT + OUTPUT, chain.accounts.prover)


def test_refund_after_deadline_counts_against_the_accepting_prover(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    consumer_before = chain.usdc.balance_of(a.consumer.address)
    request_id = open_request(chain, model, ttl=600)
    market.accept_request(request_id, a.prover)
    bond = market.params().claim_bond
    with pytest.raises(ContractReverted, match="only after its deadline"):
        market.refund(request_id, a.consumer)

    advance_time(chain.client, 601)

    with pytest.raises(ContractReverted, match="not the consumer"):
        market.refund(request_id, a.stranger)
    with pytest.raises(ContractReverted, match="expired"):
        market.fulfill(request_id, VALID, INPUT + OUTPUT, a.prover)
    market.refund(request_id, a.consumer)
    assert chain.usdc.balance_of(a.consumer.address) == consumer_before + bond  # the claimer's bond too
    assert market.get_request(request_id).status is RequestStatus.REFUNDED
    assert market.get_prover(a.prover.address).expired == 1
    with pytest.raises(ContractReverted, match="already settled"):
        market.refund(request_id, a.consumer)


def test_accepted_request_belongs_to_its_prover(chain: Chain, model: Listed) -> None:
    stake_prover(chain, chain.accounts.prover2)
    request_id = open_request(chain, model)
    chain.market.accept_request(request_id, chain.accounts.prover)
    with pytest.raises(ContractReverted, match="not claimed by the sender"):
        chain.market.fulfill(request_id, VALID, INPUT + OUTPUT, chain.accounts.prover2)
    with pytest.raises(ContractReverted, match="already accepted or settled"):
        chain.market.accept_request(request_id, chain.accounts.prover2)


def test_only_authorised_and_staked_provers_fulfil(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    request_id = open_request(chain, model)
    with pytest.raises(ContractReverted, match="not an authorised prover"):
        market.accept_request(request_id, a.stranger)
    with pytest.raises(ContractReverted, match="not claimed by the sender"):
        market.fulfill(request_id, VALID, INPUT + OUTPUT, a.stranger)
    stake_prover(chain, a.prover2, amount=market.min_stake() - 1)
    with pytest.raises(ContractReverted, match="below the minimum"):
        market.accept_request(request_id, a.prover2)
    market.set_prover_authorized(a.prover.address, False, a.admin)
    with pytest.raises(ContractReverted, match="not an authorised prover"):
        market.accept_request(request_id, a.prover)


def test_paused_market_refuses_new_requests_only(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    request_id = open_request(chain, model)
    market.pause(a.admin)
    with pytest.raises(ContractReverted, match="paused"):
        open_request(chain, model)
    assert fulfil(chain, request_id, VALID, INPUT + OUTPUT).valid  # settlement goes on
    with pytest.raises(ContractReverted, match="not the contract owner"):
        market.unpause(a.stranger)
    market.unpause(a.admin)
    assert open_request(chain, model) == request_id + 1


def change(chain: Chain, **changes: int) -> None:
    """Schedule and apply a parameter change (the session market has no delay)."""
    from dataclasses import replace

    chain.market.schedule_params(replace(chain.market.params(), **changes), chain.accounts.admin)
    chain.market.apply_params(chain.accounts.admin)


def test_params_are_bounded_and_admin_only(chain: Chain) -> None:
    from dataclasses import replace

    a, market = chain.accounts, chain.market
    current = market.params()
    with pytest.raises(ContractReverted, match="above the maximum of 1000 bps"):
        market.schedule_params(replace(current, platform_fee_bps=1_001), a.admin)
    with pytest.raises(ContractReverted, match="not the contract owner"):
        market.schedule_params(replace(current, platform_fee_bps=100), a.stranger)
    with pytest.raises(ContractReverted, match="above the maximum of 5000 bps"):
        market.schedule_params(replace(current, slash_bps=10_000), a.admin)  # slashing everything is refused
    with pytest.raises(ContractReverted, match="60 s .. 1 day"):
        market.schedule_params(replace(current, claim_window=10), a.admin)
    with pytest.raises(ContractReverted, match="above the minimum stake"):
        market.schedule_params(replace(current, claim_bond=current.min_stake + 1), a.admin)
    with pytest.raises(ContractReverted, match="above the cap"):
        market.schedule_params(replace(current, min_stake=10**13), a.admin)
    change(chain, platform_fee_bps=1_000)
    assert market.platform_fee_bps() == 1_000


def test_fee_and_slash_are_fixed_at_request_time(chain: Chain, model: Listed) -> None:
    request_id = open_request(chain, model)
    change(chain, platform_fee_bps=1_000, slash_bps=5_000)
    request = chain.market.get_request(request_id)
    assert (request.fee_bps, request.slash_bps) == (250, 1_000)
    settlement = fulfil(chain, request_id, VALID, INPUT + OUTPUT)
    assert settlement.platform_fee == PRICE * 250 // 10_000


def test_parameter_changes_wait_for_the_delay(chain: Chain) -> None:
    from dataclasses import replace

    from proofmarket.chain import deploy
    from proofmarket.chain.deploy import MarketConfig

    # Given a market deployed with a one-hour parameter delay
    a = chain.accounts
    path = chain.deployment.contracts["InferenceMarket"]  # reuse the session USDC
    delayed = deploy(chain.client, a.admin, Path(tempfile.mkdtemp()) / "d.json", usdc=chain.deployment.usdc,
                     config=MarketConfig(params_delay=3600))
    market = delayed.bind(chain.client)[2]
    assert path and market.params_delay() == 3600
    # When the admin raises the fee
    market.schedule_params(replace(market.params(), platform_fee_bps=1_000), a.admin)
    # Then nothing changes before the delay, and anyone may apply it after
    with pytest.raises(ContractReverted, match="apply only from"):
        market.apply_params(a.stranger)
    assert market.platform_fee_bps() == 250
    advance_time(chain.client, 3601)
    market.apply_params(a.stranger)
    assert market.platform_fee_bps() == 1_000 and market.pending_params() is None


def test_requests_need_an_active_model_and_a_sane_deadline(chain: Chain, model: Listed) -> None:
    now = chain.client.timestamp()
    with pytest.raises(ContractReverted, match="deadline"):
        chain.market.request_inference(model.key, input_commitment(INPUT), now, chain.accounts.consumer)
    with pytest.raises(ContractReverted, match="deadline"):
        chain.market.request_inference(model.key, input_commitment(INPUT), now + 31 * 86400, chain.accounts.consumer)
    chain.registry.set_active(model.key, False, chain.accounts.owner)
    with pytest.raises(ContractReverted, match="not active"):
        open_request(chain, model)
    with pytest.raises(ContractReverted, match="not registered"):
        chain.market.request_inference(b"\x99" * 32, input_commitment(INPUT), now + 60, chain.accounts.consumer)


def test_request_without_allowance_is_refused(chain: Chain, model: Listed) -> None:
    with pytest.raises(ContractReverted, match="allowance"):
        chain.market.request_inference(
            model.key, input_commitment(INPUT), chain.client.timestamp() + 60, chain.accounts.stranger
        )


def test_stake_unstake_after_delay(chain: Chain) -> None:
    a, market, usdc = chain.accounts, chain.market, chain.usdc
    before = usdc.balance_of(a.prover2.address)
    stake_prover(chain, a.prover2, amount=150 * USDC)
    market.request_unstake(150 * USDC, a.prover2)
    with pytest.raises(ContractReverted, match="unlocks at"):
        market.unstake(a.prover2)
    advance_time(chain.client, market.unstake_delay())
    market.unstake(a.prover2)
    assert usdc.balance_of(a.prover2.address) == before
    info = market.get_prover(a.prover2.address)
    assert (info.stake, info.pending_unstake) == (0, 0)
    with pytest.raises(ContractReverted, match="above zero"):
        market.unstake(a.prover2)


def test_platform_withdrawal(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    fulfil(chain, open_request(chain, model), VALID, INPUT + OUTPUT)
    fee = market.platform_balance()
    with pytest.raises(ContractReverted, match="available"):
        market.withdraw_platform(a.admin.address, fee + 1, a.admin)
    before = chain.usdc.balance_of(a.admin.address)
    market.withdraw_platform(a.admin.address, fee, a.admin)
    assert chain.usdc.balance_of(a.admin.address) == before + fee and market.platform_balance() == 0


def test_instances_hash_matches_python(chain: Chain) -> None:
    felts = [0, 1, 2**200, 21888242871839275222246405745257275088548364400416034343698204186575808495616]
    assert chain.market.instances_hash(felts) == instances_hash(felts)


def test_gas_stays_small_with_the_mock_verifier(chain: Chain, model: Listed) -> None:
    open_request(chain, model)  # warm the counters
    deadline = chain.client.timestamp() + 3600
    submitted = chain.market.request_inference(model.key, input_commitment(INPUT), deadline, chain.accounts.consumer)
    accepted = chain.market.accept_request(submitted.request_id, chain.accounts.prover)
    settlement = chain.market.fulfill(submitted.request_id, VALID, INPUT + OUTPUT, chain.accounts.prover)
    print(f"gas: request {submitted.tx.gas_used}, accept {accepted.gas_used}, fulfil {settlement.tx.gas_used}")
    assert submitted.tx.gas_used < 260_000
    assert accepted.gas_used < 90_000
    assert settlement.tx.gas_used < 200_000


def test_mock_verifier_address_without_code_is_not_registrable(chain: Chain) -> None:
    assert deploy_mock_verifier(chain)  # sanity: the mock deploys
    with pytest.raises(ContractReverted, match="no contract at the verifier"):
        list_model(chain, "bafy-no-code", verifier=chain.accounts.stranger.address)


def test_a_lapsed_claim_is_taken_over_and_its_bond_goes_to_the_consumer(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    stake_prover(chain, a.prover2)
    bond, window = market.params().claim_bond, market.params().claim_window
    request_id = open_request(chain, model, ttl=3 * window)
    market.accept_request(request_id, a.prover)  # the griefer claims and sits on it
    claimed = market.get_request(request_id)
    assert claimed.claim_expiry <= chain.client.timestamp() + window and claimed.bond == bond > 0
    griefer_stake = market.get_prover(a.prover.address).stake
    with pytest.raises(ContractReverted, match="already accepted"):  # live claim: nobody else may take it
        market.accept_request(request_id, a.prover2)
    consumer_before = chain.usdc.balance_of(a.consumer.address)

    advance_time(chain.client, window + 1)
    with pytest.raises(ContractReverted, match="claim"):  # the lapsed claimer can no longer fulfil
        market.fulfill(request_id, VALID, INPUT + OUTPUT, a.prover)
    market.accept_request(request_id, a.prover2)  # another prover takes it over

    assert chain.usdc.balance_of(a.consumer.address) == consumer_before + bond  # the griefer's bond
    assert market.get_prover(a.prover.address).stake == griefer_stake  # the bond is not given back
    assert market.fulfill(request_id, VALID, INPUT + OUTPUT, a.prover2).valid


def test_a_proof_with_an_extra_instance_reverts_and_slashes_nobody(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    request_id = open_request(chain, model)
    market.accept_request(request_id, a.prover)
    stake = market.get_prover(a.prover.address).stake

    with pytest.raises(ContractReverted, match="public instances") as info:
        market.fulfill(request_id, VALID, INPUT + OUTPUT + [7], a.prover)

    assert info.value.details["error"] == "InstanceCountMismatch"
    assert market.get_prover(a.prover.address).stake == stake and market.get_prover(a.prover.address).failed == 0
    assert market.fulfill(request_id, VALID, INPUT + OUTPUT, a.prover).valid


def test_a_deauthorised_prover_still_fulfils_the_claim_it_holds(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    request_id = open_request(chain, model)
    market.accept_request(request_id, a.prover)
    market.set_prover_authorized(a.prover.address, False, a.admin)  # admin changes its mind mid-request
    try:
        assert market.fulfill(request_id, VALID, INPUT + OUTPUT, a.prover).valid
    finally:
        market.set_prover_authorized(a.prover.address, True, a.admin)


def test_x402_money_in_a_splitter_is_released_three_ways(chain: Chain, model: Listed) -> None:
    a, market, usdc = chain.accounts, chain.market, chain.usdc
    splitter = market.splitter_for(model.key, a.prover.address)
    assert splitter == market.splitter_for(model.key, a.prover.address) != market.splitter_for(
        model.key, a.prover2.address)
    assert chain.client.code_at(splitter) == b""  # known before it exists (CREATE2)
    usdc.transfer(splitter, PRICE, a.consumer)  # what an x402 settlement does
    owner_before, prover_before = usdc.balance_of(a.owner.address), usdc.balance_of(a.prover.address)
    platform_before = market.platform_balance()
    owed = market.owed(a.owner.address), market.owed(a.prover.address)  # escrow credits: a release pays them too

    released = market.release_split(model.key, a.prover.address, a.stranger)  # anyone may release

    fee = PRICE * market.platform_fee_bps() // 10_000
    owner_amount = PRICE * 7_000 // 10_000
    assert (released.owner_amount, released.prover_amount, released.platform_fee) == (
        owner_amount, PRICE - fee - owner_amount, fee)
    assert usdc.balance_of(a.owner.address) - owner_before == owner_amount + owed[0]
    assert usdc.balance_of(a.prover.address) - prover_before == PRICE - fee - owner_amount + owed[1]
    assert market.owed(a.owner.address) == market.owed(a.prover.address) == 0
    assert market.platform_balance() - platform_before == fee and usdc.balance_of(splitter) == 0
    again = market.release_split(model.key, a.prover.address, a.stranger)  # nothing left: pays nothing
    assert (again.owner_amount, again.prover_amount, again.platform_fee) == (0, 0, 0)


def test_a_blocklisted_payee_stops_nobody_else(chain: Chain, model: Listed) -> None:
    """USDC blocklists accounts: a release whose owner the token refuses still pays the prover and the platform,
    and a withdrawal batch skips the refused account (said, still owed) instead of reverting for everyone."""
    a, market, usdc = chain.accounts, chain.market, chain.usdc
    splitter = market.splitter_for(model.key, a.prover.address)
    usdc.transfer(splitter, PRICE, a.consumer)
    market.withdraw([a.owner.address, a.prover.address], a.stranger)  # start from nothing owed
    block = usdc.contract.functions.setBlocked
    chain.client.transact(block(a.owner.address, True), a.admin)
    try:
        prover_before = usdc.balance_of(a.prover.address)
        released = market.release_split(model.key, a.prover.address, a.stranger)  # does not revert
        fee = PRICE * market.platform_fee_bps() // 10_000
        owner_amount = PRICE * 7_000 // 10_000
        assert released.skipped == {a.owner.address: owner_amount}
        assert usdc.balance_of(a.prover.address) - prover_before == PRICE - fee - owner_amount  # the prover is paid
        assert market.owed(a.owner.address) == owner_amount  # the owner's share stays owed to it
        batch = market.withdraw([a.owner.address, a.prover.address], a.stranger)
        assert batch.skipped == {a.owner.address: owner_amount} and batch.paid == {}
        with pytest.raises(ContractReverted, match="refuses to pay"):  # one account alone: said, not a silent 0
            chain.client.transact(market.contract.functions.withdraw(a.owner.address), a.stranger)
    finally:
        chain.client.transact(block(a.owner.address, False), a.admin)
    owner_before = usdc.balance_of(a.owner.address)
    assert market.withdraw([a.owner.address], a.stranger).paid == {a.owner.address: owner_amount}  # unblocked: paid
    assert usdc.balance_of(a.owner.address) - owner_before == owner_amount and market.owed(a.owner.address) == 0
