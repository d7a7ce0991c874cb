"""The attested system's documents: its bundles parsed (version checked) and verified (signature, hashes and
bindings; with ``reexecute`` one prefill pass, or the ONNX model, against every commitment). Pydantic only: no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proofmarket.core.errors import BundleError
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested.documents import VERSION, AttestedBundle, AttestedOnnxBundle
from proofmarket.systems.port import VerifyReport
from proofmarket.systems.receipts import check_receipt

GUARANTEE = ("attestation, not a proof: the node signs commitments to the weights, input, output and activations; "
             "anyone with the weights can re-execute and check it; only as strong as those re-checks and the stake "
             "behind the node")


def parse_bundle(doc: dict[str, Any]) -> AttestedBundle | AttestedOnnxBundle:
    if doc.get("version") != VERSION:
        raise BundleError(f"unsupported attested bundle version {doc.get('version')!r} (this reads {VERSION})")
    return AttestedOnnxBundle.parse(doc) if doc.get("kind") == "onnx" else AttestedBundle.parse(doc)


def verify(bundle: Any, store: ArtifactStore, *, reexecute: bool = False,
           model_dir: Path | None = None, work_dir: Path | None = None, threads: int | None = None) -> VerifyReport:
    from proofmarket.systems.attested import service

    if isinstance(bundle, dict):  # the document as stored or sent: parsed here, as the port takes either
        bundle = parse_bundle(bundle)
    checks = service.check_bundle(bundle, store)
    if bundle.receipt is not None:
        checks.append(check_receipt(bundle))
    if reexecute:
        result = service.reexecute(bundle, store, work_dir or Path(".proofmarket-recheck"), model_dir, threads)
        checks.append(f"re-executed: {result.summary()} (one prefill pass, {result.seconds * 1000:.0f} ms)")
    else:
        checks.append("nothing was re-executed: run verify --reexecute to check the commitments against the weights")
    text = getattr(bundle.output, "text", None)
    output = [] if text is not None else bundle.output.values
    return VerifyReport(True, bundle.model.id, output, "none", checks, mode="attested", reexecuted=reexecute,
                        text=text)
