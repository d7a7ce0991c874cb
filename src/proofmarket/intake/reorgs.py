"""What a chain watcher does about reorgs and confirmations (a base of ``ChainWatcher``; the rules are in
``proofmarket.intake.watcher``'s doc): check the requests seen in blocks that left the chain, and follow the answers
that wait for their confirmations."""

from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar, Generic, TypeVar

from proofmarket.chain import model_id_for
from proofmarket.chain.court import CourtRequest
from proofmarket.chain.types import InferenceRequest
from proofmarket.core.errors import ProofMarketError
from proofmarket.db import CourtState, EscrowRepo, EscrowRequestRow, EscrowStatus
from proofmarket.onchain import Market

CLOSED = (EscrowStatus.FULFILLED, EscrowStatus.FAILED)
OPEN = tuple(s for s in EscrowStatus if s not in CLOSED)
Req = TypeVar("Req", InferenceRequest, CourtRequest)  # a watcher's contract's request (the escrow's or the court's)


class Reorgs(abc.ABC, Generic[Req]):
    noun: ClassVar[str]
    market: Market
    repo: EscrowRepo
    chain_id: int
    address: str
    owner: str
    confirmations: int  # blocks on top of an event's (and an answer's) block
    log: logging.Logger

    def _rolled_back(self, first_block: int) -> None:
        """Blocks from ``first_block`` on left the chain: check the requests seen there (see the module's doc)."""
        for row in self.repo.open_since(self.chain_id, self.address, first_block):
            onchain = self._open_onchain(row.request_id)
            if onchain is not None and self._same_request(row, onchain):
                continue
            if self.repo.forget(row.id, *OPEN):
                what = "gone" if onchain is None else "another request under its id"
                self.log.warning("%s %s (block %s, %s) left the chain in a reorg from block %d: %s now, forgotten",
                                 self.noun, row.request_id, row.block_number, row.status, first_block, what)

    def _same_request(self, row: EscrowRequestRow, onchain: Req) -> bool:
        return ("0x" + onchain.input_commitment.hex() == row.commitment.lower()
                and onchain.consumer.lower() == row.consumer.lower()
                and onchain.model_key == model_id_for(self.owner, row.model_id))

    def _answered(self, row: EscrowRequestRow, fulfil_tx: str, settlement: dict[str, Any],
                  court: CourtState | None = None) -> bool:
        """Record an answer mined in ``fulfil_tx``: fulfilled now without confirmations, else confirming (True).
        ``court``: a court request's state once committed."""
        if self.confirmations == 0:
            self.repo.fulfilled(row.id, fulfil_tx=fulfil_tx, settlement=settlement, court=court)
            return False
        self.repo.confirming(row.id, fulfil_tx=fulfil_tx, settlement=settlement, court=court)
        self.log.info("%s %s answered in tx %s: waiting for %d confirmation(s)", self.noun, row.request_id,
                      fulfil_tx, self.confirmations)
        return True

    def _follow_confirming(self) -> int:
        """Follow the answers waiting for their confirmations; returns how many became final (fulfilled)."""
        rows = self.repo.with_status(self.chain_id, self.address, EscrowStatus.CONFIRMING)
        if not rows:
            return 0
        done = 0
        head = self.market.client.block_number()
        for row in rows:
            try:
                done += self._follow(row, head)
            except ProofMarketError as exc:  # the next pass tries again
                self.log.warning("%s %s: could not follow its answer yet: %s", self.noun, row.request_id, exc.message)
        return done

    def _follow(self, row: EscrowRequestRow, head: int) -> int:
        onchain = self._read(row.request_id)
        if self._open_again(onchain):
            if self._record_closed(row, onchain) is None and self.repo.reopen(row.id):
                self.log.warning("%s %s: its answer (tx %s) left the chain and the request is open again: "
                                 "answering it again", self.noun, row.request_id, row.fulfil_tx)
            return 0
        block = self._tx_block(row.fulfil_tx)
        if block is not None and block + self.confirmations > head:
            return 0  # not deep enough yet
        if not self._settled_by_us(onchain):
            self._record_closed(row, onchain)
            return 0
        settlement = {**(row.settlement or {}), "confirmed_at_block": head}
        if block is None:  # another version of our transaction (a re-send) was mined: ours all the same
            settlement["tx_not_found"] = row.fulfil_tx
        if not self.repo.confirmed(row.id, self._confirmed_settlement(row, settlement)):
            return 0
        self.log.info("%s %s: its answer is final (%d confirmation(s))", self.noun, row.request_id,
                      self.confirmations)
        return 1

    def _tx_block(self, tx_hash: str | None) -> int | None:
        """The block of a mined transaction on the canonical chain now (None: not there)."""
        if tx_hash is None:
            return None
        receipt = self.market.client.rpc("eth_getTransactionReceipt", [tx_hash])
        return None if not receipt else int(str(receipt["blockNumber"]), 16)

    def _confirmed_settlement(self, row: EscrowRequestRow, settlement: dict[str, Any]) -> dict[str, Any]:
        """The settlement a confirmed answer is recorded with (a subclass may add to it)."""
        return settlement

    @abc.abstractmethod
    def _read(self, request_id: int) -> Req:
        """The request as the contract tells it now."""

    @abc.abstractmethod
    def _open_onchain(self, request_id: int) -> Req | None:
        """The request when it exists and is for this node, else None."""

    @abc.abstractmethod
    def _record_closed(self, row: EscrowRequestRow, onchain: Req) -> str | None:
        """Record a request that can no longer be answered here and say why; None while it is open."""

    @abc.abstractmethod
    def _open_again(self, onchain: Req) -> bool:
        """Whether a request we answered reads as open on chain (our answer left the chain)."""

    @abc.abstractmethod
    def _settled_by_us(self, onchain: Req) -> bool:
        """Whether the chain holds our answer to the request."""
