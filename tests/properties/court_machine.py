"""A stateful property test of AttestationCourt (hypothesis's rule-based state machine) against anvil.

Actors: a consumer, the node it names (staked), four validators (staked, declared on the model) and a stranger.
Random sequences of requests, commitments, challenges, votes, finalizations, resolutions, refunds, claims, stake
moves (stake, unstake, withdraw, declarations) and time, each sent by any actor; after every step:

- locked: a validator's stake never leaves while a vote of it is unclaimed (an unstake succeeds only with no open
  vote), and what its unclaimed votes put at risk never exceeds its stake;
- covered: the court holds at least every stake, every unbonding amount and every unsettled request's escrow;
- once: a request that was paid, slashed or refunded stays so;
- roles: only an address with voting weight (not a party) challenges or votes; only the named node commits;
- paid as the rules say: when a step settles a request (a refund, a finalization, a resolution, a vote that decides),
  every actor's USDC, the court's, its platform balance and the node's stake move by exactly what the rules on the
  court's page give (the shares, the fee, the slash and the challenger's reward, the bond), computed here from the
  request as it stood; a claimed vote moves its validator's stake by exactly its share of the losers' escrow, or its
  own risk, and no token; and no step creates or destroys a token among the actors and the court.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from chain_helpers import Chain
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from property_helpers import attempt

from proofmarket.chain.court import SETTLED, AttestationCourt, CourtRequest

VALIDATORS = ("prover2", "relayer", "stranger", "owner")
ACTORS = ("consumer", "prover", *VALIDATORS, "admin")
WEIGHTS = b"\x11" * 32
BPS = 10_000


def court_machine(chain: Chain, court: AttestationCourt, key: bytes, windows: dict[str, int],
                  owner_share_bps: int) -> type:
    """``owner_share_bps``: the listing's owner share (the model's owner is the actor "owner")."""
    client, usdc = chain.client, chain.usdc
    acc = {name: getattr(chain.accounts, name) for name in ACTORS}
    name_of = {a.address.lower(): name for name, a in acc.items()}

    class CourtMachine(RuleBasedStateMachine):
        requests = Bundle("requests")

        def __init__(self) -> None:
            super().__init__()
            self.snapshot = client.rpc("evm_snapshot", [])
            self.x: dict[int, int] = {}
            self.final: dict[int, str] = {}
            self.outside = 0

        @initialize()
        def start(self) -> None:
            self.outside = usdc.balance_of(court.address) - self._held()
            money = self._money()
            self.tokens = sum(v for k, v in money.items() if k not in ("platform", "node stake"))

        def _money(self) -> dict[str, int]:
            """Every actor's USDC and the court's, the court's platform balance and the node's stake."""
            doc = {name: usdc.balance_of(a.address) for name, a in acc.items()}
            doc["court"] = usdc.balance_of(court.address)
            doc["platform"] = int(court._call("platformBalance"))
            doc["node stake"] = court.stake_of(acc["prover"].address, validator=False)
            return doc

        def _settling(self, rid: int, step: object) -> bool:
            """Run ``step`` (a call that may settle ``rid``); when it settled the request, check every payment."""
            before, money = court.get_request(rid), self._money()
            done = bool(step())  # type: ignore[operator]
            after = court.get_request(rid)
            if done and before.status not in SETTLED and after.status in SETTLED:
                expected, now = self._payments(before, after, money["node stake"]), self._money()
                moved = {k: now[k] - money[k] for k in now if now[k] != money[k]}
                assert moved == {k: v for k, v in expected.items() if v}, (
                    f"request {rid} {before.status} -> {after.status} ({after.outcome}): moved {moved}, the rules "
                    f"give {dict(expected)}")
            return done

        def _payments(self, before: CourtRequest, after: CourtRequest, node_stake: int) -> dict[str, int]:
            """What settling ``before`` into ``after`` pays, by the rules (docs/security/attestation-court.md)."""
            p, amount, e = court.request_params(before.request_id), before.amount, defaultdict(int)
            challenger = name_of.get((before.challenger or "").lower(), "?")

            def pay() -> None:
                fee, owner = amount * p.platform_fee_bps // BPS, amount * owner_share_bps // BPS
                e["platform"] += fee
                e["owner"] += owner
                e["prover"] += amount - fee - owner
                e["court"] -= amount - fee

            if before.status == "open":  # refund after the deadline
                assert after.status == "refunded"
                e["consumer"] += amount
                e["court"] -= amount
                return e
            if before.status == "committed":  # finalize after an unchallenged window
                assert after.status == "paid" and after.outcome == "honest"
                pay()
                return e
            wc, wh, eligible = after.weight_cheated, after.weight_honest, after.eligible
            decided = ("withheld" if before.status == "withheld" else "cheated" if 2 * wc > eligible
                       else "honest" if 2 * wh > eligible else "undecided" if (wc + wh) * BPS < eligible * p.quorum_bps
                       else "cheated" if wc > wh else "honest")
            assert after.outcome == decided, f"request {before.request_id} resolved {after.outcome}, not {decided}"
            if decided in ("cheated", "withheld"):
                slashed = min(before.exposure, node_stake)
                reward = slashed * p.challenger_reward_bps // BPS
                e["node stake"] -= slashed
                e["platform"] += slashed - reward
                e["consumer"] += amount
                e[challenger] += reward + p.challenge_bond
                e["court"] -= amount + reward + p.challenge_bond
            elif decided == "honest":
                e["node stake"] += p.challenge_bond  # the challenger's bond backs the node it accused
                pay()
            else:
                e[challenger] += p.challenge_bond
                e["consumer"] += amount
                e["court"] -= p.challenge_bond + amount
            return e

        def teardown(self) -> None:
            client.rpc("evm_revert", [self.snapshot])

        def _held(self) -> int:
            """What the court must hold at least: stakes, unbonding amounts, unsettled escrow."""
            held = sum(court.stake_of(a.address, validator=True) + court.stake_of(a.address, validator=False)
                       + int(court._call("unbonding", a.address)[0]) for a in acc.values())
            return held + sum(r.amount for r in (court.get_request(i) for i in self.x) if r.status not in SETTLED)

        # --- rules --------------------------------------------------------------------------------------------
        @rule(target=requests, x=st.integers(1, 2**40))
        def request(self, x: int) -> int:
            rid = court.request(key, keccak(x.to_bytes(32, "big")), client.timestamp() + 3_600, acc["consumer"],
                                node=acc["prover"].address)
            self.x[rid] = x
            return rid

        @rule(target=requests, x=st.integers(1, 2**40))
        def committed_request(self, x: int) -> int:
            rid = self.request(x)
            self.commit(rid, "prover")
            return rid

        @rule(rid=requests, who=st.just("prover") | st.sampled_from(ACTORS))
        def commit(self, rid: int, who: str) -> None:
            instances = [self.x[rid], int.from_bytes(WEIGHTS, "big"), 3, 4, 5]
            if attempt(court.commit, rid, instances, acc[who], hashlib.sha256(b"{}").digest()):
                assert who == "prover", f"{who} committed request {rid}, named for the node"

        @rule(rid=requests, who=st.sampled_from(VALIDATORS) | st.sampled_from(ACTORS))
        def challenge(self, rid: int, who: str) -> None:
            weight = court.weight_of(rid, acc[who].address)
            if attempt(court.challenge, rid, acc[who]):
                assert weight > 0 and who not in ("consumer", "prover"), f"{who} (weight {weight}) challenged"

        @rule(rid=requests, who=st.sampled_from(VALIDATORS) | st.sampled_from(ACTORS), cheated=st.booleans())
        def vote(self, rid: int, who: str, cheated: bool) -> None:
            weight = court.weight_of(rid, acc[who].address)
            if self._settling(rid, lambda: attempt(court.vote, rid, cheated, acc[who])):
                assert weight > 0 and who not in ("consumer", "prover"), f"{who} (weight {weight}) voted"

        @rule(rid=requests, who=st.sampled_from(VALIDATORS), cheated=st.booleans())
        def vote_then_leave(self, rid: int, who: str, cheated: bool) -> None:
            """The move the lock stops: vote (or challenge), then take the stake out before the vote is claimed."""
            if court.get_request(rid).status == "committed":
                self.challenge(rid, who)
            else:
                self.vote(rid, who, cheated)
            self.move_stake("unstake", who, 5 * 10**6)

        @rule(rid=requests, how=st.sampled_from(["finalize", "resolve", "refund"]), who=st.sampled_from(ACTORS))
        def settle(self, rid: int, how: str, who: str) -> None:
            self._settling(rid, lambda: attempt(getattr(court, how), rid, acc[who]))

        @rule(x=st.integers(1, 2**40), cheated=st.lists(st.booleans(), min_size=3, max_size=3),
              challenger=st.sampled_from(VALIDATORS))
        def contested(self, x: int, cheated: list[bool], challenger: str) -> None:
            """A whole dispute, so that sequences reach every outcome: a committed request, a challenge, the other
            validators' votes (each may decide it), the vote window, a resolution and every claim."""
            rid = self.committed_request(x)
            self.challenge(rid, challenger)
            for who, says in zip([v for v in VALIDATORS if v != challenger], cheated, strict=True):
                self.vote(rid, who, says)
            self.wait("vote")
            self.settle(rid, "resolve", "admin")
            for who in VALIDATORS:
                self.claim(rid, who)

        @rule(rid=requests, who=st.sampled_from(VALIDATORS))
        def claim(self, rid: int, who: str) -> None:
            address = acc[who].address
            vote, r = court.vote_of(rid, address), court.get_request(rid)
            stake, held = court.stake_of(address, validator=True), usdc.balance_of(court.address)
            if not attempt(court.claim, rid, address, acc["admin"]):
                return
            if r.outcome == "undecided":
                expected = stake
            elif vote.node_cheated == (r.outcome == "cheated"):  # a winner: its part of the losers' escrow
                pool, side = (r.risk_honest, r.weight_cheated) if vote.node_cheated else (r.risk_cheated,
                                                                                          r.weight_honest)
                expected = stake + pool * vote.weight // side
            else:  # a loser: its own risk
                expected = stake - vote.risk
            now = court.stake_of(address, validator=True)
            assert now == expected, f"{who}'s claim on {rid} ({r.outcome}) left {now}, the rules give {expected}"
            assert usdc.balance_of(court.address) == held, "a claim moved tokens"

        @rule(what=st.sampled_from(["stake", "unstake", "withdraw", "declare", "undeclare"]),
              who=st.sampled_from((*VALIDATORS, "prover")), amount=st.sampled_from([1, 10**6, 5 * 10**6]))
        def move_stake(self, what: str, who: str, amount: int) -> None:
            """One rule for every stake move (so that they are drawn as often as one of the court's steps)."""
            validator = who != "prover"
            if what == "stake" and validator:
                usdc.approve(court.address, amount, acc[who])
                court.stake(amount, acc[who], validator=True)
            elif what == "unstake":
                open_before = court.open_votes(acc[who].address) if validator else None
                unresolved = sum(court.get_request(i).status in ("committed", "challenged", "withheld") for i in self.x)
                if attempt(court.unstake, amount, acc[who], validator=validator):
                    if validator:
                        assert open_before == 0, f"{who} unstaked with {open_before} vote(s) unclaimed"
                    else:
                        assert unresolved == 0, f"the node unstaked with {unresolved} commitment(s) unresolved"
            elif what == "withdraw":
                attempt(court.withdraw, acc[who])
            elif what in ("declare", "undeclare"):
                attempt(court.declare, key, acc[who], checks=what == "declare")

        @rule(who=st.sampled_from(ACTORS), amount=st.sampled_from([1, 10**6]))
        def withdraw_platform(self, who: str, amount: int) -> None:
            """Only the court's owner (admin) moves the platform balance, and only it."""
            before, money = int(court._call("platformBalance")), self._money()
            if attempt(lambda: court._send("withdrawPlatform", acc[who], acc["admin"].address, amount)):
                assert who == "admin", f"{who} withdrew the platform balance"
                moved = {k: v - money[k] for k, v in self._money().items() if v != money[k]}
                assert moved == {"platform": -amount, "court": -amount, "admin": amount}, moved
            else:
                assert who != "admin" or before < amount, "the owner could not withdraw what the platform holds"

        @rule(seconds=st.sampled_from(["window", "vote", "unbond", "short"]))
        def wait(self, seconds: str) -> None:
            client.rpc("evm_increaseTime", [windows[seconds] + 1])
            client.rpc("evm_mine", [])

        # --- invariants ---------------------------------------------------------------------------------------
        @invariant()
        def invariants(self) -> None:
            for name in VALIDATORS:
                address = acc[name].address
                at_risk, staked = int(court._call("escrowed", address)), court.stake_of(address, validator=True)
                assert at_risk <= staked, f"{name} has {at_risk} at risk on {staked} staked"
            money = self._money()
            tokens = sum(v for k, v in money.items() if k not in ("platform", "node stake"))
            assert tokens == self.tokens, f"the actors and the court hold {tokens}, not the {self.tokens} they had"
            held, owed = usdc.balance_of(court.address), self._held() + self.outside
            assert held >= owed, f"the court holds {held}, less than the {owed} it must"
            for rid in self.x:
                status = court.get_request(rid).status
                if rid in self.final:
                    assert status == self.final[rid], f"request {rid} left {self.final[rid]} for {status}"
                elif status in SETTLED:
                    self.final[rid] = status

    return CourtMachine
