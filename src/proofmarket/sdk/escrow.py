"""The SDK's side of on-chain requests a node fulfils: escrowed proofs (``InferenceMarket``) and attested
requests on the ``AttestationCourt``. The node's view is read over HTTP; the money stays on chain."""

from __future__ import annotations

import time
from typing import Any

from proofmarket.core.errors import ProofTimeout
from proofmarket.sdk.transport import JOB_TOKEN, NodeSession


class OnChainRequests(NodeSession):
    # --- escrow (on-chain requests this node fulfils) ------------------------------------------------
    def escrow_request(self, request_id: int) -> dict[str, Any]:
        """The node's view of an on-chain request: status, bundle CID, fulfil tx, settlement."""
        return dict(self._json(self._get(f"/v1/requests/{request_id}")))

    def post_request_input(self, request_id: int, inputs: dict[str, Any],
                           salt: list[int] | None = None) -> dict[str, Any]:
        """Open a request's input commitment to the node, which then proves it and calls ``fulfill``. The answer's
        ``access_token`` reads the request's proof bundle (``proof(cid, access_token)``)."""
        return dict(self._json(self._post(f"/v1/requests/{request_id}/input", json={"input": inputs, "salt": salt})))

    def wait_request(self, request_id: int, timeout_s: float = 600.0) -> dict[str, Any]:
        """Poll until the node has fulfilled or failed the request; raises ``ProofTimeout`` after ``timeout_s``
        (the price stays in escrow: the node may still fulfil it, or the consumer refunds it after the deadline)."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.escrow_request(request_id)
            if row["status"] in ("fulfilled", "failed"):
                return row
            if time.monotonic() >= deadline:
                raise ProofTimeout(f"request {request_id} is still {row['status']} after {timeout_s:g} s",
                                   request_id=request_id, status=row["status"])
            time.sleep(self.poll_interval_s)

    # --- court (attested requests escrowed on the AttestationCourt) ----------------------------------
    def court_request(self, request_id: int) -> dict[str, Any]:
        """The node's view of a court request; once ``fulfilled`` (committed), ``settlement.court.status`` is
        committed, challenged, paid or slashed."""
        return dict(self._json(self._get(f"/v1/court/{request_id}")))

    def post_court_input(self, request_id: int, request: dict[str, Any]) -> dict[str, Any]:
        """Open a court request's commitment (the generate request ``{prompt, max_tokens, temperature, seed}``);
        the node generates and commits it. The answer's ``access_token`` reads the bundle (``court_bundle``)."""
        return dict(self._json(self._post(f"/v1/court/{request_id}/input", json={"input": request})))

    def court_bundle(self, request_id: int, access_token: str) -> dict[str, Any]:
        """The committed attested bundle of a court request (check it: ``verify(bundle, reexecute=True)``)."""
        return dict(self._json(self._get(f"/v1/court/{request_id}/bundle", headers={JOB_TOKEN: access_token})))

    def wait_court(self, request_id: int, until: tuple[str, ...] = ("committed", "paid", "slashed"),
                   timeout_s: float = 600.0) -> dict[str, Any]:
        """Poll until the court request reached one of ``until`` (court statuses), or failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.court_request(request_id)
            court = (row.get("settlement") or {}).get("court") or {}
            if row["status"] == "failed" or court.get("status") in until:
                return row
            if time.monotonic() >= deadline:
                raise ProofTimeout(f"court request {request_id} is still {court.get('status') or row['status']} "
                                   f"after {timeout_s:g} s", request_id=request_id, status=row["status"])
            time.sleep(self.poll_interval_s)
