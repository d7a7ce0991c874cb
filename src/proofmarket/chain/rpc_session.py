"""The HTTP session every JSON-RPC client of the node uses (web3's ``HTTPProvider(session=...)``).

requests reads the process's whole environment on every request (proxy variables, the CA bundle), which costs
more than a JSON-RPC round trip to a local node (bench/http.md: ~0.4 ms of each of the several RPCs a paid call
makes). Here the same settings are read once, for the RPC URL, when the session is made: a proxy, ``NO_PROXY`` and
``REQUESTS_CA_BUNDLE`` still apply; a change to them reaches the node when it starts again.
"""

from __future__ import annotations

import requests


def rpc_session(url: str) -> requests.Session:
    """A session for ``url`` with the environment's proxy and CA settings for it, read now and not again."""
    session = requests.Session()
    found = session.merge_environment_settings(url, {}, None, None, None)  # requests' own reading of them
    session.trust_env = False
    session.proxies.update(found.get("proxies") or {})
    if found.get("verify") not in (None, True):
        session.verify = found["verify"]
    return session
