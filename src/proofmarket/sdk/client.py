"""The proofmarket SDK: talk to a node, pay per call over x402, verify what comes back locally.

    from proofmarket import Client
    with Client("http://127.0.0.1:8402", account=Account.from_key(key)) as node:
        models = node.models()
        result = node.infer(model_id, {"input_data": [[...]]})      # pays when the node answers 402,
        result.output, result.checks                                 # returns only a verified answer

Paying goes through the x402 SDK client (``proofmarket.sdk.pay``): the node's PAYMENT-REQUIRED
is answered with an EIP-3009 ``exact`` authorization signed by ``account``, capped at ``max_amount``
atomic units (default: the model's listed price). The terms of a model are remembered: the next call
pays up front, in one round trip instead of three (a node whose terms changed answers 402 again, and
the call pays once more against the new terms; a refused payment moves no money). The bundle of a
paid result carries its ``payment`` and ``receipt``: the node stores the proof bundle under
``bundle_cid`` before it is paid (the receipt signs that CID).

``infer`` returns a result only after ``verify`` has checked that it answers *this* request: the proof
verifies (ezkl, with the public artifacts fetched by CID), it is of the model asked for (never the id the
node names), its proven input is the input sent (public: the client's own quantisation; hashed: the
Poseidon commitment the client recomputes from its input and the returned salt), the returned output is
the proven one, and the payment and receipt are the client's own (payer, amount within the cap, receipt
bound to this model, input commitment and bundle CID). A mismatch raises ``AnswerMismatch``
(``answer_mismatch``) naming the check. Proofs on a dev SRS are refused (``DevSrsRefused``) unless the
client is told it is on the devnet (``devnet=True``, and its payment, if any, was on chain 31337) or
``allow_dev_srs=True``; the node's word is never taken for the network.

API errors (``{"error": {"code", "message", "details"}}``) are raised as the error class of their code.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from proofmarket.core import jsonlimits
from proofmarket.core.errors import (
    NodeUnavailable,
    PaymentRequired,
    ProofMarketError,
    ProofTimeout,
    ProvingError,
    RegistryMismatch,
    VerificationFailed,
    from_code,
)
from proofmarket.sdk.attested import GenerationResult
from proofmarket.sdk.checks import Request, check_answer, check_srs
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.verify import VerifyReport, verify_bundle

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
JOB_TOKEN = "X-Job-Token"
FINAL = ("settled", "failed")


@dataclass(frozen=True)
class InferenceResult:
    """A proved inference: its output, the proof bundle (with payment and receipt when paid) and its CID.

    From ``Client.infer``: ``model_id`` is the one asked for, ``output`` the proven one and ``checks`` what
    ``verify`` checked (empty with ``verify=False``: then nothing here is checked)."""

    job_id: str
    model_id: str
    status: str
    output: list[list[float]]
    bundle_cid: str
    bundle: dict[str, Any]
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    salt: list[int] | None = None
    payment_response: str | None = field(default=None, repr=False)  # the raw PAYMENT-RESPONSE header
    checks: tuple[str, ...] = ()
    request: Request | None = field(default=None, repr=False)  # what the client asked and paid: verify's facts
    access_token: str | None = field(default=None, repr=False)  # reads the job and its bundles (X-Job-Token)

    @property
    def mode(self) -> str:
        """``proven`` (a ZK proof) or ``attested`` (an attested ONNX model: signed commitments, not a proof)."""
        return str(self.bundle.get("mode") or "proven")


class Client:
    def __init__(self, base_url: str, account: LocalAccount | None = None, *, timeout: float = 900.0,
                 cache_dir: str | Path | None = None, transport: httpx.BaseTransport | None = None,
                 poll_interval_s: float = 0.2, devnet: bool = False, allow_dev_srs: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.devnet, self.allow_dev_srs = devnet, allow_dev_srs  # the caller's word, never the node's
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".proofmarket" / "client-cache"
        self.poll_interval_s = poll_interval_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._terms: dict[str, tuple[str, int]] = {}  # model id -> (PAYMENT-REQUIRED header, cap it was paid with)

    def close(self) -> None:
        self._http.close()

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

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- catalogue ---------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        body = self._json(self._get("/v1/models"))
        return list(body["models"] if isinstance(body, dict) and "models" in body else body)

    def model(self, model_id: str) -> dict[str, Any]:
        return dict(self._json(self._get(f"/v1/models/{model_id}")))

    def job(self, job_id: str, access_token: str | None = None) -> dict[str, Any]:
        """A job of ours: ``access_token`` is the one its infer call returned (``InferenceResult.access_token``)."""
        return dict(self._json(self._get(f"/v1/jobs/{job_id}", headers=_token(access_token))))

    def proof(self, cid: str, access_token: str | None = None) -> dict[str, Any]:
        """A proof bundle of ours, opened by the access token of its job (or escrow request input)."""
        return dict(self._json(self._get(f"/v1/proofs/{cid}", headers=_token(access_token))))

    # --- inference ---------------------------------------------------------------------------------
    def infer(self, model_id: str, inputs: dict[str, Any], *, max_amount: int | None = None,
              idempotency_key: str | None = None, verify: bool = True) -> InferenceResult:
        """Run ``model_id`` on ``inputs`` and return the output with its proof; pay over x402 if asked.

        The result is checked by ``verify`` against this request before it is returned (``verify=False``
        returns the node's answer unchecked: ``checks`` is then empty).

        Every call carries an Idempotency-Key (``idempotency_key``, or a fresh one): when the node cannot be
        reached or does not answer in time, the ``NodeUnavailable`` raised names it in
        ``details["idempotency_key"]``; calling again with it returns the same job and pays at most once.
        """
        key = idempotency_key or uuid.uuid4().hex
        try:
            result = self._infer(model_id, inputs, max_amount, key)
            if not verify:
                return result
            report = self.verify(result)
        except NodeUnavailable as exc:
            exc.details.setdefault("idempotency_key", key)
            raise
        return dataclasses.replace(result, output=report.output, checks=tuple(report.checks))

    def _infer(self, model_id: str, inputs: dict[str, Any], max_amount: int | None, key: str) -> InferenceResult:
        url = f"/v1/models/{model_id}/infer"
        headers = {"Idempotency-Key": key}
        known = self._terms.get(model_id) if self.account is not None else None
        upfront: str | None = None
        cap: int | None = None
        if known is not None and (max_amount is None or max_amount == known[1]):
            upfront = headers[PAYMENT_SIGNATURE] = self._pay(*known)  # terms seen before: pay up front
            cap = known[1]
        response = self._post(url, json=inputs, headers=headers)
        if response.status_code == 402 and PAYMENT_REQUIRED in response.headers:
            self._terms.pop(model_id, None)
            cap = max_amount if max_amount is not None else int(self.model(model_id)["price"]["atomic"])
            required = response.headers[PAYMENT_REQUIRED]
            # A refused up-front payment stays signed: the retry reuses its nonce, so only one can be executed.
            headers[PAYMENT_SIGNATURE] = self._pay(required, cap, same_nonce_as=upfront)
            response = self._post(url, json=inputs, headers=headers)
            if response.status_code < 400:
                self._terms[model_id] = (required, cap)
        elif response.status_code == 402:
            self._terms.pop(model_id, None)
        body = self._json(response)
        paid = PAYMENT_SIGNATURE in headers
        request = Request(model_id=model_id, inputs=inputs, max_amount=cap, paid=paid,
                          payer=self.account.address if paid and self.account is not None else None,
                          network=_signed_network(headers[PAYMENT_SIGNATURE]) if paid else None)
        if response.status_code == 202:
            token = body.get("access_token")
            return self._from_job(self._wait(body["id"], token), request, token)
        return self._result(body, response.headers.get(PAYMENT_RESPONSE), request)

    # --- attested generation --------------------------------------------------------------------------
    def generate(self, model_id: str, prompt: str, *, max_tokens: int = 64, temperature: float = 0.0,
                 seed: int | None = None, max_amount: int | None = None, reexecute: bool = False,
                 verify: bool = True, on_token: Callable[[str], None] | None = None) -> GenerationResult:
        """Generate text with an attested model; pay over x402 if asked (price per 1,000 output tokens, the
        ``max_tokens`` cap is charged). The answer is an attestation, not a proof: it is returned once its
        signature and hashes hold and it answers this request (``check_generation``); ``reexecute`` also
        fetches the weights by CID and re-checks every commitment with one prefill pass. ``on_token``: stream
        (Server-Sent Events), called with each token's text as it is generated (unchecked until the end).
        A payment still settling (202, or the stream's ``pending`` event) is followed at its job until the node
        delivers the answer (settled) or fails it (nothing charged: its error is raised)."""
        from proofmarket.sdk.attested import GenerationRequest, check_generation

        url = f"/v1/models/{model_id}/generate"
        body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        if on_token is not None:
            body["stream"] = True
        headers: dict[str, str] = {}
        status, response_headers, answer = self._generate_call(url, body, headers, on_token)
        cap = max_amount
        if status == 402 and PAYMENT_REQUIRED in response_headers:
            if cap is None:
                per_1k = int(self.model(model_id)["price"]["atomic"])
                cap = max(1, -(-per_1k * max_tokens // 1000))
            headers[PAYMENT_SIGNATURE] = self._pay(response_headers[PAYMENT_REQUIRED], cap)
            status, response_headers, answer = self._generate_call(url, body, headers, on_token)
        if status == 202:
            answer = self._settled_answer(answer)
        paid = PAYMENT_SIGNATURE in headers
        request = GenerationRequest(model_id, prompt, max_tokens, float(temperature), seed, cap,
                                    self.account.address if paid and self.account is not None else None)
        bundle = dict(answer["bundle"])
        checks: list[str] = []
        if verify:
            checks = check_generation(bundle, answer, request, LocalStore(self.cache_dir), self._fetch_artifact,
                                      reexecute=reexecute, work_dir=self.cache_dir / "work")
        return GenerationResult(model_id=model_id, text=answer["text"], tokens=list(answer["tokens"]),
                                finish_reason=answer["finish_reason"], bundle_cid=answer["bundle_cid"],
                                bundle=bundle, payment=answer.get("payment"), receipt=answer.get("receipt"),
                                reexecuted=reexecute and verify, checks=tuple(checks), request=request)

    def _settled_answer(self, accepted: dict[str, Any]) -> dict[str, Any]:
        """A paid attested call whose payment was settling: its answer once the node settled it."""
        token = accepted.get("access_token")
        job = self._wait(accepted["id"], token)
        answer = (job.get("result") or {}).get("answer")
        if job["status"] != "settled" or answer is None:
            error = job.get("error") or {}
            raise _error(str(error.get("code", "payment_settlement_failed")),
                         str(error.get("message", "the call was not settled")), {"job_id": job["id"]},
                         ProofMarketError)
        return dict(answer)

    def _generate_call(self, url: str, body: dict[str, Any], headers: dict[str, str],
                       on_token: Callable[[str], None] | None) -> tuple[int, httpx.Headers, dict[str, Any]]:
        """One generate call: (status, headers, answer); an error answer raises, except a 402 with terms."""
        if on_token is None:
            response = self._post(url, json=body, headers=headers)
            if response.status_code == 402 and PAYMENT_REQUIRED in response.headers:
                return 402, response.headers, {}
            return response.status_code, response.headers, dict(self._json(response))
        try:
            with self._http.stream("POST", url, json=body, headers={**headers, "Accept": "text/event-stream"}) as r:
                if r.status_code != 200:
                    r.read()
                    if r.status_code == 402 and PAYMENT_REQUIRED in r.headers:
                        return 402, r.headers, {}
                    self._json(r)
                event, answer = _read_events(r, on_token)
                return (202 if event == "pending" else 200), r.headers, answer
        except httpx.TransportError as exc:
            raise NodeUnavailable(f"cannot reach the node at {self.base_url}: {exc}", url=self.base_url) from exc

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
        return dict(self._json(self._get(f"/v1/court/{request_id}/bundle", headers={"X-Job-Token": access_token})))

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

    def _pay(self, required_header: str, cap: int, same_nonce_as: str | None = None) -> str:
        from x402.http import decode_payment_required_header

        from proofmarket.sdk.pay import nonce_of, payment_signature_header

        if self.account is None:
            raise PaymentRequired("this node asks for a payment: create the Client with an account to pay")
        required = decode_payment_required_header(required_header)
        assets = [(str(a.network), a.asset) for a in getattr(required, "accepts", [])]
        nonce = nonce_of(same_nonce_as) if same_nonce_as else None
        return payment_signature_header(self.account, required_header, cap, assets=assets, nonce=nonce)

    def _wait(self, job_id: str, access_token: str | None) -> dict[str, Any]:
        while True:
            job = self.job(job_id, access_token)
            if job["status"] in FINAL or (job["status"] == "proved" and job.get("result") is not None):
                return job
            time.sleep(self.poll_interval_s)

    def _from_job(self, job: dict[str, Any], request: Request, access_token: str | None) -> InferenceResult:
        if job["status"] == "failed":
            error = job.get("error") or {}
            raise _error(error.get("code", "proving_failed"), error.get("message", "the job failed"),
                         {"job_id": job["id"]}, ProvingError)
        result = job["result"] or {}
        bundle = self.proof(result["bundle_cid"], access_token)
        body = {"job_id": job["id"], "model_id": job["model_id"], "status": job["status"], **result,
                "bundle": bundle, "access_token": access_token}
        return self._result(body, None, request)

    @staticmethod
    def _result(body: dict[str, Any], payment_response: str | None, request: Request) -> InferenceResult:
        bundle = dict(body["bundle"])
        if body.get("receipt") is not None:  # the paid bundle: proof + payment + receipt in one document,
            payment = {k: v for k, v in (body.get("payment") or {}).items() if k != "paid_bundle_cid"}
            bundle["payment"], bundle["receipt"] = payment, body["receipt"]  # the node's paid_bundle_cid
        return InferenceResult(job_id=body.get("job_id") or "", model_id=request.model_id or body["model_id"],
                               status=body["status"], output=body.get("output") or [],
                               bundle_cid=body["bundle_cid"], bundle=bundle, payment=body.get("payment"),
                               receipt=body.get("receipt"), salt=body.get("salt"),
                               payment_response=payment_response, request=request,
                               access_token=body.get("access_token"))

    # --- verification ------------------------------------------------------------------------------
    def verify(self, result_or_bundle: dict[str, Any] | ProofBundle | InferenceResult, *,
               model_id: str | None = None, inputs: Any = None, salt: list[int] | None = None,
               max_amount: int | None = None) -> VerifyReport:
        """Verify locally that the answer holds and that it answers the request; raise ``VerificationFailed``
        (``AnswerMismatch``, ``DevSrsRefused``, ...) naming the first check that fails.

        Fetches the public artifacts the bundle names (checked against their CIDs) into the cache and runs
        ``verify_bundle`` (the proof, and the receipt's signatures when the bundle carries one). Then, with
        the request (from an ``InferenceResult`` of ``infer``, or given here): the bundle's model is
        ``model_id``; its proven input is ``inputs`` (a hashed input: with ``salt``, in range, opening the
        proof's commitment); for a result, its output and bundle CID are the proven ones and its payment
        and receipt are this client's (payer, amount within ``max_amount``, receipt bound to this model,
        input commitment and bundle CID). A bare bundle without ``model_id`` and ``inputs`` is checked for
        itself only. Dev-SRS models are refused unless the client was created with ``devnet=True`` (and
        the payment, if any, was on the devnet) or ``allow_dev_srs=True``."""
        if isinstance(result_or_bundle, dict) and result_or_bundle.get("mode") == "attested":
            return self._verify_attested(result_or_bundle)
        if isinstance(result_or_bundle, InferenceResult) and result_or_bundle.bundle.get("mode") == "attested":
            from proofmarket.sdk.attested import check_onnx_answer

            r = result_or_bundle
            req = r.request or Request(model_id=r.model_id)
            report: VerifyReport = check_onnx_answer(
                r.bundle, r.output, model_id or req.model_id, inputs if inputs is not None else req.inputs,
                req.payer if req.paid else None, max_amount if max_amount is not None else req.max_amount, r.payment,
                LocalStore(self.cache_dir), self._fetch_artifact, self.cache_dir / "work")
            return report
        claimed: dict[str, Any] | None = None
        request = Request()
        if isinstance(result_or_bundle, InferenceResult):
            result = result_or_bundle
            request = result.request or Request(model_id=result.model_id)
            claimed = {"output": result.output, "bundle_cid": result.bundle_cid, "payment": result.payment,
                       "receipt": result.receipt}
            salt = salt if salt is not None else result.salt
            result_or_bundle = result.bundle
        request = dataclasses.replace(
            request, model_id=model_id if model_id is not None else request.model_id,
            inputs=inputs if inputs is not None else request.inputs, salt=salt,
            max_amount=max_amount if max_amount is not None else request.max_amount)
        parsed = result_or_bundle if isinstance(result_or_bundle, ProofBundle) \
            else ProofBundle.parse(result_or_bundle)
        store = LocalStore(self.cache_dir)
        model = parsed.model
        for cid in (model.id, model.settings_cid, model.vk_cid, model.srs.cid):
            self._fetch_artifact(store, cid)
        # the network of the client's own signature when it paid; else the one a bundle's receipt signs
        network = request.network if request.paid else (parsed.payment or {}).get("network")
        srs_check = check_srs(_srs_kind(model.srs.cid), model.id, devnet=self.devnet,
                              allow_dev_srs=self.allow_dev_srs, network=network)
        report = verify_bundle(parsed, store)
        report.checks.append(srs_check)
        report.checks.extend(check_answer(parsed, store, request, claimed=claimed))
        return report

    def _verify_attested(self, bundle: dict[str, Any], reexecute: bool = False) -> VerifyReport:
        """An attested bundle: signature, hashes and bindings against the manifest fetched by CID (and with
        ``reexecute``, the weights fetched by CID and one prefill pass)."""
        from proofmarket.systems import verify_bundle_any
        from proofmarket.systems.attested.documents import AttestedManifest

        store = LocalStore(self.cache_dir)
        model_id = str((bundle.get("model") or {}).get("id", ""))
        self._fetch_artifact(store, model_id)
        if reexecute:
            for ref in AttestedManifest.model_validate(store.get_json(model_id)).files.values():
                self._fetch_artifact(store, ref.cid)
        report: VerifyReport = verify_bundle_any(bundle, store, reexecute=reexecute, work_dir=self.cache_dir / "work")
        return report

    def history(self, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
        """This account's paid calls (``jobs``) and escrow requests (``requests``) on the node, newest first, each
        with its access token: one signature naming the node's signer address (``address_signature`` in its
        service manifest), fresh for one minute, one read of each list (``proofmarket.core.address_signature``)."""
        from proofmarket.core.address_signature import sign_headers

        if self.account is None:
            raise PaymentRequired("reading a history is signed: create the Client with an account")
        node = str((self._json(self._get("/.well-known/ai-service.json")).get("address_signature") or {}).get("node"))
        headers = sign_headers(self.account, node)
        address = self.account.address
        jobs = self._json(self._get(f"/v1/jobs?payer={address}&limit={limit}", headers=headers))["items"]
        response = self._get(f"/v1/requests?consumer={address}&limit={limit}", headers=headers)
        requests = [] if response.status_code == 404 else self._json(response)["items"]  # 404: no escrow market
        return {"jobs": list(jobs), "requests": list(requests)}

    def agent(self) -> dict[str, Any]:
        """The node's ERC-8004 registration file (``/.well-known/agent-registration.json``)."""
        return dict(self._json(self._get("/.well-known/agent-registration.json")))

    def give_feedback(self, rpc_url: str, value: int, *, decimals: int = 0, tag1: str = "inference", tag2: str = "",
                      feedback_uri: str = "", feedback_hash: bytes | None = None) -> dict[str, Any]:
        """Rate the node on the ERC-8004 ReputationRegistry with this client's account, after a call (e.g.
        ``value=100, tag2=result.mode, feedback_uri="ipfs://" + result.bundle_cid``). The agent id comes from the
        node's registration file, the registries' addresses from its service document, and both are checked on
        chain (``rpc_url``, yours): the agent's identity registry is the reputation registry's. Returns
        ``{agent_id, tx, summary}``."""
        from proofmarket.chain.client import ChainClient
        from proofmarket.chain.erc8004 import IdentityRegistry, ReputationRegistry

        if self.account is None:
            raise PaymentRequired("feedback is a transaction: create the Client with an account")
        registrations = self.agent().get("registrations") or []
        if not registrations:
            raise RegistryMismatch("the node has no ERC-8004 agent identity to rate", field="registrations")
        agent_id = int(registrations[0]["agentId"])
        _, chain_id, identity_address = str(registrations[0]["agentRegistry"]).split(":")
        chain = (self._json(self._get("/.well-known/ai-service.json")).get("chain") or {})
        addresses = chain.get("erc8004") or {}
        client = ChainClient(rpc_url)
        if client.chain_id != int(chain_id) or "ReputationRegistry" not in addresses:
            raise RegistryMismatch("the node's ERC-8004 registries are not on this RPC's chain", field="chain_id")
        reputation = ReputationRegistry(client, addresses["ReputationRegistry"])
        if str(reputation._call("getIdentityRegistry")).lower() != identity_address.lower():
            raise RegistryMismatch("the node's reputation registry is not bound to its identity registry",
                                   field="identity_registry")
        IdentityRegistry(client, identity_address).owner_of(agent_id)  # the agent exists (reverts otherwise)
        tx = reputation.give_feedback(agent_id, value, self.account, decimals=decimals, tag1=tag1, tag2=tag2,
                                      endpoint=self.base_url, feedback_uri=feedback_uri,
                                      feedback_hash=feedback_hash or b"\x00" * 32)
        return {"agent_id": agent_id, "tx": tx.tx_hash, "summary": reputation.summary(agent_id).to_json()}

    def check_listing(self, model_id: str, rpc_url: str) -> dict[str, Any]:
        """Check on chain (your RPC, not the node's word) that the node sells ``model_id`` on its registry
        listing: the chain id, ``modelIdOf(owner, keccak256(CID))``, price, owner, verifier address and
        active flag the node publishes are the registry's, and the verifier's code is the one compiled from
        the model's manifest (its creation code, fetched by CID, run by ``eth_call``). Returns the listing;
        raises ``RegistryMismatch`` naming the first field that differs."""
        from eth_utils import keccak, to_checksum_address
        from web3 import Web3

        from proofmarket.chain.artifacts import load_artifact
        from proofmarket.systems.ezkl.verify import load_manifest

        doc = self.model(model_id)
        listing = doc.get("registry")
        if not listing or not listing.get("registered"):
            raise RegistryMismatch(f"the node lists no registry entry for {model_id}", model_id=model_id,
                                   field="registered")
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        registry = w3.eth.contract(address=to_checksum_address(listing["registry"]),
                                   abi=load_artifact("ModelRegistry").abi)
        onchain_id = bytes.fromhex(str(listing["onchain_id"]).removeprefix("0x"))
        owner, verifier, price, _share, _inputs, _count, active, _params = registry.functions.terms(onchain_id).call()
        model = registry.functions.getModel(onchain_id).call()
        store = LocalStore(self.cache_dir)
        self._fetch_artifact(store, model_id)
        manifest = load_manifest(store, model_id)
        self._fetch_artifact(store, manifest.verifier.bytecode.cid)
        creation = store.get(manifest.verifier.bytecode.cid).decode().strip().removeprefix("0x")
        runtime = bytes(w3.eth.call({"data": "0x" + creation}))  # type: ignore[typeddict-item]
        checks = {
            "chain_id": (w3.eth.chain_id, listing["chain_id"]),
            "onchain_id": (registry.functions.modelIdOf(owner, keccak(text=model_id)).call(), onchain_id),
            "owner": (owner.lower(), str(listing["owner"]).lower()),
            "price": (price, int(doc["price"]["atomic"])),
            "verifier": (verifier.lower(), str((doc.get("verifier") or {}).get("address") or "").lower()),
            "active": (active, bool(doc.get("active", True))),
            "verifier_code": (keccak(bytes(w3.eth.get_code(verifier))), keccak(runtime)),
            "verifier_codehash": (bytes(model[3]), keccak(runtime)),
        }
        for name, (chain_value, published) in checks.items():
            if chain_value != published:
                raise RegistryMismatch(f"the node's listing of {model_id} does not match the registry on chain: "
                                       f"{name} differs", model_id=model_id, field=name)
        return {**listing, "price_atomic": str(price), "active": active, "verifier": verifier}

    def _fetch_artifact(self, store: LocalStore, cid: str) -> None:
        if store.has(cid):
            return
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

    # --- errors ------------------------------------------------------------------------------------
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
        raise _error(str(error.get("code")), str(error.get("message", "")), error.get("details") or {},
                     ProofMarketError, response)


def _read_events(response: httpx.Response, on_token: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """The SSE stream of a generate call: ``on_token`` per token, the ``result`` returned (or ``pending``: the
    job to poll while the payment settles), ``error`` raised."""
    event, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and event:
            doc = jsonlimits.loads(data, what="the node's event")
            if event == "token":
                on_token(str(doc.get("text", "")))
            elif event in ("result", "pending"):
                return event, dict(doc)
            elif event == "error":
                raise _error(str(doc.get("code")), str(doc.get("message", "")), {}, ProofMarketError)
            event, data = "", ""
    raise NodeUnavailable("the node closed the stream before the result")


def _token(access_token: str | None) -> dict[str, str]:
    return {JOB_TOKEN: access_token} if access_token else {}


def _signed_network(payment_signature: str) -> str:
    """The network of a PAYMENT-SIGNATURE this client made (what it signed, whatever the node says)."""
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(payment_signature)
    accepted = getattr(payload, "accepted", None)  # x402 v2 (the only version this client signs)
    return str(accepted.network if accepted is not None else getattr(payload, "network", ""))


def _srs_kind(srs_cid: str) -> str:
    from proofmarket.store.cid import digest_of
    from proofmarket.systems.ezkl.srs import srs_kind

    return srs_kind(digest_of(srs_cid).hex())


def _error(code: str, message: str, details: dict[str, Any], default: type[ProofMarketError],
           response: httpx.Response | None = None) -> ProofMarketError:
    exc = from_code(code, message, details, default=default)
    if response is not None:
        exc.http_status = response.status_code
        required = response.headers.get(PAYMENT_REQUIRED)
        if required:
            exc.headers = {PAYMENT_REQUIRED: required}
    return exc


__all__ = ["Client", "InferenceResult", "GenerationResult"]
