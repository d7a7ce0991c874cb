"""/v1/jobs/{id}: a job's state, and its result once proved (and settled, when paid): to its token holder only.

The job's ``access_token`` (``X-Job-Token``) or the admin token opens it; any other request gets the
answer of a job that does not exist (404 ``unknown_job``), so job ids reveal nothing.
"""

from __future__ import annotations

from fastapi import APIRouter

from proofmarket.api.deps import ServicesDep
from proofmarket.api.schemas import JobPublic
from proofmarket.api.security import CallerDep
from proofmarket.api.views import job_public
from proofmarket.jobs.errors import UnknownJob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", operation_id="get_job", response_model=JobPublic,
            responses={404: {"description": "unknown_job (also: no valid X-Job-Token for it)"}})
def get_job(job_id: str, services: ServicesDep, caller: CallerDep) -> JobPublic:
    """Poll a job (send its ``access_token`` as ``X-Job-Token``): queued, running, proved, settled or failed
    (with its error code); its result once proved, and settled when paid."""
    if not (caller.admin or services.tokens.opens_job(caller.token, job_id)):
        raise UnknownJob(f"there is no job {job_id} readable with this request (send its access_token as "
                         "X-Job-Token)", job_id=job_id)
    return job_public(services.jobs.get(job_id))
