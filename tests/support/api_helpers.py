"""Helpers shared by the API tests (a module, not conftest, so test files can import it)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compiled import compile_mlp  # noqa: F401 (one compile helper for every world)
from fastapi import FastAPI

from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.tuning import Candidate

# one grid point keeps the suite fast: this one gives logrows 9 for the MLP within the accuracy bound
MLP_CANDIDATE = Candidate(256, 2, 7, 4)
HASHED_MLP_CANDIDATE = Candidate(256, 3, 7, 1)  # hashed inputs and weights: the salt fits at scale 7
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
AppFactory = Callable[..., FastAPI]


def clear_env() -> None:
    """Tests start from a clean environment: no PROOFMARKET_* variable leaks in."""
    for name in [n for n in os.environ if n.startswith("PROOFMARKET_")]:
        del os.environ[name]


def node_settings(home: Path, db: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "database_url": f"sqlite:///{db}", "prover_workers": 1,
                              "infer_wait_s": 120.0, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def mlp_input() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sample_path("mlp", "input").read_text())
    return doc


def error_of(response: Any) -> dict[str, Any]:
    """The error object of a response, after checking the one error shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    error: dict[str, Any] = body["error"]
    return error


def owner_headers(client: Any, job_id: str) -> dict[str, str]:
    """The X-Job-Token header of the job's owner (the token its infer or upload answer carried)."""
    return {"X-Job-Token": client.app.state.services.tokens.job(job_id)}


def wait_job(client: Any, job_id: str, timeout_s: float = 120.0, token: str | None = None) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} as its owner until the job is final (settled, failed, or proved without a payment)."""
    import time

    headers = {"X-Job-Token": token} if token else owner_headers(client, job_id)
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("failed", "settled") or (job["status"] == "proved" and job["result"] is not None):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout_s} s"
        time.sleep(0.05)
