"""Rate limits (the ``limits`` library): per client address, per payer, per API key; shared by every node on one Redis.

    a request                          counted against
    a paid route with a payment        its payer (x402: by the payment's own signature, the rail's ``payer_of``;
                                       no RPC), PROOFMARKET_RATE_LIMIT_PAYER
    any route with an API key          the key (``Authorization: Bearer pmk_...`` or ``X-API-Key``; a sha256 of it
                                       is the counter's name), PROOFMARKET_RATE_LIMIT_KEY, when this node knows the
                                       key (an unknown key counts as no key: by the address)
    ... answered 4xx                   also the client address (probe or unpaid): a key or a payment is checked by
                                       its route, after the count, so refused keys, throwaway payer signatures and
                                       bad requests are counted where they come from; an address over that limit
                                       meets 429 whatever key or payment it shows
    a paid route without either        the client address, PROOFMARKET_RATE_LIMIT_PROBE (the 402 every x402 client
                                       asks for before it pays)
    every other route                  the client address, PROOFMARKET_RATE_LIMIT_UNPAID
    /health, /metrics                  nothing (liveness and scraping)

The client address is the socket peer; ``X-Forwarded-For`` names it only when the peer is one of
PROOFMARKET_TRUSTED_PROXIES (its last address not itself a trusted proxy), so a client cannot pick its own counter.
Over a limit: 429 ``rate_limited`` with ``Retry-After``; every limited answer carries ``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset`` and ``RateLimit-Policy`` (IETF draft httpapi-ratelimit-headers).
Counters live in memory, or in Redis (PROOFMARKET_RATE_LIMIT_STORAGE, or the celery queue's Redis), where every node
sees the same counts. A storage that does not answer lets the request through (a warning in the log, at most once a
minute): a rate limit must not take the node down with its Redis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from limits import RateLimitItem, parse, storage, strategies
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proofmarket.api.errors import OPENAI_PREFIX, error_response
from proofmarket.api.proxies import client_of, networks
from proofmarket.core.errors import RateLimited, UsageError
from proofmarket.core.settings import Settings

log = logging.getLogger("proofmarket.ratelimit")

PAID_ROUTES = re.compile(r"^/(?:v1/models/[^/]+/(?:infer|generate)|openai/v1/(?:chat/)?completions"
                         r"|v1/credits/buy|v1/passes/buy|v1/channels/refund)$")
EXEMPT = frozenset({"/health", "/metrics"})
KEY_CACHE_S = 30.0  # how long "this key is known / unknown" is remembered (a lookup is a database read)
KEY_CACHE_SIZE = 10_000
API_KEY_PREFIX = "pmk_"
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class Policy:
    name: str  # unpaid, probe, payer, key
    item: RateLimitItem | None  # None: off

    def header(self) -> str:
        assert self.item is not None
        return f'"{self.name}";q={self.item.amount};w={self.item.get_expiry()}'


def _policy(name: str, text: str) -> Policy:
    if text.strip().lower() in ("off", "0", "none", ""):
        return Policy(name, None)
    try:
        return Policy(name, parse(text))
    except ValueError as exc:
        raise UsageError(f"PROOFMARKET_RATE_LIMIT_{name.upper()} {text!r} is not a rate such as "
                         "'200/10 seconds' (or 'off')") from exc


class Limiter:
    """The node's limits and their counters."""

    def __init__(self, settings: Settings) -> None:
        self.policies = {p.name: p for p in (_policy("unpaid", settings.limits.rate_limit_unpaid),
                                             _policy("probe", settings.limits.rate_limit_probe),
                                             _policy("payer", settings.limits.rate_limit_payer),
                                             _policy("key", settings.limits.rate_limit_key))}
        uri = settings.limits.rate_limit_storage or (settings.queue.redis_url if settings.queue.kind == "celery" else "memory://")
        self.storage_uri = uri
        self.strategy = strategies.MovingWindowRateLimiter(storage.storage_from_string(uri))
        self.proxies = networks(settings.api.trusted_proxies)
        self._warned = 0.0

    def check(self, policy: str, who: str) -> tuple[bool, dict[str, str]]:
        """Count one request of ``who`` under ``policy``: (allowed, the RateLimit headers of the answer)."""
        chosen = self.policies[policy]
        if chosen.item is None:
            return True, {}
        try:
            allowed = self.strategy.hit(chosen.item, policy, who)
            reset_at, remaining = self.strategy.get_window_stats(chosen.item, policy, who)
        except Exception as exc:  # the storage is away: let the request through
            now = time.monotonic()
            if now - self._warned > WARN_EVERY_S:
                self._warned = now
                log.warning("rate limit storage %s did not answer (%s): requests are not limited meanwhile",
                            _redacted(self.storage_uri), exc)
            return True, {}
        reset = max(0, math.ceil(reset_at - time.time()))
        headers = {"RateLimit-Limit": str(chosen.item.amount), "RateLimit-Remaining": str(max(0, remaining)),
                   "RateLimit-Reset": str(reset), "RateLimit-Policy": chosen.header()}
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return allowed, headers

    def test(self, policy: str, who: str) -> bool:
        """Whether one more request of ``who`` under ``policy`` would pass (nothing is counted)."""
        chosen = self.policies[policy]
        if chosen.item is None:
            return True
        try:
            return bool(self.strategy.test(chosen.item, policy, who))
        except Exception:  # the storage is away: as check()
            return True

    def client_address(self, scope: Scope, headers: Headers) -> str:
        """The client's address by the node's one rule (``api/proxies.py``)."""
        return client_of(str((scope.get("client") or ("unknown", 0))[0]), headers, self.proxies)


class RateLimit:
    """ASGI middleware: counts each request under its policy (see the module) before the app sees it."""

    def __init__(self, app: ASGIApp, limiter: Limiter, payer_of: Callable[[Mapping[str, str]], str | None]) -> None:
        self.app, self.limiter, self.payer_of = app, limiter, payer_of
        self._keys: dict[str, tuple[bool, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if _api_key(headers) is not None:  # a key is looked up in the database: off the event loop
            policy, who = await anyio.to_thread.run_sync(self._counter, scope, headers)
        else:
            policy, who = self._counter(scope, headers)
        fallback = None
        if policy in ("key", "payer"):
            # the key or the payment is not checked yet: a refused one (any 4xx) counts against the client
            # address, so random keys or throwaway payer signatures cannot dodge the address's limit
            fallback = self._by_address(scope, headers)
            if not self.limiter.test(*fallback):
                policy, who = fallback
        allowed, limit_headers = self.limiter.check(policy, who)
        if not allowed:
            err = RateLimited(f"too many requests ({self.limiter.policies[policy].item}, {policy} limit): try again "
                              f"in {limit_headers.get('Retry-After', '1')} s", policy=policy)
            err.headers = limit_headers
            await error_response(err, openai=scope["path"].startswith(OPENAI_PREFIX))(scope, receive, send)
            return
        if not limit_headers and fallback is None:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if fallback is not None and int(message.get("status", 200)) >= 400:
                    self.limiter.check(*fallback)
                raw = list(message.get("headers", []))
                raw += [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)

    def _counter(self, scope: Scope, headers: Headers) -> tuple[str, str]:
        key = _api_key(headers)
        if key is not None and self._known(key, headers):  # a key this node knows (its wallet found by its hash)
            return "key", hashlib.sha256(key.encode()).hexdigest()
        if key is None and PAID_ROUTES.match(scope["path"]):
            payer = self._payer(headers)
            if payer:
                return "payer", payer
        return self._by_address(scope, headers)  # no key (or one nobody holds), no payment

    def _by_address(self, scope: Scope, headers: Headers) -> tuple[str, str]:
        """The client address's counter: probe on a paid route (the 402 an x402 client asks for first), else
        unpaid."""
        return ("probe" if PAID_ROUTES.match(scope["path"]) else "unpaid"), self.limiter.client_address(scope, headers)

    def _known(self, key: str, headers: Headers) -> bool:
        """Whether this node knows ``key`` (remembered for KEY_CACHE_S: a flood of one made-up key costs one read)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        known = bool(self._payer(headers))
        if len(self._keys) >= KEY_CACHE_SIZE:
            self._keys = {k: v for k, v in self._keys.items() if v[1] > now}
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
        self._keys[digest] = (known, now + KEY_CACHE_S)
        return known

    def _payer(self, headers: Headers) -> str | None:
        try:
            return self.payer_of(headers)
        except Exception:  # an undecodable payment: the route answers it; count it by address
            return None


def _api_key(headers: Headers) -> str | None:
    value = headers.get("x-api-key")
    if value and value.startswith(API_KEY_PREFIX):
        return value
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip().startswith(API_KEY_PREFIX):
        return token.strip()
    return None


def _redacted(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)
