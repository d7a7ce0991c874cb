"""The MCP server: a node's catalogue as tools, each call forwarded to the node's own HTTP route.

    list_tools     one tool per sold model (``catalog.model_tool``), ``search_models``, ``verify_bundle``,
                   ``discover_nodes`` (other nodes on chain: ``GET /v1/nodes``)
    call_tool      a model tool -> ``POST /v1/models/{id}/infer|generate`` on the node, with what pays for it:
                   the x402 payment the client put in ``_meta["x402/payment"]`` (``x402.mcp``: exact, or a
                   batch-settlement voucher) as ``PAYMENT-SIGNATURE``; else the caller's API key (its HTTP
                   ``Authorization``/``X-API-Key``, or the key this server was started with) as a bearer token
                   the answer's bundle -> the result's ``_meta[proof_meta.PROOF_META]`` (the proof in MCP's
                   standard place: format, guarantee, model id, bundle CID, verifier, receipt)
                   the node's 402 -> an error result whose ``structuredContent`` is the node's payment-required terms
                   (what ``x402.mcp`` clients pay and call again with); the node's ``PAYMENT-RESPONSE`` -> the
                   result's ``_meta["x402/payment-response"]``
                   an answer -> ``structuredContent``: the node's answer (output or text, bundle, bundle CID,
                   payment, receipt, mode and guarantee), its JSON also as text
                   a 202 (a long proof, a settlement in flight) is followed at its job until it is final

One payment path: the node verifies, proves, settles and books every tool call exactly as the HTTP call it is
(its rails, limits, ledger and receipts), and a refusal keeps the node's error code. A paid call's
Idempotency-Key is derived from its payment, so a client that sends the same paid call again gets the same job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from mcp import types
from mcp.server.lowlevel import Server

from proofmarket import __version__
from proofmarket.mcp_tools.catalog import (
    DISCOVER,
    DISCOVER_SCHEMA,
    SEARCH,
    SEARCH_SCHEMA,
    VERIFY,
    VERIFY_SCHEMA,
    ModelTool,
    model_tool,
)
from proofmarket.systems import proof_meta

log = logging.getLogger("proofmarket.mcp")

PAYMENT_META = "x402/payment"
PAYMENT_RESPONSE_META = "x402/payment-response"
CATALOGUE_TTL_S = 30.0
POLL_S = 0.5
INSTRUCTIONS = ("Verifiable ML inference. Each model tool answers with its output and a bundle: a zero-knowledge "
                "proof (mode proven) or a signed, re-executable attestation (mode attested, not a proof). Paid tools "
                "answer with x402 payment-required terms first; pay them (x402.mcp) or call with an API key. Check a "
                "bundle with verify_bundle, or offline with the proofmarket SDK.")


@dataclass(frozen=True)
class Caller:
    """Who calls, as the transport knows it: their HTTP headers (streamable HTTP) and address; nothing on stdio."""

    headers: dict[str, str]
    address: tuple[str, int] | None = None
    base_url: str | None = None


HttpFor = Callable[[Caller], httpx.AsyncClient]  # an HTTP client to the node on behalf of a caller
Verifier = Callable[[dict[str, Any], httpx.AsyncClient], Awaitable[dict[str, Any]]]


async def node_verifier(bundle: dict[str, Any], http: httpx.AsyncClient) -> dict[str, Any]:
    """The node's own verification (``POST /v1/verify``): what the route on the node uses."""
    response = await http.post("/v1/verify", json=bundle)
    body = response.json()
    if response.status_code >= 400:
        raise ToolError(body)
    return dict(body)


class ToolError(Exception):
    """A call the node refused: its error body is the tool's error result."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.body = body


class _Server(Server[Any, Any]):
    """The MCP server, advertising the verifiable-results extension its model tools' results carry."""

    def create_initialization_options(self, notification_options: Any = None,
                                      experimental_capabilities: dict[str, dict[str, Any]] | None = None) -> Any:
        extensions = {proof_meta.PROOF_META: proof_meta.capability(), **(experimental_capabilities or {})}
        return super().create_initialization_options(notification_options, extensions)


class ToolServer:
    """The catalogue's tools over a node (``http_for``: an HTTP client to it for a caller)."""

    def __init__(self, http_for: HttpFor, *, verify: Verifier = node_verifier, api_key: str | None = None,
                 job_timeout_s: float = 900.0) -> None:
        self.http_for, self.verify, self.api_key, self.job_timeout_s = http_for, verify, api_key, job_timeout_s
        self._tools: dict[str, ModelTool] = {}
        self._listed_at = 0.0
        self._lock = asyncio.Lock()
        self.server: Server[Any, Any] = _Server("proofmarket", version=__version__, instructions=INSTRUCTIONS)
        self.server.list_tools()(self._list_tools)  # type: ignore[no-untyped-call]
        self.server.call_tool(validate_input=False)(self._call_tool)  # the node validates: its codes

    # --- the catalogue --------------------------------------------------------------------------
    async def tools(self, http: httpx.AsyncClient, *, fresh: bool = False) -> dict[str, ModelTool]:
        """The sold models' tools, read from the node at most every ``CATALOGUE_TTL_S`` (``fresh``: now)."""
        async with self._lock:
            if fresh or not self._tools or time.monotonic() - self._listed_at > CATALOGUE_TTL_S:
                self._tools = await _catalogue(http)
                self._listed_at = time.monotonic()
            return dict(self._tools)

    async def _list_tools(self) -> list[types.Tool]:
        async with self._http() as http:
            tools = await self.tools(http)
        listed = [types.Tool(name=t.name, title=t.model_id, description=t.description, inputSchema=t.input_schema,
                             annotations=types.ToolAnnotations(readOnlyHint=True, openWorldHint=True),
                             _meta={"proofmarket": t.terms} if t.terms else None)
                  for t in sorted(tools.values(), key=lambda t: t.name)]
        return [*listed,
                types.Tool(name=SEARCH, description="Search this node's models by words, mode, task or price "
                                                    "(free).", inputSchema=SEARCH_SCHEMA),
                types.Tool(name=DISCOVER, description="Other proofmarket nodes registered on chain (ERC-8004), "
                                                      "with their models, prices and reputation; filters: mode, "
                                                      "task, max_price (free).", inputSchema=DISCOVER_SCHEMA),
                types.Tool(name=VERIFY, description="Verify a bundle a model tool returned: the proof (or the "
                                                    "attestation's signature and hashes) and its artifacts by CID "
                                                    "(free).", inputSchema=VERIFY_SCHEMA)]

    # --- calls ----------------------------------------------------------------------------------
    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        meta = self._meta()
        try:
            async with self._http() as http:
                if name == SEARCH:
                    return _answer(await _search(http, arguments))
                if name == VERIFY:
                    return _answer(await self.verify(dict(arguments["bundle"]), http))
                if name == DISCOVER:
                    found = await http.get("/v1/nodes", params={k: v for k, v in arguments.items() if v is not None})
                    return _answer(_json(found)) if found.status_code == 200 else _refused(_json(found))
                tool = (await self.tools(http)).get(name) or (await self.tools(http, fresh=True)).get(name)
                if tool is None:
                    return _refused({"error": {"code": "unknown_tool", "message": f"no tool named {name!r} on this "
                                                                                  "node: list the tools again"}})
                return await self._call_model(http, tool, arguments, meta.get(PAYMENT_META))
        except ToolError as exc:
            return _refused(exc.body)
        except httpx.HTTPError as exc:
            return _refused({"error": {"code": "node_unavailable", "message": f"the node did not answer: {exc}"}})

    async def _call_model(self, http: httpx.AsyncClient, tool: ModelTool, arguments: dict[str, Any],
                          payment: Any) -> types.CallToolResult:
        headers = self._paying_headers(payment)
        body = dict(arguments)
        if tool.route == "generate":
            body["stream"] = False
        response = await http.post(tool.path, json=body, headers=headers)
        if response.status_code == 402:
            return _payment_required(response)
        answer = _json(response)
        if response.status_code == 202:
            answer = await self._follow(http, tool, answer)
        settled = _header_json(response.headers.get("PAYMENT-RESPONSE"))
        result = _answer({"tool": tool.name, **answer})
        meta: dict[str, Any] = {}
        if settled is not None:
            meta[PAYMENT_RESPONSE_META] = settled
        evidence = proof_meta.of_answer(answer, str(http.base_url), (tool.terms or {}).get("verifier"))
        if evidence is not None:  # the proof in MCP's standard place (proof_meta.py)
            meta[proof_meta.PROOF_META] = evidence
        result.meta = meta or None
        return result

    def _paying_headers(self, payment: Any) -> dict[str, str]:
        caller = self._caller()
        headers: dict[str, str] = {}
        if payment is not None:
            signature = _payment_header(payment)
            headers["PAYMENT-SIGNATURE"] = signature
            headers["Idempotency-Key"] = "mcp-" + hashlib.sha256(signature.encode()).hexdigest()[:40]
            return headers
        headers["Idempotency-Key"] = "mcp-" + uuid.uuid4().hex
        key = caller.headers.get("x-api-key")
        bearer = caller.headers.get("authorization")
        if key:
            headers["X-API-Key"] = key
        elif bearer:
            headers["Authorization"] = bearer
        elif self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _follow(self, http: httpx.AsyncClient, tool: ModelTool, accepted: dict[str, Any]) -> dict[str, Any]:
        """A call answered 202: its job until it is final, then the answer its route would have given."""
        token = accepted.get("access_token")
        auth = {"X-Job-Token": token} if token else {}
        deadline = time.monotonic() + self.job_timeout_s
        while True:
            job = _json(await http.get(f"/v1/jobs/{accepted['id']}", headers=auth))
            if job["status"] == "failed":
                error = job.get("error") or {}
                raise ToolError({"error": {"code": error.get("code", "proving_failed"),
                                           "message": error.get("message", "the call failed: nothing was charged"),
                                           "details": {"job_id": job["id"]}}})
            result = job.get("result") or {}
            if result and job["status"] in ("proved", "settled"):
                break
            if time.monotonic() > deadline:
                raise ToolError({"error": {"code": "timeout", "message": "the call is still running: read its job",
                                           "details": {"job_id": job["id"], "access_token": token}}})
            await asyncio.sleep(POLL_S)
        if tool.route == "generate" or result.get("answer"):
            return dict(result.get("answer") or result)
        bundle = _json(await http.get(f"/v1/proofs/{result['bundle_cid']}", headers=auth))
        return {"job_id": job["id"], "status": job["status"], "model_id": job["model_id"], "mode": tool.mode,
                **result, "bundle": bundle, "access_token": token}

    # --- the transport's view of the call -------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        try:
            meta = self.server.request_context.meta
        except LookupError:
            return {}
        return meta.model_dump(by_alias=True) if meta is not None else {}

    def _caller(self) -> Caller:
        try:
            request = self.server.request_context.request
        except LookupError:
            request = None
        if request is None or not hasattr(request, "headers"):
            return Caller({})
        client = getattr(request, "client", None)
        return Caller({k.lower(): v for k, v in request.headers.items()},
                      (client.host, client.port) if client is not None else None, str(request.base_url))

    def _http(self) -> httpx.AsyncClient:
        return self.http_for(self._caller())


async def _catalogue(http: httpx.AsyncClient) -> dict[str, ModelTool]:
    """Every active listing's tool (one page of summaries at a time, each model's detail for its inputs)."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = _json(await http.get("/v1/models", params=params))
        ids += [str(m["id"]) for m in page["models"] if m.get("active", True)]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    details = await asyncio.gather(*(http.get(f"/v1/models/{model_id}") for model_id in ids))
    tools = [model_tool(_json(d)) for d in details if d.status_code == 200]
    return {t.name: t for t in tools}


async def _search(http: httpx.AsyncClient, arguments: dict[str, Any]) -> dict[str, Any]:
    page = _json(await http.get("/v1/models", params={k: v for k, v in arguments.items() if v is not None}))
    return {"total": page.get("total"),
            "models": [{"id": m["id"], "name": m["name"], "mode": m.get("mode"), "price": m.get("price"),
                        "task": m.get("task"), "description": m.get("description"),
                        "tool": model_tool({**m, "inputs": []}).name} for m in page["models"]]}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"code": "bad_gateway", "message": f"the node answered {response.status_code} without "
                                                            "JSON"}}
    if response.status_code >= 400:
        raise ToolError(body if isinstance(body, dict) and "error" in body else
                        {"error": {"code": "node_error", "message": str(body)[:500]}})
    return dict(body)


def _payment_header(payment: Any) -> str:
    """The ``_meta`` payment as the HTTP header x402 clients send (the SDK's own encoding); a payload the SDK
    cannot read is refused as the node would refuse it."""
    from x402.http import encode_payment_signature_header
    from x402.schemas import PaymentPayload

    try:
        payload = PaymentPayload.model_validate(payment if isinstance(payment, dict) else json.loads(payment))
    except (ValueError, TypeError) as exc:
        message = f"the _meta payment ({PAYMENT_META}) is not an x402 payment payload: {exc}"
        raise ToolError({"error": {"code": "payment_invalid", "message": message}}) from exc
    return str(encode_payment_signature_header(payload))


def _header_json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(base64.b64decode(value))
    except ValueError:
        return None


def _payment_required(response: httpx.Response) -> types.CallToolResult:
    """The node's 402 as ``x402.mcp`` reads it: the terms in ``structuredContent`` (and as text)."""
    terms = _header_json(response.headers.get("PAYMENT-REQUIRED"))
    if not isinstance(terms, dict):  # a 402 without terms: a payment the node refused (its error says why)
        return _refused(_error_body(response))
    refusal = _error_body(response).get("error") or {}
    if refusal.get("message"):
        terms = {**terms, "error": terms.get("error") or refusal["message"]}
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(terms))],
                                structuredContent=terms, isError=True)


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) and "error" in body else {
        "error": {"code": "payment_required", "message": "this tool is paid: pay its terms or use an API key"}}


def _answer(doc: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(doc))],
                                structuredContent=doc, isError=False)


def _refused(body: dict[str, Any]) -> types.CallToolResult:
    """An error result naming the node's code: ``{"error": {"code", "message", "details"}}``, also as text."""
    error = body.get("error") or {}
    text = f"{error.get('code', 'error')}: {error.get('message', '')}".strip()
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structuredContent=body,
                                isError=True)
