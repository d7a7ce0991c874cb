"""The client's wallet on a node: API keys, credits and passes, each a namespace of the ``Client``.

    node.keys.create(models=[...], cap_atomic=..., expires_in_s=...)   # signed: the secret is shown once
    node.keys.list()                      # signed (purpose ``api-keys``): the wallet's keys, never their secrets
    node.keys.revoke(key_id)              # signed (purpose ``api-key-revoke-<id>``)
    node.credits.buy(amount_atomic)       # one x402 payment: ``status`` credited once mined (``pending`` until then)
    node.credits.show()                   # signed (purpose ``credits``): balance, what calls hold, entries
    node.credits.refund()                 # signed (purpose ``credits-refund``): the unspent balance back on chain
    node.passes.buy(calls_per_day, days, model_id=None)   # one x402 payment
    node.passes.list()                    # signed (purpose ``passes``)

Every signed request is one address signature (``proofmarket.core.address_signature``) naming the node's signer,
fresh for a minute and used once; a key's body is bound by its purpose (``body_purpose``). A purchase pays through
the same x402 client as a call (``Client._pay``), capped at the price the caller names.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from proofmarket.core.address_signature import body_purpose, sign_siwe, siwe_headers, siwe_message
from proofmarket.core.errors import PaymentRequired
from proofmarket.sdk.transport import PAYMENT_REQUIRED, PAYMENT_SIGNATURE, NodeSession

if TYPE_CHECKING:
    from proofmarket.sdk.client import Client


def signed_headers(client: NodeSession, purpose: str) -> dict[str, str]:
    """The Sign-In with Ethereum headers of one request of ``purpose`` by the client's wallet on this node (its
    session's, once it signed in: ``Client.sign_in``)."""
    session = getattr(client, "session", None)
    if session is not None and session[1] > time.time() + 5:
        return dict(session[0])
    return siwe_signed(client, f"proofmarket:{purpose}", 120)


def siwe_signed(client: NodeSession, resource: str, lifetime_s: int) -> dict[str, str]:
    """The headers of one SIWE message by the client's wallet (its account's, or the contract wallet it speaks
    for) naming ``resource``, valid ``lifetime_s``."""
    if client.account is None:
        raise PaymentRequired(f"this request is signed ({resource}): create the Client with an account")
    address = getattr(client, "wallet", None) or client.account.address
    message = siwe_message(address, siwe_terms(client), [resource], lifetime_s=lifetime_s)
    return siwe_headers(message, sign_siwe(client.account, message))


def siwe_terms(client: NodeSession) -> dict[str, Any]:
    """The node's Sign-In with Ethereum terms (domain, URI, chain id), from its manifest."""
    manifest = client._json(client._get("/.well-known/ai-service.json"))
    terms = (manifest.get("address_signature") or {}).get("siwe")
    if not terms:
        raise PaymentRequired("this node does not take Sign-In with Ethereum (an older node: upgrade it)")
    return dict(terms)


class Keys:
    """The account's API keys on the node (``/v1/keys``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, *, models: list[str] | None = None, cap_atomic: int | None = None,
               expires_in_s: int | None = None) -> dict[str, Any]:
        """A new key for the account's wallet, scoped to ``models``, capped at ``cap_atomic`` of spend, expiring
        after ``expires_in_s``: ``{"key": secret, "id", ...}``. The secret is in this answer only."""
        body: dict[str, Any] = {k: v for k, v in (("models", models), ("cap_atomic", cap_atomic),
                                                  ("expires_in_s", expires_in_s)) if v is not None}
        c = self._client
        return dict(c._json(c._post("/v1/keys", json=body, headers=signed_headers(c, body_purpose(body)))))

    def list(self) -> list[dict[str, Any]]:
        c = self._client
        return list(c._json(c._get("/v1/keys", headers=signed_headers(c, "api-keys")))["keys"])

    def revoke(self, key_id: str) -> dict[str, Any]:
        c = self._client
        return dict(c._json(c._send("DELETE", f"/v1/keys/{key_id}",
                                    headers=signed_headers(c, f"api-key-revoke-{key_id}"))))


class Credits:
    """The account's credits on the node (``/v1/credits``): bought with one x402 payment, drawn by its keys."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def buy(self, amount_atomic: int, *, wait_s: float = 120.0) -> dict[str, Any]:
        """Buy ``amount_atomic`` of credits with one x402 payment (at most that amount); returns the purchase once
        credited (``credited``), or as it stands after ``wait_s`` (``pending``: the transfer is not mined yet)."""
        return _purchase(self._client, "/v1/credits/buy", {"amount": amount_atomic}, amount_atomic, wait_s)

    def show(self) -> dict[str, Any]:
        """The wallet's balance, what its unsettled calls hold, and its entries (newest first)."""
        c = self._client
        return dict(c._json(c._get("/v1/credits", headers=signed_headers(c, "credits"))))

    def refund(self) -> dict[str, Any]:
        """The unspent credits back to the wallet on chain (what unsettled calls hold stays)."""
        c = self._client
        return dict(c._json(c._post("/v1/credits/refund", headers=signed_headers(c, "credits-refund"))))


class Passes:
    """Passes (N calls a day for D days, one payment) on the node (``/v1/passes``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def buy(self, calls_per_day: int, days: int, *, model_id: str | None = None, max_amount: int | None = None,
            wait_s: float = 120.0) -> dict[str, Any]:
        """Buy a pass with one x402 payment of at most ``max_amount`` (unset: the price the node's terms name)."""
        params: dict[str, Any] = {"calls_per_day": calls_per_day, "days": days}
        if model_id is not None:
            params["model_id"] = model_id
        return _purchase(self._client, "/v1/passes/buy", params, max_amount, wait_s)

    def list(self) -> list[dict[str, Any]]:
        c = self._client
        return list(c._json(c._get("/v1/passes", headers=signed_headers(c, "passes")))["passes"])


def _purchase(c: Client, path: str, params: dict[str, Any], cap: int | None, wait_s: float) -> dict[str, Any]:
    """Ask for the terms (402), pay them once (capped at ``cap``, else at the amount the terms ask), then follow
    the purchase while it is pending."""
    from x402.http import decode_payment_required_header

    asked = c._post(path, params=params)
    if asked.status_code != 402 or PAYMENT_REQUIRED not in asked.headers:
        c._json(asked)  # an error answer is raised as its code
        raise PaymentRequired(f"{path} answered {asked.status_code} without payment terms")
    terms = asked.headers[PAYMENT_REQUIRED]
    if cap is None:
        cap = max(int(str(getattr(a, "amount", None) or getattr(a, "max_amount_required", 0)))
                  for a in decode_payment_required_header(terms).accepts)
    paid = c._post(path, params=params, headers={PAYMENT_SIGNATURE: c._pay(terms, cap)})
    body = dict(c._json(paid))
    view = dict(body.get("purchase") or {})
    deadline = time.monotonic() + wait_s
    while view.get("status") == "pending" and view.get("poll") and time.monotonic() < deadline:
        time.sleep(c.poll_interval_s)
        view = dict(c._json(c._get(str(view["poll"]))))
    return {**body, "purchase": view, "status": view.get("status")}


__all__ = ["Credits", "Keys", "Passes", "signed_headers"]
