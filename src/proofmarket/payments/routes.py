"""How a rail's own HTTP routes reach the node: a ``RailHost``, which the node's API provides (``api/rail_host.py``).

A rail brings its routes as FastAPI routers (``rail.routers()``, e.g. ``batch/routes.py``: ``/v1/channels``;
``credits/routes.py``: ``/v1/keys``, ``/v1/credits``, passes and purchases). Those modules import FastAPI, this module
and their own rail: never the API, the node or another rail (the import-linter contracts hold it). What they need
of the node comes through the host of the request they serve:

    host.rail(kind)                  the node's rail of that class, or None (the route answers its rail's 404)
    host.is_admin() / require_admin  the request carries the admin token (401 otherwise)
    host.signed_address(purpose)     the address that signed the request for ``purpose`` (Sign-In with Ethereum);
                                     ``await host.signed(purpose)`` in an async route (off the event loop)
    host.base_url()                  the node's public URL (paid resources are named by it)
    host.owned_models(address)       the model ids an address owns
    host.held_by(wallet)             what a payer's unsettled calls hold
    host.price_of(model_id | None)   a model's price (None: the dearest model's, None when none is sold)
    host.owner_of(model_id)          a sellable model's owner
    host.payment_terms(...)          the node's x402 PAYMENT-REQUIRED header for other terms (None without x402)
    host.checkout()                  purchases paid with one x402 ``exact`` payment (``purchases.py``)

Routes that admit the admin say so in their OpenAPI operation (``ADMIN_SECURITY``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Request

R = TypeVar("R")

# the node's admin bearer token (declared by the API as the "AdminToken" security scheme)
ADMIN_SECURITY: dict[str, Any] = {"security": [{"AdminToken": []}]}
ADMIN_OR_SIGNED: dict[str, Any] = {"security": [{"AdminToken": []}, {}]}


class Checkout(Protocol):
    """Purchases (credits, passes) paid with one x402 ``exact`` payment to the node's account."""

    def checkout(self, header: str | None, amount: int, pay_to: str, resource: str, description: str,
                 what: dict[str, Any]) -> dict[str, Any]:
        """Buy ``what`` for ``amount``: ``PaymentRequired`` (with the terms' header) when ``header`` is empty, else
        the purchase's view (``status`` credited, pending or voided)."""
        ...

    def view(self, purchase_id: str) -> dict[str, Any]:
        ...


class RailHost(Protocol):
    """The node as a rail's routes see it, bound to the request being served."""

    def rail(self, kind: type[R]) -> R | None:
        ...

    def is_admin(self) -> bool:
        ...

    def require_admin(self) -> None:
        ...

    def signed_address(self, purpose: str | list[str]) -> str:
        ...

    async def signed(self, purpose: str | list[str]) -> str:
        """``signed_address`` off the event loop (for async routes: a contract wallet's check is an RPC call)."""
        ...

    def base_url(self) -> str:
        ...

    def owned_models(self, address: str) -> set[str]:
        ...

    def held_by(self, wallet: str) -> int:
        ...

    def price_of(self, model_id: str | None) -> int | None:
        """The model's price (it must be sold here), or with None the dearest sold model's (None: none is)."""
        ...

    def owner_of(self, model_id: str) -> str | None:
        ...

    def payment_terms(self, requirements: list[Any], resource: str, *, description: str,
                      error: str | None = None) -> str | None:
        ...

    def checkout(self) -> Checkout:
        ...


def rail_host(request: Request) -> RailHost:
    """The host of this request (the API sets ``app.state.rail_host``, a factory of hosts, when it mounts routes)."""
    make: Callable[[Request], RailHost] | None = getattr(request.app.state, "rail_host", None)
    if make is None:
        raise RuntimeError("a rail's routes are served by a node's API (api/app.py), which provides their host")
    return make(request)


HostDep = Annotated[RailHost, Depends(rail_host)]
