"""The HTTP session and web3 provider every JSON-RPC client of the node uses (``rpc_provider``).

requests reads the process's whole environment on every request (proxy variables, the CA bundle), which costs
more than a JSON-RPC round trip to a local node (bench/http.md: ~0.4 ms of each of the several RPCs a paid call
makes). Here the same settings are read once, for the RPC URL, when the session is made: a proxy, ``NO_PROXY`` and
``REQUESTS_CA_BUNDLE`` still apply; a change to them reaches the node when it starts again.
"""

from __future__ import annotations

from typing import Any

import requests
from web3 import HTTPProvider
from web3.types import RPCEndpoint


def rpc_session(url: str) -> requests.Session:
    """A session for ``url`` with the environment's proxy and CA settings for it, read now and not again."""
    session = requests.Session()
    found = session.merge_environment_settings(url, {}, None, None, None)  # requests' own reading of them
    session.trust_env = False
    session.proxies.update(found.get("proxies") or {})
    if found.get("verify") not in (None, True):
        session.verify = found["verify"]
    return session


def rpc_provider(url: str, **options: Any) -> HTTPProvider:
    """web3's provider for ``url`` on ``rpc_session(url)`` (``options``: HTTPProvider's), remembering the chain id:
    web3 asks eth_chainId before every call it builds and every transaction, and one RPC URL never changes chains."""
    provider = HTTPProvider(url, session=rpc_session(url), **options)
    provider.cacheable_requests = {RPCEndpoint("eth_chainId")}
    provider.cache_allowed_requests = True
    return provider
