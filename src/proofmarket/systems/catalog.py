"""``ModelCatalog``: model manifests of either mode read from the store, without owning any prover."""

from __future__ import annotations

import threading
from typing import Any

from proofmarket import models
from proofmarket.core.errors import ArtifactNotFound, UnknownModel, WrongMode
from proofmarket.store import ArtifactStore
from proofmarket.systems import mode_of, parse_manifest
from proofmarket.systems.ezkl.manifest import ModelManifest


class ModelCatalog:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._manifests: dict[str, Any] = {}
        self._infos: dict[str, models.ModelInfo] = {}
        self._lock = threading.Lock()

    def manifest(self, model_id: str) -> Any:
        """The manifest (``ModelManifest`` or ``AttestedManifest``); ``UnknownModel`` when there is none."""
        with self._lock:
            cached = self._manifests.get(model_id)
        if cached is not None:
            return cached
        try:
            doc = self.store.get_json(model_id)
        except ArtifactNotFound as exc:
            raise UnknownModel(f"no compiled model with id {model_id} in the store", model_id=model_id) from exc
        except Exception as exc:
            raise UnknownModel(f"{model_id} is not a model id (it names something else)", model_id=model_id) from exc
        try:
            manifest = parse_manifest(doc)
        except Exception as exc:
            raise UnknownModel(f"{model_id} is not a model id (it names something else)", model_id=model_id) from exc
        with self._lock:
            self._manifests[model_id] = manifest
        return manifest

    def mode(self, model_id: str) -> str:
        return mode_of(self.manifest(model_id))

    def proven(self, model_id: str) -> tuple[ModelManifest, models.ModelInfo]:
        """A proven model's manifest and ONNX description; ``WrongMode`` for an attested one."""
        manifest = self.manifest(model_id)
        if not isinstance(manifest, ModelManifest):
            raise WrongMode(f"model {model_id} is sold in attested mode: call POST /v1/models/{model_id}/generate",
                            model_id=model_id, mode="attested")
        with self._lock:
            info = self._infos.get(model_id)
        if info is None:
            info = models.load_model(self.store.path(manifest.onnx.cid))
            with self._lock:
                self._infos[model_id] = info
        return manifest, info
