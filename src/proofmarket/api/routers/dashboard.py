"""/dashboard: one read-only HTML page for operators and curious consumers (``/`` redirects to it).

Plain server-rendered HTML with inline CSS, refreshed every 10 s by a meta tag: nothing is fetched from
elsewhere and no script runs. Every piece of text that comes from the database is escaped. The page is
public: it shows counts, models, statuses, times and error codes, never a job id, a bundle CID, a proof
link or an error message (results belong to their payers; see ``/v1/jobs/{id}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from proofmarket.api.deps import ServicesDep
from proofmarket.api.routers.court import court_of
from proofmarket.api.routers.meta import node_health
from proofmarket.api.routers.requests import escrow_of
from proofmarket.api.schemas import Price
from proofmarket.core.errors import ProofMarketError
from proofmarket.db import CallRow, EscrowRequestRow
from proofmarket.node.services import NodeServices
from proofmarket.systems import spec_of

router = APIRouter(tags=["meta"])
RECENT = 20
STATUS_CLASS = {"ok": "ok", "settled": "ok", "proved": "ok", "fulfilled": "ok", "failed": "bad", "degraded": "bad"}
CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}
h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse}td,th{padding:.25em .7em;text-align:left;
border-bottom:1px solid #ddd}th{background:#f4f4f4}code{font-size:.95em}.ok{color:#177a2f;font-weight:600}
.bad{color:#b3261e;font-weight:600}.idle{color:#777}.warn{background:#fff3cd;padding:0 .3em}.empty{color:#777}"""


@dataclass
class DashboardView:
    node: dict[str, Any]
    models: list[dict[str, Any]]
    jobs: list[CallRow]
    counts: dict[str, int]
    escrow: list[EscrowRequestRow] | None  # None: the escrow watcher is off
    notes: list[str] = field(default_factory=list)
    court: list[EscrowRequestRow] | None = None  # None: no court watcher


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard", operation_id="dashboard", response_class=HTMLResponse)
def dashboard(request: Request, services: ServicesDep) -> HTMLResponse:
    """A read-only HTML page: node status, models served, recent jobs, job counts, escrow requests."""
    return HTMLResponse(render(gather(services, request)))


def gather(services: NodeServices, request: Request) -> DashboardView:
    health = node_health(services)
    payments = services.payments.describe()
    chain = payments.get("chain") or {}
    node = {**health.model_dump(exclude={"jobs"}), "x402": bool(payments.get("x402")),
            "chain_id": chain.get("chain_id"), "network": payments.get("network")}
    if not health.database:
        return DashboardView(node, [], [], {}, None, ["the database is unreachable"])
    models, notes = [], []
    for row in services.catalog.repo.list():
        try:
            m = services.catalog.get(row.id)
        except ProofMarketError as exc:  # one broken listing must not take the page down
            notes.append(f"model {row.id}: {exc.message}")
            continue
        system = spec_of(m.manifest)
        facts = system.summary(m.manifest)
        per_tokens = system.route(m.manifest) == "generate"
        models.append({"id": m.row.id, "name": m.row.name, "mode": m.mode,
                       "price": Price.of(m.price_atomic).amount + (" / 1k tokens" if per_tokens else ""),
                       "privacy": m.manifest.privacy.get("name", "?"),
                       "logrows": facts.get("logrows", "-"), "srs": facts.get("srs", "-")})
    escrow = escrow_of(request.app)
    requests = None if escrow is None else escrow.repo.recent(escrow.chain_id, escrow.address, RECENT)
    court = court_of(request.app)
    court_rows = None if court is None else court.repo.recent(court.chain_id, court.address, RECENT)
    return DashboardView(node, models, services.calls.repo.recent(RECENT), health.jobs, requests, notes, court_rows)


def render(view: DashboardView) -> str:
    n = view.node
    payments = "x402 off (free calls)" if not n["x402"] else (
        f"x402 on: network {_e(n['network'])}, chain id {_e(n['chain_id'])}")
    node_rows = [("version", _e(n["version"])), ("status", _status(n["status"])),
                 ("database", "ok" if n["database"] else _status("failed", "unreachable")),
                 ("prover workers alive", _e(n["workers"])), ("provers warm", _e(n["provers_warm"])),
                 ("queue depth", _e(n["queue_depth"])), ("payments", payments)]
    models = [[_e(m["name"]), _short(m["id"]), _e(m.get("mode", "proven")), _e(m["price"]), _e(m["privacy"]),
               _e(m["logrows"]), "-" if m["srs"] == "-" else _srs(m["srs"]),
               _link("/v1/models/", m["id"], "details")] for m in view.models]
    jobs = [[_e(j.kind), _short(j.model_id), _status(j.status), _time(j.created_at), _duration(j),
             _error(j.error_code)] for j in view.jobs]
    counts = [[_status(s), _e(c)] for s, c in sorted(view.counts.items())]
    parts = [f"<h1>proofmarket node {_e(n['version'])}</h1>",
             '<p><a href="/app/">Open the web app</a>: browse the models, verify a proof bundle in your browser.</p>',
             *(f'<p class="warn">{_e(x)}</p>' for x in view.notes),
             "<h2>Node</h2>", _table(None, [[_e(k), v] for k, v in node_rows]),
             _section("Models served", ["name", "model id", "mode", "price (USDC)", "privacy", "logrows", "SRS", ""],
                      models, "no models served yet"),
             _section(f"Recent jobs (last {RECENT})",
                      ["kind", "model", "status", "created (UTC)", "duration", "error"],
                      jobs, "no jobs yet"),
             _section("Jobs by status", ["status", "jobs"], counts, "no jobs yet")]
    if view.escrow is None:
        parts.append('<h2>Escrow requests</h2>\n<p class="empty">escrow watcher off</p>')
    else:
        escrow = [[_e(r.request_id), _short(r.model_id), _status(r.status), _e(Price.of(r.amount).amount),
                   _short(r.fulfil_tx)] for r in view.escrow]
        parts.append(_section(f"Escrow requests (last {RECENT})",
                              ["request", "model", "status", "amount (USDC)", "fulfil tx"],
                              escrow, "no escrow requests seen yet"))
    if view.court is not None:
        court = [[_e(r.request_id), _short(r.model_id), _status(r.status),
                  _e(r.court_status or ""), _e(Price.of(r.amount).amount),
                  _short(r.fulfil_tx)] for r in view.court]
        parts.append(_section(f"Court requests: attested, paid after a challenge window (last {RECENT})",
                              ["request", "model", "status", "court", "amount (USDC)", "commit tx"],
                              court, "no court requests seen yet"))
    body = "\n".join(parts)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="10"><title>proofmarket node</title>'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _section(title: str, head: list[str], rows: list[list[str]], empty: str) -> str:
    content = _table(head, rows) if rows else f'<p class="empty">{_e(empty)}</p>'
    return f"<h2>{_e(title)}</h2>\n{content}"


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _short(value: str | None, keep: int = 12) -> str:
    if not value:
        return ""
    text = value if len(value) <= keep else value[:keep] + "…"
    return f'<code title="{_e(value)}">{_e(text)}</code>'


def _status(status: str, label: str | None = None) -> str:
    return f'<span class="{STATUS_CLASS.get(status, "idle")}">{_e(label or status)}</span>'


def _srs(kind: str) -> str:
    return '<span class="warn">dev SRS (devnet only)</span>' if kind == "dev" else _e(f"{kind} SRS")


def _time(when: datetime | None) -> str:
    return "" if when is None else _e(when.strftime("%Y-%m-%d %H:%M:%S"))


def _duration(job: CallRow) -> str:
    if job.finished_at is None:
        return ""
    seconds = (job.finished_at - (job.started_at or job.created_at)).total_seconds()
    return _e(f"{seconds:.1f} s")


def _error(code: str | None) -> str:
    return f'<span class="bad">{_e(code)}</span>' if code else ""


def _link(prefix: str, target: str | None, label: str) -> str:
    return f'<a href="{_e(prefix + quote(target, safe=""))}">{label}</a>' if target else ""


def _table(head: list[str] | None, rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    thead = "" if head is None else "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
    lines = ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return f"<table>{thead}{''.join(lines)}</table>"
