"""The attested adapter of the proof-system port (mode ``attested``, system ``proofmarket-attested-toploc-v1``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from proofmarket.store import ArtifactStore
from proofmarket.systems import ATTESTED_SYSTEM, GUARANTEES, verify_bundle_any
from proofmarket.systems.attested.service import AttestedRuntime, GenerateRequest, compile_attested


class AttestedSystem:
    system = ATTESTED_SYSTEM
    mode = "attested"

    def __init__(self, store: ArtifactStore, work_dir: Path, signer: LocalAccount, chain_id: int) -> None:
        self.store, self.work_dir, self.signer, self.chain_id = store, work_dir, signer, chain_id
        self.runtime = AttestedRuntime(store, work_dir)
        self.metrics: Any = None  # jobs.metrics.AttestedMetrics, set by the node

    def compile(self, source: Path, samples_doc: Any = None, options: Any = None, progress: Any = None) -> Any:
        kwargs = dict(options or {})
        if progress is not None:
            kwargs["progress"] = progress
        return compile_attested(source, self.store, **kwargs)

    def run(self, model_id: str, request: Any, **kwargs: Any) -> Any:
        req = request if isinstance(request, GenerateRequest) else self.runtime.request(model_id, request)
        return self.runtime.generate(model_id, req, self.signer, self.chain_id, **kwargs)

    def verify(self, bundle: Any, **kwargs: Any) -> Any:
        return verify_bundle_any(bundle, self.store, work_dir=self.work_dir, **kwargs)

    def describe(self) -> dict[str, Any]:
        return {"system": self.system, "mode": self.mode, "guarantee": GUARANTEES["attested"],
                "commitments": "TOPLOC-style top-k activation commitments per chunk of tokens"}

    def warm(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None
