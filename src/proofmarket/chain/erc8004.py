"""Wrappers over the ERC-8004 Trustless Agents registries (``contracts/IdentityRegistry.sol``,
``ReputationRegistry.sol``, ``ValidationRegistry.sol``): plain Python values in and out."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from proofmarket.chain.client import ChainClient, TxResult
from proofmarket.chain.contracts import BoundContract, view
from proofmarket.core.errors import ChainError

ZERO32 = b"\x00" * 32


@dataclass(frozen=True)
class Summary:
    count: int
    value: float  # the average, as a decimal number

    def to_json(self) -> dict[str, float | int]:
        return {"count": self.count, "average": self.value}


class IdentityRegistry(BoundContract):
    artifact_name = "IdentityRegistry"

    def register(self, agent_uri: str, sender: LocalAccount) -> tuple[int, TxResult]:
        tx = self.client.transact(self.contract.get_function_by_signature("register(string)")(agent_uri), sender)
        events = self.decode_events(tx, "Registered")
        if not events:
            raise ChainError("the identity registry did not report a Registered event", tx=tx.tx_hash)
        return int(events[0]["agentId"]), tx

    def set_agent_uri(self, agent_id: int, uri: str, sender: LocalAccount) -> TxResult:
        return self._send("setAgentURI", sender, agent_id, uri)

    def owner_of(self, agent_id: int) -> str:
        return str(self._call("ownerOf", agent_id))

    def agent_uri(self, agent_id: int) -> str:
        return str(self._call("tokenURI", agent_id))

    total = view("totalAgents", int)

    def agent_of(self, owner: str) -> int | None:
        """The newest agent ``owner`` holds (None when it holds none): a linear scan, fine for a devnet. Anyone
        can transfer an agent to any address: to learn who an address says it is, use :meth:`agent_minted_by`."""
        for agent_id in range(self.total(), 0, -1):
            if self.owner_of(agent_id).lower() == owner.lower():
                return agent_id
        return None

    def agent_minted_by(self, address: str, from_block: int = 0, uri: str | None = None) -> int | None:
        """The newest agent ``address`` registered itself (its ``Registered`` event names it as the minter) and
        still holds (with ``uri``: whose registration file is at it now), or None. Agents minted by others and
        transferred to ``address`` never count: anyone can register an agent and send it to any address."""
        event = self.contract.events.Registered()
        logs = event.get_logs(from_block=from_block, argument_filters={"owner": self.client.w3.to_checksum_address(
            address)})
        for agent_id in sorted((int(e["args"]["agentId"]) for e in logs if e["address"] == self.address),
                               reverse=True):
            if self.owner_of(agent_id).lower() == address.lower() and (uri is None or self.agent_uri(agent_id) == uri):
                return agent_id
        return None

    def registry_id(self) -> str:
        """``eip155:<chain id>:<address>``, as registration files name a registry."""
        return f"eip155:{self.client.chain_id}:{self.address}"


class ReputationRegistry(BoundContract):
    artifact_name = "ReputationRegistry"

    def give_feedback(self, agent_id: int, value: int, sender: LocalAccount, *, decimals: int = 0, tag1: str = "",
                      tag2: str = "", endpoint: str = "", feedback_uri: str = "",
                      feedback_hash: bytes = ZERO32) -> TxResult:
        return self._send("giveFeedback", sender, agent_id, value, decimals, tag1, tag2, endpoint, feedback_uri,
                          feedback_hash)

    def summary(self, agent_id: int, clients: list[str] | None = None, tag1: str = "", tag2: str = "") -> Summary:
        count, value, decimals = self._call("getSummary", agent_id, clients or [], tag1, tag2)
        return Summary(int(count), int(value) / 10 ** int(decimals))


class ValidationRegistry(BoundContract):
    artifact_name = "ValidationRegistry"

    def request(self, validator: str, agent_id: int, request_uri: str, request_hash: bytes,
                sender: LocalAccount) -> TxResult:
        return self._send("validationRequest", sender, validator, agent_id, request_uri, request_hash)

    def respond(self, request_hash: bytes, response: int, sender: LocalAccount, *, response_uri: str = "",
                response_hash: bytes = ZERO32, tag: str = "") -> TxResult:
        return self._send("validationResponse", sender, request_hash, response, response_uri, response_hash, tag)

    def status(self, request_hash: bytes) -> dict[str, object]:
        validator, agent_id, response, response_hash, tag, last = self._call("getValidationStatus", request_hash)
        return {"validator": validator, "agent_id": int(agent_id), "response": int(response),
                "response_hash": "0x" + bytes(response_hash).hex(), "tag": tag, "last_update": int(last)}

    def summary(self, agent_id: int, validators: list[str] | None = None, tag: str = "") -> Summary:
        count, average = self._call("getSummary", agent_id, validators or [], tag)
        return Summary(int(count), float(average))

    def validations(self, agent_id: int) -> list[str]:
        return ["0x" + bytes(h).hex() for h in self._call("getAgentValidations", agent_id)]


class ZkValidator(BoundContract):
    """Answers validations of proven work from chain state (``contracts/ZkValidator.sol``)."""

    artifact_name = "ZkValidator"

    def request_hash(self, request_id: int) -> bytes:
        return bytes(self._call("requestHashOf", request_id))

    def proof_hash(self, model_key: bytes, proof: bytes, instances: list[int]) -> bytes:
        return bytes(self._call("proofHashOf", model_key, proof, instances))

    def validate_request(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("validateRequest", sender, request_id)

    def validate_proof(self, model_key: bytes, proof: bytes, instances: list[int], sender: LocalAccount) -> TxResult:
        return self._send("validateProof", sender, model_key, proof, instances, gas=3_000_000)


@dataclass(frozen=True)
class Erc8004:
    identity: IdentityRegistry
    reputation: ReputationRegistry
    validation: ValidationRegistry
    zk: ZkValidator

    @classmethod
    def bind(cls, client: ChainClient, addresses: dict[str, str]) -> Erc8004:
        return cls(IdentityRegistry(client, addresses["IdentityRegistry"]),
                   ReputationRegistry(client, addresses["ReputationRegistry"]),
                   ValidationRegistry(client, addresses["ValidationRegistry"]),
                   ZkValidator(client, addresses["ZkValidator"]))
