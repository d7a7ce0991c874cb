"""AttestationCourt on anvil, against a paying adversary.

Honest paths: an unchallenged commitment is paid after its window; a cheating node is challenged, outvoted by
weight, slashed and its consumer refunded; a false challenge costs the challenger its bond and its escrowed share.
Attacks (issue 20): a stake rotated between addresses cannot vote twice (P3-01); sybil minimum stakes cannot
outvote a larger honest stake (P3-17); losing voters lose stake to the winners; a parameter change waits for the
court's delay and never touches an open request (P3-09); availability is decided by publishing on chain, not by one
validator's fetch (P3-05, P3-10); only drawn or voting validators with weight may read (P3-11); a request must name
its node (P3-12); an old draw seed counts as sampled (P3-14); reverts name the court's statuses (P3-15)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from chain_helpers import PRICE, USDC, Chain, list_model
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.commitments import model_id_of, model_key
from proofmarket.chain.court import AttestationCourt, Commitment, CourtParams, deploy_court, leaf, merkle_root
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain
WINDOW, VOTE_WINDOW, RESPONSE_WINDOW, UNBOND = 300, 300, 200, 900
BOND, NODE_STAKE, VALIDATOR_STAKE = 2 * USDC, 100 * USDC, 10 * USDC
SLASH_BPS, REWARD_BPS, VOTER_SLASH_BPS, FEE_BPS, QUORUM_BPS = 5_000, 5_000, 2_000, 100, 5_000
PARAMS_DELAY = 200
WEIGHTS = b"\x11" * 32
PARAMS = CourtParams(WINDOW, VOTE_WINDOW, RESPONSE_WINDOW, UNBOND, QUORUM_BPS, 10_000, SLASH_BPS, REWARD_BPS,
                     VOTER_SLASH_BPS, FEE_BPS, BOND, NODE_STAKE, VALIDATOR_STAKE)


def _court(chain: Chain, params: CourtParams = PARAMS) -> AttestationCourt:
    address, _ = deploy_court(chain.client, chain.accounts.admin, chain.usdc.address, chain.registry.address,
                              chain.accounts.admin.address, params.as_tuple(), PARAMS_DELAY)
    return AttestationCourt(chain.client, address)


def _fund(chain: Chain, court: AttestationCourt, who: LocalAccount, amount: int) -> None:
    chain.client.rpc("anvil_setBalance", [who.address, hex(10**18)])
    if chain.usdc.balance_of(who.address) < amount:
        chain.usdc.mint(who.address, amount, chain.accounts.admin)
    chain.usdc.approve(court.address, amount, who)


def _key(chain: Chain) -> bytes:
    """The on-chain id of the attested model `_setup` lists."""
    return model_id_of(chain.accounts.owner.address, model_key("bafy-attested"))


def _stake(chain: Chain, court: AttestationCourt, who: LocalAccount, amount: int = VALIDATOR_STAKE, *,
           declare: bool = True) -> None:
    """Stake `who` as a validator and (by default) declare that it checks the attested model."""
    _fund(chain, court, who, amount + 5 * BOND)
    court.stake(amount, who, validator=True)
    if declare and not court.declared_at(who.address, _key(chain)):
        court.declare(_key(chain), who)


def _setup(chain: Chain, params: CourtParams = PARAMS) -> tuple[AttestationCourt, bytes]:
    """A court, a listed attested model, a staked node (prover) and three validators of 10 USDC."""
    court = _court(chain, params)
    listed = list_model(chain, "bafy-attested", vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
                        onnx_sha256=WEIGHTS, input_instances=1, instance_count=5)
    a = chain.accounts
    _fund(chain, court, a.prover, NODE_STAKE)
    court.stake(NODE_STAKE, a.prover, validator=False)
    for who in (a.prover2, a.relayer, a.stranger):
        _stake(chain, court, who)
    chain.usdc.approve(court.address, 100 * PRICE, a.consumer)
    return court, listed.key


def _request(chain: Chain, court: AttestationCourt, key: bytes, request_hash: int) -> int:
    commitment = keccak(request_hash.to_bytes(32, "big"))
    return court.request(key, commitment, chain.client.timestamp() + 3_600, chain.accounts.consumer,
                         node=chain.accounts.prover.address)


def _commit(chain: Chain, court: AttestationCourt, request_id: int, request_hash: int,
            bundle: bytes = b"{}") -> None:
    instances = [request_hash, int.from_bytes(WEIGHTS, "big"), 3, 4, 5]
    court.commit(request_id, instances, chain.accounts.prover, hashlib.sha256(bundle).digest())


def _advance(chain: Chain, seconds: int) -> None:
    chain.client.rpc("evm_increaseTime", [seconds])
    chain.client.rpc("evm_mine", [])


def _fresh() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


def _committed(chain: Chain, court: AttestationCourt, key: bytes, request_hash: int) -> int:
    request_id = _request(chain, court, key, request_hash)
    _commit(chain, court, request_id, request_hash)
    return request_id


def test_an_unchallenged_commitment_is_paid_after_the_window(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    request_id = _committed(chain, court, key, 111)
    with pytest.raises(ContractReverted, match="window is open"):
        court.finalize(request_id, a.stranger)
    # the sample draw uses the hash of the block after the commitment: unknown when the node commits
    assert not court.is_sampled(request_id, a.prover2.address)
    node_before = chain.usdc.balance_of(a.prover.address)
    _advance(chain, WINDOW + 1)
    chain.client.rpc("evm_mine", [])
    assert court.is_sampled(request_id, a.prover2.address)  # 100 % sampling
    with pytest.raises(ContractReverted, match="window closed"):  # a challenge after the window
        court.challenge(request_id, a.relayer)
    court.finalize(request_id, a.stranger)
    fee, owner_cut = PRICE * FEE_BPS // 10_000, PRICE * 7_000 // 10_000
    assert chain.usdc.balance_of(a.prover.address) - node_before == PRICE - fee - owner_cut
    assert court.get_request(request_id).status == "paid"


def test_a_cheating_node_is_slashed_and_the_losing_voter_pays_the_winners(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    request_id = _committed(chain, court, key, 222)
    consumer_before = chain.usdc.balance_of(a.consumer.address)
    challenger_before = chain.usdc.balance_of(a.relayer.address)
    court.challenge(request_id, a.relayer)
    with pytest.raises(ContractReverted, match="already voted"):  # the challenge was the challenger's vote
        court.vote(request_id, True, a.relayer)
    with pytest.raises(ContractReverted, match="no voting weight"):  # an unstaked address
        court.vote(request_id, True, a.owner)
    with pytest.raises(ContractReverted, match="is a party"):  # the consumer and the node cannot vote
        court.vote(request_id, True, a.consumer)
    court.vote(request_id, False, a.prover2)  # a dishonest third of the stake
    court.vote(request_id, True, a.stranger)  # 20 of 30 USDC say it cheated: more than half, decided at once
    with pytest.raises(ContractReverted, match="is Slashed"):  # the revert names the court's own status
        court.vote(request_id, True, a.admin)
    slashed = NODE_STAKE * SLASH_BPS // 10_000
    assert court.stake_of(a.prover.address, validator=False) == NODE_STAKE - slashed
    assert chain.usdc.balance_of(a.consumer.address) - consumer_before == PRICE
    reward = slashed * REWARD_BPS // 10_000
    assert chain.usdc.balance_of(a.relayer.address) - challenger_before == reward  # bond back + reward - bond
    assert court.get_request(request_id).outcome == "cheated"
    # votes settle by claim: the loser's escrowed 20 % goes to the winners pro rata, the stakes unlock
    risk = VALIDATOR_STAKE * VOTER_SLASH_BPS // 10_000
    with pytest.raises(ContractReverted, match="locked"):
        court.unstake(1, a.prover2, validator=True)
    for who in (a.prover2, a.relayer, a.stranger):
        court.claim(request_id, who.address, a.admin)
    assert court.stake_of(a.prover2.address, validator=True) == VALIDATOR_STAKE - risk
    assert court.stake_of(a.relayer.address, validator=True) == VALIDATOR_STAKE + risk // 2
    assert court.stake_of(a.stranger.address, validator=True) == VALIDATOR_STAKE + risk // 2
    with pytest.raises(ContractReverted, match="no unclaimed vote"):
        court.claim(request_id, a.stranger.address, a.admin)
    assert court.open_votes(a.prover2.address) == 0


def test_a_false_challenge_costs_the_challenger_its_bond_and_its_share(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    request_id = _committed(chain, court, key, 333)
    challenger_before = chain.usdc.balance_of(a.relayer.address)
    court.challenge(request_id, a.relayer)
    court.vote(request_id, False, a.prover2)
    court.vote(request_id, False, a.stranger)
    assert chain.usdc.balance_of(a.relayer.address) - challenger_before == -BOND
    assert court.stake_of(a.prover.address, validator=False) == NODE_STAKE + BOND
    assert court.get_request(request_id).status == "paid"
    court.claim(request_id, a.relayer.address, a.relayer)
    assert court.stake_of(a.relayer.address, validator=True) == VALIDATOR_STAKE * 8 // 10


def test_a_stake_rotated_between_addresses_cannot_reach_quorum(chain: Chain) -> None:
    """P3-01: the consumer challenges an honest result, then moves one minimum stake between addresses to vote
    again: the consumer cannot vote, the voter's stake is locked, and stake moved in after the commitment weighs
    nothing; the honest stake decides and the attacker loses its bond and its share."""
    court, key = _setup(chain)
    a = chain.accounts
    attacker, second = _fresh(), _fresh()
    _stake(chain, court, a.consumer)  # the consumer is staked as a validator too
    _stake(chain, court, attacker)  # one minimum stake, staked before the commitment
    request_id = _committed(chain, court, key, 444)
    with pytest.raises(ContractReverted, match="is a party"):
        court.challenge(request_id, a.consumer)
    court.challenge(request_id, attacker)
    with pytest.raises(ContractReverted, match="locked"):  # cannot take the stake out to vote again elsewhere
        court.unstake(1, attacker, validator=True)
    _stake(chain, court, second)  # fresh stake, after the commitment
    assert court.weight_of(request_id, second.address) == 0
    with pytest.raises(ContractReverted, match="no voting weight"):
        court.vote(request_id, True, second)
    for honest in (a.prover2, a.relayer, a.stranger):  # 30 of 40 eligible (the consumer's stake is a party's)
        court.vote(request_id, False, honest)
    outcome = court.get_request(request_id)
    assert (outcome.status, outcome.outcome) == ("paid", "honest")
    assert court.stake_of(a.prover.address, validator=False) == NODE_STAKE + BOND  # not slashed


def test_sybil_minimum_stakes_cannot_outvote_a_larger_honest_stake(chain: Chain) -> None:
    """P3-17: five minimum stakes (50 USDC) against one honest validator of 100 USDC: weight decides, not
    addresses; every sybil loses its escrowed share."""
    court, key = _setup(chain)
    a = chain.accounts
    honest = _fresh()
    _stake(chain, court, honest, 100 * USDC)
    sybils = [_fresh() for _ in range(5)]
    for s in sybils:
        _stake(chain, court, s)
    request_id = _committed(chain, court, key, 555)
    court.challenge(request_id, sybils[0])
    for s in sybils[1:]:
        court.vote(request_id, True, s)
    assert court.get_request(request_id).status == "challenged"  # 50 of 180 eligible: no decision
    court.vote(request_id, False, honest)  # 100 of 180: more than half
    outcome = court.get_request(request_id)
    assert (outcome.outcome, outcome.weight_cheated, outcome.weight_honest) == ("honest", 50 * USDC, 100 * USDC)
    for s in sybils:
        court.claim(request_id, s.address, a.admin)
        assert court.stake_of(s.address, validator=True) == VALIDATOR_STAKE * 8 // 10
    court.claim(request_id, honest.address, a.admin)
    assert court.stake_of(honest.address, validator=True) == 100 * USDC + 5 * VALIDATOR_STAKE * 2 // 10


def test_no_quorum_slashes_nobody(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    big = _fresh()
    _stake(chain, court, big, 100 * USDC)  # stays silent
    request_id = _committed(chain, court, key, 666)
    before = chain.usdc.balance_of(a.relayer.address)
    node_stake = court.stake_of(a.prover.address, validator=False)
    court.challenge(request_id, a.relayer)
    court.vote(request_id, True, a.stranger)  # 20 of 130 eligible voted: under the 50 % quorum
    with pytest.raises(ContractReverted, match="window is open"):
        court.resolve(request_id, a.admin)
    _advance(chain, VOTE_WINDOW + 1)
    consumer_before = chain.usdc.balance_of(a.consumer.address)
    node_before = chain.usdc.balance_of(a.prover.address)
    court.resolve(request_id, a.admin)
    outcome = court.get_request(request_id)
    # undecided while "cheated" leads: the consumer gets its money back, the node is neither paid nor slashed
    assert (outcome.status, outcome.outcome) == ("refunded", "undecided")
    assert chain.usdc.balance_of(a.consumer.address) - consumer_before == outcome.amount
    assert chain.usdc.balance_of(a.prover.address) == node_before
    assert court.stake_of(a.prover.address, validator=False) == node_stake
    assert chain.usdc.balance_of(a.relayer.address) == before  # the bond came back
    court.claim(request_id, a.relayer.address, a.admin)
    assert court.stake_of(a.relayer.address, validator=True) == VALIDATOR_STAKE


def test_a_parameter_change_waits_for_the_delay_and_never_touches_an_open_request(chain: Chain) -> None:
    """P3-09: after a 2 USDC challenge the admin raises the bond to 50: the open request keeps 2 USDC."""
    court, key = _setup(chain)
    a = chain.accounts
    open_request = _committed(chain, court, key, 777)
    court.challenge(open_request, a.relayer)
    court.schedule_params(replace(PARAMS, challenge_bond=50 * USDC, slash_bps=10_000, quorum_bps=10_000,
                                  window=60), a.admin)
    with pytest.raises(ContractReverted, match="apply only from"):
        court.apply_params(a.stranger)
    assert court.params().challenge_bond == BOND
    _advance(chain, PARAMS_DELAY + 1)
    court.apply_params(a.stranger)  # anyone, once due
    assert court.params().challenge_bond == 50 * USDC
    assert court.request_params(open_request).challenge_bond == BOND
    before = chain.usdc.balance_of(a.relayer.address)
    court.vote(open_request, True, a.stranger)  # decided under the request's own terms
    slashed = NODE_STAKE * SLASH_BPS // 10_000
    assert court.stake_of(a.prover.address, validator=False) == NODE_STAKE - slashed
    assert chain.usdc.balance_of(a.relayer.address) - before == BOND + slashed * REWARD_BPS // 10_000
    new = _request(chain, court, key, 778)
    assert court.request_params(new).challenge_bond == 50 * USDC
    with pytest.raises(ContractReverted, match="BadParams"):
        court.schedule_params(replace(PARAMS, voter_slash_bps=9_000), a.admin)
    for under_a_floor in (dict(voter_slash_bps=0), dict(voter_slash_bps=99), dict(challenge_bond=0),
                          dict(quorum_bps=1), dict(quorum_bps=1_999)):  # a vote must risk, a challenge cost, a quorum
        with pytest.raises(ContractReverted, match="BadParams"):  # be more than a few: refused by the contract
            court.schedule_params(replace(PARAMS, **under_a_floor), a.admin)
    with pytest.raises(ContractReverted, match="not the contract owner"):
        court.schedule_params(PARAMS, a.stranger)


def test_a_withheld_bundle_is_published_on_chain_or_the_node_loses(chain: Chain) -> None:
    """P3-05/P3-10: a validator that cannot fetch a bundle challenges its availability; the rule is public: the
    node publishes the committed bytes on chain (the challenger gets its bond back) or is slashed."""
    court, key = _setup(chain)
    a = chain.accounts
    bundle = b'{"format": "proofmarket/attested-bundle"}'
    served = _request(chain, court, key, 881)
    _commit(chain, court, served, 881, bundle)
    before = chain.usdc.balance_of(a.relayer.address)
    with pytest.raises(ContractReverted, match="no voting weight"):  # the draw is not known yet: nobody is drawn
        court.challenge_availability(served, a.relayer)
    chain.client.rpc("anvil_mine", [hex(2)])  # the block after the commitment is known: the draw is
    court.challenge_availability(served, a.relayer)
    assert court.get_request(served).status == "withheld"
    with pytest.raises(ContractReverted, match="sha256"):
        court.publish(served, b"something else", a.prover)
    court.publish(served, bundle, a.prover)
    assert court.published_bundle(served) == bundle
    assert chain.usdc.balance_of(a.relayer.address) == before  # bond back
    assert court.get_request(served).status == "committed"  # a fresh window to check the published bundle
    with pytest.raises(ContractReverted, match="no voting weight"):  # public now: no second availability challenge
        court.challenge_availability(served, a.stranger)
    withheld = _request(chain, court, key, 882)
    _commit(chain, court, withheld, 882, bundle)
    consumer_before = chain.usdc.balance_of(a.consumer.address)
    chain.client.rpc("anvil_mine", [hex(2)])
    court.challenge_availability(withheld, a.relayer)
    _advance(chain, RESPONSE_WINDOW + 1)
    with pytest.raises(ContractReverted, match="window closed"):
        court.publish(withheld, bundle, a.prover)
    court.resolve(withheld, a.stranger)
    outcome = court.get_request(withheld)
    assert (outcome.status, outcome.outcome) == ("slashed", "withheld")
    assert chain.usdc.balance_of(a.consumer.address) - consumer_before == PRICE


def test_only_drawn_or_voting_validators_with_weight_may_read(chain: Chain) -> None:
    """P3-11: stake moved in after the commitment reads nothing; unstaking leaves the weight at once and the
    money only after the unbonding delay."""
    court, key = _setup(chain, replace(PARAMS, sample_bps=0))
    a = chain.accounts
    request_id = _committed(chain, court, key, 991)
    chain.client.rpc("evm_mine", [])
    assert not court.can_read(request_id, a.prover2.address)  # staked, but not drawn (0 % sampling)
    late = _fresh()
    _stake(chain, court, late)
    court.challenge(request_id, a.relayer)
    assert court.can_read(request_id, a.prover2.address)  # challenged: every weighted validator may vote
    assert not court.can_read(request_id, late.address)
    assert not court.can_read(request_id, a.consumer.address)
    court.unstake(VALIDATOR_STAKE, a.prover2, validator=True)
    assert not court.can_read(request_id, a.prover2.address)
    with pytest.raises(ContractReverted, match="withdrawn from"):
        court.withdraw(a.prover2)
    _advance(chain, UNBOND + 1)
    before = chain.usdc.balance_of(a.prover2.address)
    court.withdraw(a.prover2)
    assert chain.usdc.balance_of(a.prover2.address) - before == VALIDATOR_STAKE


def test_a_request_must_name_its_node_and_only_that_node_commits(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    with pytest.raises(ContractReverted, match="must name the node"):
        court.request(key, b"\x01" * 32, chain.client.timestamp() + 600, a.consumer, node="0x" + "00" * 20)
    _fund(chain, court, a.stranger, NODE_STAKE)
    court.stake(NODE_STAKE, a.stranger, validator=False)  # another staked node copies the commitment
    request_id = _request(chain, court, key, 1001)
    with pytest.raises(ContractReverted, match="NotTheNode"):
        court.commit(request_id, [1001, int.from_bytes(WEIGHTS, "big"), 3, 4, 5], a.stranger)
    _commit(chain, court, request_id, 1001)
    assert court.status(request_id) == "committed"


def test_an_old_draw_seed_counts_as_sampled_and_a_stored_one_holds(chain: Chain) -> None:
    court, key = _setup(chain, replace(PARAMS, sample_bps=1))
    a = chain.accounts
    stored = _committed(chain, court, key, 1101)
    forgotten = _committed(chain, court, key, 1102)
    chain.client.rpc("evm_mine", [])
    court.challenge(stored, a.relayer)  # any challenge (or finalize) stores the seed
    drawn = court.is_sampled(stored, a.prover2.address)
    chain.client.rpc("anvil_mine", [hex(300)])  # past the chain's 256-block memory
    assert court.is_sampled(stored, a.prover2.address) == drawn
    assert court.get_request(stored).seed != b"\x00" * 32
    assert court.is_sampled(forgotten, a.prover2.address)  # a lagging validator checks rather than skips


def test_bad_commitments_revert_and_move_nothing(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    with pytest.raises(ContractReverted, match="does not exist"):  # UnknownRequest
        _commit(chain, court, 99, 1)
    request_id = _request(chain, court, key, 444)
    with pytest.raises(ContractReverted, match="NotTheRequest"):
        _commit(chain, court, request_id, 445)
    with pytest.raises(ContractReverted, match="BadSignature"):
        signature = a.stranger.sign_message(encode_defunct(
            primitive=keccak(b"".join(v.to_bytes(32, "big") for v in [444, 1, 3, 4, 5])))).signature
        court._send("commit", a.prover, request_id, [444, 1, 3, 4, 5], b"\x00" * 32, bytes(signature))
    other = list_model(chain, "bafy-proven")
    with pytest.raises(ContractReverted, match="NotAttestedModel"):
        court.request(other.key, b"\x00" * 32, chain.client.timestamp() + 60, a.consumer, node=a.prover.address)


def test_chain_deploy_includes_a_court_and_the_wrapper_drives_it(chain: Chain) -> None:
    assert chain.deployment.court is not None
    court = AttestationCourt(chain.client, chain.deployment.court)
    params = court.params()
    assert (params.window, params.quorum_bps, court.params_delay()) == (120, 5_000, 60)  # the devnet's
    a = chain.accounts
    listed = list_model(chain, "bafy-attested-2", vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
                        onnx_sha256=WEIGHTS, input_instances=1, instance_count=5)
    chain.usdc.approve(court.address, params.node_min_stake, a.prover)
    court.stake(params.node_min_stake, a.prover, validator=False)
    assert court.stake_of(a.prover.address, validator=False) == params.node_min_stake
    chain.usdc.approve(court.address, PRICE, a.consumer)
    request_id = court.request(listed.key, keccak((7).to_bytes(32, "big")), chain.client.timestamp() + 600,
                               a.consumer, node=a.prover.address)
    assert court.status(request_id) == "open"
    court.commit(request_id, [7, int.from_bytes(WEIGHTS, "big"), 1, 2, 3], a.prover)
    assert court.status(request_id) == "committed"


def test_a_batch_commits_under_one_signed_merkle_root(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    ids = [_request(chain, court, key, 600 + i) for i in range(5)]
    batch = [Commitment(rid, [600 + i, int.from_bytes(WEIGHTS, "big"), 3, 4, 5 + i], bytes([i + 1]) * 32)
             for i, rid in enumerate(ids)]
    with pytest.raises(ContractReverted, match="NotTheRequest"):  # one wrong leaf fails the whole batch
        court.commit_batch([*batch[:4], Commitment(ids[4], [999, *batch[4].instances[1:]], b"\x05" * 32)],
                           a.prover)
    assert all(court.status(rid) == "open" for rid in ids)
    tx = court.commit_batch(batch, a.prover)
    assert [int(e["requestId"]) for e in court.decode_events(tx, "Committed")] == ids
    assert all(court.get_request(rid).output_hash == (5 + i).to_bytes(32, "big") for i, rid in enumerate(ids))
    with pytest.raises(ContractReverted, match="is Committed"):  # committed once only
        court.commit_batch(batch[:1], a.prover)
    more = [_request(chain, court, key, 700)]
    forged = Commitment(more[0], [700, int.from_bytes(WEIGHTS, "big"), 3, 4, 5], b"\x07" * 32)
    sig = a.stranger.sign_message(encode_defunct(primitive=merkle_root([leaf(forged)]))).signature
    with pytest.raises(ContractReverted, match="BadSignature"):  # a root signed by someone else
        court._send("commitBatch", a.prover, more, [forged.instances], [forged.bundle_digest], bytes(sig))


def test_a_draw_more_than_256_blocks_late_is_the_stored_seeds(chain: Chain) -> None:
    """Anyone stores the draw's seed once the block after the commitment is mined: 300 blocks later the chain has
    forgotten that block's hash, and who was drawn is still who was drawn (not everyone)."""
    court, key = _setup(chain, replace(PARAMS, sample_bps=5_000))
    a = chain.accounts
    request_id = _committed(chain, court, key, 999)
    chain.client.rpc("anvil_mine", [hex(2)])  # the block after the commitment is mined, and one more to read it
    who = [_fresh().address for _ in range(24)]
    drawn = [court.is_sampled(request_id, w) for w in who]
    assert 0 < sum(drawn) < len(who)
    court.store_seed(request_id, a.stranger)  # a keeper, the node or a validator
    assert court.get_request(request_id).seed != b"\0" * 32
    chain.client.rpc("anvil_mine", [hex(300)])
    assert [court.is_sampled(request_id, w) for w in who] == drawn

    unstored = _committed(chain, court, key, 1_000)  # nobody stored it: after 256 blocks everyone counts as drawn
    chain.client.rpc("anvil_mine", [hex(300)])
    assert all(court.is_sampled(unstored, w) for w in who)


def test_a_bundle_at_the_publish_cap_can_be_published_and_one_byte_more_cannot(chain: Chain) -> None:
    """The node commits only bundles the court's publish takes (``MAX_PUBLISHED_BYTES``): one at the cap is
    published in answer to an availability challenge; one byte more could never be (the node refuses to commit it)."""
    from proofmarket.chain.court import MAX_PUBLISHED_BYTES

    court, key = _setup(chain)
    a = chain.accounts
    at_cap = b"{" + b" " * (MAX_PUBLISHED_BYTES - 2) + b"}"
    rid = _request(chain, court, key, 991)
    _commit(chain, court, rid, 991, at_cap)
    chain.client.rpc("anvil_mine", [hex(2)])
    court.challenge_availability(rid, a.relayer)
    court.publish(rid, at_cap, a.prover)
    assert court.get_request(rid).status == "committed" and court.published_bundle(rid) == at_cap
    over = at_cap + b" "
    rid2 = _request(chain, court, key, 992)
    _commit(chain, court, rid2, 992, over)
    chain.client.rpc("anvil_mine", [hex(2)])
    court.challenge_availability(rid2, a.relayer)
    with pytest.raises(ContractReverted):
        court.publish(rid2, over, a.prover)


def test_only_validators_that_declared_the_model_weigh_and_count_toward_its_quorum(chain: Chain) -> None:
    """Eligible stake is the model's declared validators': a large stake that never declared the model (it cannot
    check it) neither votes nor stalls the quorum; a declaration after the commitment weighs nothing on it."""
    court, key = _setup(chain)  # three declared validators of 10 USDC
    a = chain.accounts
    blind = _fresh()
    _stake(chain, court, blind, 100 * USDC, declare=False)
    request_id = _committed(chain, court, key, 777)
    assert court.weight_of(request_id, blind.address) == 0
    assert court.weight_of(request_id, a.relayer.address) == VALIDATOR_STAKE
    court.declare(key, blind)  # too late for this request
    assert court.weight_of(request_id, blind.address) == 0
    later = _committed(chain, court, key, 778)  # declared before this commitment: it weighs here
    assert court.weight_of(later, blind.address) == 100 * USDC
    court.challenge(request_id, a.relayer)
    assert court.get_request(request_id).eligible == 3 * VALIDATOR_STAKE  # not 130: the blind stake is not counted
    with pytest.raises(ContractReverted, match="no voting weight"):
        court.vote(request_id, True, blind)
    court.vote(request_id, True, a.stranger)  # 20 of 30: a majority at once, without the silent 100
    assert court.get_request(request_id).outcome == "cheated"


def test_a_declaration_follows_stake_changes_and_can_be_withdrawn(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    _fund(chain, court, a.relayer, VALIDATOR_STAKE + 5 * BOND)
    court.stake(VALIDATOR_STAKE, a.relayer, validator=True)  # 20 now, declared: the model's total follows
    request_id = _committed(chain, court, key, 888)
    court.challenge(request_id, a.stranger)
    assert court.get_request(request_id).eligible == 4 * VALIDATOR_STAKE
    court.declare(key, a.prover2, checks=False)  # withdrawn: no weight on requests committed after
    with pytest.raises(ContractReverted, match="AlreadyDeclared"):
        court.declare(key, a.prover2, checks=False)
    assert key not in court.declared_models(a.prover2.address)
    later = _committed(chain, court, key, 889)
    assert court.weight_of(later, a.prover2.address) == 0
    court.challenge(later, a.relayer)
    assert court.get_request(later).eligible == 3 * VALIDATOR_STAKE  # relayer 20 + stranger 10


def test_a_validator_declares_at_most_the_courts_limit(chain: Chain) -> None:
    court, key = _setup(chain)
    a = chain.accounts
    limit = court.max_declared()
    for i in range(limit - 1):  # one is declared by _setup
        court.declare(keccak(text=f"model-{i}"), a.stranger)
    with pytest.raises(ContractReverted, match="TooManyModels"):
        court.declare(keccak(text="one-more"), a.stranger)
    with pytest.raises(ContractReverted, match="AlreadyDeclared"):
        court.declare(key, a.stranger)
    assert len(court.declared_models(a.stranger.address)) == limit
    court.unstake(1, a.stranger, validator=True)  # a stake change updates every declared model's total
    assert court.stake_of(a.stranger.address, validator=True) == VALIDATOR_STAKE - 1


def test_a_validator_of_several_models_moves_its_stake_in_the_block_after_the_last_move(chain: Chain) -> None:
    # eth_estimateGas runs in the latest block, where each checkpoint the last move wrote is updated in place; mined
    # in the next block, every one of them (its own and two per declared model) is a new slot: the gas sent covers it
    court, _ = _setup(chain)
    who = chain.accounts.stranger
    for i in range(3):
        court.declare(keccak(text=f"model-{i}"), who)
    _fund(chain, court, who, 3 * USDC)
    court.stake(USDC, who, validator=True)  # writes 1 + 2 x 4 checkpoints in this block ...
    court.unstake(USDC, who, validator=True)  # ... and again in the next
    court.stake(2 * USDC, who, validator=True)
    assert court.stake_of(who.address, validator=True) == VALIDATOR_STAKE + 2 * USDC


def _callbacks(chain: Chain, court: AttestationCourt, mode: int) -> tuple[object, object]:
    """CourtCallbacks over ``court`` and a test consumer contract (``mode``: 0 records, 1 reverts, 2 burns its gas)
    holding 50 USDC."""
    from chain_helpers import TEST_ARTIFACTS

    from proofmarket.chain.artifacts import load_artifact_file

    a = chain.accounts
    art = load_artifact("CourtCallbacks")
    address, _ = chain.client.deploy(art, a.admin, court.address)
    callbacks = chain.client.contract(address, art.abi)
    consumer_art = load_artifact_file(TEST_ARTIFACTS / "TestAttestedConsumer.json")
    consumer_address, _ = chain.client.deploy(consumer_art, a.admin, address, mode)
    chain.usdc.mint(consumer_address, 50 * USDC, a.admin)
    return callbacks, chain.client.contract(consumer_address, consumer_art.abi)


def _callback_request(chain: Chain, court: AttestationCourt, key: bytes, consumer: object, request_hash: int,
                      gas: int = 200_000, tip: int = USDC // 10) -> int:
    commitment = keccak(request_hash.to_bytes(32, "big"))
    tx = chain.client.transact(consumer.functions.request(  # type: ignore[attr-defined]
        key, commitment, chain.client.timestamp() + 3_600, chain.accounts.prover.address, 2 * PRICE, gas, tip),
        chain.accounts.admin)
    return int(court.decode_events(tx, "RequestCreated")[0]["requestId"])


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["records", "reverts", "burns-its-gas"])
def test_a_consumer_contract_gets_the_paid_attested_result_in_its_callback(chain: Chain, mode: int) -> None:
    """Issue 58: an attested court request made by a contract (through CourtCallbacks) is delivered into it once
    the court paid it; a callback that reverts or burns its gas leaves the node paid and can be delivered again."""
    court, key = _setup(chain)
    a = chain.accounts
    callbacks, consumer = _callbacks(chain, court, mode)
    before = chain.usdc.balance_of(consumer.address)  # type: ignore[attr-defined]
    request_id = _callback_request(chain, court, key, consumer, 444)
    # the unused part of the price cap came back: the court took the price, the callbacks hold the tip
    assert chain.usdc.balance_of(consumer.address) == before - PRICE - USDC // 10  # type: ignore[attr-defined]
    bundle = b'{"attested": true}'
    _commit(chain, court, request_id, 444, bundle)
    with pytest.raises(Exception, match="NotPaid"):  # nothing to deliver before the court pays
        chain.client.transact(callbacks.functions.deliver(request_id), a.stranger)  # type: ignore[attr-defined]
    _advance(chain, WINDOW + 1)
    node_before = chain.usdc.balance_of(a.prover.address)
    court.finalize(request_id, a.stranger)
    assert chain.usdc.balance_of(a.prover.address) > node_before  # the node is paid whatever the consumer does

    keeper = a.relayer
    keeper_before = chain.usdc.balance_of(keeper.address)
    tx = chain.client.transact(callbacks.functions.deliver(request_id), keeper)  # type: ignore[attr-defined]
    from web3.logs import DISCARD

    (delivered,) = callbacks.events.CallbackDelivered().process_receipt(  # type: ignore[attr-defined]
        tx.receipt, errors=DISCARD)
    if mode == 0:
        assert delivered["args"]["ok"] and consumer.functions.received().call() == 1  # type: ignore[attr-defined]
        assert consumer.functions.lastOutputHash().call() == (5).to_bytes(32, "big")  # type: ignore[attr-defined]
        assert consumer.functions.lastBundleDigest().call() == hashlib.sha256(bundle).digest()  # type: ignore[attr-defined]
        assert chain.usdc.balance_of(keeper.address) == keeper_before + USDC // 10  # the tip
        with pytest.raises(Exception, match="AlreadyDone"):
            chain.client.transact(callbacks.functions.deliver(request_id), keeper)  # type: ignore[attr-defined]
        return
    assert not delivered["args"]["ok"] and tx.gas_used < 2_500_000  # said, and bounded by the callback's gas
    assert chain.usdc.balance_of(keeper.address) == keeper_before  # no tip for a failed delivery
    assert court.get_request(request_id).status == "paid"
    chain.client.transact(consumer.functions.setMode(0), a.admin)  # type: ignore[attr-defined]
    chain.client.transact(callbacks.functions.deliver(request_id), keeper)  # type: ignore[attr-defined]
    assert consumer.functions.received().call() == 1  # type: ignore[attr-defined]


def test_a_refunded_callback_request_hands_the_price_and_tip_back_to_the_consumer(chain: Chain) -> None:
    court, key = _setup(chain)
    callbacks, consumer = _callbacks(chain, court, 0)
    before = chain.usdc.balance_of(consumer.address)  # type: ignore[attr-defined]
    request_id = _callback_request(chain, court, key, consumer, 555, gas=100_000)
    for bad in (0, 2_000_001):
        with pytest.raises(Exception, match="BadCallbackGas"):
            _callback_request(chain, court, key, consumer, 556, gas=bad)
    with pytest.raises(Exception, match="window is open|WindowOpen"):  # not before the deadline
        chain.client.transact(callbacks.functions.reclaim(request_id), chain.accounts.stranger)  # type: ignore[attr-defined]
    _advance(chain, 3_601)  # no node committed
    chain.client.transact(callbacks.functions.reclaim(request_id), chain.accounts.stranger)  # type: ignore[attr-defined]
    assert chain.usdc.balance_of(consumer.address) == before  # type: ignore[attr-defined]
    assert court.get_request(request_id).status == "refunded"
    with pytest.raises(Exception, match="AlreadyDone"):
        chain.client.transact(callbacks.functions.reclaim(request_id), chain.accounts.stranger)  # type: ignore[attr-defined]


def test_the_node_delivers_a_paid_result_into_a_callbacks_consumer_and_books_its_tip(chain: Chain) -> None:
    """The court service's delivery (``intake/court_delivery.py``): a paid request made through this repository's
    CourtCallbacks is delivered by the node, which earns the tip (one balanced book transfer); a consumer that is
    not a CourtCallbacks build, or a callback asking more gas than the node's limit, is left alone."""
    from proofmarket.intake.callback_terms import CallbackRule
    from proofmarket.intake.court_delivery import CourtDelivery

    court, key = _setup(chain)
    a = chain.accounts
    callbacks, consumer = _callbacks(chain, court, 0)
    request_id = _callback_request(chain, court, key, consumer, 445)
    greedy = _callback_request(chain, court, key, consumer, 446, gas=1_500_000)
    stingy = _callback_request(chain, court, key, consumer, 447, gas=400_000, tip=USDC // 100 - 1)  # 0.01 needed
    for rid, seed in ((request_id, 445), (greedy, 446), (stingy, 447)):
        _commit(chain, court, rid, seed, b'{"attested": true}')
    _advance(chain, WINDOW + 1)
    for rid in (request_id, greedy, stingy):
        court.finalize(rid, a.stranger)
    rule = CallbackRule(max_gas=500_000, tip_per_mgas=USDC // 40)  # 0.025 USDC a million gas
    delivery = CourtDelivery(chain.client, court.address, a.prover, rule)
    assert delivery.deliver(request_id, a.stranger.address) is None  # not a contract at all
    assert delivery.deliver(request_id, consumer.address) is None  # type: ignore[attr-defined]  (not CourtCallbacks)
    assert delivery.deliver(greedy, callbacks.address) is None  # type: ignore[attr-defined]  (above the node's limit)
    assert delivery.deliver(stingy, callbacks.address) is None  # type: ignore[attr-defined]  (its tip is short)
    node_before = chain.usdc.balance_of(a.prover.address)
    done = delivery.deliver(request_id, callbacks.address)  # type: ignore[attr-defined]
    assert done is not None and done.ok and done.tip == USDC // 10
    assert consumer.functions.received().call() == 1  # type: ignore[attr-defined]
    assert chain.usdc.balance_of(a.prover.address) == node_before + USDC // 10
    tip = delivery.tip_transfer(request_id, callbacks.address, "model", done)  # type: ignore[attr-defined]
    assert tip is not None and sum(amount for _, amount in tip.postings) == 0 and tip.postings[1][1] == USDC // 10
    assert delivery.deliver(request_id, callbacks.address) is None  # type: ignore[attr-defined]  (done once)


def test_a_node_cannot_escape_its_slash_by_withdrawing_its_declaration_after_the_commitment(chain: Chain) -> None:
    """A cheating node that also stakes as a validator of its own model is subtracted from the eligible weight as its
    stake stood before the commitment: withdrawing its declaration afterwards used to leave its 100 USDC counted as
    silent weight, so three honest 10 USDC votes could never decide (docs/security/attestation-court.md)."""
    court, key = _setup(chain)
    a = chain.accounts
    _stake(chain, court, a.prover, 100 * USDC)  # the node's own validator stake, declared on its model
    request_id = _committed(chain, court, key, 555)
    court.declare(key, a.prover, checks=False)  # after the commitment
    _stake(chain, court, a.prover, 1)  # ... and a stake change after it, which must not move the subtraction either
    court.challenge(request_id, a.relayer)
    assert court.get_request(request_id).eligible == 3 * VALIDATOR_STAKE  # the three honest validators' alone
    court.vote(request_id, True, a.prover2)  # 20 of 30 say it cheated: decided at once
    assert court.get_request(request_id).outcome == "cheated"
    assert court.stake_of(a.prover.address, validator=False) == NODE_STAKE - NODE_STAKE * SLASH_BPS // 10_000


def test_a_consumer_naming_itself_as_the_node_is_subtracted_once(chain: Chain) -> None:
    """A request whose consumer is its own node: its declared stake is one party's, subtracted once (twice used to
    underflow and make the request impossible to challenge)."""
    court, key = _setup(chain)
    a = chain.accounts
    _stake(chain, court, a.prover, 100 * USDC)
    chain.usdc.approve(court.address, 10 * PRICE, a.prover)
    request_id = court.request(key, keccak((666).to_bytes(32, "big")), chain.client.timestamp() + 3_600, a.prover,
                               node=a.prover.address)
    _commit(chain, court, request_id, 666)
    court.challenge(request_id, a.relayer)
    assert court.get_request(request_id).eligible == 3 * VALIDATOR_STAKE
