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
client is told it is on the devnet (``devnet=True``, and its payment, if any, was on the devnet's chain) or
``allow_dev_srs=True``; the node's word is never taken for the network.

API errors (``{"error": {"code", "message", "details"}}``) are raised as the error class of their code.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from proofmarket.core.errors import AnswerMismatch, NodeUnavailable, PaymentRequired, ProofMarketError, ProvingError
from proofmarket.sdk.attested import GenerationRequest, GenerationResult, check_generation
from proofmarket.sdk.catalogue import Catalogue
from proofmarket.sdk.checks import Request
from proofmarket.sdk.escrow import OnChainRequests
from proofmarket.sdk.money import Money
from proofmarket.sdk.onchain import OnChainChecks
from proofmarket.sdk.results import InferenceResult, inference_result
from proofmarket.sdk.transport import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    NodeSession,
    api_error,
    read_events,
)
from proofmarket.sdk.verifying import Verifying
from proofmarket.sdk.wallet import Credits, Keys, Passes, signed_headers
from proofmarket.store import LocalStore

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


class Client(Verifying, OnChainChecks, OnChainRequests, Catalogue, Money, NodeSession):
    """A node's client: its catalogue, paid inference and generation (verified before they are returned), its
    history, and the on-chain requests and checks (``OnChainRequests``, ``OnChainChecks``, ``Verifying``)."""

    def __init__(self, base_url: str, account: LocalAccount | None = None, *, timeout: float = 900.0,
                 cache_dir: str | Path | None = None, transport: httpx.BaseTransport | None = None,
                 poll_interval_s: float = 0.2, devnet: bool = False, allow_dev_srs: bool = False,
                 gateways: tuple[str, ...] | list[str] = (), wallet: str | None = None, scheme: str = "exact",
                 deposit_calls: int = 20, market: str | None = None, rpc_url: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if scheme not in ("exact", "batch-settlement", "upto", "proven"):
            raise ValueError("scheme is 'exact' (one EIP-3009 payment a call), 'batch-settlement' (a channel), "
                             "'upto' (a generation pays the tokens it produced: Permit2, see approve_permit2) or "
                             "'proven' (a payment only a proof the chain verified can capture)")
        if scheme == "proven" and not (market and rpc_url):
            raise ValueError("scheme='proven' needs market= (the InferenceMarket of your chain's deployment, never the "
                             "node's word) and rpc_url= (yours: the verifiers that could settle the payment are "
                             "checked to be the model's own before it is signed)")
        # how calls are paid: an EIP-3009 authorization each, or vouchers on a channel (``sdk/channel.py``)
        self.scheme, self.deposit_calls, self.market, self.rpc_url = scheme, deposit_calls, market, rpc_url
        self._channel: Any = None
        # the address signed requests speak for: the account's own, or a contract wallet the account owns (the
        # node asks the wallet on chain: ERC-1271, ERC-6492); ``sign_in`` makes one session of them
        self.wallet = wallet
        self.session: tuple[dict[str, str], float] | None = None
        self.gateways = tuple(gateways)  # IPFS gateways for artifacts the node does not serve (or a node gone)
        self.account = account
        self.devnet, self.allow_dev_srs = devnet, allow_dev_srs  # the caller's word, never the node's
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".proofmarket" / "client-cache"
        self.poll_interval_s = poll_interval_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._terms: dict[str, tuple[str, int]] = {}  # model id -> (PAYMENT-REQUIRED header, cap it was paid with)
        # the account's wallet on the node (signed requests; purchases paid like calls): ``proofmarket.sdk.wallet``
        self.keys, self.credits, self.passes = Keys(self), Credits(self), Passes(self)

    def sign_in(self, lifetime_s: int = 3600) -> dict[str, Any]:
        """Sign in once with Ethereum (EIP-4361, resource ``proofmarket:session``): every signed request of this
        client then carries that message until it expires (at most the node's ``max_session_s``). Returns the
        node's word on who signed in (``GET /v1/auth/whoami``)."""
        from proofmarket.sdk.wallet import siwe_signed

        headers = siwe_signed(self, "proofmarket:session", lifetime_s)
        self.session = (headers, time.time() + lifetime_s)
        return dict(self._json(self._get("/v1/auth/whoami", headers=headers)))

    def __enter__(self) -> Client:
        return self

    def close(self) -> None:
        self._http.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inference ---------------------------------------------------------------------------------
    def infer(self, model_id: str, inputs: dict[str, Any], *, max_amount: int | None = None,
              idempotency_key: str | None = None, verify: bool = True, batch: bool = False) -> InferenceResult:
        """Run ``model_id`` on ``inputs`` and return the output with its proof; pay over x402 if asked.
        ``batch=True``: allow the call to share a proof with other callers who allowed it (a batched proof shows
        every slot's public input and output to each of them); by default it is proven alone.

        The result is checked by ``verify`` against this request before it is returned (``verify=False``
        returns the node's answer unchecked: ``checks`` is then empty).

        Every call carries an Idempotency-Key (``idempotency_key``, or a fresh one): when the node cannot be
        reached or does not answer in time, the ``NodeUnavailable`` raised names it in
        ``details["idempotency_key"]``; calling again with it returns the same job and pays at most once.
        """
        key = idempotency_key or uuid.uuid4().hex
        try:
            result = self._infer(model_id, inputs, max_amount, key, batch)
            if not batch and isinstance(result.bundle, dict) and result.bundle.get("batch"):
                raise AnswerMismatch("the node proved this call in a proof shared with other calls although you "
                                     "did not allow batching", check="batch")
            if not verify:
                return result
            report = self.verify(result)
        except NodeUnavailable as exc:
            exc.details.setdefault("idempotency_key", key)
            raise
        return dataclasses.replace(result, output=report.output, checks=tuple(report.checks))

    def infer_latest(self, owner: str, name: str, inputs: dict[str, Any], **options: Any) -> InferenceResult:
        """``infer`` on the newest sold version of OWNER/NAME; ``result.model_id`` is the id it used."""
        return self.infer(self.latest(owner, name), inputs, **options)

    def _infer(self, model_id: str, inputs: dict[str, Any], max_amount: int | None, key: str,
               batch: bool = False) -> InferenceResult:
        url = f"/v1/models/{model_id}/infer" + ("?batch=allow" if batch else "")
        headers = {"Idempotency-Key": key}
        known = self._terms.get(model_id) if self.account is not None else None
        upfront: str | None = None
        cap: int | None = None
        commitment = self._commitment(model_id, inputs) if self.scheme == "proven" else None
        if known is not None and (max_amount is None or max_amount == known[1]):
            upfront = headers[PAYMENT_SIGNATURE] = self._pay(*known, commitment=commitment,  # terms seen: pay now
                                                             model_id=model_id)
            cap = known[1]
        response = self._paid_post(url, inputs, headers)
        if response.status_code == 402 and PAYMENT_REQUIRED in response.headers:
            self._terms.pop(model_id, None)
            cap = max_amount if max_amount is not None else int(self.model(model_id)["price"]["atomic"])
            required = response.headers[PAYMENT_REQUIRED]
            # A refused up-front payment stays signed: the retry reuses its nonce, so only one can be executed.
            headers[PAYMENT_SIGNATURE] = self._pay(required, cap, same_nonce_as=upfront, commitment=commitment,
                                                   model_id=model_id)
            response = self._paid_post(url, inputs, headers)
            if response.status_code == 402 and self._resynced(response):  # the node corrected the channel's state
                headers[PAYMENT_SIGNATURE] = self._pay(response.headers[PAYMENT_REQUIRED], cap)
                response = self._paid_post(url, inputs, headers)
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
        return inference_result(body, response.headers.get(PAYMENT_RESPONSE), request)

    # --- attested generation --------------------------------------------------------------------------
    def generate(self, model_id: str, prompt: str, *, max_tokens: int = 64, temperature: float = 0.0,
                 seed: int | None = None, max_amount: int | None = None, reexecute: bool = False,
                 verify: bool = True, on_token: Callable[[str], None] | None = None) -> GenerationResult:
        """Generate text with an attested model; pay over x402 if asked (price per 1,000 output tokens: with
        ``scheme="upto"`` or a channel the tokens generated are charged, with ``exact`` the ``max_tokens`` cap).
        The answer is an attestation, not a proof: it is returned once its
        signature and hashes hold and it answers this request (``check_generation``); ``reexecute`` also
        fetches the weights by CID and re-checks every commitment with one prefill pass. ``on_token``: stream
        (Server-Sent Events), called with each token's text as it is generated (unchecked until the end).
        A payment still settling (202, or the stream's ``pending`` event) is followed at its job until the node
        delivers the answer (settled) or fails it (nothing charged: its error is raised)."""
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
            raise api_error(str(error.get("code", "payment_settlement_failed")),
                         str(error.get("message", "the call was not settled")), {"job_id": job["id"]},
                         ProofMarketError)
        return dict(answer)

    def _generate_call(self, url: str, body: dict[str, Any], headers: dict[str, str],
                       on_token: Callable[[str], None] | None) -> tuple[int, httpx.Headers, dict[str, Any]]:
        """One generate call: (status, headers, answer); an error answer raises, except a 402 with terms to an
        unpaid call (a paid call answered 402 raises: its payment was refused)."""
        unpaid = PAYMENT_SIGNATURE not in headers
        if on_token is None:
            response = self._paid_post(url, body, headers)
            if response.status_code == 402 and PAYMENT_REQUIRED in response.headers and unpaid:
                return 402, response.headers, {}
            return response.status_code, response.headers, dict(self._json(response))
        try:
            with self._http.stream("POST", url, json=body, headers={**headers, "Accept": "text/event-stream"}) as r:
                if r.status_code != 200:
                    r.read()
                    if r.status_code == 402 and PAYMENT_REQUIRED in r.headers and unpaid:
                        return 402, r.headers, {}
                    self._json(r)
                event, answer = read_events(r, on_token)
                if self._channel is not None and not unpaid:
                    self._channel.answered(headers[PAYMENT_SIGNATURE], r.headers.get(PAYMENT_RESPONSE))
                return (202 if event == "pending" else 200), r.headers, answer
        except httpx.TransportError as exc:
            raise NodeUnavailable(f"cannot reach the node at {self.base_url}: {exc}", url=self.base_url) from exc

    def history(self, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
        """This account's paid calls (``jobs``) and escrow requests (``requests``) on the node, newest first, each
        with its access token: one signature naming the node's signer address (``address_signature`` in its
        service manifest), fresh for one minute, one read of each list (``proofmarket.core.address_signature``)."""
        if self.account is None:
            raise PaymentRequired("reading a history is signed: create the Client with an account")
        headers = signed_headers(self, "history")
        address = self.wallet or self.account.address
        jobs = self._json(self._get(f"/v1/jobs?payer={address}&limit={limit}", headers=headers))["items"]
        response = self._get(f"/v1/requests?consumer={address}&limit={limit}", headers=headers)
        requests = [] if response.status_code == 404 else self._json(response)["items"]  # 404: no escrow market
        return {"jobs": list(jobs), "requests": list(requests)}

    def _paid_post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        """POST a call; a channel's answer moves its state on (the node's charged total)."""
        response = self._post(url, json=body, headers=headers)
        if self._channel is not None and PAYMENT_SIGNATURE in headers and response.status_code < 400:
            self._channel.answered(headers[PAYMENT_SIGNATURE], response.headers.get(PAYMENT_RESPONSE))
        return response

    def _resynced(self, response: httpx.Response) -> bool:
        return (self._channel is not None and PAYMENT_REQUIRED in response.headers
                and bool(self._channel.resynced(response.headers[PAYMENT_REQUIRED])))

    def channel_payer(self) -> Any:
        """The client's channel payer (``scheme="batch-settlement"``): its state is kept under the cache."""
        if self._channel is None:
            if self.account is None:
                raise PaymentRequired("paying from a channel needs an account: create the Client with one")
            from proofmarket.sdk.channel import ChannelPayer

            self._channel = ChannelPayer(self.account, deposit_calls=self.deposit_calls,
                                         storage_dir=self.cache_dir / "channels" / self.account.address.lower())
        return self._channel

    def channels(self) -> list[dict[str, Any]]:
        """This account's channels on the node (signed, purpose ``channels``): balance, charged, claimed."""
        if self.account is None:
            raise PaymentRequired("a payer's channels are signed: create the Client with an account")
        address = self.wallet or self.account.address
        found = self._json(self._get("/v1/channels", params={"payer": address},
                                     headers=signed_headers(self, "channels")))
        return list(found.get("channels") or [])

    def refund_channel(self) -> dict[str, Any]:
        """Ask the node for a cooperative refund of this account's channel: the charged total is claimed and the
        rest goes back to the account on chain (``success``, ``transaction``)."""
        return dict(self.channel_payer().refund(self.base_url))

    def _commitment(self, model_id: str, inputs: dict[str, Any]) -> str:
        """This call's input commitment, computed here from the model's manifest (fetched by CID): what a proven
        payment signs, never the node's word."""
        doc = {k: v for k, v in inputs.items() if k != "salt"}
        return str(self.input_commitment(model_id, doc, inputs.get("salt"))["commitment"])

    def _pay(self, required_header: str, cap: int, same_nonce_as: str | None = None,
             commitment: str | None = None, model_id: str | None = None) -> str:
        from x402.http import decode_payment_required_header

        if self.scheme == "batch-settlement":
            return str(self.channel_payer().pay(required_header, cap))

        from proofmarket.sdk.pay import nonce_of, payment_signature_header  # x402's client: loaded to pay

        if self.account is None:
            raise PaymentRequired("this node asks for a payment: create the Client with an account to pay")
        required = decode_payment_required_header(required_header)
        assets = [(str(a.network), a.asset) for a in getattr(required, "accepts", [])]
        offered = {a.scheme for a in getattr(required, "accepts", [])}
        if self.scheme == "upto" and "upto" not in offered:
            scheme = "exact"  # a call that is not metered (inference) is paid with exact
        elif self.scheme == "proven" and "proven" not in offered:
            raise PaymentRequired("this node does not offer proven payments for this model (it is not sold on a "
                                  "registry listing, or the node turned them off): pay with scheme='exact'")
        elif self.scheme == "proven":
            from proofmarket.sdk.proven_check import check_proven_terms

            terms = next(a for a in required.accepts if a.scheme == "proven")
            assert self.market is not None and self.rpc_url is not None
            check_proven_terms(self, str(model_id), terms, self.market, self.rpc_url)
            scheme = "proven"
        else:
            scheme = self.scheme
        nonce = nonce_of(same_nonce_as) if same_nonce_as and scheme == "exact" else None
        return payment_signature_header(self.account, required_header, cap, assets=assets, nonce=nonce,
                                        scheme=scheme, commitment=commitment, market=self.market)

    def _from_job(self, job: dict[str, Any], request: Request, access_token: str | None) -> InferenceResult:
        if job["status"] == "failed":
            error = job.get("error") or {}
            raise api_error(error.get("code", "proving_failed"), error.get("message", "the job failed"),
                            {"job_id": job["id"]}, ProvingError)
        result = job["result"] or {}
        bundle = self.proof(result["bundle_cid"], access_token)
        body = {"job_id": job["id"], "model_id": job["model_id"], "status": job["status"], **result,
                "bundle": bundle, "access_token": access_token}
        return inference_result(body, None, request)


def _signed_network(payment_signature: str) -> str:
    """The network of a PAYMENT-SIGNATURE this client made (what it signed, whatever the node says)."""
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(payment_signature)
    accepted = getattr(payload, "accepted", None)  # x402 v2 (the only version this client signs)
    return str(accepted.network if accepted is not None else getattr(payload, "network", ""))


__all__ = ["Client", "InferenceResult", "GenerationResult"]
