"""/v1/earnings: what a model owner or prover was paid, on chain and in the node's book.

The market part is public on chain (``InferenceMarket.earned``, USDC balances); the route reads it so that
an owner or prover need not run web3: ``earned`` (escrow fulfilments and released x402 splits), the
address's USDC balance, x402 money of the served models still held by their revenue splitters, and the
platform's balance (null when the node sells on no market).
The ``book`` part (only when the request is signed by the address, purpose ``earnings``: an owner's sales are its
own) is the node's book over every rail for the models the address owns: owed, in flight and paid, by model, with
the transactions. Unsigned, on a node without a market: 404 ``market_unavailable``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from proofmarket.api.deps import ServicesDep
from proofmarket.api.signed import is_signed, signed_address
from proofmarket.core.errors import MarketUnavailable, Unauthorized
from proofmarket.payments.credits.rail import CreditsRail
from proofmarket.payments.earnings import earnings, withdrawals

router = APIRouter(prefix="/v1/earnings", tags=["market"])


class PendingSplit(BaseModel):
    model_id: str
    onchain_id: str
    owner: str
    prover: str
    splitter: str
    amount: str = Field(description="atomic USDC held, paid out by InferenceMarket.releaseSplit")
    release_failure: dict[str, Any] | None = Field(None, description="the node's last releaseSplit of this splitter "
                                                   "failed: error, attempts, since and next_at (epoch seconds); it "
                                                   "is tried again then")


class BookModel(BaseModel):
    owed: str
    in_flight: str
    paid: str


class FreeTier(BaseModel):
    calls_per_day: int = Field(description="free calls a day per funded payer wallet")
    total_per_day: int = Field(description="free calls a day of every payer together")
    calls_30d: int = Field(description="free calls taken over the last 30 days")
    value_atomic: str = Field(description="what those calls would have cost at the model's price (atomic USDC)")


class BookEarnings(BaseModel):
    owed: str = Field(description="atomic USDC the node holds for the address's models and pays at its next payout")
    in_flight: str = Field(description="atomic USDC of payouts sent, not confirmed yet")
    paid: str = Field(description="atomic USDC paid to the models' payees: x402 calls paid to them directly, and "
                                  "payouts of credits, pass and channel money")
    models: dict[str, BookModel]
    by_rail: dict[str, str] = Field(default_factory=dict, description="revenue by rail: what calls earned the models' "
                                                                      "payees (atomic USDC), payouts not counted again")
    by_day: list[dict[str, str]] = Field(default_factory=list, description="revenue by UTC day: [{day, revenue}]")
    transactions: list[dict[str, Any]]
    free_tier: dict[str, FreeTier] = Field(default_factory=dict, description="by model: what its free tier gave "
                                                                            "away over the last 30 days")
    withdrawable: str = Field("0", description="atomic USDC the markets this node follows credited the address (escrow "
                                               "fulfilments, released splits) and it has not withdrawn yet")
    withdrawn: str = Field("0", description="atomic USDC those markets paid the address (its withdrawals)")
    payout_every_s: float | None = Field(None, description="how often the node pays out what its book owes "
                                         "(credits, passes, channel money): PROOFMARKET_PAYOUT_INTERVAL_S")
    next_payout_at: str | None = Field(None, description="when the node's next scheduled payout runs (ISO 8601, "
                                                         "UTC); its payee splitters are released right after")
    payout_blocked: dict[str, Any] | None = Field(None, description="the token refuses payouts to the address (a "
                                                  "blocklisted account): why, since when, tries, next try (epoch "
                                                  "seconds); what it is owed stays owed")


class EarningsPublic(BaseModel):
    address: str
    chain_id: int | None = None
    market: str | None = None
    earned: str | None = Field(None, description="atomic USDC the address earned as owner or prover "
                                                 "(InferenceMarket.earned)")
    owed: str | None = Field(None, description="of earned, atomic USDC not paid out yet (InferenceMarket.owed; "
                                               "escrow fulfilments credit it, InferenceMarket.withdraw pays it)")
    balance: str | None = Field(None, description="the address's USDC balance")
    pending: list[PendingSplit] = []
    pending_total: str | None = None
    platform_balance: str | None = None
    book: BookEarnings | None = Field(None, description="the node's book over every rail for the address's models "
                                                        "(a request signed by the address only)")


@router.get("", operation_id="get_earnings", response_model=EarningsPublic,
            responses={404: {"description": "market_unavailable"}, 400: {"description": "bad_request"},
                       401: {"description": "a bad address signature"}})
def get_earnings(request: Request, services: ServicesDep,
                 address: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$",
                                               description="the owner or prover address")]) -> EarningsPublic:
    """An owner's or prover's earnings: on the market (paid out, x402 money not released yet) and, signed by the
    address, in the node's book over every rail (owed, in flight, paid)."""
    signed = is_signed(request)
    if signed and signed_address(request, "earnings") != address.lower():
        raise Unauthorized("the earnings of an address are signed by that address")
    listings = services.catalog.listings
    if listings is None and not signed:
        raise MarketUnavailable("this node sells on no on-chain market: sign the request (purpose 'earnings') to "
                                "read the node's book")
    doc: dict[str, Any] = {"address": address.lower()}
    if listings is not None:
        market = listings.market
        doc.update(market.earnings(address, [row.id for row in services.catalog.repo.list()]).to_json())
        doc.update(chain_id=market.client.chain_id, market=market.market.address)
        for split in doc.get("pending") or []:  # a release the node could not send: why, and when it tries again
            split["release_failure"] = listings.release_failures.get(str(split.get("onchain_id")))
    if signed and services.money is not None:
        models = [row.id for row in services.catalog.repo.by_owner(address)]
        doc["book"] = earnings(services.money.book, models)
        doc["book"]["free_tier"] = _free_tier(services, models)
        doc["book"].update(withdrawals(services.money.book, address))
        payouts = services.money.payouts  # the token refuses this address: its payouts wait (why, next try)
        doc["book"]["payout_blocked"] = payouts.blocked_state(address) if payouts is not None else None
        settler = services.money.settler
        if settler is not None:
            doc["book"]["payout_every_s"] = settler.payout_every_s
            doc["book"]["next_payout_at"] = datetime.fromtimestamp(settler.next_payout_at(), UTC).isoformat()
    return EarningsPublic(**doc)


def _free_tier(services: Any, models: list[str]) -> dict[str, dict[str, Any]]:
    """What each of the models' free tiers gave away over the last 30 days (the owner pays for it in calls)."""
    rail = services.rails.of(CreditsRail)
    if rail is None or not models:
        return {}
    since = datetime.now(UTC) - timedelta(days=30)
    taken = rail.repo.free_calls(models, since)
    out: dict[str, dict[str, Any]] = {}
    for model_id in models:
        per_payer, total = rail.repo.free_quota(model_id)
        if not per_payer and not taken.get(model_id):
            continue
        row = services.catalog.repo.get(model_id)
        price = int(row.price_atomic) if row is not None else 0
        calls = taken.get(model_id, 0)
        out[model_id] = {"calls_per_day": per_payer, "total_per_day": total, "calls_30d": calls,
                         "value_atomic": str(calls * price)}
    return out
