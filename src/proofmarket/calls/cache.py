"""The proof cache: a repeated (model, input) of a public-profile model is answered with the stored proof.

Only models whose input, parameters and output are all public and that take no salt (a private or hashed
input carries its own salt: never reused). The node looks a job up when it is submitted (a hit never reaches
the queue: a free call answers at once, a paid one only waits for its settlement) and counts hits and misses
in /metrics; workers store what they prove. The table is a bounded LRU shared by the nodes of one database.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from proofmarket.core.errors import ProofMarketError
from proofmarket.db import CallRepo, CallRow, ProofCacheRepo
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.registry import parse_manifest, spec_of

if TYPE_CHECKING:
    from prometheus_client import Counter


class ProofCache:
    def __init__(self, repo: ProofCacheRepo, store: ArtifactStore, calls: CallRepo,
                 counter: Counter | None = None) -> None:
        self.repo, self.store, self.calls, self.counter = repo, store, calls, counter
        self._public: dict[str, bool] = {}

    def key(self, job: CallRow) -> str | None:
        """The job's cache key, or None when it may not be cached."""
        if job.model_id is None or job.input.get("salt") is not None or not self.public(job.model_id):
            return None
        text = json.dumps({"model": job.model_id, "inputs": job.input["inputs"]}, sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def public(self, model_id: str) -> bool:
        """The model's system says its answers may be reused (``SystemSpec.cacheable``: EZKL's public profile)."""
        if model_id not in self._public:
            try:
                manifest = parse_manifest(self.store.get_json(model_id))
            except (ProofMarketError, ValueError):
                return False
            cacheable = spec_of(manifest).cacheable
            self._public[model_id] = bool(cacheable is not None and cacheable(manifest))
        return self._public[model_id]

    def answer(self, job: CallRow, *, running: bool = False) -> bool:
        """Prove ``job`` from the cache (queued -> running -> proved, or running -> proved); False on a miss
        (counted when this cache has a counter)."""
        key = self.key(job)
        if key is None:
            return False
        cid = self.repo.get(key)
        bundle = self._bundle(cid, job.model_id) if cid is not None else None
        if bundle is None or cid is None:
            if cid is not None:
                self.repo.forget(key)
            self._count("miss")
            return False
        if not running and self.calls.start(job.id) is None:
            return False  # a worker has it already
        self._count("hit")
        out = {"output": bundle.output.values, "salt": None, "cached": True}
        return self.calls.proved(job.id, bundle_cid=cid, result=out, final=job.payment is None) is not None

    def remember(self, job: CallRow, bundle_cid: str) -> None:
        key = self.key(job)
        if key is not None and job.model_id is not None:
            self.repo.put(key, job.model_id, bundle_cid)

    def _bundle(self, cid: str, model_id: str | None) -> ProofBundle | None:
        if not self.store.has(cid):
            return None
        try:
            bundle = ProofBundle.parse(self.store.get_json(cid))
        except ProofMarketError:
            return None
        return bundle if bundle.model.id == model_id else None  # never another model's proof

    def _count(self, result: str) -> None:
        if self.counter is not None:
            self.counter.labels(result).inc()
