"""The rehearsal's USDC placement: anvil answering as Base Sepolia (84532), the token's code at the canonical USDC
address under the real domain ("USDC", "2"), and an EIP-3009 transfer signed in that domain executed there."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from anvil_binary import anvil_or_skip
from eth_account import Account
from eth_account.signers.local import LocalAccount

from proofmarket.chain import Devnet
from proofmarket.chain.client import ChainClient
from proofmarket.chain.eip3009 import TokenDomain, sign_transfer_authorization
from proofmarket.core.errors import ContractReverted, UsageError
from proofmarket.core.profiles import BASE_SEPOLIA, DEVNET
from proofmarket.demo.rehearsal_chain import PlacedUsdc, check_authorization, fund, place_usdc, require_local_anvil
from proofmarket.payments.onchain import usdc_domain

pytestmark = [pytest.mark.chain]

CANONICAL = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"




@pytest.fixture(scope="module")
def sepolia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with Devnet(tmp_path_factory.mktemp("rehearsal"), anvil=anvil_or_skip(), chain_id=BASE_SEPOLIA.chain_id) as net:
        yield net


@pytest.fixture(scope="module")
def owner(sepolia: Devnet) -> LocalAccount:
    account: LocalAccount = Account.create()
    sepolia.client().rpc("anvil_setBalance", [account.address, hex(10**18)])
    return account


@pytest.fixture(scope="module")
def placed(sepolia: Devnet, owner: LocalAccount) -> PlacedUsdc:
    return place_usdc(sepolia.client(), BASE_SEPOLIA, owner)


def test_usdc_answers_at_the_canonical_address_in_the_real_domain(sepolia: Devnet, owner: LocalAccount,
                                                                  placed: PlacedUsdc) -> None:
    assert BASE_SEPOLIA.usdc == CANONICAL  # the address the rehearsal stands in for
    client = sepolia.client()
    assert client.chain_id == 84532
    assert placed.token.address == CANONICAL
    assert placed.domain == TokenDomain("USDC", "2", 84532, CANONICAL)
    assert (placed.token.name(), placed.token.version(), placed.token.decimals()) == ("USDC", "2", 6)
    assert placed.owner == owner.address
    assert client.code_at(CANONICAL) == client.code_at(placed.template)
    # the template itself signs in its own address's domain: the canonical one is not a copy of the template's
    assert placed.template != CANONICAL
    # placing again on the same chain keeps the token (idempotent), with the same owner
    again = place_usdc(client, BASE_SEPOLIA, owner)
    assert again.domain == placed.domain and again.owner == owner.address


def test_transfer_with_authorization_in_the_canonical_domain(sepolia: Devnet, owner: LocalAccount,
                                                             placed: PlacedUsdc) -> None:
    client = sepolia.client()
    payer: LocalAccount = Account.create()
    payee: LocalAccount = Account.create()
    submitter: LocalAccount = Account.create()
    fund(client, placed, owner, {"payer": payer.address, "submitter": submitter.address},
         eth_wei=10**17, usdc_atomic={"payer": 5_000_000})
    assert placed.token.balance_of(payer.address) == 5_000_000
    assert client.w3.eth.get_balance(submitter.address) == 10**17
    check = check_authorization(client, BASE_SEPOLIA, placed, payer, payee.address, submitter, 1_250_000)
    assert (check.payer_before - check.payer_after, check.payee_after - check.payee_before) == (1_250_000, 1_250_000)
    assert check.domain == TokenDomain("USDC", "2", 84532, CANONICAL)
    assert placed.token.balance_of(payee.address) == 1_250_000


@pytest.mark.parametrize("domain", [
    TokenDomain("USD Coin", "2", 84532, CANONICAL),  # the devnet's / mainnet's name: not Base Sepolia's
    TokenDomain("USDC", "1", 84532, CANONICAL),
    TokenDomain("USDC", "2", 31337, CANONICAL),
])
def test_an_authorization_signed_in_another_domain_is_refused(sepolia: Devnet, owner: LocalAccount,
                                                               placed: PlacedUsdc, domain: TokenDomain) -> None:
    client = sepolia.client()
    payer: LocalAccount = Account.create()
    fund(client, placed, owner, {"payer": payer.address}, eth_wei=10**17, usdc_atomic={"payer": 1_000_000})
    auth = sign_transfer_authorization(payer, domain, to=owner.address, value=1, valid_after=0,
                                       valid_before=2**40)
    with pytest.raises(ContractReverted):
        placed.token.transfer_with_authorization(auth, payer)
    assert placed.token.balance_of(payer.address) == 1_000_000


def test_only_a_local_anvil_is_accepted(sepolia: Devnet, owner: LocalAccount) -> None:
    with pytest.raises(UsageError, match="local anvil"):
        require_local_anvil(ChainClient("https://sepolia.base.org"))
    with pytest.raises(UsageError, match="--chain-id 31337"):
        place_usdc(sepolia.client(), dataclasses.replace(DEVNET, usdc=CANONICAL), owner)
    assert require_local_anvil(sepolia.client()).startswith("anvil/")


def test_the_node_offers_x402_terms_in_the_tokens_own_domain(sepolia: Devnet, placed: PlacedUsdc) -> None:
    client = sepolia.client()
    assert usdc_domain(client, CANONICAL) == ("USDC", "2")  # Base Sepolia's USDC: the profile's, not "USD Coin"
    assert usdc_domain(client, placed.template) == ("USDC", "2")  # another token: read from the token itself
