"""AttestationCourt on anvil: an unchallenged commitment is paid after its window; a cheating node is
challenged, loses the vote, is slashed and its consumer refunded; a false challenge costs the challenger its
bond; late challenges, unstaked or double votes and commitments for unknown requests revert, moving nothing."""

from __future__ import annotations

from typing import Any

import pytest
from chain_helpers import PRICE, USDC, Chain, list_model
from eth_account.messages import encode_defunct
from eth_utils import keccak
from web3.logs import DISCARD

from proofmarket.chain.artifacts import load_artifact
from proofmarket.errors import ContractReverted

pytestmark = pytest.mark.chain
WINDOW, VOTE_WINDOW, QUORUM = 300, 300, 3
BOND, NODE_STAKE, VALIDATOR_STAKE = 2 * USDC, 100 * USDC, 10 * USDC
SLASH_BPS, REWARD_BPS, FEE_BPS = 5_000, 5_000, 100
WEIGHTS = b"\x11" * 32


def _court(chain: Chain) -> Any:
    params = (WINDOW, VOTE_WINDOW, QUORUM, 10_000, SLASH_BPS, REWARD_BPS, FEE_BPS, BOND, NODE_STAKE, VALIDATOR_STAKE)
    address, _ = chain.client.deploy(load_artifact("AttestationCourt"), chain.accounts.admin, chain.usdc.address,
                                     chain.registry.address, chain.accounts.admin.address, params)
    return chain.client.w3.eth.contract(address=address, abi=load_artifact("AttestationCourt").abi)


def _setup(chain: Chain) -> tuple[Any, bytes]:
    court = _court(chain)
    listed = list_model(chain, "bafy-attested", vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
                        onnx_sha256=WEIGHTS, input_instances=1, instance_count=5)
    a = chain.accounts
    for who, amount, validator in ((a.prover, NODE_STAKE, False), (a.prover2, VALIDATOR_STAKE, True),
                                   (a.relayer, VALIDATOR_STAKE, True), (a.stranger, VALIDATOR_STAKE, True),
                                   (a.admin, VALIDATOR_STAKE, True)):
        chain.usdc.approve(court.address, amount + BOND, who)
        chain.client.transact(court.functions.stake(amount, validator), who)
    chain.usdc.approve(court.address, 100 * PRICE, a.consumer)
    return court, listed.key


def _request(chain: Chain, court: Any, key: bytes, request_hash: int, node: str = "0x" + "00" * 20) -> int:
    commitment = keccak(request_hash.to_bytes(32, "big"))
    deadline = chain.client.timestamp() + 3_600
    tx = chain.client.transact(court.functions.request(key, commitment, deadline, node), chain.accounts.consumer)
    return int(court.events.RequestCreated().process_receipt(tx.receipt, errors=DISCARD)[0]["args"]["requestId"])


def _commit(chain: Chain, court: Any, request_id: int, request_hash: int, signer: Any = None,
            sender: Any = None) -> list[int]:
    instances = [request_hash, int.from_bytes(WEIGHTS, "big"), 3, 4, 5]
    packed = b"".join(v.to_bytes(32, "big") for v in instances)
    signature = (signer or chain.accounts.prover).sign_message(encode_defunct(primitive=keccak(packed))).signature
    chain.client.transact(court.functions.commit(request_id, instances, b"\x01" * 32, bytes(signature)),
                          sender or chain.accounts.prover)
    return instances


def _advance(chain: Chain, seconds: int) -> None:
    chain.client.rpc("evm_increaseTime", [seconds])
    chain.client.rpc("evm_mine", [])


def test_an_unchallenged_commitment_is_paid_after_the_window(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    request_id = _request(chain, court, key, 111)
    _commit(chain, court, request_id, 111)
    with pytest.raises(ContractReverted, match="WindowOpen"):
        chain.client.transact(court.functions.finalize(request_id), a.stranger)
    # the sample draw uses the hash of the block after the commitment: unknown when the node commits
    assert not chain.client.call(court.functions.isSampled(request_id, a.prover2.address))
    node_before = chain.usdc.balance_of(a.prover.address)
    _advance(chain, WINDOW + 1)
    chain.client.rpc("evm_mine", [])
    assert chain.client.call(court.functions.isSampled(request_id, a.prover2.address))  # 100 % sampling
    with pytest.raises(ContractReverted, match="WindowClosed"):  # a challenge after the window
        chain.client.transact(court.functions.challenge(request_id), a.relayer)
    chain.client.transact(court.functions.finalize(request_id), a.stranger)
    fee, owner_cut = PRICE * FEE_BPS // 10_000, PRICE * 7_000 // 10_000
    assert chain.usdc.balance_of(a.prover.address) - node_before == PRICE - fee - owner_cut


def test_a_cheating_node_is_slashed_and_its_consumer_refunded(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    request_id = _request(chain, court, key, 222)
    _commit(chain, court, request_id, 222)
    consumer_before = chain.usdc.balance_of(a.consumer.address)
    challenger_before = chain.usdc.balance_of(a.relayer.address)
    chain.client.transact(court.functions.challenge(request_id), a.relayer)
    with pytest.raises(ContractReverted, match="AlreadyVoted"):  # the challenge was the challenger's vote
        chain.client.transact(court.functions.vote(request_id, True), a.relayer)
    with pytest.raises(ContractReverted, match="StakeTooLow"):  # an unstaked validator
        chain.client.transact(court.functions.vote(request_id, True), a.owner)
    chain.client.transact(court.functions.vote(request_id, False), a.prover2)
    with pytest.raises(ContractReverted, match="AlreadyVoted"):
        chain.client.transact(court.functions.vote(request_id, True), a.prover2)
    chain.client.transact(court.functions.vote(request_id, True), a.stranger)  # quorum: 2 of 3 say it cheated
    with pytest.raises(ContractReverted, match="WrongStatus"):  # decided: later votes are refused
        chain.client.transact(court.functions.vote(request_id, True), a.admin)
    slashed = NODE_STAKE * SLASH_BPS // 10_000
    assert chain.client.call(court.functions.nodeStake(a.prover.address)) == NODE_STAKE - slashed
    assert chain.usdc.balance_of(a.consumer.address) - consumer_before == PRICE
    reward = slashed * REWARD_BPS // 10_000
    assert chain.usdc.balance_of(a.relayer.address) - challenger_before == reward  # bond back + reward - bond
    assert chain.client.call(court.functions.getRequest(request_id))[1] == 5  # Slashed


def test_a_false_challenge_costs_the_challenger_its_bond(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    request_id = _request(chain, court, key, 333)
    _commit(chain, court, request_id, 333)
    challenger_before = chain.usdc.balance_of(a.relayer.address)
    chain.client.transact(court.functions.challenge(request_id), a.relayer)
    for voter in (a.prover2, a.stranger):  # with the challenger's own vote: quorum 3, 2 say honest
        chain.client.transact(court.functions.vote(request_id, False), voter)
    assert chain.usdc.balance_of(a.relayer.address) - challenger_before == -BOND
    assert chain.client.call(court.functions.nodeStake(a.prover.address)) == NODE_STAKE + BOND
    assert chain.client.call(court.functions.getRequest(request_id))[1] == 4  # Paid


def test_bad_commitments_revert_and_move_nothing(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    with pytest.raises(ContractReverted, match="does not exist"):  # UnknownRequest
        _commit(chain, court, 99, 1)
    request_id = _request(chain, court, key, 444)
    with pytest.raises(ContractReverted, match="NotTheRequest"):
        _commit(chain, court, request_id, 445)
    with pytest.raises(ContractReverted, match="BadSignature"):
        _commit(chain, court, request_id, 444, signer=a.stranger)
    with pytest.raises(ContractReverted, match="NotAttestedModel"):
        other = list_model(chain, "bafy-proven")
        chain.client.transact(court.functions.request(other.key, b"\x00" * 32, chain.client.timestamp() + 60,
                                                      "0x" + "00" * 20), a.consumer)


def test_chain_deploy_includes_a_court_and_the_wrapper_drives_it(chain: Chain) -> None:
    from proofmarket.chain.court import AttestationCourt

    assert chain.deployment.court is not None
    court = AttestationCourt(chain.client, chain.deployment.court)
    params = court.params()
    assert (params.window, params.quorum) == (120, 3)  # the devnet's short window
    a = chain.accounts
    listed = list_model(chain, "bafy-attested-2", vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
                        onnx_sha256=WEIGHTS, input_instances=1, instance_count=5)
    chain.usdc.approve(court.address, params.node_min_stake, a.prover)
    court.stake(params.node_min_stake, a.prover, validator=False)
    assert court.stake_of(a.prover.address, validator=False) == params.node_min_stake
    chain.usdc.approve(court.address, PRICE, a.consumer)
    request_id = court.request(listed.key, keccak((7).to_bytes(32, "big")), chain.client.timestamp() + 600,
                               a.consumer)
    assert court.status(request_id) == "open"
    court.commit(request_id, [7, int.from_bytes(WEIGHTS, "big"), 1, 2, 3], a.prover)
    assert court.status(request_id) == "committed"


def test_a_request_naming_a_node_is_answered_by_that_node_only(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    chain.usdc.approve(court.address, NODE_STAKE, a.stranger)
    chain.client.transact(court.functions.stake(NODE_STAKE, False), a.stranger)  # another staked node
    request_id = _request(chain, court, key, 555, node=a.prover.address)
    with pytest.raises(ContractReverted, match="NotTheNode"):
        _commit(chain, court, request_id, 555, signer=a.stranger, sender=a.stranger)
    _commit(chain, court, request_id, 555)
    assert chain.client.call(court.functions.getRequest(request_id))[1] == 2  # Committed


def test_a_batch_commits_under_one_signed_merkle_root(chain: Chain) -> None:
    from proofmarket.chain.court import AttestationCourt, Commitment

    court, key = _setup(chain)
    a = chain.accounts
    wrapped = AttestationCourt(chain.client, court.address)
    ids = [_request(chain, court, key, 600 + i) for i in range(5)]
    batch = [Commitment(rid, [600 + i, int.from_bytes(WEIGHTS, "big"), 3, 4, 5 + i], bytes([i + 1]) * 32)
             for i, rid in enumerate(ids)]
    with pytest.raises(ContractReverted, match="NotTheRequest"):  # one wrong leaf fails the whole batch
        wrapped.commit_batch([*batch[:4], Commitment(ids[4], [999, *batch[4].instances[1:]], b"\x05" * 32)],
                             a.prover)
    assert all(wrapped.status(rid) == "open" for rid in ids)
    tx = wrapped.commit_batch(batch, a.prover)
    assert [int(e["requestId"]) for e in wrapped.decode_events(tx, "Committed")] == ids
    assert all(wrapped.get_request(rid).output_hash == (5 + i).to_bytes(32, "big") for i, rid in enumerate(ids))
    with pytest.raises(ContractReverted, match="WrongStatus"):  # committed once only
        wrapped.commit_batch(batch[:1], a.prover)
    more = [_request(chain, court, key, 700)]
    forged = Commitment(more[0], [700, int.from_bytes(WEIGHTS, "big"), 3, 4, 5], b"\x07" * 32)
    with pytest.raises(ContractReverted, match="BadSignature"):  # a root signed by someone else
        court_as_stranger = AttestationCourt(chain.client, court.address)
        from eth_account.messages import encode_defunct as defunct

        from proofmarket.chain.court import leaf, merkle_root

        sig = a.stranger.sign_message(defunct(primitive=merkle_root([leaf(forged)]))).signature
        chain.client.transact(court_as_stranger.contract.functions.commitBatch(
            more, [forged.instances], [forged.bundle_digest], bytes(sig)), a.prover)
