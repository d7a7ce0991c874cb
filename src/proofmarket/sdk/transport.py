"""The SDK's HTTP side: one session with a node (requests, timeouts, JSON answers, errors, artifacts by CID).

A node's answer is depth-checked before it is parsed; an error answer (``{"error": {"code", "message",
"details"}}``) is raised as the error class of its code; a transport failure is ``NodeUnavailable``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from proofmarket.core import jsonlimits
from proofmarket.core.errors import (
    ArtifactNotFound,
    NodeUnavailable,
    ProofMarketError,
    StoreError,
    VerificationFailed,
    from_code,
)
from proofmarket.store import LocalStore

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
JOB_TOKEN = "X-Job-Token"
FINAL = ("settled", "failed")


class NodeSession:
    """The connection to one node that the client's parts share (set by ``Client``): its URL, the caller's account
    and word on the network, the artifact cache, and the HTTP client."""

    base_url: str
    account: LocalAccount | None
    devnet: bool  # the caller's word, never the node's
    allow_dev_srs: bool
    cache_dir: Path
    poll_interval_s: float
    _http: httpx.Client

    def _get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("GET", url, **kwargs)

    def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("POST", url, **kwargs)

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise NodeUnavailable(f"the node at {self.base_url} did not answer {method} {url} in time (a paid "
                                  "call may still complete: retry it with the same Idempotency-Key to pay once)",
                                  url=self.base_url) from exc
        except httpx.TransportError as exc:
            raise NodeUnavailable(f"cannot reach the node at {self.base_url}: {exc}", url=self.base_url) from exc

    def models(self) -> list[dict[str, Any]]:
        """Every model the node sells (the catalogue's pages followed to the end)."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            body = self._json(self._get("/v1/models", params=params))
            if not isinstance(body, dict) or "models" not in body:
                return list(body)
            out += body["models"]
            if not body.get("next_cursor"):
                return out
            params["cursor"] = body["next_cursor"]

    def model(self, model_id: str) -> dict[str, Any]:
        return dict(self._json(self._get(f"/v1/models/{model_id}")))

    def job(self, job_id: str, access_token: str | None = None) -> dict[str, Any]:
        """A job of ours: ``access_token`` is the one its infer call returned (``InferenceResult.access_token``)."""
        return dict(self._json(self._get(f"/v1/jobs/{job_id}", headers=token_headers(access_token))))

    def proof(self, cid: str, access_token: str | None = None) -> dict[str, Any]:
        """A proof bundle of ours, opened by the access token of its job (or escrow request input)."""
        return dict(self._json(self._get(f"/v1/proofs/{cid}", headers=token_headers(access_token))))

    def _wait(self, job_id: str, access_token: str | None) -> dict[str, Any]:
        while True:
            job = self.job(job_id, access_token)
            if job["status"] in FINAL or (job["status"] == "proved" and job.get("result") is not None):
                return job
            time.sleep(self.poll_interval_s)

    gateways: tuple[str, ...] = ()  # IPFS gateways tried when the node does not serve an artifact

    def _fetch_artifact(self, store: LocalStore, cid: str) -> None:
        """An artifact into the local cache: from the node, else from the IPFS gateways (each checked by CID)."""
        if not store.has(cid):
            try:
                self._fetch_from_node(store, cid)
            except (NodeUnavailable, ArtifactNotFound):
                if not self.gateways:
                    raise
                self._fetch_from_gateways(store, cid)
        if self.gateways:
            self._learn_unixfs_roots(store, cid)

    def _learn_unixfs_roots(self, store: LocalStore, cid: str) -> None:
        """A manifest names its large files' UnixFS roots (``ArtifactRef.unixfs``): what a gateway is asked for.
        The roots need no trust: the file a gateway's blocks make is checked against the store's CID."""
        from proofmarket.store.unixfs import CHUNK, unixfs_roots

        roots: dict[str, tuple[str, int | None]] = self.__dict__.setdefault("_unixfs_roots", {})
        seen: set[str] = self.__dict__.setdefault("_unixfs_scanned", set())
        if cid in seen or store.size(cid) > 4 * CHUNK:  # a manifest is a small JSON document
            return
        seen.add(cid)
        with contextlib.suppress(ValueError, RecursionError):  # not JSON (or nested past reason): not a manifest
            for named, hint in unixfs_roots(json.loads(store.get(cid))).items():
                roots.setdefault(named, hint)  # the first manifest that names a file keeps it: no later one moves it

    def _fetch_from_gateways(self, store: LocalStore, cid: str) -> None:
        from proofmarket.store.pinning import fetch_from_gateway

        errors = []
        root, size = self.__dict__.get("_unixfs_roots", {}).get(cid, (None, None))
        for gateway in self.gateways:
            try:  # a file the manifest sized is read to that size at most (the whole is checked by its CID anyway)
                store.put(fetch_from_gateway(gateway, cid, root, **({"max_bytes": size} if size is not None else {})))
                return
            except StoreError as exc:
                errors.append(exc.message)
        raise NodeUnavailable(f"artifact {cid} is neither on the node nor on the gateways: {'; '.join(errors)}",
                              cid=cid)

    def _fetch_from_node(self, store: LocalStore, cid: str) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.NamedTemporaryFile(dir=self.cache_dir, prefix=".fetch-", delete=True) as tmp, \
                    self._http.stream("GET", f"/v1/artifacts/{cid}") as response:
                if response.status_code != 200:
                    response.read()
                    self._json(response)
                for chunk in response.iter_bytes():
                    tmp.write(chunk)
                tmp.flush()
                got = store.put_file(tmp.name)
        except httpx.TransportError as exc:
            raise NodeUnavailable(f"cannot fetch artifact {cid} from the node at {self.base_url}: {exc}",
                                  url=self.base_url, cid=cid) from exc
        if got != cid:
            raise VerificationFailed(f"the node served other bytes for artifact {cid} (their CID is {got})",
                                     cid=cid)

    def _json(self, response: httpx.Response) -> Any:
        try:  # a node's answer is depth-checked before parsing: nested JSON cannot crash the caller
            body = jsonlimits.loads(response.content, what="the node's answer")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if response.status_code < 400:
            if body is None:
                raise ProofMarketError(f"the node answered {response.status_code} without JSON")
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            raise ProofMarketError(f"the node answered HTTP {response.status_code}: {response.text[:200]}",
                                   status=response.status_code)
        raise api_error(str(error.get("code")), str(error.get("message", "")), error.get("details") or {},
                        ProofMarketError, response)


def read_events(response: httpx.Response, on_token: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """The SSE stream of a generate call (read with ``httpx-sse``): ``on_token`` per token, the ``result`` returned
    (or ``pending``: the job to poll while the payment settles), ``error`` raised."""
    from httpx_sse import EventSource

    for sse in EventSource(response).iter_sse():
        if sse.event not in ("token", "result", "pending", "error"):
            continue  # comments, pings and events this client does not know
        doc = jsonlimits.loads(sse.data, what="the node's event")
        if sse.event == "token":
            on_token(str(doc.get("text", "")))
        elif sse.event in ("result", "pending"):
            return sse.event, dict(doc)
        else:
            raise api_error(str(doc.get("code")), str(doc.get("message", "")), {}, ProofMarketError)
    raise NodeUnavailable("the node closed the stream before the result")


def token_headers(access_token: str | None) -> dict[str, str]:
    return {JOB_TOKEN: access_token} if access_token else {}


def api_error(code: str, message: str, details: dict[str, Any], default: type[ProofMarketError],
              response: httpx.Response | None = None) -> ProofMarketError:
    """The error a node answered, as the class of its code (``default`` when no class has it)."""
    exc = from_code(code, message, details, default=default)
    if response is not None:
        exc.http_status = response.status_code
        required = response.headers.get(PAYMENT_REQUIRED)
        if required:
            exc.headers = {PAYMENT_REQUIRED: required}
    return exc
