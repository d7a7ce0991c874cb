"""The node's pinning hook (a record hook of the call lifecycle): what goes to IPFS (``store/pinning.py``).

    a compile job ends        the model's manifest and the artifacts its privacy profile makes public
                              (``public_cids``, the allowlist of /v1/artifacts: never private weights, never a
                              proving key)
    a call ends delivered     its proof bundle and its paid copy (payment and receipt), when PIN_BUNDLES is on

A pin that fails is logged and counted (``proofmarket_pins_total{kind,outcome}``); the call is never failed by it.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRow, CallStatus
from proofmarket.store import ArtifactStore
from proofmarket.store.pinning import Pinner, pinner_from
from proofmarket.systems.catalog import ModelCatalog

log = logging.getLogger("proofmarket.pinning")


def model_cids(store: ArtifactStore, model_id: str) -> list[str]:
    """What of a model may be public: its manifest and its profile's public artifacts."""
    manifest: Any = ModelCatalog(store).manifest(model_id)
    return [model_id, *sorted(manifest.public_cids)]


class Pinning:
    def __init__(self, pinner: Pinner, store: ArtifactStore, bundles: bool, registry: CollectorRegistry) -> None:
        self.pinner, self.store, self.bundles = pinner, store, bundles
        self.count = Counter("proofmarket_pins_total", "Pins to IPFS, by what was pinned and how it went",
                             ["kind", "outcome"], registry=registry)

    @classmethod
    def for_node(cls, settings: Settings, store: ArtifactStore, registry: CollectorRegistry) -> Pinning | None:
        token = settings.store.pin_token.get_secret_value() if settings.store.pin_token else None
        pinner = pinner_from(settings.store.pin, token)
        return None if pinner is None else cls(pinner, store, settings.store.pin_bundles, registry)

    def pin_model(self, model_id: str, catalog_cid: str | None = None) -> list[str]:
        """The model's public artifacts, and its catalogue entry (what the registry's metadata CID names)."""
        cids = [*model_cids(self.store, model_id), *([catalog_cid] if catalog_cid else [])]
        return self._pin("model", cids, f"model-{model_id[-12:]}")

    def job_final(self, job: CallRow) -> None:
        if job.kind == CallKind.COMPILE and job.status == CallStatus.PROVED and job.model_id:
            entry = (job.input or {}).get("catalog_cid")
            self._safe(lambda: self.pin_model(str(job.model_id), str(entry) if entry else None))
        elif job.kind == CallKind.PROVE and self.bundles and job.bundle_cid and job.status != CallStatus.FAILED:
            paid = ((job.settlement or {}).get("payment") or {}).get("paid_bundle_cid")
            cids = [job.bundle_cid, *([paid] if paid else [])]
            self._safe(lambda: self._pin("bundle", cids, f"call-{job.id}"))

    def _pin(self, kind: str, cids: list[str], name: str) -> list[str]:
        try:
            pinned = self.pinner.pin(self.store, cids, name)
        except Exception:
            self.count.labels(kind, "failed").inc()
            raise
        self.count.labels(kind, "pinned").inc()
        log.info("pinned %d blobs (%s %s) to %s", len(pinned), kind, name, self.pinner.target)
        return pinned

    def _safe(self, pin: Any) -> None:
        try:
            pin()
        except ProofMarketError as exc:
            log.warning("pinning failed: %s", exc.message)
        except Exception:
            log.exception("pinning failed")

    def close(self) -> None:
        self.pinner.close()
