"""A stateful property test of CourtCallbacks (attested court requests delivered into a consumer contract) against
anvil, over a real AttestationCourt.

Actors: two consumer contracts (one that records every result, one that misbehaves on demand: reverts or burns its
gas, switched at random), the court's node (commits), keepers (any account delivers or reclaims). Random sequences
of requests (tips, callback gas), commitments, finalizations, deliveries, reclaims, misbehaviour switches and time;
after every step:

- callbacks never change payments: a delivery, successful or not, leaves the court's record of the request and
  the node's money as they were; the court pays the owner, the platform and the node their shares of the price to
  the unit when it finalizes, whatever the consumer does;
- held exactly: CourtCallbacks holds the tip of every request not done, plus the escrow the court handed back for
  every refunded request not reclaimed yet, nothing else;
- once: a result is delivered only once the court paid it, at most once with success; the tip goes to the first
  successful deliverer, once; a reclaim pays the consumer its escrow and tip, once, and only for a request the court
  refunded.

The expected amounts come from the model below (CourtCallbacks' documented rules), never read from its accounting.
"""

from __future__ import annotations

import hashlib
from typing import Any

from chain_helpers import OWNER_SHARE_BPS, PRICE, USDC, Chain
from eth_utils.crypto import keccak
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from property_helpers import attempt

from proofmarket.chain.court import AttestationCourt

KEEPERS = ("relayer", "stranger", "consumer")  # accounts that earn nothing at the court here
CONSUMERS = ("recorder", "misbehaving")
WEIGHTS = b"\x11" * 32
DEADLINE_S, WINDOW_S = 3_600, 300
BPS = 10_000


def callbacks_machine(chain: Chain, court: AttestationCourt, key: bytes, callbacks: Any,
                      consumers: dict[str, Any], fee_bps: int) -> type[RuleBasedStateMachine]:
    """The machine over ``court`` (its platform fee ``fee_bps``) and a CourtCallbacks over it (``callbacks``, maybe a
    planted-bug copy), with the two consumer contracts."""
    client, usdc = chain.client, chain.usdc
    a = chain.accounts
    acc = {"relayer": a.relayer, "stranger": a.stranger, "consumer": a.consumer}

    class CallbacksMachine(RuleBasedStateMachine):
        requests = Bundle("requests")

        def __init__(self) -> None:
            super().__init__()
            self.snapshot = client.rpc("evm_snapshot", [])
            self.entries: dict[int, dict[str, Any]] = {}  # request id -> what the rules say of it
            self.tips_paid: dict[str, int] = {k: 0 for k in KEEPERS}
            self.start: dict[str, int] = {}

        @initialize()
        def start_balances(self) -> None:
            self.start = {k: usdc.balance_of(acc[k].address) for k in KEEPERS}
            self.start.update({c: usdc.balance_of(consumers[c].address) for c in CONSUMERS})
            self.start["held"] = usdc.balance_of(callbacks.address)

        def teardown(self) -> None:
            client.rpc("evm_revert", [self.snapshot])

        # --- rules --------------------------------------------------------------------------------------------
        @rule(target=requests, who=st.sampled_from(CONSUMERS), x=st.integers(1, 2**40),
              tip=st.sampled_from([0, USDC // 10, 3 * USDC]), gas=st.sampled_from([60_000, 200_000]))
        def request(self, who: str, x: int, tip: int, gas: int) -> int:
            consumer = consumers[who]
            tx = client.transact(consumer.functions.request(key, keccak(x.to_bytes(32, "big")),
                                                            client.timestamp() + DEADLINE_S, a.prover.address,
                                                            2 * PRICE, gas, tip), a.admin)
            rid = int(court.decode_events(tx, "RequestCreated")[0]["requestId"])
            self.entries[rid] = {"consumer": who, "x": x, "tip": tip, "amount": court.get_request(rid).amount,
                                 "done": False, "delivered": 0}
            return rid

        @rule(target=requests, who=st.sampled_from(CONSUMERS), x=st.integers(1, 2**40),
              tip=st.sampled_from([0, USDC // 10, 3 * USDC]), keeper=st.sampled_from(KEEPERS))
        def paid_request(self, who: str, x: int, tip: int, keeper: str) -> int:
            """A request the node commits to and the court pays once its window passed (the common path, in one
            rule: deliveries then reach paid requests often)."""
            rid = self.request(who, x, tip, 200_000)
            self.commit(rid)
            self.wait(WINDOW_S + 1)
            self.finalize(rid, keeper)
            return rid

        @rule(rid=requests)
        def commit(self, rid: int) -> None:
            """The node commits its attested answer (within the deadline, or refused)."""
            instances = [self.entries[rid]["x"], int.from_bytes(WEIGHTS, "big"), 3, 4, 5]
            attempt(court.commit, rid, instances, a.prover, hashlib.sha256(b"{}").digest())

        @rule(rid=requests, who=st.sampled_from(KEEPERS))
        def finalize(self, rid: int, who: str) -> None:
            """Anyone finalizes an unchallenged commitment after its window: the court pays the model's owner its
            share, the platform its fee and the node the rest of the price, to the unit."""
            node, owner = usdc.balance_of(a.prover.address), usdc.balance_of(a.owner.address)
            if attempt(court.finalize, rid, acc[who]):
                amount = self.entries[rid]["amount"]
                fee, share = amount * fee_bps // BPS, amount * OWNER_SHARE_BPS // BPS
                assert usdc.balance_of(a.owner.address) - owner == share, f"the owner's share of request {rid}"
                assert usdc.balance_of(a.prover.address) - node == amount - fee - share, f"the node's pay of {rid}"

        @rule(rid=requests, who=st.sampled_from(KEEPERS))
        def deliver(self, rid: int, who: str) -> None:
            e = self.entries[rid]
            before = court.get_request(rid)
            node_before = usdc.balance_of(a.prover.address)
            received_before = self._received(e["consumer"])
            try:
                tx = client.transact(callbacks.functions.deliver(rid), acc[who])
            except Exception:  # refused: not paid yet, or done
                assert e["done"] or before.status != "paid", f"request {rid}: a paid delivery was refused"
                return
            assert not e["done"] and before.status == "paid", (
                f"request {rid} delivered while {before.status} (done: {e['done']})")
            after = court.get_request(rid)
            assert after == before, f"a delivery changed the court's record of request {rid}: {before} -> {after}"
            assert usdc.balance_of(a.prover.address) == node_before, "a delivery moved the node's money"
            events = callbacks.events.CallbackDelivered().process_receipt(tx.receipt, errors=_discard())
            ok = bool(events[0]["args"]["ok"])
            got = self._received(e["consumer"]) - received_before
            if ok:
                e["done"] = True
                e["delivered"] += 1
                self.tips_paid[who] += e["tip"]
                assert got == (1 if e["consumer"] == "recorder" or self._mode() == 0 else 0)
            else:
                assert got == 0, "a failed callback recorded a result"

        @rule(rid=requests, first=st.sampled_from(KEEPERS), second=st.sampled_from(KEEPERS))
        def deliver_twice(self, rid: int, first: str, second: str) -> None:
            """Two keepers racing to deliver the same result: the second finds it done once the first succeeded."""
            self.deliver(rid, first)
            self.deliver(rid, second)

        @rule(rid=requests, who=st.sampled_from(KEEPERS))
        def reclaim(self, rid: int, who: str) -> None:
            e = self.entries[rid]
            status = court.get_request(rid).status
            deadline_passed = client.timestamp() >= court.get_request(rid).deadline
            if attempt(client.transact, callbacks.functions.reclaim(rid), acc[who]):
                assert not e["done"], f"request {rid} reclaimed after it was done"
                assert status in ("refunded", "slashed") or (status == "open" and deadline_passed), (
                    f"request {rid} reclaimed while {status}")
                e["done"] = True
                e["reclaimed"] = e["amount"] + e["tip"]

        @rule(rid=requests, who=st.sampled_from(KEEPERS))
        def court_refund(self, rid: int, who: str) -> None:
            """Anyone refunds an open request past its deadline at the court itself: the escrow goes to
            CourtCallbacks (the court's consumer of record), which holds it for the request's reclaim."""
            attempt(court.refund, rid, acc[who])

        @rule(mode=st.sampled_from([0, 1, 2]))
        def misbehave(self, mode: int) -> None:
            """The misbehaving consumer records (0), reverts (1) or burns its gas (2) in its callback from now on."""
            client.transact(consumers["misbehaving"].functions.setMode(mode), a.admin)

        @rule(seconds=st.sampled_from([WINDOW_S + 1, DEADLINE_S + 1, 30]))
        def wait(self, seconds: int) -> None:
            client.rpc("evm_increaseTime", [seconds])
            client.rpc("evm_mine", [])

        def _received(self, who: str) -> int:
            return int(consumers[who].functions.received().call())

        def _mode(self) -> int:
            return int(consumers["misbehaving"].functions.mode().call())

        # --- invariants -----------------------------------------------------------------------------------------
        @invariant()
        def hold(self) -> None:
            if not self.start:
                return
            owed = 0
            for rid, e in self.entries.items():
                if e["done"]:
                    continue
                owed += e["tip"]
                if court.get_request(rid).status in ("refunded", "slashed"):
                    owed += e["amount"]  # handed back by the court, waiting for its reclaim
                assert e["delivered"] <= 1
            held = usdc.balance_of(callbacks.address) - self.start["held"]
            assert held == owed, f"CourtCallbacks holds {held}, owes {owed}"
            for k in KEEPERS:
                got = usdc.balance_of(acc[k].address) - self.start[k]
                assert got == self.tips_paid[k], f"{k} got {got}, its successful deliveries' tips come to " \
                                                 f"{self.tips_paid[k]}"
            for c in CONSUMERS:  # each paid its requests' price and tip, and got back what was reclaimed
                mine = [e for e in self.entries.values() if e["consumer"] == c]
                expected = self.start[c] - sum(e["amount"] + e["tip"] for e in mine) + sum(
                    e.get("reclaimed", 0) for e in mine)
                got = usdc.balance_of(consumers[c].address)
                assert got == expected, f"the {c} consumer holds {got}, the rules say {expected}"

    return CallbacksMachine


def _discard() -> Any:
    from web3.logs import DISCARD

    return DISCARD
