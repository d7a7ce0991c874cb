"""The escrow and court requests this node follows (one table for both watchers): what it saw, claimed, proved and
settled, and the watchers' cursors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from proofmarket.db import market_book
from proofmarket.db.book import Book, Transfer
from proofmarket.db.cursors import Cursors
from proofmarket.db.engine import Database
from proofmarket.db.tables import (
    EscrowRequestRow,
    EscrowStatus,
    ModelRow,
    utcnow,
)


@dataclass(frozen=True)
class SeenRequest:
    """An on-chain request (from its RequestCreated event or a ``getRequest`` read)."""

    chain_id: int
    market: str
    request_id: int
    model_id: str
    commitment: str  # 0x-hex bytes32
    consumer: str
    amount: int
    deadline: int
    block_number: int | None = None
    request_tx: str | None = None


def fulfilment(row: EscrowRequestRow, settlement: dict[str, Any], s: Session) -> Transfer | None:
    """An escrow request fulfilled on chain, in the book: the consumer's escrowed amount credited by the market to
    the withdrawable balances of the model's owner, the prover and the platform, as the fulfil's
    ``RequestFulfilled`` event says (the same transfer ``MarketBook`` books from that event: whichever comes first).
    None for what moved no value here (a court commitment, a recovered row)."""
    amounts = tuple(int(settlement.get(k) or 0) for k in ("owner_amount", "prover_amount", "platform_fee"))
    if "owner_amount" not in settlement or not any(amounts):
        return None
    model = s.get(ModelRow, row.model_id)
    owner = str(settlement.get("owner") or (model.owner if model is not None else None) or "unknown-owner")
    tx = (settlement.get("tx") or {}).get("hash") or row.fulfil_tx
    return market_book.fulfilment(row.chain_id, row.market, row.request_id, row.consumer, owner,
                                  str(settlement.get("prover") or ""), amounts,  # type: ignore[arg-type]
                                  model_id=row.model_id, tx_hash=tx)


def _listed(transfer: Transfer | None) -> list[Transfer]:
    return [] if transfer is None else [transfer]


class EscrowRepo:
    """Escrow requests seen on chain, one row per (chain, market, request id), and the watcher's cursor.

    Every status change is a conditional update, so only one thread or process ever claims a request
    for proving (``seen/input_received -> proving``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.book = Book(db)

    def seen(self, req: SeenRequest) -> EscrowRequestRow:
        """Insert the request as ``seen`` unless a row exists (events are delivered at least once)."""
        existing = self.get(req.chain_id, req.market, req.request_id)
        if existing is not None:
            return existing
        now = utcnow()
        row = EscrowRequestRow(chain_id=req.chain_id, market=req.market.lower(), request_id=req.request_id,
                               model_id=req.model_id, status=EscrowStatus.SEEN.value, commitment=req.commitment,
                               consumer=req.consumer, amount=req.amount, deadline=req.deadline,
                               block_number=req.block_number, request_tx=req.request_tx, attempts=0,
                               created_at=now, updated_at=now)
        try:
            with self.db.session() as s:
                s.add(row)
        except IntegrityError:  # another thread inserted it first
            pass
        found = self.get(req.chain_id, req.market, req.request_id)
        assert found is not None
        return found

    def get(self, chain_id: int, market: str, request_id: int) -> EscrowRequestRow | None:
        with self.db.session() as s:
            return s.scalars(select(EscrowRequestRow).where(
                EscrowRequestRow.chain_id == chain_id, EscrowRequestRow.market == market.lower(),
                EscrowRequestRow.request_id == request_id)).first()

    def with_status(self, chain_id: int, market: str, *statuses: EscrowStatus) -> list[EscrowRequestRow]:
        with self.db.session() as s:
            return list(s.scalars(select(EscrowRequestRow).where(*_in_status(chain_id, market, statuses))
                                  .order_by(EscrowRequestRow.request_id)))

    def count_with_status(self, chain_id: int, market: str, *statuses: EscrowStatus) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(EscrowRequestRow)
                                .where(*_in_status(chain_id, market, statuses))) or 0)

    def by_consumer(self, chain_id: int, consumer: str, limit: int = 20, offset: int = 0) -> list[EscrowRequestRow]:
        """A consumer's escrow and court requests on one chain, newest first."""
        with self.db.session() as s:
            return list(s.scalars(select(EscrowRequestRow).where(
                EscrowRequestRow.chain_id == chain_id, func.lower(EscrowRequestRow.consumer) == consumer.lower())
                .order_by(EscrowRequestRow.created_at.desc(), EscrowRequestRow.id.desc()).offset(offset).limit(limit)))

    def recent(self, chain_id: int, market: str, limit: int = 20) -> list[EscrowRequestRow]:
        """The ``limit`` most recently seen requests of a market, newest first."""
        with self.db.session() as s:
            return list(s.scalars(select(EscrowRequestRow).where(
                EscrowRequestRow.chain_id == chain_id, EscrowRequestRow.market == market.lower())
                .order_by(EscrowRequestRow.created_at.desc(), EscrowRequestRow.id.desc()).limit(limit)))

    def input_received(self, row_id: int, inputs: dict[str, Any]) -> bool:
        """seen -> input_received with the consumer's input (and salt)."""
        return self._move(row_id, [EscrowStatus.SEEN], status=EscrowStatus.INPUT_RECEIVED.value, inputs=inputs)

    def claim(self, row_id: int) -> bool:
        """input_received -> proving (one more attempt); False when someone else has it."""
        return self._move(row_id, [EscrowStatus.INPUT_RECEIVED], status=EscrowStatus.PROVING.value,
                          attempts=EscrowRequestRow.attempts + 1)

    def release(self, row_id: int) -> bool:
        """proving -> input_received: prove again later (after a restart, or a transient failure)."""
        return self._move(row_id, [EscrowStatus.PROVING], status=EscrowStatus.INPUT_RECEIVED.value)

    def proved(self, row_id: int, bundle_cid: str) -> bool:
        return self._move(row_id, [EscrowStatus.PROVING], bundle_cid=bundle_cid)

    def confirming(self, row_id: int, *, fulfil_tx: str, settlement: dict[str, Any],
                   court: CourtState | None = None) -> bool:
        """proving -> confirming: our fulfil is mined, not deep enough yet (the input and bundle are kept: an
        orphaned fulfil is answered again). ``court``: a court request's state once committed."""
        return self._move(row_id, [EscrowStatus.PROVING], status=EscrowStatus.CONFIRMING.value, fulfil_tx=fulfil_tx,
                          settlement=settlement, **_court(court))

    def reopen(self, row_id: int) -> bool:
        """confirming -> input_received: the fulfil's block left the chain and the request is open again."""
        return self._move(row_id, [EscrowStatus.CONFIRMING], status=EscrowStatus.INPUT_RECEIVED.value,
                          fulfil_tx=None, settlement=None, court_status=None, court_window_end=None)

    def open_since(self, chain_id: int, market: str, block: int) -> list[EscrowRequestRow]:
        """The requests not closed that were seen in block ``block`` or later, or read from the chain (no block)."""
        open_ = tuple(st for st in EscrowStatus if st not in (EscrowStatus.FULFILLED, EscrowStatus.FAILED))
        with self.db.session() as s:
            return list(s.scalars(select(EscrowRequestRow).where(
                *_in_status(chain_id, market, open_),
                or_(EscrowRequestRow.block_number >= block, EscrowRequestRow.block_number.is_(None)))
                .order_by(EscrowRequestRow.request_id)))

    def forget(self, row_id: int, *statuses: EscrowStatus) -> bool:
        """Delete a request in one of ``statuses`` (its event left the chain): the canonical event records it
        afresh."""
        with self.db.session() as s:
            res = s.execute(delete(EscrowRequestRow).where(
                EscrowRequestRow.id == row_id, EscrowRequestRow.status.in_([st.value for st in statuses])))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    # a final request forgets the consumer's input and salt (a hashed input is private): nothing needs them

    def fulfilled(self, row_id: int, *, fulfil_tx: str | None, settlement: dict[str, Any],
                  court: CourtState | None = None) -> bool:
        """-> fulfilled, with the fulfilment's shares in the book (an escrow fulfil, once final). ``court``: a court
        request's state once committed."""
        return self._move(row_id, [EscrowStatus.SEEN, EscrowStatus.INPUT_RECEIVED, EscrowStatus.PROVING],
                          status=EscrowStatus.FULFILLED.value, fulfil_tx=fulfil_tx, settlement=settlement,
                          inputs=None, posts=lambda s, row: _listed(fulfilment(row, settlement, s)), **_court(court))

    def confirmed(self, row_id: int, settlement: dict[str, Any]) -> bool:
        """confirming -> fulfilled: our fulfil is deep enough (its shares enter the book now)."""
        return self._move(row_id, [EscrowStatus.CONFIRMING], status=EscrowStatus.FULFILLED.value,
                          settlement=settlement, inputs=None,
                          posts=lambda s, row: _listed(fulfilment(row, settlement, s)))

    def court_moved(self, row_id: int, court: CourtState, settlement: dict[str, Any],
                    transfers: Sequence[Transfer] = ()) -> bool:
        """A committed court request's state as the court moves it on (challenged, paid, slashed...), its settlement's
        records and what it paid in the book, in one database transaction."""
        return self._move(row_id, [EscrowStatus.FULFILLED], settlement=settlement,
                          posts=(lambda s, row: transfers) if transfers else None, **_court(court))

    def failed(self, row_id: int, code: str, message: str) -> bool:
        return self._move(row_id, [EscrowStatus.SEEN, EscrowStatus.INPUT_RECEIVED, EscrowStatus.PROVING,
                                   EscrowStatus.CONFIRMING],
                          status=EscrowStatus.FAILED.value, error_code=code, error_message=message[:4000],
                          inputs=None)

    def cursor(self, name: str) -> int | None:
        return self.cursor_at(name)[0]

    def cursor_at(self, name: str) -> tuple[int | None, str | None]:
        """(the first block not yet fully processed, the hash block ``next_block - 1`` had when it was read)."""
        return Cursors(self.db).at(name)

    def save_cursor(self, name: str, next_block: int, block_hash: str | None = None) -> None:
        Cursors(self.db).save(name, next_block, block_hash)

    def _move(self, row_id: int, from_: list[EscrowStatus],
              posts: Callable[[Session, EscrowRequestRow], Sequence[Transfer]] | None = None, **values: Any) -> bool:
        """A conditional update of the row; ``posts``: the transfers the move makes, posted in the same database
        transaction (only when the row moved: once)."""
        with self.db.write_session() if posts is not None else self.db.session() as s:
            res = s.execute(update(EscrowRequestRow).where(
                EscrowRequestRow.id == row_id, EscrowRequestRow.status.in_([f.value for f in from_]))
                .values(updated_at=utcnow(), **values))
            if not res.rowcount:  # type: ignore[attr-defined]
                return False
            row = s.get(EscrowRequestRow, row_id) if posts is not None else None
            for transfer in posts(s, row) if posts is not None and row is not None else ():
                self.book.post(transfer, session=s)
            return True


def _in_status(chain_id: int, market: str, statuses: tuple[EscrowStatus, ...]) -> tuple[Any, ...]:
    """The requests of one market (any address case) in one of ``statuses``."""
    return (EscrowRequestRow.chain_id == chain_id, EscrowRequestRow.market == market.lower(),
            EscrowRequestRow.status.in_([st.value for st in statuses]))


class CourtState(NamedTuple):
    """A court request's state on chain, as its row's columns keep it."""

    status: str  # committed, challenged, withheld, paid, slashed or refunded
    window_end: int | None  # when its challenge window closes (unix seconds)


def _court(court: CourtState | None) -> dict[str, Any]:
    return {} if court is None else {"court_status": court.status, "court_window_end": court.window_end}
