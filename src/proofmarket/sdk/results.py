"""What the SDK returns: a proved (or attested ONNX) inference, and an attested generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proofmarket.sdk.attested import GenerationResult
from proofmarket.sdk.checks import Request


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


def inference_result(body: dict[str, Any], payment_response: str | None, request: Request) -> InferenceResult:
    """The result of an infer answer (or of its job): the paid bundle is the proof with payment and receipt."""
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


__all__ = ["InferenceResult", "GenerationResult", "inference_result"]
