"""A node where operators run it (the fifth review): a real ``proofmarket node`` process, alone on loopback and behind
a local reverse proxy that ends TLS and forwards ``X-Forwarded-For`` (``tests/support/local_proxy.py``).

- Sign-in is bound to the node: a SIWE session signed for another site or another node opens nothing here, whatever
  ``Host`` header it comes with (before: domain and URI were checked against the request's own Host).
- ``X-Forwarded-For`` from a peer that is not a trusted proxy moves no rate-limit counter (before: uvicorn rewrote the
  client address for any peer on 127.0.0.1); behind the trusted proxy each client has its own counter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from health_wait import wait_healthy
from local_proxy import LocalProxy

from proofmarket.core.address_signature import sign_siwe, siwe_headers, siwe_message

RUN = "from proofmarket.cli.main import app; app()"
LIMIT = 8  # unpaid requests per client address per minute here
ACCOUNT = Account.from_key("0x" + "e5" * 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(tmp: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    environ |= {"PROOFMARKET_HOME": str(tmp / "home"), "PROOFMARKET_DATABASE_URL": f"sqlite:///{tmp / 'node.db'}",
                "PROOFMARKET_PROVER_WORKERS": "1", "PROOFMARKET_RATE_LIMIT_UNPAID": f"{LIMIT}/minute",
                **{f"PROOFMARKET_{k.upper()}": v for k, v in env.items()}}
    proc = subprocess.Popen([sys.executable, "-c", RUN, "node", "--port", str(port), "--log-level", "warning"],
                            env=environ, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, what="the node")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_node(tmp_path_factory.mktemp("alone"))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node = start_node(tmp_path_factory.mktemp("proxied"), trusted_proxies="127.0.0.1",
                      public_url="https://node.example")
    with LocalProxy(next(node)) as proxy:
        yield proxy.url
    next(node, None)


def from_address(local: str) -> httpx.Client:
    """A client whose connections leave from ``local`` (another loopback address: another client)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local), timeout=30)


def siwe_terms(url: str, client: httpx.Client | None = None) -> dict[str, Any]:
    get = client.get if client is not None else httpx.get
    return dict(get(f"{url}/.well-known/ai-service.json").json()["address_signature"]["siwe"])


def whoami(url: str, message: str, client: httpx.Client | None = None, **headers: str) -> httpx.Response:
    get = client.get if client is not None else httpx.get
    return get(f"{url}/v1/auth/whoami", headers={**siwe_headers(message, sign_siwe(ACCOUNT, message)), **headers})


def field(answer: httpx.Response) -> str:
    assert answer.status_code == 401, answer.text
    return str(answer.json()["error"]["details"]["field"])


def test_a_session_for_another_site_or_node_opens_nothing_whatever_the_host(alone: str) -> None:
    # a client address of its own: another test spends 127.0.0.1's unpaid counter on this node (found shuffled)
    with from_address("127.0.0.4") as client:
        terms = siwe_terms(alone, client)
        assert terms["node_resource"].startswith("proofmarket:node:0x")
        session = siwe_message(ACCOUNT.address, terms, ["proofmarket:session"])
        assert whoami(alone, session, client).status_code == 200

        other_site = {"domain": "evil.example", "uri": "https://evil.example", "chain_id": terms["chain_id"]}
        phished = siwe_message(ACCOUNT.address, other_site, ["proofmarket:session"])  # a page elsewhere: no node
        assert field(whoami(alone, phished, client, Host="evil.example")) == "node"
        named = siwe_message(ACCOUNT.address, {**other_site, "node_resource": terms["node_resource"]},
                             ["proofmarket:session"])  # even naming this node, another site's domain is refused
        assert field(whoami(alone, named, client, Host="evil.example")) == "domain"
        other_node = {**terms, "node_resource": "proofmarket:node:0x" + "12" * 20}
        assert field(whoami(alone, siwe_message(ACCOUNT.address, other_node, ["proofmarket:session"]),
                            client)) == "node"


def test_x_forwarded_for_from_an_untrusted_peer_moves_no_counter(alone: str) -> None:
    """From 127.0.0.1 (where a local proxy sits that passes X-Forwarded-For through), with no trusted proxy set."""
    with httpx.Client(timeout=30) as client:
        codes = [client.get(f"{alone}/v1/models", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                 for i in range(2 * LIMIT)]
    assert codes.count(429) >= LIMIT, codes  # counted by its socket address, whatever it claims


def test_behind_a_trusted_proxy_each_client_has_its_own_counter_and_sign_in_names_the_public_url(
        proxied: str) -> None:
    with from_address("127.0.0.2") as first, from_address("127.0.0.3") as second:
        terms = siwe_terms(proxied, first)
        assert (terms["domain"], terms["uri"]) == ("node.example", "https://node.example")
        assert whoami(proxied, siwe_message(ACCOUNT.address, terms, ["proofmarket:session"]), first,
                      Host="attacker.example").status_code == 200  # the public URL decides, not the Host header
        spoofed = [first.get(f"{proxied}/v1/models", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                   for i in range(2 * LIMIT)]
        assert spoofed.count(429) >= LIMIT, spoofed  # the proxy named the real client: its own claim is ignored
        assert second.get(f"{proxied}/v1/models").status_code == 200  # another client: its own counter


def test_the_servers_own_access_log_reads_the_forwarded_client() -> None:
    """uvicorn's access log reads the scope it passed in: the client a trusted proxy forwarded is written into that
    scope (as uvicorn's own proxy middleware does), so the log names the client, not the proxy."""
    import asyncio
    import ipaddress

    from proofmarket.api.proxies import TrustedProxies

    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"] = scope["client"]

    scope = {"type": "http", "client": ("127.0.0.1", 4000), "scheme": "http",
             "headers": [(b"x-forwarded-for", b"198.51.100.23, 127.0.0.1"), (b"x-forwarded-proto", b"https")]}
    asyncio.run(TrustedProxies(app, [ipaddress.ip_network("127.0.0.1/32")])(scope, None, None))  # type: ignore[arg-type]
    assert seen["client"] == scope["client"] == ("198.51.100.23", 4000) and scope["scheme"] == "https"
    untrusted = {"type": "http", "client": ("203.0.113.5", 4001), "scheme": "http",
                 "headers": [(b"x-forwarded-for", b"198.51.100.23")]}
    asyncio.run(TrustedProxies(app, [ipaddress.ip_network("127.0.0.1/32")])(untrusted, None, None))  # type: ignore[arg-type]
    assert untrusted["client"] == ("203.0.113.5", 4001)
