"""POST /v1/verify: a proof bundle in, a verdict out.

Decision: a verdict is a successful answer, so both are 200:
``{"valid": true, model_id, output, srs_kind, checks, warnings}`` or ``{"valid": false, code, reason}``
(``code`` is ``proof_invalid`` or ``bundle_invalid``). Errors that leave no verdict keep their status:
a body that is not a JSON object (422 ``invalid_request``), a bundle naming artifacts this node does not
hold (404 ``artifact_not_found``: verify it where the model's artifacts are, or with its CAR file).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from proofmarket.api.deps import ServicesDep
from proofmarket.api.schemas import VerifyInvalid, VerifyValid
from proofmarket.core.errors import ArtifactNotFound, VerificationFailed
from proofmarket.systems import spec_of, verify_bundle_any

router = APIRouter(prefix="/v1", tags=["proofs"])
DEV_SRS_WARNING = "this proof uses a dev SRS (one party knew its secret): for testing only"


@router.post("/verify", operation_id="verify_bundle", response_model=VerifyValid | VerifyInvalid,
             responses={404: {"description": "artifact_not_found"}, 413: {"description": "body_too_large"}})
def verify(bundle: Annotated[dict[str, Any], Body(description="a proof bundle")],
           services: ServicesDep) -> VerifyValid | VerifyInvalid:
    """Check a proof bundle against the model's public artifacts and the Halo2/KZG proof itself. An attested
    bundle: its signature, hashes and bindings only (``reexecuted: false``; nothing is re-run here: use
    ``proofmarket verify BUNDLE --reexecute`` with the weights)."""
    try:
        report = verify_bundle_any(bundle, services.workspace.store)
    except VerificationFailed as exc:
        return VerifyInvalid(code=exc.code, reason=exc.message)
    except ArtifactNotFound as exc:  # no verdict: say which artifact, not where this node keeps its files
        cid = exc.details.get("cid")
        raise ArtifactNotFound(f"this node does not hold artifact {cid} named by the bundle", cid=cid) from exc
    warnings = [DEV_SRS_WARNING] if report.srs_kind == "dev" else []
    warning = spec_of(bundle).warning  # what this system's guarantee is not
    if warning:
        warnings.append(warning)
    return VerifyValid(model_id=report.model_id, output=report.output, srs_kind=report.srs_kind,
                       checks=report.checks, warnings=warnings, mode=report.mode,
                       reexecuted=report.reexecuted, text=report.text)
