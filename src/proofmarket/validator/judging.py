"""How a validator judges one committed result: fetch the bundle from the node that committed it (signed reads,
the node's URL from its ERC-8004 registration file or ``--node``; the bytes a node published on chain after an
availability challenge otherwise), match it with the committed digest and instances, and re-execute it."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from proofmarket.chain.client import ChainClient
from proofmarket.chain.court import AttestationCourt
from proofmarket.core import jsonlimits
from proofmarket.core.errors import (
    ArtifactNotFound,
    BundleError,
    ModelFilesMissing,
    ProofMarketError,
    VerificationFailed,
)
from proofmarket.systems import parse_bundle
from proofmarket.systems.attested.documents import AttestedBundle
from proofmarket.systems.attested.instances import instance_candidates
from proofmarket.systems.workspace import Workspace
from proofmarket.validator.metrics import ValidatorMetrics
from proofmarket.validator.protocol import (
    FETCH_TIMEOUT_S,
    MAX_BUNDLE_BYTES,
    fetch_committed,
    read_headers,
    registration_file,
)
from proofmarket.validator.state import ValidatorState, Verdict

log = logging.getLogger("proofmarket.validator.process")
MAX_ANNOUNCE_BYTES = 1024 * 1024  # a node's service manifest, read at most this much
MAX_ATTEMPTS = 3  # a request whose judging raised this many times is not judged again unless it is challenged
FAILING_AFTER = 3  # judgings failed in a row, with no verdict between: the validator says it is not ready


class Judging:
    """The per-request work of ``Validator`` (its attributes, set by ``Validator``)."""

    client: ChainClient
    court: AttestationCourt
    account: LocalAccount
    workspace: Workspace
    identity: Any
    node_urls: list[str]
    threads: int | None
    metrics: ValidatorMetrics
    state: ValidatorState
    _urls: dict[str, list[str]]
    failing = 0  # judgings failed in a row (any verdict resets it)
    last_failure = ""

    def check(self, request_id: int, node: str, instances: list[int], digest: str) -> Verdict:
        """Fetch the committed bundle from the node, match it with the commitment, re-execute it."""
        started = time.perf_counter()
        data = self._fetch(request_id, node, digest)
        if data is None:
            data = self._published(request_id, digest)
        if data is None:
            return Verdict(request_id, "unavailable", "the node did not serve the committed bundle")
        try:  # the node signed this bundle's digest: whatever does not parse is its fault
            bundle = parse_bundle(jsonlimits.loads(data, max_bytes=MAX_BUNDLE_BYTES, what="the committed bundle"))
            if not isinstance(bundle, AttestedBundle):  # the court commits generations only
                raise BundleError(f"it is a bundle of {type(bundle).__name__}, not of a generation")
            inp, dec = bundle.input, bundle.decoding
            doc = {"prompt": inp.prompt, "max_tokens": dec.max_tokens, "temperature": dec.temperature,
                   "seed": dec.seed}
        except Exception as exc:  # noqa: BLE001 (any failure to parse is a verdict, never a crash)
            return Verdict(request_id, "cheated", f"the committed bundle is not a valid attested bundle: {exc}"[:500])
        try:
            if instances not in instance_candidates(bundle, doc):  # either canonical form (before RFC 8785)
                return Verdict(request_id, "cheated", "the bundle's hashes are not the committed instances")
            self.workspace.verify(bundle, reexecute=True, threads=self.threads)
        except (ArtifactNotFound, ModelFilesMissing) as exc:
            return Verdict(request_id, "cannot_check", exc.message)
        except VerificationFailed as exc:
            return Verdict(request_id, "cheated", exc.message, time.perf_counter() - started)
        except (ProofMarketError, ValueError, AttributeError) as exc:
            return Verdict(request_id, "cheated", f"the committed bundle is not a valid attested bundle: {exc}")
        seconds = time.perf_counter() - started
        self.metrics.recheck.set(seconds)
        return Verdict(request_id, "reproduced", "re-executed: every commitment and token matches", seconds)

    def _failed(self, rid: int, exc: Exception) -> None:
        """Judging ``rid`` raised: recorded for ``rid`` (verdict ``error``), retried on the next polls, not judged
        again after :data:`MAX_ATTEMPTS` unless someone challenges it (the request stays followed: its vote is
        asked for, and a resolved vote claimed). Failures in a row make the validator not ready (``ready``)."""
        self.metrics.errors.inc()
        self.metrics.judge_failures.inc()
        log.exception("validator: judging request %s failed", rid)
        attempts = int(self.state.verdicts.get(rid, {}).get("attempts", 0)) + 1
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self._record(Verdict(rid, "error", f"judging failed here: {reason}"))
        self.state.verdicts[rid]["attempts"] = attempts
        self.failing += 1
        self.last_failure = f"request {rid}: {reason}"
        self.metrics.failing.set(self.failing)

    def _record(self, verdict: Verdict) -> None:
        if verdict.verdict != "error":  # a verdict reached: judging works here
            self.failing = 0
            self.metrics.failing.set(0)
        if self.state.verdicts.get(verdict.request_id, {}).get("verdict") != verdict.verdict:
            self.metrics.checks.labels(verdict.verdict).inc()
        self.state.verdicts[verdict.request_id] = {"verdict": verdict.verdict, "reason": verdict.reason,
                                                   "seconds": round(verdict.seconds, 3)}

    def _published(self, rid: int, digest: str) -> bytes | None:
        """The bundle a node published on chain after an availability challenge (checked against ``digest``)."""
        p = self.state.pending.get(rid) or {}
        if "published_block" not in p:
            return None
        data = self.court.published_bundle(rid, int(p["published_block"]))
        if data is None or "0x" + hashlib.sha256(data).hexdigest() != digest:
            return None
        return data

    # --- fetching -----------------------------------------------------------------------------
    def _fetch(self, request_id: int, node: str, digest: str) -> bytes | None:
        """The committed bundle (the answer whose sha256 is ``digest``), or None. Each URL gets its own
        single-use read signature bound to ``node``. A bundle over :data:`MAX_BUNDLE_BYTES` comes back cut
        just past the limit (``check`` then refuses it as too large): the node signed that digest."""
        for base in self._urls_of(node):
            headers = read_headers(self.account, self.client.chain_id, self.court.address, node, request_id)
            try:
                data = fetch_committed(f"{base}/v1/court/{request_id}/bundle", headers, digest)
            except httpx.HTTPError as exc:
                log.info("validator: %s did not answer: %s", base, exc)
                continue
            if data is not None:
                return data
        return None

    def _urls_of(self, node: str) -> list[str]:
        """The node's URL from its ERC-8004 registration file (cached), then the ``--node`` URLs."""
        if node not in self._urls:
            found: list[str] = []
            if self.identity is not None:
                try:  # only an agent the node registered itself: anyone can transfer one to its address
                    agent = self.identity.agent_minted_by(node)
                    if agent is not None:
                        doc = registration_file(self.identity.agent_uri(agent))
                        for service in doc.get("services", []):
                            if isinstance(service, dict) and service.get("name") == "proofmarket":
                                found.append(str(service["endpoint"]).split("/.well-known/")[0].rstrip("/"))
                except (httpx.HTTPError, ValueError, KeyError, AttributeError, ProofMarketError) as exc:
                    log.info("validator: no registration file for node %s: %s", node, exc)
            self._urls[node] = found
        # a --node URL gets node X's read only when it announces X (its /.well-known/ai-service.json names X as
        # its prover): a read signed for B and sent to A could be replayed by A to B within its lifetime
        return [*self._urls[node], *(u for u in self.node_urls if u not in self._urls[node]
                                     and self._announced(u) == node.lower())]

    def _announced(self, url: str) -> str | None:
        """The prover address the node at ``url`` announces (cached once known; None: none, or not answering)."""
        cache: dict[str, str] = self.__dict__.setdefault("_announced_by", {})
        if url not in cache:
            try:
                response = httpx.get(f"{url}/.well-known/ai-service.json", timeout=FETCH_TIMEOUT_S)
                prover = ((jsonlimits.loads(response.content[:MAX_ANNOUNCE_BYTES], what="a service manifest")
                           .get("chain") or {}).get("prover")) if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError, ProofMarketError) as exc:
                log.info("validator: %s announces no node: %s", url, exc)
                return None
            if not isinstance(prover, str):
                return None
            cache[url] = prover.lower()
        return cache[url]
