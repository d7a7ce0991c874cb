"""A stateful property test of AttestationCourt (hypothesis's rule-based state machine) against anvil.

Actors: a consumer, the node it names (staked), four validators (staked, declared on the model) and a stranger.
Random sequences of requests, commitments, challenges, votes, finalizations, resolutions, refunds, claims, stake
moves (stake, unstake, withdraw, declarations) and time, each sent by any actor; after every step:

- locked: a validator's stake never leaves while a vote of it is unclaimed (an unstake succeeds only with no open
  vote), and what its unclaimed votes put at risk never exceeds its stake;
- covered: the court holds at least every stake, every unbonding amount and every unsettled request's escrow;
- once: a request that was paid, slashed or refunded stays so;
- roles: only an address with voting weight (not a party) challenges or votes; only the named node commits.
"""

from __future__ import annotations

import hashlib

from chain_helpers import Chain
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from property_helpers import attempt

from proofmarket.chain.court import SETTLED, AttestationCourt

VALIDATORS = ("prover2", "relayer", "stranger", "owner")
ACTORS = ("consumer", "prover", *VALIDATORS, "admin")
WEIGHTS = b"\x11" * 32


def court_machine(chain: Chain, court: AttestationCourt, key: bytes, windows: dict[str, int]) -> type:
    client, usdc = chain.client, chain.usdc
    acc = {name: getattr(chain.accounts, name) for name in ACTORS}

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
            if attempt(court.vote, rid, cheated, acc[who]):
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
            attempt(getattr(court, how), rid, acc[who])

        @rule(rid=requests, who=st.sampled_from(VALIDATORS))
        def claim(self, rid: int, who: str) -> None:
            attempt(court.claim, rid, acc[who].address, acc["admin"])

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
                if attempt(court.unstake, amount, acc[who], validator=validator) and validator:
                    assert open_before == 0, f"{who} unstaked with {open_before} vote(s) unclaimed"
            elif what == "withdraw":
                attempt(court.withdraw, acc[who])
            elif what in ("declare", "undeclare"):
                attempt(court.declare, key, acc[who], checks=what == "declare")

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
            held, owed = usdc.balance_of(court.address), self._held() + self.outside
            assert held >= owed, f"the court holds {held}, less than the {owed} it must"
            for rid in self.x:
                status = court.get_request(rid).status
                if rid in self.final:
                    assert status == self.final[rid], f"request {rid} left {self.final[rid]} for {status}"
                elif status in SETTLED:
                    self.final[rid] = status

    return CourtMachine
