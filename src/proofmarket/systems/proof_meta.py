"""Proofs in MCP's standard place: a model tool's result carries its evidence under one ``_meta`` key, the extension
id of MCP's proposal for verifiable tool results (modelcontextprotocol/modelcontextprotocol#3354: evidence in
``result._meta[<extension id>]``, the extension advertised in the server's capabilities), so that an MCP client finds
and checks it without reading the result's body or knowing the node beforehand:

    result._meta["io.github.ripple-node-lab/verifiable-tools"] = {
        "proofFormat": the bundle's proof system ("ezkl-halo2-kzg-bn254", "proofmarket-attested-v1", ...)
        "guarantee":   "proven" (a zero-knowledge proof) or "attested" (signed commitments: not a proof)
        "statement":   what the bundle guarantees, in one sentence (the system's own)
        "modelId":     the model's id: the CID of its manifest, which commits to the circuit and its keys
        "bundleCid":   the bundle's CID (its content address without payment and receipt)
        "bundle":      the bundle itself; a paid call's with its payment and the node's signed receipt, which
                       binds the payment to the model, the input commitment, the output and the bundle CID
        "receipt":     that receipt, or null (a free call): verified with the bundle
        "verifier":    {"chainId", "address"}: the verifier contract of the model's registry listing, or null
        "node":        the node's URL: the public artifacts the bundle names are fetched from
                       ``{node}/v1/artifacts/{cid}``, each checked against its CID (the URL needs no trust)
    }

``of_answer`` builds it from the node's answer; ``read`` takes it back from a tool result (an ``mcp`` result object or
its JSON); ``check_fields`` holds every field above against the bundle (a field the bundle contradicts fails: none
is only shown). ``proofmarket.sdk`` verifies the bundle itself (``Client.verify_tool_result``).
"""

from __future__ import annotations

from typing import Any

from proofmarket.core.errors import AnswerMismatch, UsageError

PROOF_META = "io.github.ripple-node-lab/verifiable-tools"
VERSION = 1
FIELDS = ("proofFormat", "guarantee", "statement", "modelId", "bundleCid", "bundle", "receipt", "verifier", "node")


def capability() -> dict[str, Any]:
    """The extension as the server advertises it (``capabilities.experimental``): the formats its results carry."""
    from proofmarket.systems.registry import specs

    return {"version": VERSION, "proofFormats": sorted(s.system for s in specs()), "resultKey": PROOF_META}


def of_answer(answer: dict[str, Any], node_url: str, verifier: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``_meta`` evidence of a model tool's answer (None when the answer carries no bundle)."""
    from proofmarket.systems.registry import spec, system_of

    bundle = answer.get("bundle")
    if not isinstance(bundle, dict):
        return None
    for part in ("payment", "receipt"):  # the paid bundle: the payment and the receipt that signs it and the proof
        if bundle.get(part) is None and answer.get(part) is not None:
            bundle = {**bundle, part: answer[part]}
    system = system_of(bundle)
    return {"version": VERSION, "proofFormat": system, "guarantee": spec(system).mode,
            "statement": spec(system).guarantee,
            "modelId": str((bundle.get("model") or {}).get("id") or answer.get("model_id") or ""),
            "bundleCid": answer.get("bundle_cid"), "bundle": bundle, "receipt": bundle.get("receipt"),
            "verifier": verifier, "node": node_url.rstrip("/")}


def read(result: Any) -> dict[str, Any]:
    """The evidence of a tool result: an ``mcp`` ``CallToolResult`` (its ``meta``) or its JSON (``_meta``).
    ``UsageError`` when the result carries none (an error result, a free tool, another server's result)."""
    if hasattr(result, "model_dump"):
        result = result.model_dump(by_alias=True, mode="json")
    if not isinstance(result, dict):
        raise UsageError("a tool result is a JSON object")
    meta = (result.get("_meta") or {}).get(PROOF_META)
    if not isinstance(meta, dict):
        raise UsageError(f"the tool result carries no proof in _meta[{PROOF_META!r}] (an error result, or not a "
                         "model tool's answer)")
    missing = [f for f in FIELDS if f not in meta]
    if missing or not isinstance(meta.get("bundle"), dict):
        raise UsageError(f"the tool result's _meta proof lacks {', '.join(missing) or 'its bundle'}")
    return dict(meta)


def check_fields(meta: dict[str, Any], model_id: str, mode: str) -> list[str]:
    """Hold each field against the bundle, which was verified (its model ``model_id``, its ``mode``): raise
    ``AnswerMismatch`` naming the first that differs; the checks, in words."""
    from proofmarket.systems.receipts import pure_bundle_cids
    from proofmarket.systems.registry import parse_bundle, spec, system_of

    bundle = meta["bundle"]
    system = system_of(bundle)
    bound = [("proofFormat", meta["proofFormat"], system), ("guarantee", meta["guarantee"], spec(system).mode),
             ("guarantee", meta["guarantee"], mode), ("modelId", meta["modelId"], model_id),
             ("receipt", meta["receipt"], bundle.get("receipt")),
             ("statement", meta["statement"], spec(system).guarantee)]
    for name, said, actual in bound:
        if said != actual:
            raise AnswerMismatch(f"the _meta proof's {name} ({said!r}) is not the verified bundle's ({actual!r})",
                                 check=name)
    cids = pure_bundle_cids(parse_bundle(bundle))
    if meta["bundleCid"] not in cids:
        raise AnswerMismatch(f"the _meta proof's bundleCid {meta['bundleCid']} is not the CID of its bundle "
                             f"({cids[0]})", check="bundleCid")
    checks = [f"_meta: proofFormat {system}, guarantee {mode} (and its statement), modelId and bundleCid are the "
              "verified bundle's"]
    if meta["receipt"] is not None:
        from proofmarket.systems.receipts import verify_receipt

        signer = verify_receipt(meta["receipt"])
        checks.append(f"_meta: the receipt is the bundle's, its signature and bindings verified with it (signed by "
                      f"{signer}; the payment it names is the node's word until read on chain)")
    return checks


def spec_mode(bundle: dict[str, Any]) -> str:
    """The guarantee of a bundle's system (``proven``, ``attested``, ...)."""
    from proofmarket.systems.registry import spec, system_of

    return spec(system_of(bundle)).mode


def check_verifier(meta: dict[str, Any], found: dict[str, Any]) -> str:
    """The verifier ``meta`` names is the one the registry lists and ran the proof through (``found``: the on-chain
    check's ``chain_id``, ``verifier``, ``gas``): ``AnswerMismatch`` unless it is; the check, in words."""
    verifier = meta.get("verifier") or {}
    said = (int(verifier.get("chainId") or 0), str(verifier.get("address") or "").lower())
    if said != (int(found["chain_id"]), str(found["verifier"]).lower()):
        raise AnswerMismatch(f"the _meta proof names verifier {said[1]} on chain {said[0]}; the registry lists "
                             f"{found['verifier']} on chain {found['chain_id']}", check="verifier")
    return (f"_meta: verifyProof on chain {found['chain_id']} by {found['verifier']}, the verifier it names and the "
            f"registry lists for this model: true ({int(found['gas']):,} gas)")
