"""The batch-settlement rail's rules on a real database, with the x402 SDK's own client making the payloads (the
facilitator is a test double here; the chain is in test_batch_settlement_node.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from channel_doubles import NODE, PRICE, FakeFacilitator, Payer, make_rail, offer, outcome
from x402.http import encode_payment_signature_header
from x402.mechanisms.evm.batch_settlement import errors as scheme_errors

from proofmarket.chain.devkeys import DEVNET_CHAIN_ID, dev_account
from proofmarket.core.errors import PaymentChannelBusy, PaymentChannelRejected, PaymentSettlementFailed
from proofmarket.db import Database
from proofmarket.payments.batch.rail import BatchSettlementRail
from proofmarket.payments.headers import PAYMENT_SIGNATURE_HEADER
from proofmarket.payments.tickets import Ticket
from proofmarket.systems.receipts import verify_receipt


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'node.db'}")
    database.migrate()
    return database


@pytest.fixture
def facilitator() -> FakeFacilitator:
    return FakeFacilitator()


@pytest.fixture
def rail(db: Database, tmp_path: Path, facilitator: FakeFacilitator) -> BatchSettlementRail:
    return make_rail(db, tmp_path, facilitator)


def call(rail: BatchSettlementRail, payer: Payer, job: str, *, price: int = PRICE, tokens: int | None = None,
         per_1k: int | None = None) -> dict:
    """One paid call through the rail: verify, settle, and the SDK client reads the answer."""
    the_offer = offer(price, per_1k)
    requirements = rail.requirements(the_offer)
    header, payload = payer.pay(requirements)
    ticket = rail.verify({PAYMENT_SIGNATURE_HEADER: header}, the_offer)
    assert ticket is not None
    settlement = rail.settle(ticket, outcome(job, tokens))
    payer.answered(payload, requirements, rail.answer_headers(settlement)["PAYMENT-RESPONSE"])
    assert settlement.payment is not None
    return settlement.payment


def test_a_deposit_then_vouchers_checked_without_the_facilitator(rail: BatchSettlementRail,
                                                                facilitator: FakeFacilitator) -> None:
    payer = Payer(dev_account(2, DEVNET_CHAIN_ID))
    first = call(rail, payer, "job-1")
    assert facilitator.balance == 10 * PRICE and len(facilitator.settled) == 1  # the deposit, executed once
    verified = facilitator.verified
    payments = [call(rail, payer, f"job-{i}") for i in range(2, 12)]  # ten vouchers; the 10th needs a top-up
    assert first["charged_cumulative"] == str(PRICE)
    assert [p["charged_cumulative"] for p in payments] == [str(PRICE * i) for i in range(2, 12)]
    assert facilitator.verified - verified == 1  # only the top-up went to the facilitator: vouchers are local
    charges = rail.storage.repo.charges()
    assert [c.amount for c in charges] == [PRICE] * 11 and len({c.ticket for c in charges}) == 11
    for charge in charges:  # each charge carries the node's signed receipt: model, amount, voucher commitment
        assert charge.receipt is not None and verify_receipt(charge.receipt, NODE.address)
        message = charge.receipt["typedData"]["message"]
        assert (message["modelId"], message["amount"]) == ("m1", PRICE)
        assert message["transaction"] == f"{charge.channel_id}:{charge.cumulative}"


def test_a_replayed_voucher_is_refused_with_the_schemes_code_and_charges_nothing(rail: BatchSettlementRail) -> None:
    payer = Payer(dev_account(2, DEVNET_CHAIN_ID))
    requirements = rail.requirements(offer())
    header, _ = payer.pay(requirements)
    ticket = rail.verify({PAYMENT_SIGNATURE_HEADER: header}, offer())
    assert ticket is not None
    rail.settle(ticket, outcome("job-1"))

    with pytest.raises(PaymentChannelRejected) as replayed:
        rail.verify({PAYMENT_SIGNATURE_HEADER: header}, offer())

    assert replayed.value.details["reason"] == scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH
    assert "chargedCumulativeAmount" in replayed.value.headers["X-Test-Terms"]  # the corrective 402's state
    assert [c.amount for c in rail.storage.repo.charges()] == [PRICE]


def test_one_call_at_a_time_per_channel_and_a_released_call_charges_nothing(rail: BatchSettlementRail) -> None:
    payer = Payer(dev_account(2, DEVNET_CHAIN_ID))
    requirements = rail.requirements(offer())
    header, _ = payer.pay(requirements)
    ticket = rail.verify({PAYMENT_SIGNATURE_HEADER: header}, offer())
    assert ticket is not None

    with pytest.raises(PaymentChannelBusy) as busy:
        rail.verify({PAYMENT_SIGNATURE_HEADER: header}, offer())
    assert busy.value.http_status == 409 and busy.value.details["reason"] == scheme_errors.ERR_CHANNEL_BUSY

    rail.release(ticket)
    assert rail.storage.repo.charges() == []
    again = rail.verify({PAYMENT_SIGNATURE_HEADER: header}, offer())  # the same voucher is good once released
    assert again is not None and again.nonce == ticket.nonce
    rail.release(again)
    with pytest.raises(PaymentSettlementFailed):
        rail.settle(again, outcome("job-late"))  # a released reservation never charges
    assert rail.storage.repo.charges() == []


def test_a_voucher_above_the_balance_is_refused(rail: BatchSettlementRail, facilitator: FakeFacilitator) -> None:
    payer = Payer(dev_account(2, DEVNET_CHAIN_ID))
    call(rail, payer, "job-1")
    assert facilitator.balance == 10 * PRICE
    channel = rail.storage.list()[0]
    dear = offer(20 * PRICE)  # a call above what the channel holds
    # the client believes the channel holds more than it does: it signs a voucher without a top-up
    payer.scheme._storage.set(channel.channel_id.lower(), _context(str(PRICE), balance=str(100 * PRICE)))
    header, _ = payer.pay(rail.requirements(dear))

    with pytest.raises(PaymentChannelRejected) as above:
        rail.verify({PAYMENT_SIGNATURE_HEADER: header}, dear)

    assert above.value.details["reason"] == scheme_errors.ERR_CUMULATIVE_EXCEEDS_BALANCE
    assert len(rail.storage.repo.charges()) == 1
    assert rail.storage.get(channel.channel_id).pending_request is None  # nothing held


def test_a_metered_generation_is_charged_for_the_tokens_produced(rail: BatchSettlementRail) -> None:
    payer = Payer(dev_account(2, DEVNET_CHAIN_ID))
    ceiling = 640  # 64 max_tokens at 10,000 per 1,000 tokens
    first = call(rail, payer, "gen-1", price=ceiling, tokens=7, per_1k=10_000)
    second = call(rail, payer, "gen-2", price=ceiling, tokens=64, per_1k=10_000)

    assert (first["amount"], first["ceiling"]) == ("70", str(ceiling))
    assert second["amount"] == "640" and second["charged_cumulative"] == "710"  # the next voucher built on 70


def test_concurrent_verifies_of_one_voucher_on_two_nodes_sharing_a_database(db: Database, tmp_path: Path,
                                                                           facilitator: FakeFacilitator) -> None:
    nodes = [make_rail(db, tmp_path / str(i), facilitator) for i in range(2)]
    payer = Payer(dev_account(2, DEVNET_CHAIN_ID))
    call(nodes[0], payer, "job-0")  # the channel exists (deposit made)
    header, _ = payer.pay(nodes[0].requirements(offer()))
    won: list[Ticket] = []
    refused: list[str] = []

    def attempt(rail: BatchSettlementRail) -> None:
        try:
            ticket = rail.verify({PAYMENT_SIGNATURE_HEADER: header}, offer())
            assert ticket is not None
            won.append(ticket)
        except (PaymentChannelBusy, PaymentChannelRejected) as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=attempt, args=(nodes[i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(won) == 1 and len(refused) == 15
    ticket = won[0]
    nodes[1].settle(ticket, outcome("job-1"))
    assert nodes[0].settle(ticket, outcome("job-1")).payment is not None  # settled again: answered as before
    with pytest.raises(PaymentSettlementFailed):  # another ticket on the same voucher never charges
        nodes[0].settle(Ticket(ticket.nonce + "x", PRICE, doc=ticket.doc), outcome("job-2"))
    assert [c.amount for c in nodes[0].storage.repo.charges()] == [PRICE, PRICE]


def _context(charged: str, *, balance: str) -> object:
    from x402.mechanisms.evm.batch_settlement.client.storage import BatchSettlementClientContext

    return BatchSettlementClientContext(charged_cumulative_amount=charged, balance=balance)


def test_a_sweep_interval_that_lets_a_withdrawal_beat_the_claim_is_refused_at_start() -> None:
    from proofmarket.core.errors import UsageError
    from proofmarket.core.settings import X402Settings
    from proofmarket.node.batch_build import check_sweep_before_withdrawal

    check_sweep_before_withdrawal(X402Settings(channel_sweep_interval_s=300, channel_withdraw_delay_s=3600))
    with pytest.raises(UsageError, match="at most half"):
        check_sweep_before_withdrawal(X402Settings(channel_sweep_interval_s=1000, channel_withdraw_delay_s=1800))


def test_a_sweep_is_due_on_the_threshold_or_after_the_interval() -> None:
    """Claims are batched: due once the unclaimed total reaches the threshold, or once the oldest unswept charge has
    waited the interval; never with nothing unclaimed, except charges a refund claimed that no sweep covered yet."""
    from datetime import UTC, datetime
    from types import SimpleNamespace
    from typing import Any

    from proofmarket.payments.batch.sweeps import Sweeper, SweepPolicy

    class Repo:
        def __init__(self, states: list[dict[str, Any]], oldest: float | None) -> None:
            self.states, self.oldest = states, oldest

        def all(self) -> list[dict[str, Any]]:
            return self.states

        def charges(self, **_: Any) -> list[Any]:
            if self.oldest is None:
                return []
            return [SimpleNamespace(created_at=datetime.fromtimestamp(self.oldest, UTC), channel_id="0xc1",
                                    cumulative=5000)]

    def sweeper(states: list[dict[str, Any]], oldest: float | None) -> Sweeper:
        return Sweeper(Repo(states, oldest), None, "0x", SweepPolicy(interval_s=300,  # type: ignore[arg-type]
                                                                      threshold_atomic=10_000))

    now = 1_000_000.0
    small = [{"chargedCumulativeAmount": "4000", "totalClaimed": "1000"}, {"chargedCumulativeAmount": "2000"}]
    assert not sweeper([], None).due(now)
    claimed = [{"channelId": "0xC1", "chargedCumulativeAmount": "5000", "totalClaimed": "5000"}]
    assert not sweeper(claimed, None).due(now)  # claimed and swept: nothing to do
    # claimed (a cooperative refund claims the charged total) but never swept: the payee is not paid yet
    assert sweeper(claimed, now - 10).due(now)
    assert not sweeper(small, now - 299).due(now)  # 5,000 unclaimed, the oldest charge 299 s old
    assert sweeper(small, now - 300).due(now)  # ... 300 s: the interval
    assert sweeper([*small, {"chargedCumulativeAmount": "5000"}], now - 1).due(now)  # 10,000: the threshold


def test_a_settle_someone_else_made_or_one_that_failed_still_leads_to_the_payout(db: Database) -> None:
    """``settle(receiver, token)`` is public on chain: "nothing to settle" means another caller moved the claimed
    funds, and the sweep goes on to its payouts; a sweep whose settle failed is settled on the next pass."""
    from typing import Any

    from proofmarket.payments.batch.repo import ChannelRepo, NewCharge
    from proofmarket.payments.batch.sweeps import Sweeper, SweepPolicy
    from proofmarket.payments.payouts import PayoutReport

    repo = ChannelRepo(db)
    channel, payee = "0x" + "c1" * 32, "0x" + "0e" * 20
    state = {"channelId": channel, "chargedCumulativeAmount": "500", "totalClaimed": "500",
             "channelConfig": {"payer": "0x" + "0a" * 20}}
    repo.update(channel, lambda _: dict(state), lambda s: NewCharge("t1", channel, "job", "model", payee, 500, 500))

    class Manager:
        def __init__(self) -> None:
            self.answers: list[Any] = [RuntimeError("the RPC went away"),
                                       RuntimeError("Settle failed: invalid_batch_settlement_evm_nothing_to_settle")]

        def claim(self, opts: Any = None) -> list[Any]:
            return []  # a cooperative refund claimed the charges already

        def settle(self) -> Any:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    class Payouts:
        def run(self) -> PayoutReport:
            return PayoutReport(paid={payee: "0xpaid"})

    sweeper = Sweeper(repo, Manager(), "0x" + "99" * 20, SweepPolicy())
    sweeper.payouts = Payouts()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="went away"):
        sweeper.run()
    [stuck] = repo.sweeps()
    assert stuck.status == "claimed" and "went away" in str(stuck.error)
    assert sweeper.run() is None  # the stuck sweep is settled ("nothing to settle": moved by another caller)
    [done] = repo.sweeps()
    assert done.status == "distributed" and done.allocations[payee]["tx"] == "0xpaid"


def test_two_sweepers_in_one_process_on_one_database_take_turns(db: Database) -> None:
    """Two nodes in one process (or a node and its operator's route) share the host and the pid: each sweeper is
    its own lease holder, so while one sweeps the other does nothing (it took the same charges into an empty sweep)."""
    from typing import Any

    from proofmarket.db import LeaseRepo
    from proofmarket.payments.batch.repo import ChannelRepo, NewCharge
    from proofmarket.payments.batch.sweeps import LEASE, Sweeper, SweepPolicy

    repo = ChannelRepo(db)
    channel, payee = "0x" + "c2" * 32, "0x" + "0e" * 20
    state = {"channelId": channel, "chargedCumulativeAmount": "700", "totalClaimed": "700",
             "channelConfig": {"payer": "0x" + "0a" * 20}}
    repo.update(channel, lambda _: dict(state), lambda s: NewCharge("t2", channel, "job", "model", payee, 700, 700))
    seen: list[Any] = []

    class Manager:
        def claim(self, opts: Any = None) -> list[Any]:
            seen.append(second.run())  # the other node asks while this one is between its claim and its sweep
            return []

        def settle(self) -> Any:
            from types import SimpleNamespace

            return SimpleNamespace(transaction="0xsettled")

    first = Sweeper(repo, Manager(), "0x" + "99" * 20, SweepPolicy(), LeaseRepo(db))
    second = Sweeper(repo, Manager(), "0x" + "99" * 20, SweepPolicy(), LeaseRepo(db))
    assert first.holder != second.holder
    done = first.run()
    assert seen == [None]  # the lease was the first's
    assert done is not None and int(done["amount"]) == 700
    assert LeaseRepo(db).holder(LEASE) is None  # released


def test_the_operators_sweep_waits_for_another_nodes_sweep_then_sweeps_what_is_left(db: Database) -> None:
    """While another node sweeps, the operator's "sweep now" waits for its lease instead of answering "nothing": a
    charge made during the other node's pass is swept by the operator's, so nothing charged before it stays unswept."""
    import threading
    from types import SimpleNamespace
    from typing import Any

    from proofmarket.db import LeaseRepo
    from proofmarket.payments.batch.repo import ChannelRepo, NewCharge
    from proofmarket.payments.batch.sweeps import Sweeper, SweepPolicy

    repo = ChannelRepo(db)
    payee = "0x" + "0e" * 20

    def charge(n: int) -> None:
        channel = "0x" + f"{n:02x}" * 32
        state = {"channelId": channel, "chargedCumulativeAmount": "300", "totalClaimed": "300",
                 "channelConfig": {"payer": "0x" + "0a" * 20}}
        repo.update(channel, lambda _: dict(state),
                    lambda s: NewCharge(f"t{n}", channel, "job", "model", payee, 300, 300))

    charge(1)
    inside, finish = threading.Event(), threading.Event()

    class Manager:
        def __init__(self, hold: bool) -> None:
            self.hold = hold

        def claim(self, opts: Any = None) -> list[Any]:
            return []

        def settle(self) -> Any:
            if self.hold:  # the other node's pass, its sweep opened: held here while the operator asks
                self.hold = False
                inside.set()
                assert finish.wait(30)
            return SimpleNamespace(transaction="0xsettled")

    other = Sweeper(repo, Manager(hold=True), "0x" + "99" * 20, SweepPolicy(), LeaseRepo(db))
    operator = Sweeper(repo, Manager(hold=False), "0x" + "99" * 20, SweepPolicy(), LeaseRepo(db))
    first: list[Any] = []
    background = threading.Thread(target=lambda: first.append(other.run()))
    background.start()
    assert inside.wait(30)
    assert operator.run() is None  # without waiting: the other node holds the lease
    charge(2)  # charged while the other node's pass settles its sweep
    answer: list[Any] = []
    waiting = threading.Thread(target=lambda: answer.append(operator.run(wait_s=30)))
    waiting.start()
    finish.set()
    background.join(30)
    waiting.join(30)
    assert first and first[0] is not None and int(first[0]["amount"]) == 300  # the other's pass: its claim's charges
    assert answer and answer[0] is not None and int(answer[0]["amount"]) == 300  # the operator's: the one left
    assert repo.charges(unswept=True) == []


def test_a_channels_configuration_is_checked_once_and_a_changed_one_again(rail: BatchSettlementRail,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel id is an EIP-712 hash of the channel's configuration: computed once per distinct configuration
    (not on every voucher), while a voucher whose configuration or id differs is checked, and refused, afresh."""
    from proofmarket.payments.batch import checks

    monkeypatch.setattr(checks, "_CHECKED", {})  # what other tests' channels left there
    asked: list[str] = []
    real = checks.validate_channel_config
    monkeypatch.setattr(checks, "validate_channel_config",
                        lambda config, claimed, requirements: asked.append(claimed) or real(config, claimed,
                                                                                            requirements))
    payer = Payer(dev_account(3, DEVNET_CHAIN_ID))
    for i in range(4):
        call(rail, payer, f"job-{i}")
    assert len(asked) == 1  # four vouchers of one channel: one check of its configuration

    requirements = rail.requirements(offer())
    header, payload = payer.pay(requirements)
    payload.payload["channelConfig"]["withdrawDelay"] = int(payload.payload["channelConfig"]["withdrawDelay"]) + 1
    with pytest.raises(PaymentChannelRejected) as refused:  # the same id claimed for another configuration
        rail.verify({PAYMENT_SIGNATURE_HEADER: encode_payment_signature_header(payload)}, offer())
    assert refused.value.details["reason"] == scheme_errors.ERR_CHANNEL_ID_MISMATCH
    assert rail.storage.repo.read(payload.payload["voucher"]["channelId"])[1] is None  # refused, not marked


def test_a_channels_state_and_its_refusal_are_read_together(rail: BatchSettlementRail) -> None:
    payer = Payer(dev_account(4, DEVNET_CHAIN_ID))
    payment = call(rail, payer, "job-1")
    repo = rail.storage.repo
    state, refused = repo.read(payment["channel_id"])
    assert state is not None and state["chargedCumulativeAmount"] == str(PRICE) and refused is None
    repo.refuse(payment["channel_id"], "the claim reverted")
    assert repo.read(payment["channel_id"].upper().replace("0X", "0x"))[1] == "the claim reverted"
    assert repo.read("0x" + "00" * 32) == (None, None)
