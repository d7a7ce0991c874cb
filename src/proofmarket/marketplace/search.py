"""The catalogue's search: free text, filters, a sort and cursor pagination over the listings a node sells.

A node sells a bounded number of listings (owners' quotas), so the filter runs over them in memory, after the
registry's terms are applied (the price and active flag a consumer pays are the chain's). The cursor is opaque:
the position after the last listing of the page and a digest of the query, so a cursor is refused
(``invalid_cursor``) with another query rather than silently skipping listings.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from proofmarket.core.errors import InvalidCursor, UsageError
from proofmarket.marketplace.catalog import ServedModel
from proofmarket.marketplace.entries import CatalogEntry

Sort = Literal["newest", "oldest", "price", "-price", "name"]
SORTS: dict[str, Callable[[ServedModel], Any]] = {
    "newest": lambda m: (-m.row.created_at.timestamp(), m.row.id),
    "oldest": lambda m: (m.row.created_at.timestamp(), m.row.id),
    "price": lambda m: (m.price_atomic, m.row.id),
    "-price": lambda m: (-m.price_atomic, m.row.id),
    "name": lambda m: (m.row.name.lower(), m.row.id),
}
SORT_NAMES = (*SORTS, "popular")  # popular: most calls first (the counts are the caller's), then newest
MAX_LIMIT = 100


@dataclass(frozen=True)
class Query:
    q: str | None = None
    mode: str | None = None
    task: str | None = None
    tags: tuple[str, ...] = ()
    max_price_atomic: int | None = None
    min_reputation: float | None = None
    owner: str | None = None
    sort: str = "newest"
    limit: int = 20

    def digest(self) -> str:
        doc = {k: v for k, v in asdict(self).items() if k != "limit"}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    models: list[ServedModel]
    total: int
    next_cursor: str | None


def entry_of(model: ServedModel) -> CatalogEntry:
    return CatalogEntry.model_validate(model.row.catalog or {})


def reputation_of(prover: dict[str, Any] | None) -> float | None:
    """The node prover's ERC-8004 reputation average (0-100), None when it has none."""
    scores = ((prover or {}).get("erc8004") or {}).get("reputation") or {}
    average = scores.get("average")
    return float(average) if isinstance(average, int | float) and scores.get("count") else None


def matches(model: ServedModel, query: Query, reputation: float | None) -> bool:
    entry = entry_of(model)
    if query.mode and model.mode != query.mode:
        return False
    if query.task and entry.task != query.task:
        return False
    if query.tags and not set(query.tags) <= set(entry.tags):
        return False
    if query.max_price_atomic is not None and model.price_atomic > query.max_price_atomic:
        return False
    if query.owner and (model.owner or "").lower() != query.owner.lower():
        return False
    if query.min_reputation is not None and (reputation is None or reputation < query.min_reputation):
        return False
    if not model.active:
        return False
    if query.q:
        haystack = f"{model.row.name} {model.row.id} {entry.text()}".lower()
        return all(term in haystack for term in query.q.lower().split())
    return True


def search(models: Sequence[ServedModel], query: Query, cursor: str | None,
           prover: dict[str, Any] | None = None, usage: Mapping[str, int] | None = None) -> Page:
    """A page of the listings matching ``query``. ``usage``: calls per model as the public reads them (``popular``
    sorts by it, most first, then newest)."""
    if query.sort not in SORT_NAMES:
        raise UsageError(f"sort must be one of {', '.join(SORT_NAMES)}, not {query.sort!r}")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise UsageError(f"limit must be 1-{MAX_LIMIT}")
    reputation = reputation_of(prover)
    calls = usage or {}
    key = SORTS.get(query.sort) or (lambda m: (-calls.get(m.row.id, 0), *SORTS["newest"](m)))
    found = sorted((m for m in models if matches(m, query, reputation)), key=key)
    start = _offset(cursor, query)
    page = found[start:start + query.limit]
    after = start + len(page)
    return Page(page, len(found), _cursor(after, query) if after < len(found) else None)


def _cursor(offset: int, query: Query) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": query.digest()}).encode()).decode().rstrip("=")


def _offset(cursor: str | None, query: Query) -> int:
    if not cursor:
        return 0
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset, digest = int(doc["o"]), str(doc["q"])
    except Exception:
        raise InvalidCursor("the cursor is not one this node gave out") from None
    if digest != query.digest() or offset < 0:
        raise InvalidCursor("the cursor belongs to another query: keep the filters and sort of the page it came from")
    return offset
