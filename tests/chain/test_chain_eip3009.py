"""TestUSDC metadata and EIP-3009; the market's authorization-based request path."""

from __future__ import annotations

import pytest
from chain_helpers import PRICE, USDC, Chain, Listed

from proofmarket.chain import (
    input_commitment,
    sign_cancel_authorization,
    sign_transfer_authorization,
)
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain


def test_test_usdc_looks_like_usdc(chain: Chain) -> None:
    usdc = chain.usdc
    assert (usdc.name(), usdc.version(), usdc.decimals()) == ("USD Coin", "2", 6)
    assert usdc.owner() == chain.accounts.admin.address
    with pytest.raises(ContractReverted, match="not the contract owner"):
        usdc.mint(chain.accounts.stranger.address, 1, chain.accounts.stranger)


def test_transfer_with_authorization_and_replay(chain: Chain) -> None:
    a, usdc = chain.accounts, chain.usdc
    now = chain.client.timestamp()
    auth = sign_transfer_authorization(
        a.consumer, usdc.domain(), to=a.owner.address, value=3 * USDC, valid_after=0, valid_before=now + 600
    )
    before = usdc.balance_of(a.owner.address)
    usdc.transfer_with_authorization(auth, a.relayer)
    assert usdc.balance_of(a.owner.address) == before + 3 * USDC
    assert usdc.authorization_state(a.consumer.address, auth.nonce)
    assert not usdc.authorization_state(a.consumer.address.lower(), b"\x07" * 32)  # any address form, a fresh nonce
    assert usdc.balance_of(a.owner.address.lower()) == usdc.balance_of(a.owner.address) == before + 3 * USDC
    with pytest.raises(ContractReverted, match="already used"):
        usdc.transfer_with_authorization(auth, a.relayer)


def test_the_per_call_reads_refuse_what_is_not_a_token_or_an_address(chain: Chain) -> None:
    """The balance and nonce reads an exact payment makes on every call go as prepared calldata: an address with no
    token behind it, or an argument that is not an address, is a ChainError that says so, never a zero balance."""
    from proofmarket.chain.contracts import UsdcToken
    from proofmarket.core.errors import ChainError

    nothing = UsdcToken(chain.client, chain.accounts.stranger.address)  # an account: no code
    with pytest.raises(ChainError, match="is it the token"):
        nothing.balance_of(chain.accounts.owner.address)
    with pytest.raises(ChainError, match="cannot ask"):
        chain.usdc.balance_of("0x1234")


def test_bytes_signature_form_and_cancel(chain: Chain) -> None:
    a, usdc = chain.accounts, chain.usdc
    domain, now = usdc.domain(), chain.client.timestamp()
    auth = sign_transfer_authorization(
        a.consumer, domain, to=a.owner.address, value=1, valid_after=0, valid_before=now + 600
    )
    fn = usdc.contract.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    )
    chain.client.transact(fn(auth.from_address, auth.to, 1, 0, now + 600, auth.nonce, auth.sig.signature), a.relayer)
    second = sign_transfer_authorization(
        a.consumer, domain, to=a.owner.address, value=1, valid_after=0, valid_before=now + 600
    )
    cancel = sign_cancel_authorization(a.consumer, domain, second.nonce)
    cancel_fn = usdc.contract.functions.cancelAuthorization(
        a.consumer.address, second.nonce, cancel.v, cancel.r, cancel.s
    )
    chain.client.transact(cancel_fn, a.relayer)
    with pytest.raises(ContractReverted, match="already used or canceled"):
        usdc.transfer_with_authorization(second, a.relayer)


def test_receive_with_authorization_only_by_the_payee(chain: Chain) -> None:
    a, usdc = chain.accounts, chain.usdc
    auth = sign_transfer_authorization(
        a.consumer,
        usdc.domain(),
        receive=True,
        to=a.owner.address,
        value=1,
        valid_after=0,
        valid_before=chain.client.timestamp() + 600,
    )
    with pytest.raises(ContractReverted, match="ERC20InvalidReceiver"):
        usdc.receive_with_authorization(auth, a.relayer)
    usdc.receive_with_authorization(auth, a.owner)


def test_request_by_authorization_then_replay_is_refused(chain: Chain, model: Listed) -> None:
    a, market, usdc = chain.accounts, chain.market, chain.usdc
    consumer = a.stranger  # holds USDC, has approved nothing
    assert usdc.allowance(consumer.address, market.address) == 0
    commitment, deadline = input_commitment([1, 2, 3]), chain.client.timestamp() + 3600
    auth, salt = market.sign_request_authorization(consumer, model.key, commitment, deadline)
    before = usdc.balance_of(consumer.address)

    submitted = market.request_inference_with_authorization(model.key, commitment, deadline, auth, salt, a.relayer)

    assert submitted.amount == PRICE and usdc.balance_of(consumer.address) == before - PRICE
    request = market.get_request(submitted.request_id)
    assert request.consumer == consumer.address and request.input_commitment == commitment
    with pytest.raises(ContractReverted, match="already used"):
        market.request_inference_with_authorization(model.key, commitment, deadline, auth, salt, a.relayer)


def test_relayer_cannot_change_what_the_consumer_signed_for(chain: Chain, model: Listed) -> None:
    a, market = chain.accounts, chain.market
    commitment, deadline = input_commitment([1, 2, 3]), chain.client.timestamp() + 3600
    auth, salt = market.sign_request_authorization(a.stranger, model.key, commitment, deadline)
    with pytest.raises(ContractReverted, match="signature is invalid"):
        market.request_inference_with_authorization(
            model.key, input_commitment([9, 9, 9]), deadline, auth, salt, a.relayer
        )
    market.pause(a.admin)
    with pytest.raises(ContractReverted, match="paused"):
        market.request_inference_with_authorization(model.key, commitment, deadline, auth, salt, a.relayer)
