"""/v1/jobs/{id}: a job's state, and its result once proved (and settled, when paid)."""

from __future__ import annotations

from fastapi import APIRouter

from proofmarket.api.deps import ServicesDep
from proofmarket.api.schemas import JobPublic
from proofmarket.api.views import job_public

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", operation_id="get_job", response_model=JobPublic,
            responses={404: {"description": "unknown_job"}})
def get_job(job_id: str, services: ServicesDep) -> JobPublic:
    """Poll a job: queued, running, proved, settled or failed (with its error code)."""
    return job_public(services.jobs.get(job_id))
