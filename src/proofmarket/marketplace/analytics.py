"""Per-model analytics from the call records (the jobs table): what an owner and an operator want to know.

    calls        total, by status (settled, proved: free, failed, open) and by rail
    errors       failed calls by error code
    latency_s    p50 / p95 from the call's arrival to its end (queue, run and settlement)
    run_s        p50 / p95 of the run on the proof system (the proof, or the attested generation)
    tokens       generated tokens (attested generations)
    revenue      atomic USDC captured (the settlement's amount: a metered call its tokens, not its ceiling)
    by_day       calls, failures, tokens and revenue per UTC day, every day of the window (zeros included)

Published (``public_stats``), every count below ``k`` calls is hidden: the window's numbers when it holds fewer than
``k`` calls, a day with 1..k-1 calls, a rail or an error code seen fewer than ``k`` times (on a quiet model, a day
of one call is one consumer's activity and spend). The model's owner (a request it signed) and the operator read
the whole document.

Numbers count the calls made on this node's database (several nodes sharing one database count together; each
call's ``node`` is the node that answers). Percentiles are nearest-rank over the window's finished calls.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from proofmarket.db import CallKind, CallRow, CallStatus, Database

MAX_DAYS = 366


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 4)


def public_stats(doc: dict[str, Any], k: int) -> dict[str, Any]:
    """``doc`` (``model_stats``) with every bucket of fewer than ``k`` calls hidden (see the module docstring)."""
    out: dict[str, Any] = {key: doc[key] for key in ("model_id", "node", "days", "since", "until")}
    out["min_calls"] = k
    if doc["calls"]["total"] < k:
        return {**out, "hidden": f"fewer than {k} calls in the window: only the model's owner reads its numbers"}
    calls = dict(doc["calls"])
    calls["by_rail"] = _at_least(calls["by_rail"], k)
    for key in ("settled", "free", "failed", "open"):
        if 0 < calls[key] < k:
            calls[key] = None
    days = []
    for day in doc["by_day"]:
        if 0 < day["calls"] < k:
            days.append({"day": day["day"], "calls": None, "failed": None, "tokens": None, "revenue_atomic": None,
                         "hidden": True})
        else:
            days.append(day)
    return {**doc, **out, "calls": calls, "errors": _at_least(doc["errors"], k), "by_day": days}


def _at_least(counts: dict[str, int], k: int) -> dict[str, int]:
    """Counts of ``k`` or more as they are; the rest together as ``other`` when they reach ``k``, else left out."""
    shown = {key: n for key, n in counts.items() if n >= k}
    rest = sum(n for n in counts.values() if n < k)
    if rest >= k:
        shown["other"] = rest
    return shown


def revenue_of(job: CallRow) -> int:
    if job.status != CallStatus.SETTLED:
        return 0
    amount = str(((job.settlement or {}).get("payment") or {}).get("amount") or "0")
    return int(amount) if amount.isdigit() else 0


def model_stats(db: Database, model_id: str, days: int = 30, now: datetime | None = None,
                node: str | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    days = max(1, min(days, MAX_DAYS))
    first_day = (now - timedelta(days=days - 1)).date()
    since = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    with db.session() as s:
        jobs = list(s.scalars(select(CallRow).where(CallRow.model_id == model_id, CallRow.kind == CallKind.PROVE,
                                                    CallRow.created_at >= since)))
    statuses: Counter[str] = Counter()
    rails: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latency, run = [], []
    tokens = revenue = 0
    daily: dict[str, dict[str, int]] = defaultdict(lambda: {"calls": 0, "failed": 0, "tokens": 0, "revenue": 0})
    for job in jobs:
        statuses[job.status] += 1
        rails[job.rail or "free"] += 1
        day = daily[job.created_at.date().isoformat()]
        day["calls"] += 1
        result = job.result or {}
        if job.status == CallStatus.FAILED:
            errors[job.error_code or "unknown"] += 1
            day["failed"] += 1
        if job.finished_at is not None and job.status != CallStatus.FAILED:
            latency.append((job.finished_at - job.created_at).total_seconds())
        if isinstance(result.get("run_s"), int | float):
            run.append(float(result["run_s"]))
        if isinstance(result.get("tokens"), int):
            tokens += result["tokens"]
            day["tokens"] += result["tokens"]
        earned = revenue_of(job)
        revenue += earned
        day["revenue"] += earned
    by_day = []
    for i in range(days):
        date = (first_day + timedelta(days=i)).isoformat()
        d = daily.get(date, {"calls": 0, "failed": 0, "tokens": 0, "revenue": 0})
        by_day.append({"day": date, "calls": d["calls"], "failed": d["failed"], "tokens": d["tokens"],
                       "revenue_atomic": str(d["revenue"])})
    open_ = sum(n for st, n in statuses.items() if st in (CallStatus.QUEUED, CallStatus.RUNNING, CallStatus.PROVED,
                                                          CallStatus.SETTLING))
    free = sum(1 for j in jobs if j.status == CallStatus.PROVED and j.payment is None)
    return {
        "model_id": model_id, "node": node, "days": days, "since": since.isoformat(), "until": now.isoformat(),
        "calls": {"total": len(jobs), "settled": statuses.get(CallStatus.SETTLED, 0), "free": free,
                  "failed": statuses.get(CallStatus.FAILED, 0), "open": open_ - free, "by_rail": dict(rails)},
        "errors": dict(errors.most_common()),
        "latency_s": {"p50": percentile(latency, 0.5), "p95": percentile(latency, 0.95), "count": len(latency)},
        "run_s": {"p50": percentile(run, 0.5), "p95": percentile(run, 0.95), "count": len(run)},
        "tokens": tokens,
        "revenue_atomic": str(revenue),
        "by_day": by_day,
    }


USAGE_DAYS = 30
USAGE_TTL_S = 60.0  # the catalogue's counts are a minute old at most: a busy catalogue does not count on every page
_usage: weakref.WeakKeyDictionary[Database, tuple[float, dict[str, int]]] = weakref.WeakKeyDictionary()
_usage_lock = threading.Lock()


def usage_counts(db: Database, k: int) -> dict[str, int]:
    """Calls per model over the last ``USAGE_DAYS`` days, as the public reads them: a model with fewer than ``k``
    is left out (as its public stats hide it). One grouped count, kept ``USAGE_TTL_S``."""
    now = time.monotonic()
    with _usage_lock:
        kept = _usage.get(db)
    if kept is None or kept[0] < now:
        since = datetime.now(UTC) - timedelta(days=USAGE_DAYS)
        with db.session() as s:
            rows = s.execute(select(CallRow.model_id, func.count()).where(
                CallRow.kind == CallKind.PROVE, CallRow.created_at >= since).group_by(CallRow.model_id)).all()
        kept = (now + USAGE_TTL_S, {str(m): int(n) for m, n in rows if m is not None})
        with _usage_lock:
            _usage[db] = kept
    return {m: n for m, n in kept[1].items() if n >= k}
