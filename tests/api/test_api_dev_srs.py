"""A node paid on a chain other than the devnet refuses to serve dev-SRS models (issue 8): their proofs can be
forged by whoever made the SRS. On the devnet, or with payments off, they are served as before."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from api_helpers import AppFactory

from proofmarket.api import Offer
from proofmarket.calls import ProofOutcome, Settlement, Ticket
from proofmarket.core.errors import DevSrsRefused
from proofmarket.payments.port import RailExtras
from proofmarket.systems.ezkl import srs

pytestmark = pytest.mark.slow  # the session's MLP compile
BASE_MAINNET = 8453


class PaidOn(RailExtras):
    """A payment port paid on ``chain_id``: only ``describe`` is used here."""

    name = "default"

    def __init__(self, chain_id: int) -> None:
        self.chain_id = chain_id

    def describe(self) -> dict[str, Any]:
        return {"x402": True, "network": f"eip155:{self.chain_id}", "chain": {"chain_id": self.chain_id}}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        raise AssertionError("not called")

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        raise AssertionError("not called")

    def release(self, ticket: Ticket) -> None:
        raise AssertionError("not called")


def test_a_node_paid_off_the_devnet_refuses_a_dev_srs_model_at_load(make_app: AppFactory, mlp_id: str) -> None:
    catalog = make_app(gate=PaidOn(BASE_MAINNET)).state.services.catalog
    with pytest.raises(DevSrsRefused) as refused:
        catalog.register(mlp_id, price_atomic=10_000)
    assert refused.value.code == "dev_srs_refused" and "chain 8453" in refused.value.message
    assert catalog.repo.get(mlp_id) is None  # not served


def test_a_row_left_from_before_is_not_served_either(make_app: AppFactory, mlp_id: str) -> None:
    make_app(gate=PaidOn(31337)).state.services.catalog.register(mlp_id, price_atomic=10_000)
    catalog = make_app(gate=PaidOn(BASE_MAINNET)).state.services.catalog  # same database, restarted off the devnet
    with pytest.raises(DevSrsRefused):
        catalog.get(mlp_id)


def test_the_devnet_and_a_free_node_serve_dev_srs_models(make_app: AppFactory, mlp_id: str) -> None:
    assert make_app(gate=PaidOn(31337)).state.services.catalog.register(mlp_id, price_atomic=10_000)
    assert make_app().state.services.catalog.register(mlp_id, price_atomic=10_000)


def test_a_pinned_ceremony_srs_is_served_off_the_devnet(make_app: AppFactory, mlp_id: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = make_app(gate=PaidOn(BASE_MAINNET)).state.services.catalog
    sha256 = catalog.models.manifest(mlp_id).srs.sha256
    monkeypatch.setitem(srs.CEREMONY_SRS_SHA256, sha256, 9)
    assert catalog.register(mlp_id, price_atomic=10_000).manifest.srs.sha256 == sha256
