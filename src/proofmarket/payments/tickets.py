"""What crosses the job boundary: a verified payment going in, a proof and a settlement coming out.

All three are plain JSON when stored: a job keeps the payment it was started with (``jobs.payment``)
and settles it later, possibly in another process after a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from proofmarket.core.units import per_thousand
from proofmarket.db.book import Transfer

if TYPE_CHECKING:
    from proofmarket.store import ArtifactStore
    from proofmarket.systems.port import Bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    """A payment the gate verified but did not settle. ``nonce`` identifies it (at most one job per nonce);
    ``doc`` is the gate's own JSON of it, handed back to ``settle``."""

    nonce: str
    amount_atomic: int
    payer: str | None = None
    doc: dict[str, Any] = field(default_factory=dict)
    per_1k_tokens: int | None = None  # metered: the rate per 1,000 output tokens; amount_atomic is the ceiling

    def to_json(self) -> dict[str, Any]:
        out = {"nonce": self.nonce, "amount_atomic": str(self.amount_atomic), "payer": self.payer, "doc": self.doc}
        if self.per_1k_tokens is not None:
            out["per_1k_tokens"] = str(self.per_1k_tokens)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ticket:
        rate = data.get("per_1k_tokens")
        return cls(str(data["nonce"]), int(data["amount_atomic"]), data.get("payer"), dict(data.get("doc") or {}),
                   None if rate is None else int(rate))

    def used(self, outcome: ProofOutcome) -> int:
        """What the executed call costs on a rail that can charge less than it authorized: a metered call its
        tokens produced at its rate (at least 1 unit, never above the ceiling), any other call its amount. The
        ``exact`` scheme cannot charge less: it captures ``amount_atomic``."""
        if self.per_1k_tokens is None or outcome.tokens is None:
            return self.amount_atomic
        return min(self.amount_atomic, per_thousand(self.per_1k_tokens, outcome.tokens))


@dataclass(frozen=True)
class Settlement:
    """A settled payment: what the response shows (``payment``) and the node's signed ``receipt``. Response
    headers (x402 ``PAYMENT-RESPONSE``) are not part of it: the call's rail rebuilds them at answer time."""

    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    # what the capture moved, as the book records it: posted with the call's state change, in one database
    # transaction, by the runner (a rail says which transfers a call makes; it never writes the book itself)
    transfers: tuple[Transfer, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"payment": self.payment, "receipt": self.receipt}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Settlement:
        data = data or {}
        return cls(data.get("payment"), data.get("receipt"))


@dataclass(frozen=True)
class ProofOutcome:
    """An executed call, as a rail sees it when it captures and signs: what the receipt binds (model id, input
    commitment, output hash, bundle CID; every system's bundle carries ``model.id``, ``input.commitment`` and
    ``output.hash``) and the bundle's document (made once per settlement: rails and after-capture hooks share it)."""

    job_id: str
    model_id: str
    bundle_cid: str
    input_commitment: str
    output_hash: str
    bundle: dict[str, Any]

    @property
    def tokens(self) -> int | None:
        """The output tokens the call produced (a generation's bundle lists them), None for other calls."""
        listed = (self.bundle.get("output") or {}).get("tokens")
        return len(listed) if isinstance(listed, list) else None

    def doc(self) -> dict[str, Any]:
        """A copy of the bundle's document (what a paid copy adds payment and receipt to)."""
        return dict(self.bundle)

    @classmethod
    def of(cls, job_id: str, bundle_cid: str, bundle: Bundle | dict[str, Any]) -> ProofOutcome:
        """``bundle``: parsed (turned into its document here, once) or already a document."""
        doc = bundle if isinstance(bundle, dict) else bundle.to_doc()
        return cls(job_id, str(doc["model"]["id"]), bundle_cid, str(doc["input"]["commitment"]),
                   str(doc["output"]["hash"]), doc)


class SettleHook(Protocol):
    """What a job does with its payment: settle it once the proof is ready, or release it when the job fails.

    ``settle`` is called at most once per job by the queue, but after a crash between settling and
    recording it the same ticket can come again: it must then not move money twice (an EIP-3009 nonce
    can be used once on chain) and should answer as before. A settlement sent but not confirmed (or whose
    outcome is unknown) raises ``PaymentSettlementPending``: the job keeps its hold as ``settling`` and
    ``follow`` is asked about it until it resolves. ``release`` gives up a verified payment that
    will never be settled (the job failed or was interrupted): nothing is charged.
    """

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement: ...

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """A settlement ``settle`` reported pending (``PaymentSettlementPending``): its ``Settlement`` once the
        payment is on chain, None while still pending; raises ``PaymentSettlementFailed`` once it can never
        settle (expired unused, canceled): then nothing was charged. Never sends a transaction."""
        ...

    def release(self, ticket: Ticket) -> None: ...


def store_paid_bundle(store: ArtifactStore, proof: ProofOutcome, payment: dict[str, Any],
                      receipt: dict[str, Any] | None) -> None:
    """Store the call's *paid bundle* (its bundle with ``payment`` and ``receipt``) and name its CID in
    ``payment["paid_bundle_cid"]``. A copy of what is stored durably (the bundle, the settlement row): written
    without fsync on the answer's path, and never failing the settlement (the money moved)."""
    paid = {**proof.doc(), "payment": payment, "receipt": receipt}
    try:
        payment["paid_bundle_cid"] = store.put_json(paid, durable=False)
    except Exception:
        log.exception("could not store the paid bundle of call %s", proof.job_id)
