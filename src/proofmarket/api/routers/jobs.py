"""/v1/jobs/{id}: a job's state, and its result once proved (and settled, when paid): to its token holder only.

The job's ``access_token`` (``X-Job-Token``) or the admin token opens it; any other request gets the
answer of a job that does not exist (404 ``unknown_job``), so job ids reveal nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from proofmarket.api.deps import ServicesDep
from proofmarket.api.schemas import JobPublic
from proofmarket.api.security import CallerDep
from proofmarket.api.views import job_public
from proofmarket.core.errors import Unauthorized, UnknownJob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ADDRESS = r"^0x[0-9a-fA-F]{40}$"


class JobPage(BaseModel):
    items: list[JobPublic]
    next_offset: int | None


@router.get("", operation_id="list_jobs", response_model=JobPage,
            responses={401: {"description": "unauthorized: no valid X-Address signature for this payer"}})
def list_jobs(request: Request, services: ServicesDep, caller: CallerDep,
              payer: Annotated[str, Query(pattern=ADDRESS, description="the paying address")],
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> JobPage:
    """The paid jobs of ``payer``, newest first, each with its ``access_token`` (it opens the job and its
    bundle): for a request signed by that address (``X-Address`` headers, see ``api/signed.py``) or the admin."""
    from proofmarket.api.signed import signed_address

    if not caller.admin and signed_address(request, "history") != payer.lower():
        raise Unauthorized("the address signature is not the payer's")
    rows = services.jobs.jobs.by_payer(payer, limit + 1, offset)
    items = [job_public(row, services.tokens.job(row.id)) for row in rows[:limit]]
    return JobPage(items=items, next_offset=offset + limit if len(rows) > limit else None)


@router.get("/{job_id}", operation_id="get_job", response_model=JobPublic,
            responses={404: {"description": "unknown_job (also: no valid X-Job-Token for it)"}})
def get_job(job_id: str, services: ServicesDep, caller: CallerDep) -> JobPublic:
    """Poll a job (send its ``access_token`` as ``X-Job-Token``): queued, running, proved, settled or failed
    (with its error code); its result once proved, and settled when paid."""
    if not (caller.admin or services.tokens.opens_job(caller.token, job_id)):
        raise UnknownJob(f"there is no job {job_id} readable with this request (send its access_token as "
                         "X-Job-Token)", job_id=job_id)
    return job_public(services.jobs.get(job_id))
