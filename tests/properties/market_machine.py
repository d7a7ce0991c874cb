"""A stateful property test of InferenceMarket (hypothesis's rule-based state machine) against anvil.

Actors: a consumer, two staked and authorised provers, an owner, a stranger (no stake, no role). Random sequences
of requests, claims, valid and invalid proofs, refunds, x402 proven payments (an authorization only a verified
proof moves, naming its prover), stake moves, withdrawals and time, each sent by any actor; after every step the
invariants hold:

- solvent: the market's USDC balance is exactly what it owes: open requests' escrow and claim bonds, provers' stake
  and unstaking queue, everyone's earnings not yet withdrawn, the platform's balance;
- once: a request that reached Fulfilled, Rejected or Refunded stays there;
- paid as the terms say, once: the owner's and each prover's earnings are the sum, over the requests fulfilled, of
  their share of each price (owner: price x share; platform: price x fee; prover: the rest), and the consumer's
  balance is what it started with, less every price it escrowed, plus what came back (a refund's escrow and bond, a
  rejected proof's escrow, a lapsed claim's bond);
- roles: a refund succeeds only for the request's consumer after its deadline; a fulfilment only for its live
  claimer; a claim only for an authorised prover with stake; a proven payment only for the prover it names, with a
  proof the verifier accepts; a stranger moves nothing.

The expected values come from the model below (written from the contract's documented rules), never read back from
the contract's own accounting.
"""

from __future__ import annotations

from typing import Any

from chain_helpers import PRICE, Chain, Listed
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from property_helpers import attempt

from proofmarket.chain import RequestStatus, advance_time, input_commitment

BPS = 10_000
VALID, INVALID = b"\x01" + bytes(31), b"\x02" + bytes(31)  # MockVerifier accepts a proof starting with 0x01
OUTPUT = [101, 202]
TERMINAL = {RequestStatus.FULFILLED, RequestStatus.REJECTED, RequestStatus.REFUNDED}
ACTORS = ("consumer", "prover", "prover2", "owner", "stranger")
PROVERS = ("prover", "prover2")


def market_machine(chain: Chain, model: Listed, *, proven: bool = True) -> type[RuleBasedStateMachine]:
    """The machine over ``chain`` (its ``market`` may be a planted-bug copy) and a model listed there; ``proven``:
    with the x402 proven payments rule (a planted escrow bug is looked for without it: hypothesis's derandomized
    sequences are drawn from the rules there are, and each mutant's budget was sized on the escrow rules)."""
    client, market, usdc = chain.client, chain.market, chain.usdc
    acc = {name: getattr(chain.accounts, name) for name in ACTORS}
    params = market.params()
    claim_bond, unstake_delay, claim_window = params.claim_bond, params.unstake_delay, params.claim_window
    fee_bps, share_bps = params.platform_fee_bps, model.spec.owner_share_bps

    class MarketMachine(RuleBasedStateMachine):
        requests = Bundle("requests")

        def __init__(self) -> None:
            super().__init__()
            self.snapshot = client.rpc("evm_snapshot", [])
            self.start = {n: usdc.balance_of(a.address) for n, a in acc.items()}
            self.escrowed = 0  # what the consumer put in
            self.returned = 0  # what came back to it
            self.earned = {n: market.earned(acc[n].address) for n in ("owner", *PROVERS)}
            self.final: dict[int, RequestStatus] = {}
            self.ids: list[int] = []
            self.inputs: dict[int, list[int]] = {}
            self.outside = usdc.balance_of(market.address) - self._owed([])  # held before this sequence began

        def teardown(self) -> None:
            client.rpc("evm_revert", [self.snapshot])

        # --- rules ----------------------------------------------------------------------------------------------
        @rule(target=requests, ttl=st.sampled_from([60, 600, 2 * 3600, 3 * 3600]), x=st.integers(0, 2**32))
        def request(self, ttl: int, x: int) -> int:
            deadline = client.timestamp() + ttl
            receipt = market.request_inference(model.key, input_commitment([x, x + 1, x + 2]), deadline,
                                               acc["consumer"])
            self.escrowed += PRICE
            self.ids.append(receipt.request_id)
            self.inputs[receipt.request_id] = [x, x + 1, x + 2]
            return receipt.request_id

        @rule(rid=requests, who=st.sampled_from(PROVERS) | st.sampled_from(ACTORS))
        def accept(self, rid: int, who: str) -> None:
            before = market.get_request(rid)
            now = client.timestamp()
            ok = attempt(market.accept_request, rid, acc[who])
            if ok:
                assert who in PROVERS, f"{who} (no role) claimed request {rid}"
                if before.status == RequestStatus.ACCEPTED:  # a lapsed claim taken over: its bond to the consumer
                    assert now + 1 > before.claim_expiry
                    self.returned += before.bond

        @rule(rid=requests, valid=st.booleans())
        def fulfill_as_claimer(self, rid: int, valid: bool) -> None:
            claimer = market.get_request(rid).prover
            self.fulfill(rid, next((n for n in PROVERS if acc[n].address == claimer), "stranger"), valid)

        @rule(rid=requests, who=st.sampled_from(ACTORS), valid=st.booleans())
        def fulfill(self, rid: int, who: str, valid: bool) -> None:
            before = market.get_request(rid)
            instances = [*self.inputs[rid], *OUTPUT]
            ok = attempt(market.fulfill, rid, VALID if valid else INVALID, instances, acc[who])
            if not ok:
                return
            assert before.status == RequestStatus.ACCEPTED and before.prover == acc[who].address, (
                f"{who} fulfilled request {rid}, claimed by {before.prover} ({before.status.name})")
            if valid:
                fee, owner = PRICE * fee_bps // BPS, PRICE * share_bps // BPS
                self.earned["owner"] += owner
                self.earned[who] += PRICE - fee - owner
            else:
                self.returned += PRICE

        @rule(who=st.sampled_from(PROVERS) | st.sampled_from(ACTORS), named=st.sampled_from(PROVERS),
              valid=st.booleans(), extra=st.sampled_from([0, 1, PRICE]), x=st.integers(0, 2**32))
        def pay_proven(self, who: str, named: str, valid: bool, extra: int, x: int) -> None:
            """An x402 proven call: the consumer authorizes at most price + extra for prover ``named``; ``who``
            settles it with a valid or invalid proof (fulfillAuthorized)."""
            felts = [x, x + 1, x + 2]
            call = market.sign_proven_call(acc["consumer"], model.key, input_commitment(felts), PRICE + extra,
                                           acc[named].address, valid_before=client.timestamp() + 600)
            ok = attempt(market.fulfill_authorized, call, VALID if valid else INVALID, [*felts, *OUTPUT], acc[who])
            if not ok:
                return
            assert valid, f"{who} was paid for a proof the verifier refused"
            assert who == named, f"{who} settled a payment that names {named} as its prover"
            fee, owner = PRICE * fee_bps // BPS, PRICE * share_bps // BPS
            self.escrowed += PRICE  # the price taken, the rest of the maximum back at once
            self.earned["owner"] += owner
            self.earned[who] += PRICE - fee - owner

        @rule(rid=requests, who=st.just("consumer") | st.sampled_from(ACTORS))
        def refund(self, rid: int, who: str) -> None:
            before = market.get_request(rid)
            ok = attempt(market.refund, rid, acc[who])
            if ok:
                assert who == "consumer", f"{who} refunded request {rid}"
                assert before.status in (RequestStatus.OPEN, RequestStatus.ACCEPTED), (
                    f"request {rid} refunded from {before.status.name}")
                assert client.timestamp() > before.deadline
                self.returned += before.amount + before.bond

        @rule(seconds=st.sampled_from([-1, 600, -2, 30]))  # -1: past a claim window; -2: past the unstake delay
        def wait(self, seconds: int) -> None:
            advance_time(client, {-1: claim_window + 1, -2: unstake_delay + 1}.get(seconds, seconds))

        @rule(who=st.sampled_from(ACTORS))
        def withdraw(self, who: str) -> None:
            market.withdraw([acc[n].address for n in ("owner", *PROVERS)], acc[who])

        @rule(who=st.sampled_from(PROVERS), bonds=st.integers(1, 20))
        def stake(self, who: str, bonds: int) -> None:
            usdc.approve(market.address, bonds * claim_bond, acc[who])
            market.stake(bonds * claim_bond, acc[who])

        @rule(who=st.sampled_from(ACTORS), bonds=st.integers(1, 3))
        def request_unstake(self, who: str, bonds: int) -> None:
            if attempt(market.request_unstake, bonds * claim_bond, acc[who]):
                assert who in PROVERS, f"{who} (no stake) queued an unstake"

        @rule(who=st.sampled_from((*PROVERS, "stranger")))
        def unstake(self, who: str) -> None:
            queued = market.get_prover(acc[who].address)
            if attempt(market.unstake, acc[who]):
                assert queued.pending_unstake > 0 and client.timestamp() >= queued.unlock_at, (
                    f"{who} unstaked {queued.pending_unstake} before {queued.unlock_at}")

        # --- invariants -----------------------------------------------------------------------------------------
        def _owed(self, requests: list[Any] | None = None) -> int:
            """What the market owes, from its views: each view read once per step."""
            owed = sum(r.amount + r.bond for r in (requests if requests is not None else self._requests())
                       if r.status in (RequestStatus.OPEN, RequestStatus.ACCEPTED))
            for name in PROVERS:
                p = market.get_prover(acc[name].address)
                owed += p.stake + p.pending_unstake
            owed += sum(market.owed(acc[n].address) for n in ("owner", *PROVERS))
            return owed + market.platform_balance()

        def _requests(self) -> list[Any]:
            return [market.get_request(rid) for rid in self.ids]

        @invariant()
        def invariants(self) -> None:
            requests = self._requests()
            # solvent
            held, owed = usdc.balance_of(market.address), self._owed(requests) + self.outside
            assert held == owed, f"the market holds {held} and owes {owed}"
            # once
            for r in requests:
                if r.request_id in self.final:
                    assert r.status == self.final[r.request_id], (
                        f"request {r.request_id} left {self.final[r.request_id].name} for {r.status.name}")
                elif r.status in TERMINAL:
                    self.final[r.request_id] = r.status
            # paid as agreed
            for name, expected in self.earned.items():
                got = market.earned(acc[name].address)
                assert got == expected, f"{name} earned {got}, its shares come to {expected}"
            consumer, expected = usdc.balance_of(acc["consumer"].address), (
                self.start["consumer"] - self.escrowed + self.returned)
            assert consumer == expected, f"the consumer holds {consumer}, expected {expected}"

    if not proven:
        del MarketMachine.pay_proven  # before hypothesis first reads the class's rules
    return MarketMachine
