"""Gas of the attested tier and ERC-8004 on a fresh anvil devnet (no proofs needed).

AttestationCourt: request (approve excluded), commit (signature check), finalize after the window, challenge
(bond), vote, the deciding vote (resolution: slash + refund, or the challenger's bond lost + payment), claiming a
vote, an availability challenge and the bundle published in answer.
ERC-8004: register an agent, give feedback, a validation request and the ZkValidator's answer for a settled
escrow request. Writes OUT/gas_attested.json and OUT/gas_attested.md (and its section of OUT/gas.md), with each
operation's cost in USD on Base and Arbitrum at the prices stated in bench/prices.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from eth_utils import keccak
from prices import L2_GAS_GWEI, assumptions, dollars, l1_data_bound_usd, l2_usd, legend  # bench/prices.py

from proofmarket.chain import Devnet, TxResult, deploy, dev_account, find_anvil
from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.commitments import model_id_of, model_key
from proofmarket.chain.court import AttestationCourt, Commitment, deploy_court
from proofmarket.chain.erc8004 import Erc8004
from proofmarket.chain.types import ModelSpec

USDC = 10**6
PRICE = 2_500_000
WEIGHTS = b"\x11" * 32
# window, vote, response, unbond (s); quorum, sample, slash, reward, voter slash, fee (bps); bond, stakes
PARAMS = (300, 300, 300, 600, 5_000, 1_000, 5_000, 5_000, 2_000, 100, 2 * USDC, 100 * USDC, 10 * USDC)
BUNDLE = b"{" + b'"x": 1, ' * 1_000 + b"}"  # an 8 KB bundle published after an availability challenge
BATCHES = (1, 8, 32)
GAS_MD_SECTION = "\n## Attested tier (AttestationCourt) and ERC-8004\n"


def _advance(client: Any, seconds: int) -> None:
    client.rpc("evm_increaseTime", [seconds])
    client.rpc("evm_mine", [])


class Gas(dict[str, int]):
    """Gas per operation, and the signed size of the transaction that measured it (``sizes``)."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client
        self.sizes: dict[str, int] = {}

    def note(self, name: str, tx: TxResult, per: int = 1) -> None:
        """Record ``tx`` as ``name`` (``per``: the requests it served: gas and bytes per request)."""
        raw = str(self.client.rpc("eth_getRawTransactionByHash", [tx.tx_hash]))
        self[name] = tx.gas_used // per
        self.sizes[name] = (len(raw) - 2) // 2 // per


def measure() -> Gas:
    with tempfile.TemporaryDirectory(prefix="gas-attested-") as tmp, Devnet(Path(tmp), anvil=find_anvil()) as net:
        client = net.client()
        gas = Gas(client)
        admin, owner, consumer, node, *validators = (dev_account(i, client.chain_id) for i in range(8))
        deployment = deploy(client, admin, Path(tmp) / "deployment.json")
        usdc, registry, _ = deployment.bind(client)
        verifier, _ = client.deploy(load_artifact("AttestationVerifier"), owner, node.address, WEIGHTS)
        spec = ModelSpec(onnx_sha256=WEIGHTS, vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
                         settings_hash=b"\x33" * 32, verifier=verifier, price=PRICE, owner_share_bps=7_000,
                         input_instances=1, instance_count=5, metadata_cid="bafy")
        registry.register(model_key("bafy-attested"), spec, owner)
        key = model_id_of(owner.address, model_key("bafy-attested"))
        court_address, tx = deploy_court(client, admin, usdc.address, registry.address, admin.address, PARAMS, 60)
        gas.note("court deploy", tx)
        wrapped = AttestationCourt(client, court_address)
        for who, amount, validator in ((node, 100 * USDC, False), *((v, 10 * USDC, True) for v in validators)):
            usdc.approve(court_address, amount + 10 * USDC, who)
            gas.note("stake (validator: a checkpoint)" if validator else "stake (node)",
                     wrapped.stake(amount, who, validator=validator))
            if validator:  # only a validator that declared the model weighs on its requests
                gas.note("declare a model (validator)", wrapped.declare(key, who))
        client.rpc("evm_mine", [])  # declarations count from the next block
        usdc.approve(court_address, 100 * PRICE, consumer)

        def request(h: int) -> int:
            rid, tx = wrapped.request_tx(key, keccak(h.to_bytes(32, "big")), client.timestamp() + 3_600, consumer,
                                         node=node.address)
            gas.note("request (escrow)", tx)
            return rid

        def instances(h: int) -> list[int]:
            return [h, int.from_bytes(WEIGHTS, "big"), 3, 4, 5]

        def commit(request_id: int, h: int, digest: bytes = b"\x01" * 32) -> None:
            gas.note("commit (post commitment, one job)", wrapped.commit(request_id, instances(h), node, digest))

        rid = request(1)
        commit(rid, 1)
        _advance(client, 301)
        gas.note("finalize (paid after the window)", wrapped.finalize(rid, admin))
        for cheated, label in ((False, "bond lost + payment"), (True, "slash + refund")):
            rid = request(2 if cheated else 3)
            commit(rid, 2 if cheated else 3)
            # the challenge is the challenger's vote (10 of 40 USDC eligible); two more make more than half
            gas.note("challenge (with bond, escrows its share)", wrapped.challenge(rid, validators[0]))
            for voter in validators[1:]:  # until a side holds more than half of the 40 USDC
                tx = wrapped.vote(rid, cheated, voter)
                if wrapped.status(rid) == "challenged":
                    gas.note("vote (escrows its share)", tx)
                else:
                    gas.note(f"deciding vote ({label})", tx)
                    break
            gas.note("claim a vote", wrapped.claim(rid, validators[1].address, admin))
        usdc.approve(court_address, 100 * USDC, node)  # the slash took half the node's stake: top it up
        wrapped.stake(100 * USDC, node, validator=False)
        drawn = None
        for h in range(4, 64):  # only a drawn validator may challenge availability; the draw (a block hash) is
            rid = request(h)    # random: commit to new requests until one draws a validator
            wrapped.commit(rid, instances(h), node, hashlib.sha256(BUNDLE).digest())  # not measured: warmer storage
            client.rpc("anvil_mine", [hex(2)])  # the draw is known a block later
            drawn = next((v for v in validators if wrapped.is_sampled(rid, v.address)), None)
            if drawn is not None:
                break
        assert drawn is not None, "no validator drawn in 60 requests"
        gas.note("availability challenge", wrapped.challenge_availability(rid, drawn))
        gas.note(f"publish a withheld bundle ({len(BUNDLE):,} bytes)", wrapped.publish(rid, BUNDLE, node))
        for size in BATCHES:  # one signed Merkle root for `size` requests
            batch = [Commitment(request(1_000 * size + i), instances(1_000 * size + i), bytes([i % 250 + 1]) * 32)
                     for i in range(size)]
            gas.note(f"commit batch of {size} (per request)", wrapped.commit_batch(batch, node), per=size)
        registries = Erc8004.bind(client, deployment.erc8004 or {})
        agent_id, tx = registries.identity.register("http://node/.well-known/agent-registration.json", node)
        gas.note("ERC-8004 register agent", tx)
        gas.note("ERC-8004 feedback", registries.reputation.give_feedback(agent_id, 90, consumer, tag1="inference",
                                                                          tag2="attested"))
        gas.note("ERC-8004 validation request", registries.validation.request(
            validators[0].address, agent_id, "ipfs://bafy#receipt=0x", b"\x42" * 32, node))
        gas.note("ERC-8004 validation response", registries.validation.respond(b"\x42" * 32, 100, validators[0],
                                                                               tag="attested"))
    return gas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    gas = measure()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gas_attested.json").write_text(json.dumps(
        {"gas": dict(gas), "tx_bytes": gas.sizes, "prices": assumptions()}, indent=2))
    lines = ["# Gas: attested tier (AttestationCourt) and ERC-8004", "",
             "`make bench` (bench/gas_attested.py), fresh anvil devnet, gas used per transaction (the last of its "
             "kind when measured more than once). The challenge counts as the challenger's vote; a side wins once it "
             "holds more than half the eligible stake (4 equal validators: 3 votes decide).", "",
             legend() + " A batch's `tx bytes` are per request.", "",
             "| operation | gas | tx bytes | " + " | ".join(f"{chain} USD" for chain in L2_GAS_GWEI)
             + " | L1 data <= USD |", "|---|---|---|" + "---|" * len(L2_GAS_GWEI) + "---|"]
    lines += [f"| {name} | {value:,} | {gas.sizes[name]:,} | "
              + " | ".join(dollars(l2_usd(value, chain)) for chain in L2_GAS_GWEI)
              + f" | {dollars(l1_data_bound_usd(gas.sizes[name]))} |" for name, value in gas.items()]
    one = gas["commit (post commitment, one job)"]
    lines += ["", "Commitments: one per job against a Merkle root per batch (one signature, one stake check and one "
              "transaction for the batch; each request keeps its own window, challenge and vote):", "",
              "| commitment | gas per request | vs one per job |", "|---|---|---|",
              f"| one per job | {one:,} | 1.00 |"]
    lines += [f"| batch of {size} | {gas[f'commit batch of {size} (per request)']:,} | "
              f"{gas[f'commit batch of {size} (per request)'] / one:.2f} |" for size in BATCHES]
    table = "\n".join(lines) + "\n"
    (args.out / "gas_attested.md").write_text(table)
    gas_md = args.out / "gas.md"  # the home for the court's gas table: a section of bench/gas.md
    if gas_md.exists():
        head = gas_md.read_text().split(GAS_MD_SECTION)[0].rstrip("\n") + "\n"
        gas_md.write_text(head + GAS_MD_SECTION + "\n" + table.split("\n", 2)[2])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
