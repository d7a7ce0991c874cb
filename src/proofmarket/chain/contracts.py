"""Typed wrappers over the deployed contracts: methods named like the contract functions, taking and
returning plain Python values. Transactions take the sending ``LocalAccount`` as ``sender``.
The market wrapper lives in ``market.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import BlockIdentifier

from proofmarket.chain.artifacts import Artifact, load_artifact
from proofmarket.chain.client import ChainClient, TxResult
from proofmarket.chain.commitments import model_id_of
from proofmarket.chain.eip3009 import SignedAuthorization, TokenDomain
from proofmarket.chain.types import ZERO_ADDRESS, BatchVerifier, ModelSpec, RegisteredModel

T = TypeVar("T")


def view(name: str, kind: Callable[[Any], T]) -> Callable[[BoundContract], T]:
    """A method that reads the contract's argument-free view function ``name`` (at the latest block) as ``kind``."""

    def read(self: BoundContract) -> T:
        return kind(self._call(name))

    read.__doc__ = f"The contract's ``{name}()``."
    return read


def sent(name: str) -> Callable[[BoundContract, LocalAccount], TxResult]:
    """A method that sends the contract's argument-free function ``name`` from ``sender``."""

    def send(self: BoundContract, sender: LocalAccount) -> TxResult:
        return self._send(name, sender)

    send.__doc__ = f"Send ``{name}()`` from ``sender``."
    return send


class BoundContract:
    """A contract at an address, with the client that talks to it."""

    artifact_name = ""

    def __init__(self, client: ChainClient, address: str, artifact: Artifact | None = None) -> None:
        self.client = client
        self.artifact = artifact or load_artifact(self.artifact_name)
        self.contract: Contract = client.contract(address, self.artifact.abi)
        self.address: str = self.contract.address
        client.names[self.address.lower()] = self.artifact.name  # the gas report names the contract

    def _call(self, name: str, *args: Any, block: BlockIdentifier = "latest") -> Any:
        return self.client.call(self.contract.functions[name](*args), block=block)

    def _send(self, name: str, sender: LocalAccount, *args: Any, gas: int | None = None) -> TxResult:
        return self.client.transact(self.contract.functions[name](*args), sender, gas=gas)

    def estimate(self, name: str, sender: str, *args: Any) -> int:
        """``eth_estimateGas`` of ``name(*args)`` sent from ``sender`` (``ContractReverted`` when it would revert;
        ``ChainError`` when the node cannot run it within its gas cap)."""
        return self.client.estimate(self.contract.functions[name](*args), sender)

    def decode_events(self, tx: TxResult, name: str) -> list[dict[str, Any]]:
        event = self.contract.events[name]()
        return [
            dict(e["args"]) for e in event.process_receipt(tx.receipt, errors=DISCARD) if e["address"] == self.address
        ]

    owner = view("owner", str)  # every contract here is Ownable


class UsdcToken(BoundContract):
    """USDC or the devnet TestUSDC: ERC-20 + EIP-3009. ``mint`` exists on TestUSDC only."""

    artifact_name = "TestUSDC"

    name = view("name", str)

    version = view("version", str)

    decimals = view("decimals", int)

    def balance_of(self, account: str, *, block: BlockIdentifier = "latest") -> int:
        return int(self.client.read(self.address, "balanceOf(address)", [account], ["uint256"], what="token",
                                    block=block)[0])

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._call("allowance", owner, spender))

    total_supply = view("totalSupply", int)

    def authorization_state(self, authorizer: str, nonce: bytes) -> bool:
        return bool(self.client.read(self.address, "authorizationState(address,bytes32)", [authorizer, nonce],
                                     ["bool"], what="token")[0])

    def domain(self) -> TokenDomain:
        return TokenDomain(self.name(), self.version(), self.client.chain_id, self.address)

    def approve(self, spender: str, amount: int, sender: LocalAccount) -> TxResult:
        return self._send("approve", sender, spender, amount)

    def transfer(self, to: str, amount: int, sender: LocalAccount) -> TxResult:
        return self._send("transfer", sender, to, amount)

    def mint(self, to: str, amount: int, sender: LocalAccount) -> TxResult:
        return self._send("mint", sender, to, amount)

    def transfer_with_authorization(self, auth: SignedAuthorization, sender: LocalAccount) -> TxResult:
        return self._send_authorization("transferWithAuthorization", auth, sender)

    def receive_with_authorization(self, auth: SignedAuthorization, sender: LocalAccount) -> TxResult:
        return self._send_authorization("receiveWithAuthorization", auth, sender)

    def _send_authorization(self, name: str, auth: SignedAuthorization, sender: LocalAccount) -> TxResult:
        fn = self.contract.get_function_by_signature(
            f"{name}(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
        )
        call = fn(
            auth.from_address,
            auth.to,
            auth.value,
            auth.valid_after,
            auth.valid_before,
            auth.nonce,
            auth.sig.v,
            auth.sig.r,
            auth.sig.s,
        )
        return self.client.transact(call, sender)


class ModelRegistry(BoundContract):
    """Model ids are namespaced by owner: ``register(key, ...)`` lists under ``modelIdOf(sender, key)``."""

    artifact_name = "ModelRegistry"

    def model_id_of(self, owner: str, key: bytes) -> bytes:
        return model_id_of(owner, key)

    def register(self, key: bytes, spec: ModelSpec, sender: LocalAccount) -> TxResult:
        return self._send("register", sender, key, spec.as_tuple())

    def update_price(self, model_id: bytes, price: int, sender: LocalAccount) -> TxResult:
        return self._send("updatePrice", sender, model_id, price)

    def update_metadata(self, model_id: bytes, metadata_cid: str, sender: LocalAccount) -> TxResult:
        return self._send("updateMetadata", sender, model_id, metadata_cid)

    def set_active(self, model_id: bytes, active: bool, sender: LocalAccount) -> TxResult:
        return self._send("setActive", sender, model_id, active)

    def register_batch(self, model_id: bytes, size: int, verifier: str, sender: LocalAccount) -> TxResult:
        """Name the verifier of the model's batch circuit of ``size`` calls (once per size; owner only)."""
        return self._send("registerBatch", sender, model_id, size, self.client.w3.to_checksum_address(verifier))

    def batch_verifier(self, model_id: bytes, size: int) -> BatchVerifier:
        verifier, registered_at, codehash = self._call("batchVerifier", model_id, size)
        return BatchVerifier(size, None if verifier == ZERO_ADDRESS else str(verifier), int(registered_at),
                             bytes(codehash))

    def batch_verifiers(self, model_id: bytes) -> list[BatchVerifier]:
        """Every batch verifier the model's owner registered, by size (the registry's ``batchSizes`` mask)."""
        mask = int(self._call("batchSizes", model_id))
        return [self.batch_verifier(model_id, bit + 1) for bit in range(64) if mask >> bit & 1]

    def exists(self, model_id: bytes) -> bool:
        return bool(self._call("exists", model_id))

    def get_model(self, model_id: bytes) -> RegisteredModel:
        owner, active, key, codehash, spec = self._call("getModel", model_id)
        return RegisteredModel(bytes(model_id), str(owner), bool(active), ModelSpec.from_tuple(spec), bytes(key),
                               bytes(codehash))
