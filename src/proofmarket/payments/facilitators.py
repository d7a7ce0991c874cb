"""The two x402 facilitators the gate can talk to, both through the SDK's sync facilitator protocol.

- ``local_facilitator``: an in-process ``x402FacilitatorSync`` with the ``exact`` EVM scheme and a
  ``FacilitatorWeb3Signer`` (a funded key pays the gas of ``transferWithAuthorization``). Used on the
  devnet, where no public facilitator knows the chain.
- ``remote_facilitator``: ``HTTPFacilitatorClientSync(FacilitatorConfig(url=...))`` for production. Its answers
  are size- and depth-checked (``proofmarket.core.jsonlimits``) before the SDK parses them: a facilitator (or
  whoever answers at its URL) cannot crash the node with deeply nested JSON.

The sync variants are deliberate: the EVM facilitator scheme makes blocking web3 calls even behind
the SDK's async ``x402Facilitator``, so the gate runs the sync SDK in a worker thread instead of
stalling the API's event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_checksum_address
from eth_utils.crypto import keccak
from x402 import x402FacilitatorSync
from x402.http import FacilitatorClientSync, FacilitatorConfig, HTTPFacilitatorClientSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.mechanisms.evm.upto.facilitator import UptoEvmScheme as UptoEvmFacilitator
from x402.schemas import PaymentAbortedError, SchemeNotFoundError

from proofmarket.chain.rpc_session import rpc_provider
from proofmarket.core import jsonlimits
from proofmarket.core.errors import (
    FacilitatorUnavailable,
    JsonTooDeep,
    JsonTooLarge,
    PaymentMismatch,
    PaymentRejected,
    ProofMarketError,
    UsageError,
)
from proofmarket.core.profiles import chain_id_of, network_id  # noqa: F401 (re-exported)

__all__ = ["FacilitatorClientSync", "chain_id_of", "check_supported", "facilitator_call", "local_facilitator",
           "network_id", "remote_facilitator"]

log = logging.getLogger(__name__)
# the gas every facilitator transaction may use (the SDK sends a fixed limit, 500k by default): a batch-settlement
# claim of 100 channels uses about 4M (bench/settlement.md); an exact transfer about 60k, and pays only what it uses
FACILITATOR_GAS_LIMIT = 6_000_000
MAX_FACILITATOR_ANSWER = 1024 * 1024  # bytes: verify, settle and supported answers are a few hundred


def local_facilitator(
    signer: LocalAccount,
    rpc_url: str,
    network: str,
    *,
    confirmation_timeout_seconds: float = 120.0,
) -> x402FacilitatorSync:
    """An in-process facilitator whose ``signer`` submits settlements to ``rpc_url``.

    Give it a key no other component sends transactions from: the SDK signer keeps its own nonce
    counter, and two senders sharing a key race for nonces.
    """
    chain_id_of(network)
    web3_signer = ReorgSafeSigner(
        private_key=signer.key.hex(),
        rpc_url=rpc_url,
        confirmation_timeout_seconds=confirmation_timeout_seconds,
        gas_limit=FACILITATOR_GAS_LIMIT,
    )
    facilitator = x402FacilitatorSync()
    register_exact_evm_facilitator(facilitator, web3_signer, networks=network)
    # batch-settlement channels (deposits, claims, sweeps, refunds): the node signs the receiver-authorizer
    # messages itself, so the facilitator advertises no receiverAuthorizer
    facilitator.register([network], BatchSettlementEvmFacilitator(web3_signer))
    # upto (Permit2 witness transfers through x402's upto proxy): the signer settles what a metered call used
    facilitator.register([network], UptoEvmFacilitator(web3_signer))
    return facilitator


@contextmanager
def facilitator_call(action: str) -> Iterator[None]:
    """Translate what the SDK (and web3 / httpx under it) raises into the proofmarket tree."""
    try:
        yield
    except ProofMarketError:
        raise
    except SchemeNotFoundError as exc:
        raise PaymentMismatch(f"no facilitator serves this scheme and network: {exc}") from exc
    except PaymentAbortedError as exc:
        raise PaymentRejected(f"the payment was aborted: {exc.reason}") from exc
    except Exception as exc:
        raise FacilitatorUnavailable(f"the facilitator failed to {action} the payment: {exc}") from exc


class ReorgSafeSigner(FacilitatorWeb3Signer):
    """The SDK's facilitator signer, whose nonces come back to the chain's after a reorg or a dropped transaction.

    The SDK keeps a nonce counter ahead of the chain's pending count (so that concurrent settlements do not
    collide). When a transaction it sent vanishes (its block orphaned, or dropped unmined) the counter stays
    ahead: every later settlement would wait behind a nonce nobody sends, for ever. Here, when the chain's latest
    and pending counts agree (nothing of ours waits in the pool) and are below the counter, no other send is between
    its reservation and the pool (``_sending``: counted, not guessed from time: on a loaded machine a send took over
    the quiet time to reach the pool once, and the next reservation took its nonce: "nonce too low"), and no nonce
    was reserved for a while, the counter goes back to the chain's count."""

    QUIET_S = 5.0  # no reservation for this long

    _last_reserved = 0.0
    _sending = 0  # sends between their nonce's reservation and the pool (the SDK's two senders, counted around them)

    def __init__(self, private_key: str, rpc_url: str, **options: Any) -> None:
        super().__init__(private_key=private_key, rpc_url=rpc_url, **options)
        self._no_code: dict[str, float] = {}  # address -> when its empty code was read (insertion order: oldest first)
        self._no_code_lock = threading.Lock()
        # the node's provider (chain/rpc_session.py: the environment read once, the chain id remembered) under the
        # SDK's Web3; the SDK keeps its Web3 private: when that changes, this does nothing
        w3 = getattr(self, "_w3", None)
        if w3 is not None:
            w3.provider = rpc_provider(rpc_url)

    def _reserve_nonce(self) -> int:
        with self._nonce_lock:
            if self._next_nonce is not None and self._sending <= 1 and \
                    time.monotonic() - self._last_reserved > self.QUIET_S:  # 1: the send reserving this one
                address = self._account.address
                pending = int(self._w3.eth.get_transaction_count(address, "pending"))
                if pending < self._next_nonce and pending == int(self._w3.eth.get_transaction_count(address,
                                                                                                 "latest")):
                    log.warning("facilitator nonce %s is ahead of the chain's %s (a transaction vanished: reorg or "
                                "dropped): taking the chain's", self._next_nonce, pending)
                    self._next_nonce = pending
            self._last_reserved = time.monotonic()
        return int(super()._reserve_nonce())

    @contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._nonce_lock:
            self._sending += 1
        try:
            yield
        finally:
            with self._nonce_lock:
                self._sending -= 1

    def write_contract(self, *args: Any, **kwargs: Any) -> str:
        with self._in_flight():
            return str(super().write_contract(*args, **kwargs))

    def send_transaction(self, to: str, data: bytes) -> str:
        with self._in_flight():
            return str(super().send_transaction(to, data))

    # The exact scheme's verify (and settle, which verifies again) asks for the payer's code and simulates the
    # transfer: two RPCs whose answers matter only as "no error". web3's request and ABI formatting around them
    # cost several times the round trip to the node (bench/http.md); these go to the provider directly, and any
    # answer but a plain success goes through web3 again, so that errors and reverts read exactly as before.

    # An address without code (an EOA's) is remembered for NO_CODE_TTL_S: a call's verify and its settlement's
    # verify, and a payer's next calls, skip that read. Nothing is lost by it: the transfer's simulation (read each
    # time) and the settlement itself still refuse an authorization the token would not take, and a contract
    # wallet's code is read every time.
    NO_CODE_TTL_S = 10.0
    NO_CODE_MAX = 4096  # addresses remembered (the oldest go first)

    def get_code(self, address: str) -> bytes:
        key, now = address.lower(), time.monotonic()
        with self._no_code_lock:
            seen = self._no_code.get(key)
            if seen is not None and now - seen < self.NO_CODE_TTL_S:
                return b""
        answer = self._rpc("eth_getCode", [address, "latest"])
        code = _hex_bytes(answer)
        if code is None:  # an error answer, or none: web3 asks again (and raises as it does)
            code = bytes(super().get_code(address))
        with self._no_code_lock:
            self._no_code.pop(key, None)
            if not code:
                self._no_code[key] = now
                while len(self._no_code) > self.NO_CODE_MAX:
                    self._no_code.pop(next(iter(self._no_code)))
        return code

    def read_contract(self, address: str, abi: list[dict[str, Any]], function_name: str, *args: Any) -> Any:
        data = _call_data(abi, function_name, args)  # only for functions without outputs (nothing to decode)
        if data is not None and is_checksum_address(address):
            call = {"from": self._account.address, "to": address, "data": "0x" + data.hex()}
            if isinstance(self._rpc("eth_call", [call, "latest"]), str):
                return ()  # what web3 answers for a function without outputs
        return super().read_contract(address, abi, function_name, *args)

    def _rpc(self, method: str, params: list[Any]) -> Any:
        """The JSON-RPC answer's result, or None on an error answer or a failed request (web3 then asks again)."""
        try:
            answer = self._w3.provider.make_request(method, params)  # type: ignore[arg-type]
        except Exception:
            return None
        return None if "error" in answer else answer.get("result")


def _hex_bytes(answer: Any) -> bytes | None:
    """A JSON-RPC ``0x...`` data answer as bytes; None for anything else."""
    if not (isinstance(answer, str) and answer.startswith("0x")):
        return None
    try:
        return bytes.fromhex(answer[2:])
    except ValueError:
        return None


def _call_data(abi: list[dict[str, Any]], name: str, args: tuple[Any, ...]) -> bytes | None:
    """Calldata for the one function ``name`` of ``abi`` with ``len(args)`` plain inputs and no outputs, each
    address argument a checksum address (as web3 demands); None for anything else."""
    found = [f for f in abi if f.get("type") == "function" and f.get("name") == name
             and len(f.get("inputs", ())) == len(args)]
    if len(found) != 1 or found[0].get("outputs"):
        return None
    types = [str(i.get("type", "")) for i in found[0]["inputs"]]
    if any(t.startswith("tuple") or not t for t in types):
        return None
    if any(t == "address" and not (isinstance(a, str) and is_checksum_address(a))
           for t, a in zip(types, args, strict=True)):
        return None
    try:
        return keccak(text=f"{name}({','.join(types)})")[:4] + abi_encode(types, list(args))
    except Exception:
        return None


def remote_facilitator(url: str, *, timeout: float = 30.0, token: str | None = None) -> HTTPFacilitatorClientSync:
    """A facilitator service reached over HTTP (``POST /verify``, ``POST /settle``, ``GET /supported``); each
    request gives up after ``timeout`` seconds (connect, send, answer): a verify is then refused
    ``facilitator_unavailable``, a settle left pending and followed on chain."""
    if not url.startswith(("http://", "https://")):
        raise FacilitatorUnavailable(f"the facilitator URL {url!r} is not an http(s) URL", url=url)
    headers = {"Authorization": f"Bearer {token}"} if token else None  # a facilitator that asks for one
    http = httpx.Client(timeout=timeout, follow_redirects=True, headers=headers,  # httpx drops it off-origin
                        event_hooks={"response": [_checked_answer]})
    return HTTPFacilitatorClientSync(FacilitatorConfig(url=url, timeout=timeout, http_client=http))


def _checked_answer(response: httpx.Response) -> None:
    """Every facilitator answer, read and checked before the SDK's ``response.json()``."""
    response.read()
    try:
        jsonlimits.check(response.content, max_bytes=MAX_FACILITATOR_ANSWER, what="the facilitator's answer")
    except (JsonTooDeep, JsonTooLarge) as exc:
        raise FacilitatorUnavailable(f"the facilitator's answer is not usable: {exc.message}",
                                     url=str(response.url)) from exc


def check_supported(facilitator: FacilitatorClientSync, network: str, url: str, scheme: str = "exact") -> None:
    """Ask ``/supported`` whether the facilitator at ``url`` serves ``scheme`` on ``network`` (x402 version 2).

    It answers and does not: ``UsageError`` (the node is configured for a facilitator that cannot take its
    payments). It does not answer: ``FacilitatorUnavailable`` (the caller decides whether that is fatal)."""
    try:
        supported = facilitator.get_supported()
    except FacilitatorUnavailable:
        raise
    except Exception as exc:
        raise FacilitatorUnavailable(f"the facilitator at {url} did not answer /supported: {exc}", url=url) from exc
    kinds = {(k.scheme, k.network) for k in supported.kinds if k.x402_version == 2}
    if (scheme, network) not in kinds:
        offered = ", ".join(sorted(f"{s} on {n}" for s, n in kinds)) or "nothing"
        raise UsageError(f"the facilitator at {url} (PROOFMARKET_FACILITATOR_URL) does not settle {scheme} payments "
                         f"on this node's chain {network} (x402 version 2); it supports {offered}",
                         url=url, network=network)
