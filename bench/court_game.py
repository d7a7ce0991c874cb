"""The AttestationCourt's economics played on its own rules: real transactions on a fresh anvil, for the devnet and
the production parameters (``chain.deploy``). Used by bench/economics.py (``make bench``).

Against an honest node and an honest voting stake S (k validators of the minimum stake each):
- an attacker (a consumer who wants its money back, or anyone paid to slash) challenges and votes with sybil
  minimum stakes worth S (a tie: the node keeps the benefit) and S + one minimum stake (more than half: it wins);
- a griefer with one minimum stake challenges an honest result and the k honest validators vote;
- a griefer challenges an honest result's availability and the node publishes the bundle.
Each party's result is read from the chain: wallet USDC plus bonded stake, after every vote is claimed.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain import Devnet, deploy, dev_account, find_anvil
from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.commitments import model_id_of, model_key
from proofmarket.chain.court import AttestationCourt, CourtParams, deploy_court
from proofmarket.chain.deploy import COURT_PARAMS, DEVNET_COURT_PARAMS
from proofmarket.chain.types import ModelSpec

USDC = 10**6
PRICE = 1 * USDC
HONEST_VALIDATORS = 5
BUNDLE = b"{" + b'"x": 1, ' * 1_000 + b"}"
WEIGHTS = b"\x11" * 32


@dataclass
class Table:
    chain: Any
    court: AttestationCourt
    key: bytes
    admin: LocalAccount
    usdc: Any
    node: LocalAccount
    consumer: LocalAccount
    params: CourtParams
    serial: int = 0

    def fund(self, amount: int) -> LocalAccount:
        who: LocalAccount = Account.create()
        self.chain.rpc("anvil_setBalance", [who.address, hex(10**19)])
        self.usdc.mint(who.address, amount, self.admin)
        self.usdc.approve(self.court.address, amount, who)
        return who

    def validator(self, stake: int) -> LocalAccount:
        """A validator staked and declared for the game's model (only declared stake weighs on its requests)."""
        who = self.fund(stake + 4 * self.params.challenge_bond)
        self.court.stake(stake, who, validator=True)
        self.court.declare(self.key, who)
        return who

    def worth(self, who: LocalAccount) -> int:
        return int(self.usdc.balance_of(who.address)) + self.court.stake_of(who.address, validator=True)

    def committed(self, bundle: bytes = b"{}") -> int:
        self.serial += 1
        h = self.serial
        rid = self.court.request(self.key, keccak(h.to_bytes(32, "big")), self.chain.timestamp() + 10 * 86_400,
                                 self.consumer, node=self.node.address)
        self.court.commit(rid, [h, int.from_bytes(WEIGHTS, "big"), 3, 4, 5], self.node, hashlib.sha256(bundle).digest())
        return rid

    def advance(self, seconds: int) -> None:
        self.chain.rpc("evm_increaseTime", [seconds])
        self.chain.rpc("evm_mine", [])

    def claim_all(self, rid: int, voters: list[LocalAccount]) -> None:
        for v in voters:
            if self.court.has_voted(rid, v.address) and not self.court.vote_of(rid, v.address).claimed:
                self.court.claim(rid, v.address, self.admin)


def _table(chain: Any, admin: LocalAccount, usdc: Any, registry: Any, params: tuple[int, ...]) -> Table:
    owner, consumer = dev_account(1, chain.chain_id), dev_account(2, chain.chain_id)
    court_address, _ = deploy_court(chain, admin, usdc.address, registry.address, admin.address, params, 0)
    court = AttestationCourt(chain, court_address)
    p = court.params()
    name = f"bafy-game-{court_address[-6:]}"
    verifier, _ = chain.deploy(load_artifact("AttestationVerifier"), owner, owner.address, WEIGHTS)
    registry.register(model_key(name), ModelSpec(
        onnx_sha256=WEIGHTS, vk_digest=keccak(text="proofmarket-attested-toploc-v1"), settings_hash=b"\x33" * 32,
        verifier=verifier, price=PRICE, owner_share_bps=7_000, input_instances=1, instance_count=5,
        metadata_cid="bafy"), owner)
    table = Table(chain, court, model_id_of(owner.address, model_key(name)), admin, usdc, admin, consumer, p)
    table.node = table.fund(10 * p.node_min_stake)
    court.stake(10 * p.node_min_stake, table.node, validator=False)
    usdc.mint(consumer.address, 1_000 * PRICE, admin)
    usdc.approve(court.address, 1_000 * PRICE, consumer)
    return table


def _vote_until_closed(t: Table, rid: int, voters: list[tuple[LocalAccount, bool]]) -> None:
    for who, cheated in voters:
        if t.court.status(rid) != "challenged":
            break
        t.court.vote(rid, cheated, who)
    if t.court.status(rid) == "challenged":
        t.advance(t.params.vote_window + 1)
        t.court.resolve(rid, t.admin)


def _buy_verdict(t: Table, honest: list[LocalAccount], sybils: int) -> dict[str, Any]:
    m = t.params.validator_min_stake
    attackers = [t.validator(m) for _ in range(sybils)]
    worth = {a.address: t.worth(a) for a in [*attackers, *honest]}
    node_stake = t.court.stake_of(t.node.address, validator=False)
    rid = t.committed()
    t.court.challenge(rid, attackers[0])
    _vote_until_closed(t, rid, [*((a, True) for a in attackers[1:]), *((h, False) for h in honest)])
    t.claim_all(rid, [*attackers, *honest])
    outcome = t.court.get_request(rid).outcome
    lost = node_stake - t.court.stake_of(t.node.address, validator=False)
    if outcome != "cheated":
        lost = 0
    return {"attacker_stake": sybils * m, "outcome": outcome, "wrong_verdict": outcome == "cheated",
            "attacker": sum(t.worth(a) - worth[a.address] for a in attackers),
            "honest_validators": sum(t.worth(h) - worth[h.address] for h in honest),
            "node_slashed": lost, "node_stake": node_stake}


def _grief(t: Table, honest: list[LocalAccount]) -> dict[str, Any]:
    griefer = t.validator(t.params.validator_min_stake)
    worth = {a.address: t.worth(a) for a in [griefer, *honest]}
    rid = t.committed()
    t.court.challenge(rid, griefer)
    _vote_until_closed(t, rid, [(h, False) for h in honest])
    t.claim_all(rid, [griefer, *honest])
    gains = [t.worth(h) - worth[h.address] for h in honest if t.court.has_voted(rid, h.address)]
    return {"outcome": t.court.get_request(rid).outcome, "griefer": t.worth(griefer) - worth[griefer.address],
            "honest_per_vote": sum(gains) // max(1, len(gains)), "honest_votes": len(gains)}


def _availability(t: Table) -> dict[str, Any]:
    griefer = t.validator(t.params.validator_min_stake)
    before = t.worth(griefer)
    rid = t.committed(BUNDLE)
    t.chain.rpc("anvil_mine", [hex(2)])  # drawn validators only: the draw is known a block later
    t.court.challenge_availability(rid, griefer)
    gas = t.court.publish(rid, BUNDLE, t.node).gas_used
    return {"griefer": t.worth(griefer) - before, "publish_gas": gas, "bundle_bytes": len(BUNDLE)}


def play(name: str, params: tuple[int, ...]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="court-game-") as tmp, Devnet(Path(tmp), anvil=find_anvil()) as net:
        chain = net.client()
        admin = dev_account(0, chain.chain_id)
        deployment = deploy(chain, admin, Path(tmp) / "deployment.json")
        usdc, registry, _ = deployment.bind(chain)

        def fresh() -> tuple[Table, list[LocalAccount]]:  # each game on its own court and validators
            t = _table(chain, admin, usdc, registry, params)
            return t, [t.validator(t.params.validator_min_stake) for _ in range(HONEST_VALIDATORS)]

        tie = _buy_verdict(*fresh(), HONEST_VALIDATORS)
        bought = _buy_verdict(*fresh(), HONEST_VALIDATORS + 1)
        grief = _grief(*fresh())
        drawn_all = (*params[:5], 10_000, *params[6:])  # the availability griefer must be drawn: sample everyone
        t = _table(chain, admin, usdc, registry, drawn_all)
        avail = _availability(t)
        p = CourtParams(*params)
        return {"name": name, "params": vars(p), "honest_stake": HONEST_VALIDATORS * p.validator_min_stake,
                "lock_s": p.window + p.vote_window + p.unbond_delay, "tie": tie, "bought": bought, "grief": grief,
                "availability": avail, "price": PRICE}


def play_all() -> list[dict[str, Any]]:
    return [play("devnet", DEVNET_COURT_PARAMS), play("production", COURT_PARAMS)]


def _usdc(atomic: int) -> str:
    return f"{atomic / USDC:+,.2f}"


def render(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## The court's rules, played on chain", "",
             "bench/court_game.py: real transactions against AttestationCourt on a fresh anvil, once per parameter "
             f"set (chain/deploy.py). The honest voting stake S is {HONEST_VALIDATORS} validators of the minimum "
             "stake; the node is honest and staked 10x its minimum; amounts in USDC, each party's wallet plus bonded "
             "stake after every vote was claimed.", "",
             "| parameters | S (honest stake) | attacker stake | outcome | attacker | honest validators | node slashed "
             "|", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for case in (r["tie"], r["bought"]):
            lines.append(f"| {r['name']} | {r['honest_stake'] / USDC:,.0f} | {case['attacker_stake'] / USDC:,.0f} | "
                         f"{case['outcome']}{' (WRONG)' if case['wrong_verdict'] else ''} | {_usdc(case['attacker'])} "
                         f"| {_usdc(case['honest_validators'])} | {case['node_slashed'] / USDC:,.0f} of "
                         f"{case['node_stake'] / USDC:,.0f} |")
    lines += ["", "| parameters | griefer per false challenge | honest validator per vote | availability griefer | "
              "node's gas to publish an 8 KB bundle | capital of a wrong verdict locked for |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        g, a = r["grief"], r["availability"]
        lines.append(f"| {r['name']} | {_usdc(g['griefer'])} | {_usdc(g['honest_per_vote'])} ({g['honest_votes']} "
                     f"votes) | {_usdc(a['griefer'])} | {a['publish_gas']:,} | {r['lock_s'] / 3600:,.1f} h |")
    prod = rows[-1]
    lines += ["", "Reading:",
              f"- Buying a wrong verdict against an honest voting stake S takes more than S of stake bonded **before** "
              "the commitment (stake moved in later weighs nothing; a voter's stake cannot leave until its vote is "
              f"claimed, then waits the unbonding delay): in production more than {prod['honest_stake'] / USDC:,.0f} "
              f"USDC locked for at least {prod['lock_s'] / 3600:,.0f} h. With exactly S the honest side keeps the "
              "verdict and the attacker loses its bond and its escrowed share of every sybil stake. With more than "
              "half of all the stake that could vote the attacker wins (slashing the node and taking the challenger "
              "reward): the court's trust assumption is an honest majority of the bonded validator stake.",
              "- An honest validator earns only from losers: its pro-rata part of the escrowed share of every "
              "stake that voted against it; a validator that does not vote neither earns nor risks anything.",
              "- A griefer loses the bond and its escrowed share per false challenge; an availability challenge "
              "costs the griefer nothing when the node publishes, and the node the gas above (a node that answers "
              "validators' reads never meets it).", ""]
    return lines
