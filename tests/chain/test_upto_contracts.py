"""Permit2 and the upto proxy (contracts/Permit2.sol, UptoPermit2Proxy.sol) against the x402 SDK's own ``upto`` client
and facilitator: the SDK signs, verifies and settles through them unchanged, and their rules hold: at most the signed
maximum, only the named facilitator, only to the signed recipient, once, before the deadline, with Permit2 approved."""

from __future__ import annotations

import time
from typing import Any

import pytest
from chain_helpers import Chain
from eth_account.signers.local import LocalAccount
from x402.mechanisms.evm.constants import PERMIT2_ADDRESS, X402_UPTO_PERMIT2_PROXY_ADDRESS
from x402.mechanisms.evm.types import UptoPermit2Payload
from x402.mechanisms.evm.upto.client import UptoEvmScheme as UptoClient
from x402.mechanisms.evm.upto.permit2_utils import (
    _build_upto_permit2_settle_args,
    settle_upto_permit2,
    verify_upto_permit2,
)
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.permit2 import approve_permit2, install_upto, nonce_used, permit2_allowance
from proofmarket.core.errors import ChainError
from proofmarket.payments.facilitators import ReorgSafeSigner

MAX = 1_000


@pytest.fixture
def proxy(chain: Chain) -> Any:
    install_upto(chain.client)
    return chain.client.contract(X402_UPTO_PERMIT2_PROXY_ADDRESS, load_artifact("UptoPermit2Proxy").abi)


def facilitator(chain: Chain) -> ReorgSafeSigner:
    return ReorgSafeSigner(private_key=chain.accounts.relayer.key.hex(), rpc_url=chain.client.rpc_url)


def requirements(chain: Chain, amount: int = MAX, *, timeout: int = 600) -> PaymentRequirements:
    domain = chain.usdc.domain()
    return PaymentRequirements(scheme="upto", network=f"eip155:{chain.client.chain_id}", asset=chain.usdc.address,
                               amount=str(amount), pay_to=chain.accounts.owner.address, max_timeout_seconds=timeout,
                               extra={"name": domain.name, "version": domain.version,
                                      "assetTransferMethod": "permit2",
                                      "facilitatorAddress": chain.accounts.relayer.address})


def signed(chain: Chain, payer: LocalAccount | None = None, **options: Any) -> PaymentPayload:
    req = requirements(chain, **options)
    payload = UptoClient(payer or chain.accounts.consumer).create_payment_payload(req)
    return PaymentPayload(payload=payload, accepted=req)


def test_the_sdk_signs_verifies_and_settles_less_than_it_authorized(chain: Chain, proxy: Any) -> None:
    consumer, owner = chain.accounts.consumer, chain.accounts.owner
    approve_permit2(chain.client, chain.usdc.address, consumer)
    assert permit2_allowance(chain.client, chain.usdc.address, consumer.address) == 2**256 - 1
    assert approve_permit2(chain.client, chain.usdc.address, consumer) is None  # once is enough
    payment, signer = signed(chain), facilitator(chain)
    verified = verify_upto_permit2(signer, payment, requirements(chain))
    assert verified.is_valid, verified.invalid_reason
    before = (chain.usdc.balance_of(consumer.address), chain.usdc.balance_of(owner.address))
    settled = settle_upto_permit2(signer, payment, requirements(chain, 300))  # used 300 of 1,000
    assert settled.success, settled.error_reason
    assert chain.usdc.balance_of(consumer.address) == before[0] - 300
    assert chain.usdc.balance_of(owner.address) == before[1] + 300
    nonce = int(UptoPermit2Payload.from_dict(payment.payload).permit2_authorization.nonce)
    assert nonce_used(chain.client, consumer.address, nonce)
    again = settle_upto_permit2(facilitator(chain), payment, requirements(chain, 300))
    assert not again.success  # the nonce is spent: an authorization moves money once
    assert chain.usdc.balance_of(consumer.address) == before[0] - 300


def test_without_permit2_approved_the_facilitator_refuses_it(chain: Chain, proxy: Any) -> None:
    stranger = chain.accounts.stranger
    chain.usdc.transfer(stranger.address, MAX, chain.accounts.consumer)
    verified = verify_upto_permit2(facilitator(chain), signed(chain, stranger), requirements(chain))
    assert not verified.is_valid and verified.invalid_reason == "permit2_allowance_required"


def _settle(chain: Chain, proxy: Any, payment: PaymentPayload, amount: int, sender: LocalAccount,
            **change: Any) -> None:
    permit, _, owner, witness, signature = _build_upto_permit2_settle_args(
        UptoPermit2Payload.from_dict(payment.payload), amount)
    if "to" in change:
        witness = (change["to"], witness[1], witness[2])
    chain.client.transact(proxy.functions.settle(permit, amount, owner, witness, signature), sender)


def test_only_the_named_facilitator_settles_at_most_the_maximum_to_the_signed_recipient(chain: Chain,
                                                                                        proxy: Any) -> None:
    approve_permit2(chain.client, chain.usdc.address, chain.accounts.consumer)
    payment = signed(chain)
    with pytest.raises(ChainError, match="UnauthorizedFacilitator"):
        _settle(chain, proxy, payment, 10, chain.accounts.stranger)
    with pytest.raises(ChainError, match="AmountExceedsPermitted"):
        _settle(chain, proxy, payment, MAX + 1, chain.accounts.relayer)
    with pytest.raises(ChainError, match="InvalidSignature"):  # the witness binds the recipient
        _settle(chain, proxy, payment, 10, chain.accounts.relayer, to=chain.accounts.stranger.address)
    before = chain.usdc.balance_of(chain.accounts.owner.address)
    _settle(chain, proxy, payment, MAX, chain.accounts.relayer)
    assert chain.usdc.balance_of(chain.accounts.owner.address) == before + MAX
    with pytest.raises(ChainError, match="InvalidNonce"):
        _settle(chain, proxy, payment, 1, chain.accounts.relayer)


def test_an_expired_or_given_up_authorization_moves_nothing(chain: Chain, proxy: Any) -> None:
    consumer = chain.accounts.consumer
    approve_permit2(chain.client, chain.usdc.address, consumer)
    payment = signed(chain, timeout=60)
    # past its deadline on the chain's clock (the deadline is the wall clock's; the shared chain's may differ)
    deadline = int(UptoPermit2Payload.from_dict(payment.payload).permit2_authorization.deadline)
    chain.client.rpc("evm_increaseTime", [max(1, deadline - chain.client.timestamp() + 60)])
    chain.client.rpc("evm_mine", [])
    assert chain.client.timestamp() > deadline
    with pytest.raises(ChainError, match="SignatureExpired"):
        _settle(chain, proxy, payment, 1, chain.accounts.relayer)
    fresh = signed(chain)
    nonce = int(UptoPermit2Payload.from_dict(fresh.payload).permit2_authorization.nonce)
    permit2 = chain.client.contract(PERMIT2_ADDRESS, load_artifact("Permit2").abi)
    chain.client.transact(permit2.functions.invalidateUnorderedNonces(nonce >> 8, 1 << (nonce & 0xFF)), consumer)
    assert nonce_used(chain.client, consumer.address, nonce)
    with pytest.raises(ChainError, match="InvalidNonce"):
        _settle(chain, proxy, fresh, 1, chain.accounts.relayer)
    assert int(time.time()) > 0
