"""External libraries: the AttestationCourt's stake histories live in StakeCheckpoints, linked at deployment (the
court's size), and a deployment's code checks compare each linked contract with its own library's address."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chain_helpers import Chain
from eth_utils.crypto import keccak

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.court import COURT_LIBRARY, AttestationCourt
from proofmarket.chain.deploy_plan import DEVNET_COURT_PARAMS
from proofmarket.chain.verify_code import DIFFERS, MATCH, compare
from proofmarket.core.errors import ChainError

pytestmark = pytest.mark.chain

# solc's placeholder for an unlinked library: "__$" + the first 34 hex digits of keccak256 of the library's fully
# qualified name + "$__" (Solidity docs, "Library Linking")
QUALIFIED = "contracts/StakeCheckpoints.sol:StakeCheckpoints"
PLACEHOLDER = "__$" + keccak(text=QUALIFIED).hex()[:34] + "$__"
ELSEWHERE = "0x" + "ab" * 20


def test_linking_writes_the_library_address_over_every_placeholder_and_nothing_else() -> None:
    court = load_artifact("AttestationCourt")
    assert court.libraries == (COURT_LIBRARY,)
    for code, links in ((court.bytecode, court.links), (court.deployed_bytecode, court.deployed_links)):
        assert code.count(PLACEHOLDER) == len(links) > 0
    linked = court.linked({COURT_LIBRARY: ELSEWHERE, "Unrelated": "0x" + "cd" * 20})
    assert linked.libraries == () and "__$" not in linked.bytecode + linked.deployed_bytecode
    assert linked.bytecode.replace("ab" * 20, PLACEHOLDER) == court.bytecode
    assert linked.deployed_bytecode.replace("ab" * 20, PLACEHOLDER) == court.deployed_bytecode
    with pytest.raises(ChainError, match="StakeCheckpoints, which is not deployed"):
        court.linked({})
    with pytest.raises(ChainError, match="not a 20-byte address"):
        court.linked({COURT_LIBRARY: "0x1234"})
    with pytest.raises(ChainError, match="no placeholder of library StakeCheckpoints at byte 0"):
        replace(court, links=((COURT_LIBRARY, 0),)).linked({COURT_LIBRARY: ELSEWHERE})  # an offset solc never gave


def _court_args(chain: Chain) -> tuple[object, ...]:
    a = chain.accounts
    return chain.usdc.address, chain.registry.address, a.admin.address, DEVNET_COURT_PARAMS, 0


def test_an_unlinked_court_is_refused_before_anything_is_sent(chain: Chain) -> None:
    admin = chain.accounts.admin
    nonce = chain.client.w3.eth.get_transaction_count(admin.address)
    with pytest.raises(ChainError, match="library StakeCheckpoints"):
        chain.client.deploy(load_artifact("AttestationCourt"), admin, *_court_args(chain))
    assert chain.client.w3.eth.get_transaction_count(admin.address) == nonce


def test_a_court_linked_to_its_library_matches_both_artifacts_and_keeps_its_stake_history(chain: Chain) -> None:
    client, admin = chain.client, chain.accounts.admin
    library, _ = client.deploy(load_artifact(COURT_LIBRARY), admin)
    address, _ = client.deploy(load_artifact("AttestationCourt").linked({COURT_LIBRARY: library}), admin,
                               *_court_args(chain))
    library_code = client.code_at(library)
    assert library_code[1:21] == bytes.fromhex(library[2:])  # the call guard: the library's own address, masked
    assert compare(COURT_LIBRARY, library, library_code, load_artifact(COURT_LIBRARY)).status == MATCH
    court_code = client.code_at(address)
    assert compare("court", address, court_code,
                   load_artifact("AttestationCourt").linked({COURT_LIBRARY: library})).status == MATCH
    other = compare("court", address, court_code, load_artifact("AttestationCourt").linked({COURT_LIBRARY: ELSEWHERE}))
    assert other.status == DIFFERS  # a court that calls another library is not this deployment's
    # the histories work through the library: a validator's stake as of each block
    court, v = AttestationCourt(client, address), chain.accounts.stranger
    amount = court.params().validator_min_stake
    chain.usdc.mint(v.address, 3 * amount, admin)
    chain.usdc.approve(address, 3 * amount, v)
    court.stake(amount, v, validator=True)
    first = client.w3.eth.block_number
    court.stake(2 * amount, v, validator=True)
    second = client.w3.eth.block_number
    history = [court.contract.functions.stakeAt(v.address, b).call() for b in (first - 1, first, second)]
    assert history == [0, amount, 3 * amount]
