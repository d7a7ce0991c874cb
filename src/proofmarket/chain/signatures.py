"""Whether a wallet signed a message: an EOA (ecrecover, no RPC), a deployed contract wallet (ERC-1271), or a
counterfactual one (ERC-6492: its factory call and its ERC-1271 check run inside one ``eth_call``).

``wallet_signed(address, signable, signature, client)`` answers True or False; a chain that cannot be asked (none
given, or it does not answer) is a ``ChainError`` for a signature that is not the address's own ecrecover. The
contract half is ``contracts/SignatureValidator.sol``, never deployed: its creation code runs in ``eth_call`` and
returns one byte.
"""

from __future__ import annotations

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage, _hash_eip191_message
from web3 import Web3
from web3.exceptions import ContractLogicError

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import ChainError

ERC6492_SUFFIX = bytes.fromhex("64926492" * 8)


def signed_by_key(address: str, signable: SignableMessage, signature: bytes) -> bool:
    """The signature is ``address``'s own key's (a 65-byte ECDSA signature ecrecover accepts)."""
    if len(signature) != 65:
        return False
    try:
        return str(Account.recover_message(signable, signature=signature)).lower() == address.lower()
    except Exception:  # not a signature ecrecover takes: not the key's
        return False


def wallet_signed(address: str, signable: SignableMessage, signature: bytes, client: ChainClient | None) -> bool:
    """``address`` signed ``signable``: its key's signature, or its contract wallet's (ERC-1271, ERC-6492) as the
    chain answers now."""
    if signed_by_key(address, signable, signature) and not signature.endswith(ERC6492_SUFFIX):
        return True
    if client is None:
        raise ChainError("a contract wallet's signature is checked on chain, and this node has no chain")
    digest = _hash_eip191_message(signable)
    artifact = load_artifact("SignatureValidator")
    data = artifact.bytecode + encode(["address", "bytes32", "bytes"],
                                      [Web3.to_checksum_address(address), digest, signature]).hex()
    with client.translate("check a contract wallet's signature"):
        try:
            answer = bytes(client.w3.eth.call({"data": data}))  # type: ignore[typeddict-item]
        except ContractLogicError:  # the wallet or its factory reverted: not its signature
            return False
    return answer == b"\x01"
