"""A paid node serves a model on a dev SRS only where the chain's profile allows dev SRS (the devnet)."""

from __future__ import annotations

import pytest

from proofmarket.core.errors import DevSrsRefused
from proofmarket.core.profiles import BASE, BASE_SEPOLIA, DEVNET
from proofmarket.systems.ezkl.srs import CEREMONY_SRS_SHA256, check_servable

DEV_SRS = "ab" * 32  # no pinned ceremony file has this hash: a dev SRS
CEREMONY_SRS = next(iter(CEREMONY_SRS_SHA256))


@pytest.mark.parametrize("chain_id", [None, DEVNET.chain_id])
def test_a_dev_srs_is_served_without_payments_and_on_the_devnet(chain_id: int | None) -> None:
    check_servable(DEV_SRS, "m", chain_id)


@pytest.mark.parametrize("chain_id", [BASE.chain_id, BASE_SEPOLIA.chain_id, 999_999])
def test_a_dev_srs_is_refused_where_the_profile_forbids_it(chain_id: int) -> None:
    with pytest.raises(DevSrsRefused) as raised:
        check_servable(DEV_SRS, "m", chain_id)
    assert raised.value.details["chain_id"] == chain_id


@pytest.mark.parametrize("chain_id", [None, DEVNET.chain_id, BASE.chain_id, 999_999])
def test_a_ceremony_srs_is_served_everywhere(chain_id: int | None) -> None:
    check_servable(CEREMONY_SRS, "m", chain_id)
