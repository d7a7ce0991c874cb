"""Whether a wallet signed a message: an EOA (ecrecover, no RPC), a deployed contract wallet (ERC-1271), or a
counterfactual one (ERC-6492: its factory call and its ERC-1271 check run inside one ``eth_call``).

``wallet_signed(address, signable, signature, client)`` answers True or False; a chain that cannot be asked (none
given, or it does not answer) is a ``ChainError`` for a signature that is not the address's own ecrecover. The
contract half is ``contracts/SignatureValidator.sol``, never deployed: its creation code runs in ``eth_call`` and
returns one byte.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage, _hash_eip191_message
from web3 import Web3
from web3.exceptions import ContractLogicError

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import ChainError, ContractReverted

T = TypeVar("T")
ERC6492_SUFFIX = bytes.fromhex("64926492" * 8)
# a contract wallet's check (its ERC-1271 answer, or an ERC-6492 factory deploying it first) runs with this much gas
# at most, and is given up after this long: an anonymous request must not make the node run a factory that burns
# 20M gas or an RPC call that never ends
WALLET_CHECK_GAS = 2_000_000
WALLET_CHECK_TIMEOUT_S = 5.0
REFUSED_TTL_S = 600.0  # a refused (address, message, signature) is answered from memory this long
REFUSED_PER_ADDRESS = 3  # ... and past this many refusals of one address in that time, any of its signatures
_refused: dict[str, float] = {}
_by_address: dict[str, list[float]] = {}  # address -> until when each of its latest refusals counts
_refused_lock = threading.Lock()
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wallet-check")


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
    key = hashlib.sha256(address.lower().encode() + digest + signature).hexdigest()
    if _known_refused(key) or _refused_count(address) >= REFUSED_PER_ADDRESS:  # a new nonce buys no new call
        return False
    artifact = load_artifact("SignatureValidator")
    data = artifact.bytecode + encode(["address", "bytes32", "bytes"],
                                      [Web3.to_checksum_address(address), digest, signature]).hex()

    def ask() -> bytes:
        with client.translate("check a contract wallet's signature"):
            return bytes(client.w3.eth.call({"data": data, "gas": WALLET_CHECK_GAS}))  # type: ignore[typeddict-item]

    try:
        answer = bounded(ask, address)
    except (ContractLogicError, ContractReverted):  # the wallet or its factory reverted: not its signature
        answer = b""
    except ChainError as exc:  # out of gas under the cap: not its signature; anything else (the RPC) is no answer
        if exc.details.get("timed_out"):  # a wallet that stalls counts as refused, once per call it stalled
            _remember_refused(key, address)
            raise
        text = exc.message.lower()
        if "out of gas" not in text and "gas required exceeds" not in text and "execution reverted" not in text:
            raise
        answer = b""
    if answer != b"\x01":
        _remember_refused(key, address)
        return False
    return True


def bounded(ask: Callable[[], T], address: str) -> T:
    """``ask()`` (an ``eth_call`` that runs a contract wallet's code, capped in gas by the caller) on the check pool,
    given up after ``WALLET_CHECK_TIMEOUT_S``: no request waits on a wallet for longer, and no thread of the event
    loop runs it."""
    future = _checks.submit(ask)
    try:
        return future.result(timeout=WALLET_CHECK_TIMEOUT_S)
    except FutureTimeout:
        future.cancel()  # still queued: never run; running: its answer is dropped
        raise ChainError(f"the contract wallet {address} did not answer within {WALLET_CHECK_TIMEOUT_S:g} s: its "
                         "signature is not taken", address=address, timed_out=True) from None


def _known_refused(key: str) -> bool:
    with _refused_lock:
        until = _refused.get(key)
        return until is not None and until > time.monotonic()


def _refused_count(address: str) -> int:
    """How many of ``address``'s signatures the chain refused in the last ``REFUSED_TTL_S``."""
    now = time.monotonic()
    with _refused_lock:
        return sum(1 for until in _by_address.get(address.lower(), ()) if until > now)


def _remember_refused(key: str, address: str) -> None:
    until = time.monotonic() + REFUSED_TTL_S
    with _refused_lock:
        if len(_refused) > 10_000:  # bounded: the oldest half goes
            for old in sorted(_refused, key=_refused.__getitem__)[:5_000]:
                del _refused[old]
        _refused[key] = until
        if len(_by_address) > 10_000:
            _by_address.clear()
        recent = [t for t in _by_address.get(address.lower(), ()) if t > until - REFUSED_TTL_S]
        _by_address[address.lower()] = (recent + [until])[-REFUSED_PER_ADDRESS:]
