"""The escrow and court rails' settlement rules, on a stand-in watcher (the chain paths: test_escrow_watcher.py,
test_escrow_attested.py): a call settles only as its request's row reads for its own attempt; a call whose request
failed fails (never stays settling); a timed-out or superseded attempt's call sends nothing on chain."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from proofmarket.core.errors import PaymentSettlementFailed, PaymentSettlementPending
from proofmarket.db import EscrowStatus
from proofmarket.intake.rails import COURT_RAIL, ESCROW_RAIL, CourtRail, EscrowRail, chain_ticket
from proofmarket.payments.tickets import ProofOutcome, Ticket

CHAIN, CONTRACT = 31337, "0x" + "ab" * 20
PROOF = ProofOutcome("call", "model", "bafy", "0x01", "0x02", {})


class Watcher:
    """What the rails read of a watcher: its chain, contract and rows; ``settle_answer`` records what it sent."""

    noun, contract, confirmations = "escrow request", "InferenceMarket", 0
    chain_id, address = CHAIN, CONTRACT

    def __init__(self, row: Any) -> None:
        self.row, self.sent, self.generating = row, [], False

    def others_generating(self, row: Any) -> bool:  # the court's: another request's call still being generated
        return self.generating

    def get(self, request_id: int) -> Any:
        return self.row

    def settle_answer(self, row: Any, bundle: Any, cid: str) -> int:
        self.sent.append(row.request_id)
        row.status, row.settlement = EscrowStatus.FULFILLED, {"tx": {"hash": "0xf1"}, "owner_amount": 7}
        return 1

    def commit_answer(self, row: Any, cid: str) -> None:  # the court's: committed on chain
        self.sent.append(row.request_id)
        row.status, row.court_status = EscrowStatus.FULFILLED, "committed"

    commit_deferred = commit_answer

    def advance(self, row: Any) -> bool:  # the court's: one look at the request on chain (the test moves it)
        self.sent.append(("advance", row.court_status))
        return row.court_status in ("paid", "slashed")


def _row(status: EscrowStatus, attempts: int = 1, **more: Any) -> Any:
    fields = {"settlement": None, "fulfil_tx": None, "error_code": None, "error_message": None, "court_status": None,
              **more}
    return SimpleNamespace(request_id=5, status=status, attempts=attempts, amount=100, consumer="0xC0", **fields)


def _ticket(rail: str, row: Any) -> Ticket:
    return chain_ticket(rail, CHAIN, CONTRACT, row)


def test_an_escrow_call_of_the_proving_attempt_fulfils_and_settles() -> None:
    row = _row(EscrowStatus.PROVING)
    watcher = Watcher(row)
    settled = EscrowRail(watcher).settle(_ticket(ESCROW_RAIL, row), PROOF)  # type: ignore[arg-type]
    assert watcher.sent == [5]
    assert settled.payment is not None and settled.payment["transaction"] == "0xf1"
    assert (settled.payment["amount"], settled.payment["owner_amount"], settled.transfers) == ("100", 7, ())


@pytest.mark.parametrize("status", [EscrowStatus.FAILED, EscrowStatus.INPUT_RECEIVED, EscrowStatus.PROVING])
def test_a_timed_out_or_superseded_attempts_call_sends_nothing_and_fails(status: EscrowStatus) -> None:
    old = _row(EscrowStatus.PROVING, attempts=1)
    row = _row(status, attempts=2 if status == EscrowStatus.PROVING else 1, error_code="proof_timeout",
               error_message="its call is still queued")
    row.error_code = row.error_code if status == EscrowStatus.FAILED else None
    watcher = Watcher(row)
    with pytest.raises(PaymentSettlementFailed) as failed:
        EscrowRail(watcher).settle(_ticket(ESCROW_RAIL, old), PROOF)  # type: ignore[arg-type]
    assert watcher.sent == []  # the request is another attempt's (or closed): no second fulfil
    if status == EscrowStatus.FAILED:
        assert failed.value.code == "proof_timeout"  # the request's own reason


@pytest.mark.parametrize("code", ["chain_error", "court_bundle_too_large", "internal_error"])
def test_a_failed_request_fails_its_call_whatever_its_code(code: str) -> None:
    """``follow`` fails a call only on PaymentSettlementFailed: any other error would leave it settling forever."""
    row = _row(EscrowStatus.PROVING)
    ticket = _ticket(COURT_RAIL, row)
    row.status, row.error_code, row.error_message = EscrowStatus.FAILED, code, "gave up"
    with pytest.raises(PaymentSettlementFailed) as failed:
        CourtRail(Watcher(row)).follow(ticket, PROOF, None)  # type: ignore[arg-type]
    assert type(failed.value) is PaymentSettlementFailed and failed.value.code == code


def test_a_court_call_commits_is_pending_through_its_window_and_settles_once_paid() -> None:
    row = _row(EscrowStatus.PROVING)
    watcher = Watcher(row)
    rail, ticket = CourtRail(watcher), _ticket(COURT_RAIL, row)  # type: ignore[arg-type]
    with pytest.raises(PaymentSettlementPending):  # committed by its settlement, then the window
        rail.settle(ticket, PROOF)
    assert watcher.sent == [5] and row.court_status == "committed"
    with pytest.raises(PaymentSettlementPending):  # settled again (a restart): committed already, nothing sent
        rail.settle(ticket, PROOF)
    assert watcher.sent == [5]
    assert rail.follow(ticket, PROOF, None) is None  # each look moves the request on chain (advance)
    assert watcher.sent[-1] == ("advance", "committed")
    row.court_status = "slashed"
    with pytest.raises(PaymentSettlementFailed):
        rail.follow(ticket, PROOF, None)
    row.court_status, row.settlement = "paid", {"tx_hash": "0xc0"}
    paid = rail.follow(ticket, PROOF, None)
    assert paid is not None and paid.payment is not None and paid.payment["court"] == "paid"


def test_a_court_answer_generated_while_others_are_waits_and_its_next_look_commits_it() -> None:
    row = _row(EscrowStatus.PROVING)
    watcher = Watcher(row)
    watcher.generating = True
    rail, ticket = CourtRail(watcher), _ticket(COURT_RAIL, row)  # type: ignore[arg-type]
    with pytest.raises(PaymentSettlementPending):  # left for the last generation to commit with it
        rail.settle(ticket, PROOF)
    assert watcher.sent == [] and row.status == EscrowStatus.PROVING
    assert rail.follow(ticket, PROOF, None) is None  # not committed by another meanwhile: committed by its follow
    assert watcher.sent[0] == 5 and row.court_status == "committed"


@pytest.mark.parametrize("status", [EscrowStatus.INPUT_RECEIVED, EscrowStatus.FAILED])
def test_a_court_call_of_a_released_or_failed_request_commits_nothing_and_fails(status: EscrowStatus) -> None:
    row = _row(status, error_code="court_bundle_too_large", error_message="too large")
    watcher = Watcher(row)
    with pytest.raises(PaymentSettlementFailed):
        CourtRail(watcher).settle(_ticket(COURT_RAIL, row), PROOF)  # type: ignore[arg-type]
    assert watcher.sent == []


def test_a_call_of_another_contract_is_refused() -> None:
    row = _row(EscrowStatus.PROVING)
    other = chain_ticket(ESCROW_RAIL, CHAIN, "0x" + "cd" * 20, row)
    with pytest.raises(PaymentSettlementFailed):
        EscrowRail(Watcher(row)).settle(other, PROOF)  # type: ignore[arg-type]
