"""/v1/earnings: what a model owner or prover was paid on the market this node sells on.

Everything here is public on chain (``InferenceMarket.earned``, USDC balances); the route reads it so that
an owner or prover need not run web3: ``earned`` (escrow fulfilments and released x402 splits), the
address's USDC balance, x402 money of the served models still held by their revenue splitters, and the
platform's balance. 404 ``market_unavailable`` when the node sells on no market.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from proofmarket.api.deps import ServicesDep
from proofmarket.core.errors import MarketUnavailable

router = APIRouter(prefix="/v1/earnings", tags=["market"])


class PendingSplit(BaseModel):
    model_id: str
    onchain_id: str
    owner: str
    prover: str
    splitter: str
    amount: str = Field(description="atomic USDC held, paid out by InferenceMarket.releaseSplit")


class EarningsPublic(BaseModel):
    chain_id: int
    market: str
    address: str
    earned: str = Field(description="atomic USDC the address earned as owner or prover (InferenceMarket.earned)")
    owed: str = Field(description="of earned, atomic USDC not paid out yet (InferenceMarket.owed; escrow "
                                  "fulfilments credit it, InferenceMarket.withdraw pays it to the address)")
    balance: str = Field(description="the address's USDC balance")
    pending: list[PendingSplit]
    pending_total: str
    platform_balance: str


@router.get("", operation_id="get_earnings", response_model=EarningsPublic,
            responses={404: {"description": "market_unavailable"}, 400: {"description": "bad_request"}})
def get_earnings(services: ServicesDep,
                 address: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$",
                                               description="the owner or prover address")]) -> EarningsPublic:
    """An owner's or prover's earnings on the market: paid out, and x402 money not released yet."""
    listings = services.catalog.listings
    if listings is None:
        raise MarketUnavailable("this node sells on no on-chain market: there are no earnings to show")
    market = listings.market
    doc: dict[str, Any] = market.earnings(address, [row.id for row in services.catalog.repo.list()]).to_json()
    return EarningsPublic(chain_id=market.client.chain_id, market=market.market.address, **doc)
