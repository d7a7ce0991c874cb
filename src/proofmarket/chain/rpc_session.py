"""The HTTP session and web3 provider every JSON-RPC client of the node uses (``rpc_provider``).

requests reads the process's whole environment on every request (proxy variables, the CA bundle), which costs
more than a JSON-RPC round trip to a local node (bench/http.md: ~0.4 ms of each of the several RPCs a paid call
makes). Here the same settings are read once, for the RPC URL, when the session is made: a proxy, ``NO_PROXY`` and
``REQUESTS_CA_BUNDLE`` still apply; a change to them reaches the node when it starts again.

Even so, requests and urllib3 spend about 1 ms of CPU on each request (a paid call makes about ten: the payment's
simulation, the payer's balance, the settlement and its receipt), several times the round trip to a local node.
An ``http://`` RPC URL with no proxy (a node on this machine or this network) is asked instead over one kept-alive
``http.client`` connection per thread (``KeepAliveRequests``): about 0.2 ms a request. The answers, the exceptions
(requests' ``ConnectionError``, ``Timeout``, ``HTTPError``: what web3's retries and ``ChainClient.translate``
expect) and the retries are those of the requests path; ``https://`` URLs and proxied ones keep requests.
"""

from __future__ import annotations

import http.client
import select
import threading
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from web3 import HTTPProvider
from web3._utils.http import DEFAULT_HTTP_TIMEOUT
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
    web3 asks eth_chainId before every call it builds and every transaction, and one RPC URL never changes chains.
    A plain ``http://`` URL without a proxy is asked over kept-alive connections (``KeepAliveRequests``)."""
    session = rpc_session(url)
    provider = HTTPProvider(url, session=session, **options)
    provider.cacheable_requests = {RPCEndpoint("eth_chainId")}
    provider.cache_allowed_requests = True
    if urlsplit(url).scheme == "http" and not session.proxies:
        provider._request_session_manager = cast(Any, KeepAliveRequests(url, provider._request_session_manager))
    return provider


class KeepAliveRequests:
    """web3's session manager for one ``http://`` endpoint: each thread's POSTs on its own kept-alive
    ``http.client`` connection; any other request (another URL, a streamed answer) and every other method go to
    web3's own manager (``fallback``).

    A kept connection the server has closed meanwhile (idle too long, the node restarted) is seen before it is used
    (readable with nothing asked) and opened again, as urllib3 does: a request is sent once, never again by this
    class (web3's retries, for the methods it retries, are above it)."""

    def __init__(self, url: str, fallback: Any) -> None:
        parts = urlsplit(url)
        self.url, self.fallback = url, fallback
        self.host, self.port = parts.hostname or "localhost", parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)

    def make_post_request(self, endpoint_uri: str, data: bytes | dict[str, Any], **kwargs: Any) -> bytes:
        if endpoint_uri != self.url or kwargs.get("stream") or not isinstance(data, bytes | str):
            return bytes(self.fallback.make_post_request(endpoint_uri, data, **kwargs))
        timeout = kwargs.get("timeout", DEFAULT_HTTP_TIMEOUT)
        headers = dict(kwargs.get("headers") or {})
        conn = self._connection(timeout)
        try:
            conn.request("POST", self.path, body=data, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
        except TimeoutError as exc:
            self._drop()
            raise requests.Timeout(f"{self.url} did not answer in {timeout} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise requests.ConnectionError(f"cannot reach {self.url}: {exc!r}") from exc
        if answer.will_close:
            self._drop()
        if answer.status >= 400:  # as requests' raise_for_status
            kind = "Client" if answer.status < 500 else "Server"
            raise requests.HTTPError(f"{answer.status} {kind} Error: {answer.reason} for url: {self.url}")
        return body

    def _connection(self, timeout: Any) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.sock is None or _dropped(conn.sock)):
            self._drop()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=_seconds(timeout))
            self._local.conn = conn
        else:
            conn.timeout = _seconds(timeout)
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


def _dropped(sock: Any) -> bool:
    """A kept connection with something to read before anything was asked: closed by the server (or broken)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _seconds(timeout: Any) -> float | None:
    """requests' timeout (seconds, or a (connect, read) pair) as one socket timeout: the longer of the two."""
    if isinstance(timeout, tuple):
        return max(float(t) for t in timeout if t is not None) if any(t is not None for t in timeout) else None
    return None if timeout is None else float(timeout)
