"""The x402 batch-settlement channel contract (contracts/BatchSettlement.sol) against the x402 SDK's own interface and
signing code: its ABI and EIP-712 digests are the SDK's, and its rules hold: a claim never pays more than a signed
voucher nor more than the balance, only the latest voucher claims more, settle sweeps exactly what was claimed, the
payer's timed withdrawal and the cooperative refund work once, and a token that re-enters is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from chain_helpers import Chain
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractLogicError
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.client.eip3009 import create_batch_settlement_eip3009_deposit_payload
from x402.mechanisms.evm.batch_settlement.client.voucher import sign_voucher
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    REFUND_TYPES,
    VOUCHER_TYPES,
)
from x402.mechanisms.evm.batch_settlement.facilitator.claim import build_voucher_claim_args
from x402.mechanisms.evm.batch_settlement.facilitator.deposit_eip3009 import build_eip3009_deposit_collector_data
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, DepositPayload, VoucherClaim
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id, get_batch_settlement_eip712_domain
from x402.schemas import PaymentRequirements

from proofmarket.chain.artifacts import load_artifact, load_artifact_file
from proofmarket.chain.channels import ChannelReader, channel_state, install_batch_settlement
from proofmarket.core.errors import ChainError

TEST_ARTIFACTS = __import__("pathlib").Path(__file__).resolve().parent / "artifacts"
DELAY = 900
ZERO32 = "0x" + "00" * 32


@pytest.fixture
def bs(chain: Chain) -> Iterator[Any]:
    install_batch_settlement(chain.client)
    yield chain.client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)


def config(chain: Chain, *, token: str | None = None, salt: str = ZERO32) -> ChannelConfig:
    a = chain.accounts
    return ChannelConfig(payer=a.consumer.address, payer_authorizer=a.consumer.address, receiver=a.prover.address,
                         receiver_authorizer=a.owner.address, token=token or chain.usdc.address,
                         withdraw_delay=DELAY, salt=salt)


def network(chain: Chain) -> str:
    return f"eip155:{chain.client.chain_id}"


def deposit(chain: Chain, bs: Any, cfg: ChannelConfig, amount: int) -> None:
    """The SDK client's EIP-3009 deposit payload, submitted the way the SDK facilitator encodes it."""
    requirements = PaymentRequirements(scheme="batch-settlement", network=network(chain), asset=cfg.token,
                                       amount="1", pay_to=cfg.receiver, max_timeout_seconds=600,
                                       extra={"name": "USD Coin", "version": "2"})
    payload: DepositPayload = create_batch_settlement_eip3009_deposit_payload(
        EthAccountSigner(chain.accounts.consumer), requirements, cfg, amount, amount)
    data = build_eip3009_deposit_collector_data(payload)
    chain.client.transact(bs.functions.deposit(to_contract_channel_config(cfg), amount,
                                               ERC3009_DEPOSIT_COLLECTOR_ADDRESS, data), chain.accounts.prover)


def claim(chain: Chain, bs: Any, cfg: ChannelConfig, signed: int, total: int, *, sender: Any = None) -> None:
    voucher = sign_voucher(EthAccountSigner(chain.accounts.consumer), compute_channel_id(cfg, network(chain)),
                           signed, network(chain))
    claims = [VoucherClaim(channel=cfg, max_claimable_amount=str(signed), signature=voucher.signature,
                           total_claimed=str(total))]
    signature = sign_claim_batch(LocalAuthorizerSigner(chain.accounts.owner), claims, network(chain))
    chain.client.transact(bs.functions.claimWithSignature(build_voucher_claim_args(claims),
                                                          bytes.fromhex(signature.removeprefix("0x"))),
                          sender or chain.accounts.admin)


def _type(entry: dict[str, Any]) -> str:
    if entry["type"].startswith("tuple"):
        return "(" + ",".join(_type(c) for c in entry["components"]) + ")" + entry["type"][5:]
    return str(entry["type"])


def _signature(entry: dict[str, Any]) -> tuple[Any, ...]:
    ins = tuple((_type(i), bool(i.get("indexed", False))) for i in entry.get("inputs", []))
    outs = tuple(_type(o) for o in entry.get("outputs", []))
    return entry["type"], entry["name"], ins, outs


def test_the_abi_has_every_function_and_event_of_the_sdks() -> None:
    ours = {_signature(e) for e in load_artifact("BatchSettlement").abi if e["type"] in ("function", "event")}
    theirs = {_signature(e) for e in BATCH_SETTLEMENT_ABI if e["type"] in ("function", "event")}
    assert theirs - ours == set()


def test_channel_ids_and_digests_are_the_sdks(chain: Chain, bs: Any) -> None:
    cfg = config(chain, salt="0x" + "ab" * 32)
    cid = compute_channel_id(cfg, network(chain))
    assert "0x" + bs.functions.getChannelId(to_contract_channel_config(cfg)).call().hex() == cid
    domain = get_batch_settlement_eip712_domain(chain.client.chain_id)
    key = bytes.fromhex(cid[2:])

    def digest(types: dict[str, Any], message: dict[str, Any]) -> bytes:
        signable = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
        return keccak(b"\x19" + signable.version + signable.header + signable.body)

    assert bs.functions.getVoucherDigest(key, 1234).call() == digest(VOUCHER_TYPES, {"channelId": key,
                                                                                      "maxClaimableAmount": 1234})
    assert bs.functions.getRefundDigest(key, 7, 99).call() == digest(REFUND_TYPES, {"channelId": key, "nonce": 7,
                                                                                    "amount": 99})
    claims = [VoucherClaim(channel=cfg, max_claimable_amount="50", signature="0x" + "00" * 65, total_claimed="40")]
    owner = chain.accounts.owner
    signed = sign_claim_batch(LocalAuthorizerSigner(owner), claims, network(chain))  # verifies against our digest:
    ours = bs.functions.getClaimBatchDigest(build_voucher_claim_args(claims)).call()
    from eth_account import Account

    assert Account._recover_hash(ours, signature=bytes.fromhex(signed[2:])) == owner.address


def test_claims_are_bounded_by_the_voucher_and_the_balance_and_settle_sweeps_them(chain: Chain, bs: Any) -> None:
    cfg = config(chain)
    cid = compute_channel_id(cfg, network(chain))
    deposit(chain, bs, cfg, 1_000)
    assert channel_state(chain.client, cid).balance == 1_000

    with pytest.raises(ChainError):
        claim(chain, bs, cfg, signed=300, total=301)  # above what the payer signed
    with pytest.raises(ChainError):
        claim(chain, bs, cfg, signed=2_000, total=1_001)  # above the balance
    claim(chain, bs, cfg, signed=300, total=300)
    claim(chain, bs, cfg, signed=200, total=200)  # an older voucher claims nothing more
    claim(chain, bs, cfg, signed=300, total=300)  # nor the same one again
    assert channel_state(chain.client, cid).total_claimed == 300

    receiver = chain.accounts.prover.address
    before = chain.usdc.balance_of(receiver)
    chain.client.transact(bs.functions.settle(receiver, chain.usdc.address), chain.accounts.admin)
    chain.client.transact(bs.functions.settle(receiver, chain.usdc.address), chain.accounts.admin)  # nothing left
    assert chain.usdc.balance_of(receiver) - before == 300
    assert bs.functions.receivers(receiver, chain.usdc.address).call() == [300, 300]


def test_a_claim_needs_the_payers_voucher_and_the_receiver_authorizers_batch_signature(chain: Chain, bs: Any) -> None:
    cfg = config(chain)
    deposit(chain, bs, cfg, 500)
    forged = sign_voucher(EthAccountSigner(chain.accounts.prover), compute_channel_id(cfg, network(chain)), 500,
                          network(chain))  # the receiver signing the payer's voucher
    claims = [VoucherClaim(channel=cfg, max_claimable_amount="500", signature=forged.signature, total_claimed="500")]
    good_batch = sign_claim_batch(LocalAuthorizerSigner(chain.accounts.owner), claims, network(chain))
    with pytest.raises(ChainError):
        chain.client.transact(bs.functions.claimWithSignature(build_voucher_claim_args(claims),
                                                              bytes.fromhex(good_batch[2:])), chain.accounts.admin)
    voucher = sign_voucher(EthAccountSigner(chain.accounts.consumer), compute_channel_id(cfg, network(chain)), 500,
                           network(chain))
    claims = [VoucherClaim(channel=cfg, max_claimable_amount="500", signature=voucher.signature, total_claimed="500")]
    wrong_batch = sign_claim_batch(LocalAuthorizerSigner(chain.accounts.admin), claims, network(chain))
    with pytest.raises(ChainError):
        chain.client.transact(bs.functions.claimWithSignature(build_voucher_claim_args(claims),
                                                              bytes.fromhex(wrong_batch[2:])), chain.accounts.admin)
    assert channel_state(chain.client, compute_channel_id(cfg, network(chain))).total_claimed == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deposited=st.integers(1, 10_000), steps=st.lists(st.tuples(st.integers(0, 12_000), st.integers(0, 12_000)),
                                                         min_size=1, max_size=5))
def test_never_pays_more_than_the_highest_signed_voucher_nor_the_balance(chain: Chain, bs: Any, deposited: int,
                                                                        steps: list[tuple[int, int]]) -> None:
    salt = "0x" + keccak(text=f"{deposited}-{steps}-{time.monotonic_ns()}").hex()
    cfg = config(chain, salt=salt)
    cid = compute_channel_id(cfg, network(chain))
    deposit(chain, bs, cfg, deposited)
    highest = 0
    for signed, total in steps:
        try:
            claim(chain, bs, cfg, signed=signed, total=total)
            highest = max(highest, min(signed, total))
        except ChainError:
            assert total > signed or total > deposited  # refused only for what the rules refuse
    state = channel_state(chain.client, cid)
    assert state.total_claimed <= min(highest, deposited) if highest else state.total_claimed == 0
    assert state.total_claimed <= max((s for s, _ in steps), default=0)


def test_the_payers_timed_withdrawal(chain: Chain, bs: Any) -> None:
    cfg = config(chain, salt="0x" + "01" * 32)
    cid = compute_channel_id(cfg, network(chain))
    deposit(chain, bs, cfg, 1_000)
    claim(chain, bs, cfg, signed=400, total=400)
    payer = chain.accounts.consumer
    reader = ChannelReader(chain.client, chain.accounts.owner.address)  # the read the node makes on every voucher
    assert reader.withdrawal(cid) == (0, 0)
    with pytest.raises(ChainError):  # not the payer
        chain.client.transact(bs.functions.initiateWithdraw(to_contract_channel_config(cfg), 100), chain.accounts.admin)
    with pytest.raises(ChainError):  # more than is unclaimed
        chain.client.transact(bs.functions.initiateWithdraw(to_contract_channel_config(cfg), 601), payer)
    chain.client.transact(bs.functions.initiateWithdraw(to_contract_channel_config(cfg), 600), payer)
    armed = bs.functions.pendingWithdrawals(bytes.fromhex(cid.removeprefix("0x"))).call()
    assert reader.withdrawal(cid) == (600, armed[1]) and armed[1] > 0
    with pytest.raises(ChainError):  # before the delay
        chain.client.transact(bs.functions.finalizeWithdraw(to_contract_channel_config(cfg)), payer)
    chain.client.rpc("evm_increaseTime", [DELAY + 1])
    chain.client.rpc("evm_mine", [])
    before = chain.usdc.balance_of(payer.address)
    chain.client.transact(bs.functions.finalizeWithdraw(to_contract_channel_config(cfg)), payer)
    assert chain.usdc.balance_of(payer.address) - before == 600
    state = channel_state(chain.client, cid)
    assert (state.balance, state.total_claimed, state.withdraw_initiated_at) == (400, 400, 0)
    with pytest.raises(ChainError):  # once
        chain.client.transact(bs.functions.finalizeWithdraw(to_contract_channel_config(cfg)), payer)


def test_a_small_refund_cannot_hold_the_payers_exit_hostage(chain: Chain, bs: Any) -> None:
    """A refund counts towards a pending exit and never restarts its clock: a receiver refunding 1 unit before each
    deadline used to cancel the payer's withdrawal again and again (docs/security/batch-settlement.md)."""
    payer = chain.accounts.consumer
    cfg, covered = config(chain, salt="0x" + "04" * 32), config(chain, salt="0x" + "05" * 32)
    cid, cid2 = (bytes.fromhex(compute_channel_id(c, network(chain)).removeprefix("0x")) for c in (cfg, covered))
    deposit(chain, bs, cfg, 1_000)
    deposit(chain, bs, covered, 500)  # (the SDK's deposit authorization is valid for minutes of wall time: first)
    contract_cfg = to_contract_channel_config(cfg)
    chain.client.transact(bs.functions.initiateWithdraw(contract_cfg, 1_000), payer)
    started = bs.functions.pendingWithdrawals(cid).call()[1]
    before = chain.usdc.balance_of(payer.address)
    chain.client.transact(bs.functions.refund(contract_cfg, 1), chain.accounts.prover)  # the receiver, just in time
    assert bs.functions.pendingWithdrawals(cid).call() == [999, started]  # the exit stands, its clock unchanged
    chain.client.rpc("evm_increaseTime", [DELAY + 1])
    chain.client.rpc("evm_mine", [])
    chain.client.transact(bs.functions.finalizeWithdraw(contract_cfg), payer)
    assert chain.usdc.balance_of(payer.address) - before == 1_000  # 1 refunded, 999 withdrawn: everything
    assert channel_state(chain.client, "0x" + cid.hex()).balance == 0
    # a refund that covers the pending exit ends it: nothing is left to withdraw twice
    chain.client.transact(bs.functions.initiateWithdraw(to_contract_channel_config(covered), 200), payer)
    chain.client.transact(bs.functions.refund(to_contract_channel_config(covered), 300), chain.accounts.owner)
    assert bs.functions.pendingWithdrawals(cid2).call() == [0, 0]


def test_a_cooperative_refund_is_signed_by_the_receiver_authorizer_and_used_once(chain: Chain, bs: Any) -> None:
    cfg = config(chain, salt="0x" + "02" * 32)
    cid = compute_channel_id(cfg, network(chain))
    deposit(chain, bs, cfg, 1_000)
    signature = bytes.fromhex(sign_refund(LocalAuthorizerSigner(chain.accounts.owner), cid, 700, 0,
                                          network(chain))[2:])
    payer = chain.accounts.consumer.address
    before = chain.usdc.balance_of(payer)
    chain.client.transact(bs.functions.refundWithSignature(to_contract_channel_config(cfg), 700, 0, signature),
                          chain.accounts.admin)  # anyone may submit it
    assert chain.usdc.balance_of(payer) - before == 700
    with pytest.raises(ChainError):  # the same signed refund again
        chain.client.transact(bs.functions.refundWithSignature(to_contract_channel_config(cfg), 700, 0, signature),
                              chain.accounts.admin)
    forged = bytes.fromhex(sign_refund(LocalAuthorizerSigner(chain.accounts.consumer), cid, 300, 1,
                                       network(chain))[2:])
    with pytest.raises(ChainError):  # not the receiver authorizer's
        chain.client.transact(bs.functions.refundWithSignature(to_contract_channel_config(cfg), 300, 1, forged),
                              chain.accounts.admin)
    assert channel_state(chain.client, cid).refund_nonce == 1 and channel_state(chain.client, cid).balance == 300


def test_a_deposit_counts_only_what_arrived_and_a_reentering_token_is_refused(chain: Chain, bs: Any) -> None:
    admin = chain.accounts.admin
    token_address, _ = chain.client.deploy(load_artifact_file(TEST_ARTIFACTS / "ReentrantToken.json"), admin)
    plain, _ = chain.client.deploy(load_artifact_file(TEST_ARTIFACTS / "PlainCollector.json"), admin)
    short, _ = chain.client.deploy(load_artifact_file(TEST_ARTIFACTS / "ShortCollector.json"), admin)
    token = chain.client.contract(token_address, load_artifact_file(TEST_ARTIFACTS / "ReentrantToken.json").abi)
    for collector in (plain, short):
        chain.client.transact(token.functions.mint(collector, 10_000), admin)
    cfg = config(chain, token=token_address, salt="0x" + "03" * 32)
    with pytest.raises(ChainError):  # the collector sent half: nothing is credited
        chain.client.transact(bs.functions.deposit(to_contract_channel_config(cfg), 1_000, short, b""), admin)
    chain.client.transact(bs.functions.deposit(to_contract_channel_config(cfg), 1_000, plain, b""), admin)
    claim(chain, bs, cfg, signed=500, total=500)

    receiver = chain.accounts.prover.address
    reenter = bs.functions.settle(receiver, token_address)._encode_transaction_data()
    chain.client.transact(token.functions.arm(BATCH_SETTLEMENT_ADDRESS, bytes.fromhex(reenter[2:])), admin)
    with pytest.raises((ChainError, ContractLogicError)):  # settle -> transfer -> settle again: refused
        chain.client.transact(bs.functions.settle(receiver, token_address), admin)
    assert token.functions.balanceOf(receiver).call() == 0
    assert bs.functions.receivers(receiver, token_address).call() == [500, 0]
