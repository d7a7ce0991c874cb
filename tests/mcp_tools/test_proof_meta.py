"""The proof in MCP's standard place, without a node: what ``read`` refuses, the extension the server advertises,
and discovery's guarantee filter over what registration files declare. (A paid call's _meta, verified from _meta
alone and with each field forged: tests/payments/exact/test_x402_mcp.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from proofmarket.core.errors import UsageError
from proofmarket.sdk.discovery import Found, select
from proofmarket.systems import proof_meta
from proofmarket.systems.ids import ATTESTED_SYSTEM, PROVEN_SYSTEM
from proofmarket.systems.proof_meta import PROOF_META


def test_the_key_is_the_proposals_extension_id_and_the_capability_lists_every_format() -> None:
    # modelcontextprotocol/modelcontextprotocol#3354: result._meta[<extension id>], a vendor-prefixed id
    assert PROOF_META == "io.github.ripple-node-lab/verifiable-tools"
    advertised = proof_meta.capability()
    assert {PROVEN_SYSTEM, ATTESTED_SYSTEM} <= set(advertised["proofFormats"]) and advertised["resultKey"] == PROOF_META


@pytest.mark.parametrize("result", [
    {"content": [], "isError": True},  # an error result: no proof
    {"_meta": {"x402/payment-response": {}}},  # another key only
    {"_meta": {PROOF_META: {"bundle": {}}}},  # fields missing
    {"_meta": {PROOF_META: {f: None for f in proof_meta.FIELDS}}},  # a bundle that is not a document
    [],
])
def test_a_result_without_a_whole_proof_is_refused_in_a_sentence(result: Any) -> None:
    with pytest.raises(UsageError, match="_meta|JSON object"):
        proof_meta.read(result)


def test_an_answer_without_a_bundle_has_no_proof_meta() -> None:
    assert proof_meta.of_answer({"output": [[1.0]]}, "http://node", None) is None


def model(mode: str, declared: str | None) -> dict[str, Any]:
    return {"id": f"{mode}-{declared}", "mode": mode, "task": None, "price_atomic": 1,
            "guarantee": declared, "proof_format": None, "verifier": None}


def test_discovery_by_guarantee_needs_the_declared_guarantee_and_the_listed_mode_to_agree() -> None:
    node = Found(1, "0xowner", "http://x/agent.json", "eip155:1:0xreg", verified=True,
                 models=[model("proven", "proven"), model("proven", None), model("attested", "proven"),
                         model("attested", "attested")])
    proven = select([node], mode="proven")
    assert [m["id"] for m in proven[0].models] == ["proven-proven", "proven-None"]
    attested = select([node], mode="attested")
    assert [m["id"] for m in attested[0].models] == ["attested-attested"]  # declared proven, sold attested: neither
    assert select([node], mode="proven", max_price_atomic=0) == []
