"""Rate limits: per client address on unpaid routes (the default stops a flood: 300 requests in 10 s meet 429s),
per API key, per payer, X-Forwarded-For only from a trusted proxy, counters shared by two nodes on one Redis, and a
limiter whose Redis is gone lets requests through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from proofmarket.calls.redis_server import redis_server
from proofmarket.core.errors import UsageError

AppFactory = Callable[..., FastAPI]


def hammer(client: TestClient, n: int, path: str = "/v1/models", **kwargs: Any) -> list[Any]:
    return [client.get(path, **kwargs) for _ in range(n)]


def test_a_flood_of_an_unpaid_route_from_one_address_meets_429s_with_the_headers(make_app: AppFactory) -> None:
    with TestClient(make_app(), client=("203.0.113.9", 4000)) as default:  # the default: 200 requests per 10 s
        ok = default.get("/v1/models")
        assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "200"
        assert int(ok.headers["RateLimit-Remaining"]) == 199 and "w=10" in ok.headers["RateLimit-Policy"]
    # the flood, under the same count in a window no loaded machine outlasts (300 requests must fit in it)
    app = make_app(rate_limit_unpaid="200/10 minutes")
    with TestClient(app, client=("203.0.113.7", 4000)) as flood, TestClient(app, client=("203.0.113.8", 4000)) as other:
        answers = hammer(flood, 300)
        limited = [a for a in answers if a.status_code == 429]
        assert len(limited) == 100, "the 201st request of one address in its window meets 429"
        first = limited[0]
        assert first.json()["error"]["code"] == "rate_limited"
        assert int(first.headers["Retry-After"]) >= 1
        assert first.headers["RateLimit-Remaining"] == "0"
        assert first.headers["RateLimit-Limit"] == "200" and "w=600" in first.headers["RateLimit-Policy"]
        assert other.get("/v1/models").status_code == 200  # another address has its own counter
        assert flood.get("/health").status_code == 200  # liveness is never limited


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(make_app: AppFactory) -> None:
    app = make_app(rate_limit_unpaid="3/10 seconds", trusted_proxies="10.0.0.0/8")
    with TestClient(app, client=("198.51.100.9", 1)) as direct, TestClient(app, client=("10.1.2.3", 1)) as proxy:
        # a client choosing its own X-Forwarded-For gets nothing: it is counted by its socket address
        spoofed = [direct.get("/v1/models", headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
                   for i in range(5)]
        assert spoofed.count(429) == 2
        # behind the trusted proxy each client is counted by the address the proxy names
        forwarded = [proxy.get("/v1/models", headers={"X-Forwarded-For": f"192.0.2.{i}, 10.9.9.9"}).status_code
                     for i in range(5)]
        assert forwarded == [200] * 5
        same = [proxy.get("/v1/models", headers={"X-Forwarded-For": "192.0.2.77"}).status_code for _ in range(5)]
        assert same.count(429) == 2


def test_api_keys_are_limited_per_key_not_per_address(make_app: AppFactory) -> None:
    app = make_app(rate_limit_key="2/10 seconds", rate_limit_unpaid="100/10 seconds")
    known = {"pmk_a": "0xwallet", "pmk_b": "0xwallet"}
    app.state.services.rails.select = lambda headers: _Key(known)  # type: ignore[method-assign]
    with TestClient(app) as client:
        key_a = [client.get("/v1/models", headers={"Authorization": "Bearer pmk_a"}).status_code for _ in range(3)]
        key_b = [client.get("/v1/models", headers={"X-API-Key": "pmk_b"}).status_code for _ in range(2)]
        assert key_a == [200, 200, 429] and key_b == [200, 200]


def test_unknown_keys_from_one_address_meet_its_limit(make_app: AppFactory) -> None:
    """A key is checked by its route after the count: a refused one counts against the address it came from, so a
    flood of made-up keys (each its own counter) still meets 429s, and a real client elsewhere is untouched."""
    app = make_app(rate_limit_unpaid="20/10 seconds", rate_limit_probe="20/10 seconds")
    with TestClient(app, client=("203.0.113.50", 1)) as flood, TestClient(app, client=("203.0.113.51", 1)) as other:
        codes = [flood.get("/v1/models", headers={"Authorization": f"Bearer pmk_random{i}"}).status_code
                 for i in range(60)]
        assert 429 in codes and codes.count(429) >= 30, codes
        paid = [flood.post("/v1/models/m/infer", json={}, headers={"X-API-Key": f"pmk_x{i}"}).status_code
                for i in range(25)]
        assert paid[20:] == [429] * 5  # a paid route: the address's probe limit, whatever key it shows
        assert other.get("/v1/models").status_code == 200


def test_refused_payments_count_against_the_address() -> None:
    """Throwaway payer signatures (a fresh key per request: each payer its own counter) whose payments the route
    refuses (402) count against the address: the flood meets 429s; accepted payments from one address do not."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from proofmarket.api.ratelimit import Limiter, RateLimit
    from proofmarket.core.settings import Settings

    def answer(request: Any) -> JSONResponse:
        sent = request.headers.get("PAYMENT-SIGNATURE")
        return JSONResponse({}, status_code={"bad": 402, "bad-input": 422}.get(sent, 200))

    inner = Starlette(routes=[Route("/v1/models/m/infer", answer, methods=["POST"])])
    limiter = Limiter(Settings(rate_limit_payer="5/10 seconds", rate_limit_probe="10/10 seconds"))
    payers = (f"0xthrowaway{i}" for i in range(1000))
    app = RateLimit(inner, limiter, lambda headers: next(payers))
    with TestClient(app, client=("203.0.113.60", 1)) as flood, TestClient(app, client=("203.0.113.61", 1)) as good:
        codes = [flood.post("/v1/models/m/infer", headers={"PAYMENT-SIGNATURE": "bad"}).status_code
                 for _ in range(30)]
        paid = [good.post("/v1/models/m/infer", headers={"PAYMENT-SIGNATURE": "ok"}).status_code for _ in range(30)]
    assert codes[:10] == [402] * 10 and codes[10:] == [429] * 20, codes
    assert paid == [200] * 30  # each a payer of its own, none refused: the address is not counted
    with TestClient(app, client=("203.0.113.62", 1)) as sloppy:  # fresh payers, each call's input refused (422)
        codes = [sloppy.post("/v1/models/m/infer", headers={"PAYMENT-SIGNATURE": "bad-input"}).status_code
                 for _ in range(15)]
    assert codes[:10] == [422] * 10 and codes[10:] == [429] * 5, codes


def test_paid_routes_count_a_payer_apart_from_its_address(make_app: AppFactory) -> None:
    payers = iter(["0xpayer1", "0xpayer1", "0xpayer1", "0xpayer2"])
    app = make_app(rate_limit_payer="2/10 seconds", rate_limit_probe="100/10 seconds")  # 404s count there too
    app.state.services.rails.select = lambda headers: _Payer(next(payers))  # type: ignore[method-assign]
    with TestClient(app) as client:
        paid = [client.post("/v1/models/m/infer", json={}, headers={"PAYMENT-SIGNATURE": "x"}).status_code
                for _ in range(4)]
        assert paid[2] == 429 and paid[3] != 429  # payer 1's third call; payer 2 has its own counter
    app2 = make_app(rate_limit_probe="1/10 seconds")
    with TestClient(app2) as client:
        probes = [client.post("/v1/models/m/infer", json={}).status_code for _ in range(2)]
        assert probes[1] == 429  # without a payment a paid route counts the address


class _Key:
    """The credits rail's payer_of: the wallet of a key it knows."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known

    def payer_of(self, headers: Any) -> str | None:
        auth = headers.get("authorization", "").removeprefix("Bearer ")
        return self.known.get(headers.get("x-api-key") or auth)


class _Payer:
    def __init__(self, payer: str) -> None:
        self.payer = payer

    def payer_of(self, headers: Any) -> str:
        return self.payer


def test_two_nodes_on_one_redis_share_their_counters(make_app: AppFactory) -> None:
    with redis_server() as redis:
        if redis is None:
            pytest.skip("redis-server is not installed")
        apps = [make_app(rate_limit_unpaid="4/10 seconds", rate_limit_storage=redis.url) for _ in range(2)]
        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
            codes = [(a if i % 2 else b).get("/v1/models").status_code for i in range(6)]
        assert codes == [200, 200, 200, 200, 429, 429]


def test_a_limiter_whose_redis_is_gone_lets_requests_through(make_app: AppFactory) -> None:
    app = make_app(rate_limit_unpaid="1/10 seconds", rate_limit_storage="redis://127.0.0.1:1/0")
    with TestClient(app) as client:
        assert [client.get("/v1/models").status_code for _ in range(3)] == [200, 200, 200]


def test_a_bad_rate_is_refused_with_the_setting_named(make_app: AppFactory) -> None:
    with pytest.raises(UsageError, match="PROOFMARKET_RATE_LIMIT_UNPAID"):
        make_app(rate_limit_unpaid="lots")


def test_the_openai_routes_answer_429_in_openais_shape(make_app: AppFactory) -> None:
    """An OpenAI client over its limit gets OpenAI's error object (and Retry-After, which it honours)."""
    app = make_app(rate_limit_probe="2/10 seconds")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with TestClient(app, client=("203.0.113.70", 1)) as client:
        answers = [client.post("/openai/v1/chat/completions", json=body) for _ in range(4)]
    limited = answers[-1]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    error = limited.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "rate_limited"
    assert error["type"] == "rate_limit_error"
