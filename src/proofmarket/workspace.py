"""A local workspace: the data folder with its artifact store, SRS cache, prover and model index."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from proofmarket.config import Settings
from proofmarket.store import LocalStore, export_car, import_car
from proofmarket.zk.compiler import CompileOptions, CompileResult, Progress
from proofmarket.zk.predict import Prediction
from proofmarket.zk.profile import PrivacyProfile
from proofmarket.zk.prover import EzklProver, ProveResult
from proofmarket.zk.srs import SrsProvider
from proofmarket.zk.tuning import AccuracyBound
from proofmarket.zk.verify import VerifyReport, load_manifest, verify_bundle
from proofmarket.zk.worker import InlineProofWorker, ProofWorker


class Workspace:
    def __init__(self, settings: Settings | None = None, *, inline_prover: bool = False) -> None:
        """``inline_prover``: prove in this process (one-shot commands) instead of a prover process."""
        self.settings = settings or Settings()
        self.store = LocalStore(self.settings.store_dir)
        self._prover: EzklProver | None = None
        self._inline = inline_prover

    @property
    def prover(self) -> EzklProver:
        if self._prover is None:
            worker = InlineProofWorker() if self._inline else ProofWorker(timeout_s=self.settings.proof_timeout_s)
            self._prover = EzklProver(self.store, self.settings.jobs_dir, worker)
        return self._prover

    def compile(self, onnx_path: Path, samples_doc: Any, *, profile: PrivacyProfile, srs_file: Path | None = None,
                bound: AccuracyBound | None = None, name: str | None = None,
                progress: Progress = lambda _: None) -> CompileResult:
        srs = SrsProvider(self.settings.srs_dir, srs_file or self.settings.srs_file)
        options = CompileOptions(profile=profile, srs=srs, bound=bound, name=name, budget=self.settings.budget)
        result = self.prover.compile(onnx_path, samples_doc, options, progress)
        self._index(result)
        return result

    def predict(self, onnx_path: Path, samples_doc: Any, *, profile: PrivacyProfile) -> Prediction:
        """``compile --dry-run``: check the model and samples and predict the circuit's cost (no keys)."""
        from proofmarket.zk.compiler import predict_model

        return predict_model(onnx_path, samples_doc, profile)[0]

    def prove(self, model_id: str, inputs_doc: Any) -> ProveResult:
        return self.prover.prove(model_id, inputs_doc)

    def verify(self, bundle_doc: Any) -> VerifyReport:
        return verify_bundle(bundle_doc, self.store)

    def models(self) -> list[dict[str, Any]]:
        path = self._index_path()
        return list(json.loads(path.read_text()).values()) if path.is_file() else []

    def export_model(self, model_id: str, out: Path) -> Path:
        manifest = load_manifest(self.store, model_id)
        return export_car(self.store, [model_id, *manifest.public_cids], out, roots=[model_id])

    def import_car(self, path: Path) -> list[str]:
        return import_car(self.store, path)

    def close(self) -> None:
        if self._prover is not None:
            self._prover.close()

    def _index_path(self) -> Path:
        return self.settings.home / "models.json"

    def _index(self, result: CompileResult) -> None:
        path = self._index_path()
        index = json.loads(path.read_text()) if path.is_file() else {}
        m = result.manifest
        index[result.model_id] = {
            "id": result.model_id, "name": m.name, "privacy": m.privacy["name"], "logrows": m.logrows,
            "onnx_sha256": m.onnx.sha256, "srs": m.srs.kind, "created_at": m.created_at,
        }
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=2))
        os.replace(tmp, path)
