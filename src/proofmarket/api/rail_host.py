"""The node as a payment rail's routes see it (``payments/routes.py``'s ``RailHost``), bound to one request.

``create_app`` mounts the routers the rails bring (``node.compose.rail_routers``) and sets ``app.state.rail_host`` to
``ApiRailHost``: the rails' routes use the node's admin token, its Sign-In with Ethereum, its catalogue, its calls'
holds and its x402 gate through it, without importing the API or each other.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials

from proofmarket.api.deps import base_url
from proofmarket.api.security import admin_matches, require_admin
from proofmarket.api.signed import signed_address, signed_elsewhere
from proofmarket.core.errors import CreditsUnavailable
from proofmarket.node.services import NodeServices
from proofmarket.payments.exact.rail import X402Payments
from proofmarket.payments.routes import Checkout

R = TypeVar("R")


class ApiRailHost:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.services: NodeServices = request.app.state.services

    def rail(self, kind: type[R]) -> R | None:
        return self.services.rails.of(kind)

    def _credentials(self) -> HTTPAuthorizationCredentials | None:
        scheme, _, token = self.request.headers.get("authorization", "").partition(" ")
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if token.strip() else None

    def is_admin(self) -> bool:
        return admin_matches(self.services.settings, self._credentials())

    def require_admin(self) -> None:
        require_admin(self.services, self._credentials())

    def signed_address(self, purpose: str | list[str]) -> str:
        return signed_address(self.request, purpose)

    async def signed(self, purpose: str | list[str]) -> str:
        return await signed_elsewhere(self.request, purpose)

    def base_url(self) -> str:
        return base_url(self.request, self.services.settings)

    def owned_models(self, address: str) -> set[str]:
        return {row.id for row in self.services.catalog.repo.by_owner(address)}

    def held_by(self, wallet: str) -> int:
        return self.services.calls.repo.held_by(wallet)

    def price_of(self, model_id: str | None) -> int | None:
        models = [self.services.catalog.sellable(model_id)] if model_id else self.services.catalog.list()
        return max((m.price_atomic for m in models), default=None)

    def owner_of(self, model_id: str) -> str | None:
        return self.services.catalog.sellable(model_id).row.owner

    def payment_terms(self, requirements: list[Any], resource: str, *, description: str,
                      error: str | None = None) -> str | None:
        exact = self.services.rails.of(X402Payments)
        if exact is None:
            return None
        return exact.gate.payment_required_header(requirements, resource, description=description, error=error)

    def checkout(self) -> Checkout:
        money = self.services.money
        if money is None or money.purchases is None:
            raise CreditsUnavailable("this node takes no x402 payments")
        return money.purchases
