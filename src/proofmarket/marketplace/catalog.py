"""The models this node serves: a row (price, owner) joined with the model manifest in the store, and,
when a market is deployed, with the model's registry listing (``onchain/listings.py``), whose price, owner,
active flag and verifier win over the row's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proofmarket import models
from proofmarket.core.errors import ModelPending, ModelRejected, ProofMarketError, UnknownModel, UsageError
from proofmarket.db import ModelRepo, ModelRow, ModelStatus
from proofmarket.systems import spec_of, system_of
from proofmarket.systems.catalog import ModelCatalog

if TYPE_CHECKING:
    from proofmarket.onchain.listings import Listing, Listings

log = logging.getLogger("proofmarket.catalog")

MAX_PRICE_ATOMIC = 2**96 - 1  # the ModelRegistry stores prices as uint96


@dataclass(frozen=True)
class ServedModel:
    row: ModelRow
    manifest: Any  # the manifest of the model's proof system (ModelManifest, AttestedManifest, ...)
    listing: Listing | None = None

    @property
    def system(self) -> str:
        return system_of(self.manifest)

    @property
    def mode(self) -> str:
        return spec_of(self.manifest).mode

    @property
    def listed(self) -> bool:
        """Sold on its registry listing's terms (registered by its owner, and it is this model)."""
        return self.listing is not None and self.listing.sellable

    @property
    def price_atomic(self) -> int:
        if self.listed:
            assert self.listing is not None and self.listing.price_atomic is not None
            return self.listing.price_atomic
        return self.row.price_atomic

    @property
    def owner(self) -> str | None:
        return self.listing.owner if self.listed and self.listing is not None else self.row.owner

    @property
    def active(self) -> bool:
        return self.listing.active if self.listed and self.listing is not None else True

    def verifiable(self) -> dict[str, Any]:
        """What an answer of this model guarantees, as discovery declares it (the x402 bazaar terms, the ERC-8004
        registration file, the MCP tools): the guarantee (``proven`` or ``attested``), the proof format, the
        model id (its manifest's CID) and the verifier contract of its registry listing (None: not listed)."""
        listing = self.listing if self.listed else None
        verifier = ({"chainId": listing.chain_id, "address": listing.verifier}
                    if listing is not None and listing.verifier else None)
        return {"guarantee": self.mode, "proofFormat": self.system, "modelId": self.row.id, "verifier": verifier}


class Catalog:
    def __init__(self, repo: ModelRepo, models: ModelCatalog,
                 serve_check: Callable[[str, Any], None] | None = None,
                 listings: Listings | None = None) -> None:
        self.repo, self.models = repo, models
        self.serve_check = serve_check  # raises for a model this node must not serve (a dev SRS off the devnet)
        self.listings = listings  # the registry's terms, when a market is deployed

    def list(self, status: str | None = ModelStatus.ACTIVE) -> list[ServedModel]:
        """The listings in ``status`` (default: the ones sold; None: every one, pending and rejected too)."""
        return [ServedModel(row, self._manifest(row.id), self._listing(row)) for row in self.repo.list(status=status)]

    def sellable(self, model_id: str) -> ServedModel:
        """The model as the paid path sells it: its listing as the registry follower keeps it (``model_inactive``
        when deactivated, ``registry_mismatch`` when the listing is not this model; ``model_pending`` or
        ``model_rejected`` when the operator has not approved it)."""
        served = self.get(model_id, listing=False)
        if served.row.status == ModelStatus.PENDING:
            raise ModelPending(f"model {model_id} waits for the operator's review: it is not sold yet",
                               model_id=model_id)
        if served.row.status == ModelStatus.REJECTED:
            raise ModelRejected(f"model {model_id} was not approved by this node's operator: "
                                f"{served.row.review_reason or 'no reason given'}", model_id=model_id)
        if self.listings is None or not spec_of(served.manifest).listed_on_registry:  # not sold on the registry
            return served
        listing = self.listings.sellable(model_id, served.row.owner)
        return ServedModel(served.row, served.manifest, listing)

    def get(self, model_id: str, *, listing: bool = True) -> ServedModel:
        row = self.repo.get(model_id)
        if row is None:
            raise UnknownModel(f"this node serves no model with id {model_id}", model_id=model_id)
        manifest = self._manifest(model_id)
        self._check(model_id, manifest)
        return ServedModel(row, manifest, self._listing(row) if listing else None)

    def _check(self, model_id: str, manifest: Any) -> None:
        if self.serve_check is not None:
            self.serve_check(model_id, manifest)

    def _listing(self, row: ModelRow) -> Listing | None:
        if self.listings is None or not spec_of(self.models.manifest(row.id)).listed_on_registry:
            return None
        try:
            return self.listings.get(row.id, row.owner)
        except ProofMarketError as exc:  # the chain is away: show the row (the paid path reads the chain itself)
            log.warning("no registry listing for %s: %s", row.id, exc.message)
            return None

    def info(self, model_id: str) -> models.ModelInfo:
        """A proven model's input description (``WrongMode`` for an attested model)."""
        return self.models.proven(model_id)[1]

    def register(self, model_id: str, *, price_atomic: int, name: str | None = None,
                 owner: str | None = None) -> ServedModel:
        """Serve a model already compiled into the store (e.g. by ``proofmarket compile``)."""
        check_price(price_atomic)
        manifest = self._manifest(model_id)
        self._check(model_id, manifest)
        self.repo.upsert(model_id, name=name or manifest.name, price_atomic=price_atomic, owner=owner)
        return self.get(model_id)

    def _manifest(self, model_id: str) -> Any:
        return self.models.manifest(model_id)


def check_price(price_atomic: int) -> int:
    if not 0 < price_atomic <= MAX_PRICE_ATOMIC:
        raise UsageError(f"the price must be between 1 and {MAX_PRICE_ATOMIC} atomic USDC units, not {price_atomic}")
    return price_atomic
