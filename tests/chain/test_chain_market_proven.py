"""InferenceMarket.fulfillAuthorized(Batch): x402 `proven` payments, moved only by a proof the chain verified
(MockVerifier). The consumer signs one EIP-3009 ReceiveWithAuthorization to the market whose nonce binds the model,
the input commitment, the maximum and the prover; the proof is verified before anything moves."""

from __future__ import annotations

import pytest
from chain_helpers import PRICE, Chain, Listed, set_verifier_mode
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from test_chain_market import INPUT, INVALID, OUTPUT, VALID
from test_chain_market_batch import INPUTS, OUTPUTS, SIZE, batch_instances, batched  # noqa: F401 (fixture)

from proofmarket.chain import RequestStatus, input_commitment, instances_hash
from proofmarket.chain.commitments import proven_nonce
from proofmarket.chain.market import ProvenCall
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain

MAX = PRICE + 5_000  # the payer's ceiling: the price is paid, the rest comes back


def sign(chain: Chain, model: Listed, felts: list[int] = INPUT, max_amount: int = MAX, prover: str | None = None,
         ttl: int = 600, salt: bytes | None = None) -> ProvenCall:
    """The consumer's authorization, valid from now (its signing time: a batch verifier registered later never
    settles it)."""
    now = chain.client.timestamp()
    return chain.market.sign_proven_call(
        chain.accounts.consumer, model.key, input_commitment(felts), max_amount,
        prover or chain.accounts.prover.address, valid_before=now + ttl, valid_after=now - 1, salt=salt)


def test_the_nonce_is_the_contracts_own_rule(chain: Chain, model: Listed) -> None:
    """Python's nonce (and the spec's encoding, written out here) equal the contract's provenNonce."""
    salt, prover = b"\x07" * 32, chain.accounts.prover.address
    typehash = keccak(text="ProvenCall(bytes32 modelId,bytes32 inputCommitment,uint96 maxAmount,address prover,"
                           "bytes32 salt)")
    by_hand = keccak(encode(["bytes32", "bytes32", "bytes32", "uint96", "address", "bytes32"],
                            [typehash, model.key, input_commitment(INPUT), MAX, prover, salt]))
    onchain = bytes(chain.market._call("provenNonce", model.key, input_commitment(INPUT), MAX, prover, salt))
    assert proven_nonce(model.key, input_commitment(INPUT), MAX, prover, salt) == by_hand == onchain


def test_a_valid_proof_pays_the_price_split_and_returns_the_rest(chain: Chain, model: Listed) -> None:
    a, usdc, market = chain.accounts, chain.usdc, chain.market
    consumer, owner, prover = a.consumer.address, a.owner.address, a.prover.address
    before = {p: usdc.balance_of(p) for p in (consumer, market.address)}
    earned = {p: market.earned(p) for p in (owner, prover)}
    call = sign(chain, model)
    settled = market.fulfill_authorized(call, VALID, INPUT + OUTPUT, a.prover)
    fee, owner_amount = PRICE * 250 // 10_000, PRICE * 7_000 // 10_000
    assert settled.valid and settled.outputs == OUTPUT and settled.output_hash == instances_hash(OUTPUT)
    assert (settled.owner_amount, settled.prover_amount, settled.platform_fee) == (
        owner_amount, PRICE - fee - owner_amount, fee)
    assert usdc.balance_of(consumer) == before[consumer] - PRICE  # MAX signed, the price taken
    assert usdc.balance_of(market.address) == before[market.address] + PRICE
    assert market.earned(owner) - earned[owner] == owner_amount
    assert market.earned(prover) - earned[prover] == PRICE - fee - owner_amount
    record = market.get_request(settled.request_id)
    assert record.status is RequestStatus.FULFILLED and record.prover == prover
    # the authorization is spent: the same payment cannot be settled twice
    with pytest.raises(ContractReverted):
        market.fulfill_authorized(call, VALID, INPUT + OUTPUT, a.prover)
    assert usdc.balance_of(consumer) == before[consumer] - PRICE


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["bad-proof", "returns-false", "reverts"])
def test_an_invalid_proof_moves_nothing_and_the_authorization_stays_unused(chain: Chain, model: Listed,
                                                                          mode: int) -> None:
    a, usdc, market = chain.accounts, chain.usdc, chain.market
    if mode:
        set_verifier_mode(chain, model.verifier, mode)
    before = (usdc.balance_of(a.consumer.address), usdc.balance_of(market.address),
              market.get_prover(a.prover.address).stake)
    call = sign(chain, model)
    with pytest.raises(ContractReverted, match="did not verify the proof"):
        market.fulfill_authorized(call, INVALID if mode == 0 else VALID, INPUT + OUTPUT, a.prover)
    after = (usdc.balance_of(a.consumer.address), usdc.balance_of(market.address),
             market.get_prover(a.prover.address).stake)
    assert after == before  # nobody paid, nobody slashed
    assert not usdc._call("authorizationState", a.consumer.address, call.auth.nonce)  # unused: lapses unspent


def test_an_authorization_binds_its_model_input_maximum_and_prover(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    before = chain.usdc.balance_of(a.consumer.address)
    # another input than the one signed: the proof's input is not the commitment
    with pytest.raises(ContractReverted, match="another input"):
        market.fulfill_authorized(sign(chain, model), VALID, [1, 2, 3] + OUTPUT, a.prover)
    # a call re-labelled with another commitment (the proof's) than the one the signature's nonce holds
    signed = sign(chain, model, felts=[9, 9, 9])
    relabelled = ProvenCall(signed.consumer, signed.model_id, input_commitment(INPUT), signed.max_amount,
                            signed.auth, signed.salt)
    with pytest.raises(ContractReverted):
        market.fulfill_authorized(relabelled, VALID, INPUT + OUTPUT, a.prover)
    # a price above the signed maximum
    with pytest.raises(ContractReverted, match="above the .* the payer authorized"):
        market.fulfill_authorized(sign(chain, model, max_amount=PRICE - 1), VALID, INPUT + OUTPUT, a.prover)
    # another prover than the one signed (a copied transaction sent by someone else): the nonce differs
    from chain_helpers import stake_prover

    stake_prover(chain, a.prover2)
    with pytest.raises(ContractReverted):
        market.fulfill_authorized(sign(chain, model), VALID, INPUT + OUTPUT, a.prover2)
    # an ineligible caller
    with pytest.raises(ContractReverted, match="not an authorised prover"):
        market.fulfill_authorized(sign(chain, model, prover=a.owner.address), VALID, INPUT + OUTPUT, a.owner)
    assert chain.usdc.balance_of(a.consumer.address) == before


def test_an_expired_authorization_cannot_be_settled(chain: Chain, model: Listed) -> None:
    from proofmarket.chain import advance_time

    call = sign(chain, model, ttl=30)
    advance_time(chain.client, 60)
    with pytest.raises(ContractReverted):
        chain.market.fulfill_authorized(call, VALID, INPUT + OUTPUT, chain.accounts.prover)


def test_a_batch_proof_settles_each_call_in_its_slot(chain: Chain, model: Listed, batched: str) -> None:  # noqa: F811
    from proofmarket.chain import advance_time

    a, usdc = chain.accounts, chain.usdc
    advance_time(chain.client, 2)  # signed after the batch verifier was registered (validAfter past it)
    before = usdc.balance_of(a.consumer.address)
    calls = [(sign(chain, model, felts=INPUTS[slot]), slot) for slot in (2, 0, 3)]
    settled = chain.market.fulfill_authorized_batch(calls, SIZE, VALID, batch_instances(), a.prover)
    assert [s.outputs for s in settled] == [OUTPUTS[2], OUTPUTS[0], OUTPUTS[3]]
    assert all(s.valid for s in settled) and usdc.balance_of(a.consumer.address) == before - 3 * PRICE
    # an invalid batch proof moves nothing
    set_verifier_mode(chain, batched, 1)
    again = [(sign(chain, model, felts=INPUTS[1]), 1)]
    with pytest.raises(ContractReverted, match="did not verify the proof"):
        chain.market.fulfill_authorized_batch(again, SIZE, VALID, batch_instances(), a.prover)
    assert usdc.balance_of(a.consumer.address) == before - 3 * PRICE
    # a call in another slot than its input
    set_verifier_mode(chain, batched, 0)
    with pytest.raises(ContractReverted, match="another input"):
        chain.market.fulfill_authorized_batch([(sign(chain, model, felts=INPUTS[1]), 2)], SIZE, VALID,
                                              batch_instances(), a.prover)


def test_the_consumer_needs_no_approval_and_no_escrow(chain: Chain, model: Listed) -> None:
    """A fresh payer holding USDC, with no allowance to the market, pays by signature alone."""
    from eth_account import Account

    payer = Account.create()
    chain.usdc.mint(payer.address, 2 * MAX, chain.accounts.admin)
    call = chain.market.sign_proven_call(payer, model.key, input_commitment(INPUT), MAX,
                                         chain.accounts.prover.address,
                                         valid_before=chain.client.timestamp() + 600)
    assert chain.usdc.allowance(payer.address, chain.market.address) == 0
    chain.market.fulfill_authorized(call, VALID, INPUT + OUTPUT, chain.accounts.prover)
    assert chain.usdc.balance_of(payer.address) == 2 * MAX - PRICE


def test_a_batch_verifier_registered_after_the_payer_signed_never_settles_its_payment(chain: Chain,
                                                                                      model: Listed) -> None:
    """The owner (often the node) registers a batch verifier that accepts anything after the payer signed: the
    payment, valid from its signing time, cannot be settled through it; one signed after the registration (whose
    verifiers the payer could check) can."""
    from chain_helpers import deploy_mock_verifier

    from proofmarket.chain import advance_time

    before = chain.usdc.balance_of(chain.accounts.consumer.address)
    call = sign(chain, model, felts=INPUTS[0])
    advance_time(chain.client, 5)
    late = deploy_mock_verifier(chain)
    chain.registry.register_batch(model.key, 2, late, chain.accounts.owner)
    advance_time(chain.client, 5)
    two = INPUTS[0] + INPUTS[1] + OUTPUTS[0] + OUTPUTS[1]
    with pytest.raises(ContractReverted):
        chain.market.fulfill_authorized_batch([(call, 0)], 2, VALID, two, chain.accounts.prover)
    assert chain.usdc.balance_of(chain.accounts.consumer.address) == before
    later = sign(chain, model, felts=INPUTS[0])
    advance_time(chain.client, 2)
    (settled,) = chain.market.fulfill_authorized_batch([(later, 0)], 2, VALID, two, chain.accounts.prover)
    assert settled.valid and chain.usdc.balance_of(chain.accounts.consumer.address) == before - PRICE
