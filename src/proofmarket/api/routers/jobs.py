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
            responses={401: {"description": "unauthorized: no valid X-Address signature for this payer (or no admin "
                                            "token to list every call)"}})
def list_jobs(request: Request, services: ServicesDep, caller: CallerDep,
              payer: Annotated[str | None, Query(pattern=ADDRESS, description="the paying address")] = None,
              system: Annotated[str | None, Query(max_length=64, description="only calls on this proof system")] = None,
              rail: Annotated[str | None, Query(max_length=32, description="only calls paid on this rail")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> JobPage:
    """Calls, newest first, each with its ``access_token`` (it opens the call and its bundle). With ``payer``: that
    payer's calls, for a request signed by that address (``X-Address`` headers, see ``api/signed.py``) or the admin;
    without: every call (any system, any rail: free, x402, escrow, court), for the admin."""
    from proofmarket.api.signed import signed_address

    if payer is None:
        if not caller.admin:
            raise Unauthorized("listing every call needs the admin token; a payer lists its own with ?payer=")
        rows = services.calls.repo.recent(offset + limit + 1, system=system, rail=rail)[offset:]
    else:
        if not caller.admin and signed_address(request, "history") != payer.lower():
            raise Unauthorized("the address signature is not the payer's")
        rows = [r for r in services.calls.repo.by_payer(payer, limit + 1, offset)
                if (system is None or r.system == system) and (rail is None or r.rail == rail)]
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
    return job_public(services.calls.get(job_id), store=services.workspace.store)


# /v1/calls: the same calls under the lifecycle's name (/v1/jobs stays for existing clients)
calls_router = APIRouter(prefix="/v1/calls", tags=["jobs"])
calls_router.add_api_route("", list_jobs, methods=["GET"], operation_id="list_calls", response_model=JobPage)
calls_router.add_api_route("/{job_id}", get_job, methods=["GET"], operation_id="get_call", response_model=JobPublic)
