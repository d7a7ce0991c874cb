"""Helpers shared by the market tests (a module, not conftest, so test files can import it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from anvil_binary import anvil_or_skip  # noqa: F401 (re-exported: this folder's tests import it from here)
from compiled import compile_mlp  # noqa: F401 (one compile helper for every world)

from proofmarket.onchain import Market
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS

PRICE = "2.5"
PRICE_UNITS = 2_500_000
OWNER_SHARE_BPS = 7_000
# One candidate per model keeps compiles to seconds: one inner column gives the smallest verifier.
MLP_CANDIDATE = (256, 3, 10, 1)
HASHED_MLP_CANDIDATE = (256, 3, 7, 1)  # scale 7: the salt elements fit the decomposition at any salt width
OTHER_MLP_CANDIDATE = (128, 3, 10, 1)  # same input scale (same input commitment), another circuit
SALT = [(7 * i + 3) % (1 << SALT_BITS) for i in range(SALT_ELEMENTS)]  # a consumer's fixed salt




def mlp_input() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sample_path("mlp", "input").read_text())
    return doc


def commitment_of(market: Market, model_id: str, doc: Any) -> bytes:
    """The input commitment a consumer contract escrows for ``doc`` (a public input: no salt)."""
    from proofmarket.systems.ezkl.commitment import commit_inputs

    manifest, _ = market.workspace.prover.model(model_id)
    return bytes.fromhex(commit_inputs(market.workspace.store, manifest, doc).commitment[2:])


def consumer_contract(market: Market, artifact: str, *args: Any, funds: int = 100 * 10**6) -> Any:
    """A consumer contract deployed with (the market, *args), holding ``funds`` USDC: ``RiskGate`` (contracts/) or
    a test consumer (tests/chain/contracts/CallbackConsumers.sol)."""
    from chain_helpers import TEST_ARTIFACTS

    from proofmarket.chain.artifacts import load_artifact, load_artifact_file

    art = load_artifact(artifact) if artifact == "RiskGate" else load_artifact_file(TEST_ARTIFACTS / f"{artifact}.json")
    address, _ = market.client.deploy(art, market.accounts.consumer, market.market.address, *args)
    market.usdc.mint(address, funds, market.accounts.admin)
    return market.client.contract(address, art.abi)


def request_with_callback(market: Market, consumer: Any, model_id: str, doc: Any, *, gas: int, tip: int,
                          ttl_s: int = 600) -> int:
    """A test consumer's escrow request of ``doc`` with a callback of ``gas`` and ``tip``: its request id."""
    key = market.onchain_id(model_id)
    price = market.registry.get_model(key).spec.price
    tx = market.client.transact(consumer.functions.request(
        key, commitment_of(market, model_id, doc), market.client.timestamp() + ttl_s, price, gas, tip),
        market.accounts.consumer)
    return int(market.market.decode_events(tx, "RequestCreated")[0]["requestId"])


def other_mlp_input() -> dict[str, Any]:
    second = json.loads(sample_path("mlp", "samples").read_text())["inputs"][1]
    assert second["x"][0] != mlp_input()["input_data"][0]
    return {"inputs": second}


def flip_byte(bundle: ProofBundle, position: int) -> ProofBundle:
    proof = bytearray(bytes.fromhex(bundle.proof.hex[2:]))
    proof[position % len(proof)] ^= 0x01
    return bundle.model_copy(update={"proof": bundle.proof.model_copy(update={"hex": "0x" + proof.hex()})})


@dataclass
class Listed:
    public: str  # model ids
    hashed: str
    other: str


@dataclass
class Proofs:
    """Proofs made once per session: a public-input commitment is the same for every request."""

    mlp: ProofBundle  # the sample input on the public MLP
    other_input: ProofBundle  # another input, same model
    other_model: ProofBundle  # the sample input on another MLP circuit
    hashed: ProofBundle  # the sample input on the private-input MLP, salted with SALT


class Balances:
    """USDC balances of the parties of a settlement, to compare to the unit."""

    def __init__(self, market: Market) -> None:
        a = market.accounts
        self.market = market
        self.parties = {"consumer": a.consumer.address, "owner": a.owner.address, "prover": a.prover.address,
                        "escrow": market.market.address}
        self.before = self.read()

    def read(self) -> dict[str, int]:
        return {name: self.market.usdc.balance_of(address) for name, address in self.parties.items()}

    def delta(self) -> dict[str, int]:
        now = self.read()
        return {name: now[name] - self.before[name] for name in now}
