"""The web3 connection: calls, signed transactions that wait for receipts, deployments.

Every web3 / transport exception is translated here: a revert becomes ``ContractReverted`` with a
plain sentence (custom errors decoded by name from the known ABIs), a dead or unreachable node
becomes ``RPCUnavailable``, anything else the node refuses becomes ``ChainError``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_abi.abi import decode, encode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import BlockIdentifier, RPCEndpoint

from proofmarket.chain import rpc_stats
from proofmarket.chain.artifacts import Artifact, project_abis
from proofmarket.chain.reverts import DecodedRevert, RevertDecoder
from proofmarket.chain.rpc_session import rpc_provider
from proofmarket.chain.rpc_stats import RpcTimer
from proofmarket.chain.txs import NONCES, Submission, fees
from proofmarket.core import settings as core_settings
from proofmarket.core.errors import ChainError, ContractReverted, RPCUnavailable
from proofmarket.core.profiles import ChainProfile, GasPolicy, profile_for
from proofmarket.core.settings import Settings

log = logging.getLogger(__name__)

GAS_MARGIN = 1.25  # on top of eth_estimateGas: the verifier's gas use varies with the proof
CONTRACTS_KEPT = 256  # contract objects a client keeps (a long-lived client meets many consumer contracts)


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    receipt: Any = field(repr=False)


class ChainClient:
    """One RPC endpoint. Thread-safe for sending: each account's nonces come from one process-wide sequence
    (``proofmarket.chain.txs.NONCES``), fees and re-sends follow the chain profile's gas policy (``gas``
    overrides it)."""

    def __init__(self, rpc_url: str, *, timeout: float = 30.0, receipt_timeout: float = 120.0,
                 gas: GasPolicy | None = None) -> None:
        self.rpc_url = rpc_url
        self.receipt_timeout = receipt_timeout
        self._gas = gas
        retry = ExceptionRetryConfiguration(errors=(requests.ConnectionError, requests.Timeout), retries=2)
        self.w3 = Web3(rpc_provider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=retry))
        self.w3.middleware_onion.add(RpcTimer, "proofmarket_rpc_timer")  # /metrics: requests, outcomes, time
        self.decoder = RevertDecoder(project_abis())
        self._chain_id: int | None = None
        self._chain_key: tuple[int, str] | None = None
        self._contracts: dict[tuple[str, int], tuple[list[dict[str, Any]], Contract]] = {}
        self._contracts_lock = threading.Lock()
        self.names: dict[str, str] = {}  # contract address (lower case) -> its artifact's name, for the gas report

    # --- connection ---------------------------------------------------------------------------
    @property
    def profile(self) -> ChainProfile:
        """The profile of the chain this RPC answers (its confirmations, log range, gas policy)."""
        return profile_for(self.chain_id)

    @property
    def gas(self) -> GasPolicy:
        return self._gas or self.profile.gas

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with self.translate("read the chain id"):
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def chain_key(self) -> tuple[int, str]:
        """The chain as the process's nonce sequences know it: its id and its genesis block's hash (two devnets
        share an id, never a genesis)."""
        if self._chain_key is None:
            with self.translate("read the genesis block"):
                genesis = self.w3.eth.get_block(0)["hash"]
            self._chain_key = (self.chain_id, bytes(genesis).hex())
        return self._chain_key

    def block_number(self) -> int:
        with self.translate("read the block number"):
            return int(self.w3.eth.block_number)

    def timestamp(self, block: BlockIdentifier = "latest") -> int:
        with self.translate("read a block"):
            return int(self.w3.eth.get_block(block)["timestamp"])

    def receipt(self, tx_hash: str) -> Any:
        """A transaction's receipt; None while the chain has not mined it (an RPC that fails raises ``ChainError``:
        no verdict)."""
        with self.translate("read a transaction receipt"):
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

    def vanished(self, tx_hash: str) -> bool:
        """Whether the chain no longer knows a transaction at all: not mined (its block orphaned by a reorg) and not
        waiting in the node's pool (dropped)."""
        if self.receipt(tx_hash) is not None:
            return False
        with self.translate("read a transaction"):
            try:
                self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return True
        return False

    def code_at(self, address: str) -> bytes:
        with self.translate("read contract code"):
            return bytes(self.w3.eth.get_code(Web3.to_checksum_address(address)))

    def rpc(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call (for anvil's evm_* methods)."""
        return self._request(method, params, method, method=method)

    def read(self, to: str, signature: str, args: Sequence[Any] = (), returns: Sequence[str] = (), *,
             what: str = "contract", block: BlockIdentifier = "latest") -> tuple[Any, ...]:
        """``signature`` (e.g. ``"balanceOf(address)"``) of the contract at ``to``, read by one ``eth_call`` of
        calldata built here and sent straight to the provider (at the latest block unless ``block`` pins one): the
        reads a paid call makes on every request skip web3's per-call ABI lookup, formatting and validation. The
        answer decoded as ``returns``; an argument that is not its type, an answer that is not ``returns`` (no such
        contract there: ``what`` names the one meant), a revert or an RPC error is a ``ChainError``."""
        name, _, listed = signature.partition("(")
        types = [t for t in listed.rstrip(")").split(",") if t]
        try:
            data = keccak(text=signature)[:4] + encode(types, list(args))
        except Exception as exc:  # noqa: BLE001 (eth-abi's encoding errors: an argument that is not its type)
            raise ChainError(f"cannot ask {signature} of {list(args)!r}: {exc}", address=to) from exc
        at = block if isinstance(block, str) else Web3.to_hex(block)
        answer = self._request("eth_call", [{"to": to, "data": "0x" + data.hex()}, at], f"read {name}")
        try:
            raw = bytes.fromhex(answer.removeprefix("0x"))
        except (AttributeError, ValueError) as exc:  # no result, or not hex
            raise ChainError(f"read {name} failed: the node answered {answer!r}", address=to) from exc
        try:
            return tuple(decode(list(returns), raw))
        except Exception as exc:  # noqa: BLE001 (an answer that is not the types: no such function there)
            raise ChainError(f"{to} answered {signature} with {len(raw)} bytes that are not ({', '.join(returns)}): "
                             f"is it the {what}?", address=to) from exc

    def _request(self, name: str, params: list[Any], action: str, **details: Any) -> Any:
        """One JSON-RPC request straight to the provider, timed for ``/metrics`` as web3's own requests are (see
        ``RpcTimer``): its result, or a ``ChainError`` (``RPCUnavailable`` when the node does not answer)."""
        start = time.perf_counter()
        try:
            with self.translate(action):
                response = self.w3.provider.make_request(RPCEndpoint(name), params)
        except RPCUnavailable:
            rpc_stats.record(name, "unreachable", time.perf_counter() - start)
            raise
        failed = response.get("error") is not None
        rpc_stats.record(name, "rpc_error" if failed else "ok", time.perf_counter() - start)
        if failed:
            raise ChainError(f"{action} failed: {response['error']}", **(details or {"action": action}))
        return response.get("result")

    # --- contracts ----------------------------------------------------------------------------
    def contract(self, address: str, abi: list[dict[str, Any]]) -> Contract:
        """The contract at ``address`` with ``abi``, made once per (address, ABI) and kept: building one hashes every
        function's selector, which a read on every paid call should not pay again."""
        key = (address.lower(), id(abi))
        with self._contracts_lock:
            found = self._contracts.get(key)
            if found is None:  # the ABI is kept with its contract: its id is not reused while the entry stands
                self.decoder.add_abi(abi)
                found = (abi, self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi))
                if len(self._contracts) >= CONTRACTS_KEPT:  # the oldest goes (consumers' addresses, loaded ABIs)
                    del self._contracts[next(iter(self._contracts))]
                self._contracts[key] = found
        return found[1]

    def call(self, fn: ContractFunction, *, sender: str | None = None, block: BlockIdentifier = "latest") -> Any:
        """A read; ``block`` pins it to one block (several reads of one state)."""
        with self.translate(fn.fn_name):
            return fn.call({"from": sender} if sender else {}, block_identifier=block)

    def estimate(self, fn: ContractFunction, sender: str) -> int:
        """``eth_estimateGas`` of ``fn`` from ``sender`` (what ``transact`` sends, before its margin)."""
        with self.translate(fn.fn_name):
            return int(fn.estimate_gas({"from": sender}))

    def transact(self, fn: ContractFunction, sender: LocalAccount, *, gas: int | None = None) -> TxResult:
        result = self._transact(fn, sender, gas, fn.fn_name)
        _log_gas(self.names.get(str(fn.address).lower(), str(fn.address)), fn.fn_name, result.gas_used)
        return result

    def deploy(self, artifact: Artifact, sender: LocalAccount, *args: Any) -> tuple[str, TxResult]:
        """Deploy ``artifact`` with constructor ``args``; return (address, tx). An artifact that calls external
        libraries is deployed once they are linked (:meth:`Artifact.linked`)."""
        artifact.require_linked()
        self.decoder.add_abi(artifact.abi)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        result = self._transact(factory.constructor(*args), sender, None, f"deploy {artifact.name}")
        address = result.receipt["contractAddress"]
        if not address:
            raise ChainError(f"deploying {artifact.name} created no contract", tx=result.tx_hash)
        self.names[str(address).lower()] = artifact.name
        return Web3.to_checksum_address(address), result

    def send_data(self, sender: LocalAccount, data: str, *, to: str | None = None, action: str = "send") -> TxResult:
        """A transaction of prepared calldata (``to`` a contract) or creation code (no ``to``: a deployment), as a
        node's plan gives it to a wallet; the same nonces, fees and receipts as every other transaction."""
        return self._transact(_Prepared(self.w3, data, to), sender, None, action)

    # --- internals ----------------------------------------------------------------------------
    def _transact(
        self, fn: ContractFunction | ContractConstructor | _Prepared, sender: LocalAccount, gas: int | None,
        action: str) -> TxResult:
        """Build, sign and send under the account's nonce lock; wait for the receipt outside it (re-sending with
        higher fees while it is not mined). A nonce the chain says is used is taken again from the chain, once."""
        policy = self.gas
        for attempt in (1, 2):
            with self.translate(action):
                with NONCES.lock(self.chain_key, sender.address):
                    params: dict[str, Any] = {"from": sender.address, "chainId": self.chain_id,
                                              **fees(self.w3, policy)}
                    params["nonce"] = NONCES.take(self.chain_key, sender.address, lambda: int(
                        self.w3.eth.get_transaction_count(sender.address, "pending")))
                    if gas is not None:
                        params["gas"] = gas
                    try:
                        tx = dict(fn.build_transaction(params))  # type: ignore[arg-type]
                        if gas is None:  # the margin, within what one transaction may carry
                            tx["gas"] = max(int(tx["gas"]), min(int(tx["gas"] * GAS_MARGIN), self.profile.max_tx_gas))
                        submission = Submission(self.w3, sender, tx, policy,
                                                flush=self._flush_automine if self.profile.is_devnet else None)
                        submission.send()
                    except BaseException as exc:  # the chain never took this nonce
                        NONCES.done(self.chain_key, sender.address)
                        if attempt == 1 and isinstance(exc, Web3RPCError) and "nonce too low" in str(exc).lower():
                            continue
                        raise
                try:
                    tx_hash, receipt = submission.wait(self.receipt_timeout, self.profile.block_time_s)
                finally:
                    NONCES.done(self.chain_key, sender.address)
            break
        result = TxResult(tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]), receipt)
        if receipt["status"] != 1:
            self._explain_failed(tx, result, action)
        return result

    def _flush_automine(self) -> None:
        """The devnet only: a transaction an automining anvil left ready in its pool is mined by a block mined on
        purpose (a test that paused mining keeps its pending transactions)."""
        try:
            if self.rpc("anvil_getAutomine", []) is not True:
                return
            log.warning("anvil left a transaction unmined in automine mode: mining a block")
            self.rpc("evm_mine", [])
        except ChainError as exc:  # another devnet (Hardhat answers 31337 too): re-sending is all there is
            log.debug("no block mined on purpose: %s", exc)

    def _explain_failed(self, tx: dict[str, Any], result: TxResult, action: str) -> None:
        """Replay a mined, failed transaction as a call on the parent block to learn why."""
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        with self.translate(action):
            self.w3.eth.call(call, block_identifier=result.block_number - 1)  # type: ignore[arg-type]
        raise ContractReverted(
            f"{action} failed in transaction {result.tx_hash} (out of gas at {tx.get('gas')}?)",
            tx=result.tx_hash,
            action=action,
        )

    def decode_revert(self, exc: ContractLogicError) -> DecodedRevert:
        data = exc.data if isinstance(exc.data, str) else None
        if data and data.startswith("0x"):
            return self.decoder.decode(bytes.fromhex(data[2:]))
        reason = (exc.message or str(exc)).removeprefix("execution reverted: ").removeprefix("execution reverted")
        return DecodedRevert("Error", {"reason": reason}, f"the contract reverted: {reason or 'no reason'}")

    @contextmanager
    def translate(self, action: str) -> Iterator[None]:
        """Map web3 / transport exceptions raised inside the block to the proofmarket tree."""
        try:
            yield
        except ContractLogicError as exc:
            decoded = self.decode_revert(exc)
            raise ContractReverted(
                f"{action} was refused: {decoded.sentence}",
                action=action,
                error=decoded.name,
                args={k: str(v) for k, v in decoded.args.items()},
            ) from exc
        except (requests.ConnectionError, requests.Timeout, ProviderConnectionError, ConnectionError) as exc:
            raise RPCUnavailable(f"cannot reach the chain node at {self.rpc_url} ({action})", url=self.rpc_url) from exc
        except TimeExhausted as exc:
            raise RPCUnavailable(f"{action}: no receipt from {self.rpc_url} in time", url=self.rpc_url) from exc
        except Web3RPCError as exc:
            raise ChainError(f"{action}: the node refused it: {exc}", action=action) from exc
        except Web3Exception as exc:
            raise ChainError(f"{action} failed: {exc}", action=action) from exc


@functools.lru_cache(maxsize=64)
def chain_id_of(rpc_url: str) -> int:
    """The chain id an RPC endpoint answers (``eth_chainId``), asked once per URL and process."""
    return ChainClient(rpc_url).chain_id


def node_chain_id(settings: Settings) -> int:
    """The chain the node is on (PROOFMARKET_CHAIN, else its RPC's chain id, else the devnet): the EIP-712
    domain its attestations and receipts are signed in."""
    return core_settings.settings_chain_id(settings, chain_id_of)


def node_profile(settings: Settings) -> ChainProfile:
    """The profile of the chain the node is on (see ``node_chain_id``)."""
    return settings.profile(node_chain_id(settings))


class _Prepared:
    """Calldata or creation code given whole: ``build_transaction`` as web3's contract functions have it."""

    fn_name = "send"

    def __init__(self, w3: Web3, data: str, to: str | None) -> None:
        self.w3, self.data, self.to = w3, data if data.startswith("0x") else "0x" + data, to

    def build_transaction(self, params: dict[str, Any]) -> dict[str, Any]:
        tx = {**params, "data": self.data, **({"to": Web3.to_checksum_address(self.to)} if self.to else {})}
        tx.setdefault("gas", int(self.w3.eth.estimate_gas(tx)))  # type: ignore[arg-type]
        return tx


GAS_LOG = "PROOFMARKET_GAS_LOG"


def _log_gas(contract: str, function: str, gas: int) -> None:
    """The gas report's record (``scripts/gas_report.py``): with PROOFMARKET_GAS_LOG naming a file, each transaction
    of a contract function appends its contract, function and gasUsed (one short line: appends stay whole)."""
    path = core_settings.env_value(GAS_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"contract": contract, "function": function, "gas": gas}) + "\n")
