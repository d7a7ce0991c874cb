"""Discovery's reading of one agent, without a chain: the URL check runs before any fetch (a node refuses private
addresses with it), a file that does not name its agent is unverified, a good one gives the node and its models."""

from __future__ import annotations

import httpx
import pytest

from proofmarket.marketplace.webhook_targets import WebhookTargetRefused, pinned
from proofmarket.sdk.discovery import REGISTRATION_TYPE, Found, _read_node, select

REGISTRY = "eip155:31337:0x" + "cf" * 20


def _file(agent_id: int) -> dict[str, object]:
    return {"type": REGISTRATION_TYPE, "name": "node", "x402Support": True,
            "registrations": [{"agentId": agent_id, "agentRegistry": REGISTRY}],
            "services": [{"name": "proofmarket", "endpoint": "http://node.example/.well-known/ai-service.json"}]}


def _client(seen: list[str], hosts: list[str] | None = None) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if hosts is not None:
            hosts.append(request.headers["host"])
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"models": [{"id": "bafy1", "name": "m", "mode": "proven",
                                                         "task": "classification",
                                                         "price": {"atomic": "5000", "amount": "0.005"}}],
                                             "next_cursor": None})
        return httpx.Response(200, json=_file(7))

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_the_url_check_runs_before_any_fetch() -> None:
    seen: list[str] = []
    entry = Found(7, "0xowner", "http://127.0.0.1:8080/reg.json", REGISTRY)
    with pytest.raises(WebhookTargetRefused):
        _read_node(_client(seen), entry, lambda url: pinned(url, False))
    assert seen == []  # nothing was fetched from the private address


def test_every_fetch_goes_to_the_address_it_checked_whatever_the_name_resolves_to_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 71 (DNS rebinding): the name answers a public address when checked, then loopback. Each fetch is
    resolved once, checked, and sent to the address checked with the name as its Host: loopback is never reached,
    and the page whose name now resolves to it is refused."""
    import socket

    from proofmarket.marketplace import webhook_targets as targets

    answers = iter(["93.184.216.34", "127.0.0.1"])  # the file's fetch, then the catalogue's

    def rebinding(host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(targets.socket, "getaddrinfo", rebinding)
    seen: list[str] = []
    hosts: list[str] = []
    entry = Found(7, "0xowner", "http://node.example/reg.json", REGISTRY)
    with pytest.raises(Exception, match="does not fetch|loopback"):
        _read_node(_client(seen, hosts), entry, lambda url: pinned(url, False))
    assert seen and all(url.startswith("http://93.184.216.34/") for url in seen), seen
    assert set(hosts) == {"node.example"} and not entry.verified


def test_a_file_must_name_its_agent_and_a_good_one_gives_the_node_and_its_models() -> None:
    seen: list[str] = []
    impostor = Found(8, "0xother", "http://node.example/reg.json", REGISTRY)
    _read_node(_client(seen), impostor, None)
    assert not impostor.verified and "does not name agent 8" in str(impostor.error)
    good = Found(7, "0xowner", "http://node.example/reg.json", REGISTRY)
    _read_node(_client(seen), good, None)
    assert good.verified and good.node == "http://node.example" and good.models[0]["price_atomic"] == 5000
    assert select([good, impostor], max_price_atomic=4999) == []
    assert [n.agent_id for n in select([good, impostor], task="classification", only_verified=True)] == [7]


def test_a_spent_budget_leaves_the_other_agents_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents whose files answer slowly on purpose cannot hold a discovery: once its budget is spent, the agents left
    are listed unread, saying so, and nothing more is fetched."""
    import proofmarket.chain.client as chain_client
    import proofmarket.chain.erc8004 as erc8004
    from proofmarket.sdk import discovery

    class Identity:
        def __init__(self, *_: object) -> None: ...
        def total(self) -> int: return 3
        def owner_of(self, agent_id: int) -> str: return f"0x{agent_id:040x}"
        def agent_uri(self, agent_id: int) -> str: return f"http://node{agent_id}.example/reg.json"
        def registry_id(self) -> str: return REGISTRY

    fetched: list[str] = []
    monkeypatch.setattr(chain_client, "ChainClient", lambda *_: None)
    monkeypatch.setattr(erc8004, "IdentityRegistry", Identity)
    monkeypatch.setattr(discovery, "_read_node", lambda http, entry, check: fetched.append(entry.uri))
    found = discovery.discover("http://rpc.example", "0xregistry", budget_s=0.0)
    assert [n.agent_id for n in found] == [1, 2, 3] and fetched == []
    assert all("time budget" in str(n.error) and not n.verified for n in found)


def test_a_request_while_a_discovery_runs_gets_the_last_list_at_once() -> None:
    """GET /v1/nodes holds no request thread waiting for another request's discovery: the last list, marked stale."""
    import threading
    import time
    from types import SimpleNamespace

    from proofmarket.api.routers.discovery import _discovered

    registries = {"IdentityRegistry": "0x1", "ReputationRegistry": "0x2"}
    services = SimpleNamespace(catalog=SimpleNamespace(listings=SimpleNamespace(
        market=SimpleNamespace(deployment=SimpleNamespace(erc8004=registries)))))
    last = [Found(1, "0xowner", "http://node.example/reg.json", REGISTRY)]
    state = SimpleNamespace(discovered_nodes=(time.monotonic() - 3600, last), discovery_lock=threading.Lock())
    state.discovery_lock.acquire()  # another request's discovery is running
    started = time.monotonic()
    assert _discovered(services, state) == (last, True)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0
    state.discovered_nodes = None
    assert _discovered(services, state) == ([], True)  # type: ignore[arg-type]
