"""The client's address and scheme, by one rule: the socket peer, unless the peer is one of
``PROOFMARKET_TRUSTED_PROXIES``; then the last ``X-Forwarded-For`` hop no trusted proxy added, and the scheme its
``X-Forwarded-Proto`` says. The node's server never rewrites them itself (``proofmarket node`` runs uvicorn without
proxy headers), so an ``X-Forwarded-For`` from anyone else moves nothing: not the rate limiter's counter, not the
logs, not a URL. ``TrustedProxies`` (outermost ASGI middleware) applies the rule once; everything inside reads
``scope["client"]`` and ``scope["scheme"]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from proofmarket.core.errors import UsageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(text: str) -> list[Network]:
    """``PROOFMARKET_TRUSTED_PROXIES`` (comma-separated addresses or networks), or one sentence naming the bad one."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise UsageError(f"PROOFMARKET_TRUSTED_PROXIES: {part!r} is not an address or network (e.g. "
                                 "127.0.0.1 or 10.0.0.0/8)", variable="PROOFMARKET_TRUSTED_PROXIES") from exc
    return out


def within(address: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_of(peer: str, headers: Headers, proxies: Sequence[Network]) -> str:
    """The client's address: ``peer`` itself unless it is a trusted proxy."""
    if not proxies or not within(peer, proxies):
        return peer
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):  # the last address no trusted proxy of ours added
        if not within(hop, proxies):
            return hop
    return peer


class TrustedProxies:
    """ASGI middleware: rewrites ``client`` (and ``scheme``) only for a request a trusted proxy forwarded."""

    def __init__(self, app: ASGIApp, proxies: Sequence[Network]) -> None:
        self.app, self.proxies = app, list(proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies:
            peer = (scope.get("client") or ("unknown", 0))
            if within(str(peer[0]), self.proxies):
                headers = Headers(scope=scope)
                # in place, as uvicorn's own proxy middleware does: its access log reads this scope too
                scope["client"] = (client_of(str(peer[0]), headers, self.proxies), peer[1])
                proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
        await self.app(scope, receive, send)
