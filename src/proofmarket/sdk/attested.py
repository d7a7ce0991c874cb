"""What the SDK checks in an attested answer (``Client.generate``), apart from the node's word.

An attested answer is the node's signed statement, not a proof. ``check_generation`` checks that the
attestation's signature holds and binds the bundle's own hashes, that the bundle is of the model asked for
(by the manifest fetched by its CID, never the node's description), that it answers this request (prompt,
max_tokens, temperature, seed when given), that the text returned is the bundle's, and that the payment and
receipt are this client's (payer, amount within the cap, receipt bound to model, input, output and bundle).
With ``reexecute`` the model's files are fetched by CID and one prefill pass re-checks every commitment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofmarket.core.errors import AnswerMismatch
from proofmarket.store import LocalStore


@dataclass(frozen=True)
class GenerationRequest:
    model_id: str
    prompt: str
    max_tokens: int
    temperature: float
    seed: int | None
    max_amount: int | None = None
    payer: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    """An attested generation: text, tokens, the attested bundle (with payment and receipt when paid)."""

    model_id: str
    text: str
    tokens: list[int]
    finish_reason: str
    bundle_cid: str
    bundle: dict[str, Any]
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    mode: str = "attested"
    reexecuted: bool = False
    checks: tuple[str, ...] = ()
    request: GenerationRequest | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        return "reproduced" if self.reexecuted else "signature valid, not re-executed"


def check_generation(bundle_doc: dict[str, Any], answer: dict[str, Any], request: GenerationRequest,
                     store: LocalStore, fetch: Any, *, reexecute: bool, work_dir: Path) -> list[str]:
    from proofmarket.systems import verify_bundle_any
    from proofmarket.systems.attested.documents import AttestedBundle, AttestedManifest

    bundle = AttestedBundle.parse(bundle_doc)
    if bundle.model.id != request.model_id:
        raise AnswerMismatch(f"the bundle is of model {bundle.model.id}, not of {request.model_id} as asked")
    fetch(store, request.model_id)
    manifest = AttestedManifest.model_validate(store.get_json(request.model_id))
    if reexecute:
        for ref in manifest.files.values():
            fetch(store, ref.cid)
    report = verify_bundle_any(bundle, store, reexecute=reexecute, work_dir=work_dir)
    asked = [("prompt", bundle.input.prompt, request.prompt), ("max_tokens", bundle.decoding.max_tokens,
                                                                request.max_tokens),
             ("temperature", bundle.decoding.temperature, request.temperature)]
    if request.seed is not None:
        asked.append(("seed", bundle.decoding.seed, request.seed))
    for what, got, wanted in asked:
        if got != wanted:
            raise AnswerMismatch(f"the bundle's {what} is not the one sent ({got!r} != {wanted!r})")
    if answer.get("text") != bundle.output.text or answer.get("tokens") != bundle.output.tokens:
        raise AnswerMismatch("the text returned is not the one the attestation signs")
    checks = list(report.checks)
    checks.append("it answers this request: model, prompt, max_tokens, temperature" +
                  (", seed" if request.seed is not None else "") + " and the text returned")
    payment = answer.get("payment")
    if request.payer is not None:
        if not payment or str(payment.get("payer", "")).lower() != request.payer.lower():
            raise AnswerMismatch("the answer's payment is not this client's")
        if request.max_amount is not None and int(payment.get("amount", 0)) > request.max_amount:
            raise AnswerMismatch(f"the node charged {payment.get('amount')}, above the cap {request.max_amount}")
        if bundle.receipt is None:
            raise AnswerMismatch("a paid answer must carry the node's receipt")
        checks.append(f"paid {payment['amount']} atomic units by this client, within the cap")
    return checks


def check_onnx_answer(bundle_doc: dict[str, Any], claimed_output: Any, model_id: str | None, inputs: Any,
                      payer: str | None, max_amount: int | None, payment: dict[str, Any] | None,
                      store: LocalStore, fetch: Any, work_dir: Path) -> Any:
    """An attested ONNX answer (``Client.infer`` on an attested model): attestation, hashes, model asked for,
    input sent (parsed as the manifest's inputs), output returned, payment; returns the ``VerifyReport``."""
    import numpy as np

    from proofmarket import models
    from proofmarket.models.spec import ModelInfo, TensorSpec
    from proofmarket.systems import verify_bundle_any
    from proofmarket.systems.attested.documents import AttestedManifest, AttestedOnnxBundle

    bundle = AttestedOnnxBundle.parse(bundle_doc)
    if model_id is not None and bundle.model.id != model_id:
        raise AnswerMismatch(f"the bundle is of model {bundle.model.id}, not of {model_id} as asked")
    fetch(store, bundle.model.id)
    report = verify_bundle_any(bundle, store, work_dir=work_dir)
    manifest = AttestedManifest.model_validate(store.get_json(bundle.model.id))
    if inputs is not None and manifest.onnx is not None:
        info = ModelInfo(path=Path(bundle.model.id), size_bytes=0, sha256="", ir_version=0, opset=0,
                         inputs=tuple(TensorSpec(t.name, tuple(t.shape), t.dtype) for t in manifest.onnx.inputs),
                         outputs=(), operators=frozenset(), is_classifier=False)
        sent = [a.astype(np.float64).ravel().tolist() for a in models.parse_inputs(inputs, info)]
        if sent != bundle.input.values:
            raise AnswerMismatch("the bundle's input is not the input sent")
        report.checks.append("its input is the input sent")
    if claimed_output is not None and claimed_output != bundle.output.values:
        raise AnswerMismatch("the output returned is not the one the attestation signs")
    if payer is not None:
        if not payment or str(payment.get("payer", "")).lower() != payer.lower():
            raise AnswerMismatch("the answer's payment is not this client's")
        if max_amount is not None and int(payment.get("amount", 0)) > max_amount:
            raise AnswerMismatch(f"the node charged {payment.get('amount')}, above the cap {max_amount}")
        if bundle.receipt is None:
            raise AnswerMismatch("a paid answer must carry the node's receipt")
    return report
