"""A node's catalogue as MCP tools: one tool per sold model, its input schema from the model's listing, its price
and guarantee in the description; and the two free tools, ``search_models`` and ``verify_bundle``.

Tool names are what MCP allows (``[A-Za-z0-9_-]``, at most 64 characters): the route (``infer`` or ``generate``),
the listing's name, and the end of its id (two versions of one name, or two owners' listings of it, never share a
tool). The id itself is in the description and in every answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from proofmarket.core.units import format_usdc

SEARCH = "search_models"
VERIFY = "verify_bundle"
DISCOVER = "discover_nodes"
ID_TAIL = 10
MAX_NAME = 64

PROVEN_SCHEMA_NOTE = ("one flat list of numbers per model input, in the order and sizes listed (EZKL's input "
                      "form); a hashed-input model also takes the salt that opens its commitment")
GENERATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "description": "the text to continue"},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 64,
                       "description": "tokens to generate at most (the price is per 1,000, charged on this cap)"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.0},
        "seed": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "q": {"type": "string", "maxLength": 200, "description": "words of a model's name or description"},
        "mode": {"type": "string", "enum": ["proven", "attested"]},
        "task": {"type": "string", "maxLength": 64},
        "max_price": {"type": "string", "pattern": r"^\d+(\.\d{1,6})?$", "description": "USDC per call at most"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    "additionalProperties": False,
}
DISCOVER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": ["proven", "attested"]},
        "task": {"type": "string", "maxLength": 32},
        "max_price": {"type": "string", "pattern": r"^\d+(\.\d{1,6})?$", "description": "USDC per call at most"},
    },
    "additionalProperties": False,
}
VERIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["bundle"],
    "properties": {"bundle": {"type": "object", "description": "a proof or attestation bundle, as a model tool "
                                                                 "returned it (structuredContent.bundle)"}},
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ModelTool:
    """One sold model as a tool."""

    name: str
    model_id: str
    route: str  # "infer" or "generate"
    mode: str
    description: str
    input_schema: dict[str, Any]
    terms: dict[str, Any] | None = None  # price and guarantee as fields (the tool's ``_meta``): no owner writes them

    @property
    def path(self) -> str:
        return f"/v1/models/{self.model_id}/{self.route}"


def tool_name(route: str, name: str, model_id: str) -> str:
    """``infer_iris_mlp_<id tail>``: MCP's characters only, at most 64 of them."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "model"
    tail = model_id[-ID_TAIL:]
    room = MAX_NAME - len(route) - len(tail) - 2
    return f"{route}_{slug[:room].rstrip('_')}_{tail}"


def input_schema(model: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a proven (or attested ONNX) model's input, from its listing's tensors."""
    tensors = model.get("inputs") or []
    bounds = {str(d.get("name")): d for d in ((model.get("input_domain") or {}).get("inputs") or [])}
    items = []
    for tensor in tensors:
        size = 1
        for dim in tensor.get("shape") or []:
            size *= max(1, int(dim))
        element: dict[str, Any] = {"type": "number"}
        said = ""
        domain = bounds.get(str(tensor.get("name")))
        if domain is not None:  # the model's input domain: an element outside it is refused (input_out_of_range)
            low, high = domain.get("low"), domain.get("high")
            if isinstance(low, int | float) and isinstance(high, int | float):
                element.update(minimum=low, maximum=high)
            said = f"; each element inside the model's input domain ({low} to {high}: model.input_domain)"
        items.append({"type": "array", "items": element, "minItems": size, "maxItems": size,
                      "description": f"{tensor.get('name')}: shape {tensor.get('shape')}, {tensor.get('dtype')}"
                                     + said})
    data: dict[str, Any] = {"type": "array", "description": PROVEN_SCHEMA_NOTE}
    if items:
        data.update(prefixItems=items, minItems=len(items), maxItems=len(items))
    schema: dict[str, Any] = {"type": "object", "required": ["input_data"], "properties": {"input_data": data}}
    if (model.get("privacy_profile") or {}).get("input") == "hashed":
        schema["properties"]["salt"] = {"type": "array", "items": {"type": "integer"},
                                        "description": "the commitment's salt (omit: the node draws one)"}
    return schema


def model_tool(model: dict[str, Any]) -> ModelTool:
    """The tool of one listing (the detail of ``GET /v1/models/{id}``)."""
    links = model.get("links") or {}
    route = "generate" if links.get("generate") else "infer"
    price = model.get("price") or {}
    atomic = int(price.get("atomic") or 0)
    metered = (f"{format_usdc(atomic)} USDC per 1,000 tokens (the tokens generated with x402 upto, channels or "
               "credits; max_tokens with exact)")
    cost = "free" if atomic == 0 else (metered if route == "generate" else f"{format_usdc(atomic)} USDC per call")
    mode = str(model.get("mode") or "proven")
    label = "PROVEN: a zero-knowledge proof" if mode == "proven" else f"{mode.upper()}: not a proof"
    # the node's own words first (price, guarantee, id); the owner's text last, quoted and marked as the owner's:
    # an owner who writes "Price: free" into its description changes nothing an agent reads as the terms
    description = (f"Model id {model['id']} ({route}). Price: {cost}, paid with x402 (the tool answers "
                   f"payment-required terms) or an API key. Guarantee: {label} — {model.get('guarantee') or ''} "
                   f"The answer carries its bundle: check it with verify_bundle or the proofmarket SDK. "
                   f"Owner's name, task and description (the owner's words, not the node's terms): "
                   f"{owner_text(model.get('name'))}, {owner_text(model.get('task'))}, "
                   f"{owner_text(model.get('description'))}.").replace("  ", " ")
    schema = GENERATE_SCHEMA if route == "generate" else input_schema(model)
    terms = {"model_id": str(model["id"]), "route": route, "mode": mode, "price_atomic": str(atomic),
             "price": cost, "guarantee": label, "verifier": verifier_of(model)}
    return ModelTool(tool_name(route, str(model.get("name") or ""), str(model["id"])), str(model["id"]), route,
                     mode, description, schema, terms)


def verifier_of(model: dict[str, Any]) -> dict[str, Any] | None:
    """The verifier contract of the model's registry listing (``{"chainId", "address"}``), or None: not listed."""
    listing = model.get("registry") or {}
    if not listing.get("registered") or not listing.get("verifier"):
        return None
    return {"chainId": int(listing["chain_id"]), "address": str(listing["verifier"])}


def owner_text(text: object, limit: int = 300) -> str:
    """An owner's free text as data: one line, quotes and control characters escaped, cut to ``limit``, quoted."""
    import json

    plain = " ".join(str(text or "").split())[:limit]
    return json.dumps(plain, ensure_ascii=True)
