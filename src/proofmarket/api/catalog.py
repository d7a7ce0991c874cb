"""The models this node serves: a row (price, owner) joined with the model manifest in the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from proofmarket import models
from proofmarket.db import ModelRepo, ModelRow
from proofmarket.errors import UnknownModel, UsageError
from proofmarket.zk.manifest import ModelManifest
from proofmarket.zk.prover import EzklProver

MAX_PRICE_ATOMIC = 2**96 - 1  # the ModelRegistry stores prices as uint96


@dataclass(frozen=True)
class ServedModel:
    row: ModelRow
    manifest: ModelManifest


class Catalog:
    def __init__(self, repo: ModelRepo, prover: EzklProver,
                 serve_check: Callable[[str, ModelManifest], None] | None = None) -> None:
        self.repo, self.prover = repo, prover  # the prover only reads manifests here; it never proves
        self.serve_check = serve_check  # raises for a model this node must not serve (a dev SRS off the devnet)

    def list(self) -> list[ServedModel]:
        return [ServedModel(row, self._manifest(row.id)) for row in self.repo.list()]

    def get(self, model_id: str) -> ServedModel:
        row = self.repo.get(model_id)
        if row is None:
            raise UnknownModel(f"this node serves no model with id {model_id}", model_id=model_id)
        manifest = self._manifest(model_id)
        if self.serve_check is not None:
            self.serve_check(model_id, manifest)
        return ServedModel(row, manifest)

    def info(self, model_id: str) -> models.ModelInfo:
        return self.prover.model(model_id)[1]

    def register(self, model_id: str, *, price_atomic: int, name: str | None = None,
                 owner: str | None = None) -> ServedModel:
        """Serve a model already compiled into the store (e.g. by ``proofmarket compile``)."""
        check_price(price_atomic)
        manifest = self._manifest(model_id)
        if self.serve_check is not None:
            self.serve_check(model_id, manifest)
        self.repo.upsert(model_id, name=name or manifest.name, price_atomic=price_atomic, owner=owner)
        return self.get(model_id)

    def _manifest(self, model_id: str) -> ModelManifest:
        return self.prover.model(model_id)[0]


def check_price(price_atomic: int) -> int:
    if not 0 < price_atomic <= MAX_PRICE_ATOMIC:
        raise UsageError(f"the price must be between 1 and {MAX_PRICE_ATOMIC} atomic USDC units, not {price_atomic}")
    return price_atomic
