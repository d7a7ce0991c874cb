"""A sliced model's escrow request served by a node on anvil: the request on chain, the input over HTTP, the call
proven by the node's engine on the sliced system (every slice) and fulfilled on chain once by the call settler."""

from __future__ import annotations

import json

import pytest
from escrow_helpers import OWNER_SHARE_BPS, PRICE, AppFactory, EscrowEnv, mlp_input, wait_status
from fastapi.testclient import TestClient

from proofmarket.chain.types import RequestStatus
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.ids import SLICED_SYSTEM

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def test_a_sliced_models_escrow_request_is_proven_by_the_node_and_fulfilled_once(env: EscrowEnv,
                                                                                 make_app: AppFactory) -> None:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    sliced_id = env.ws.compile_sliced(sample_path("mlp"), samples, 2, profile=PrivacyProfile(),
                                      candidates=[Candidate(256, 2, 7, 1)]).model_id
    env.market.register_model(sliced_id, PRICE, OWNER_SHARE_BPS)
    receipt = env.market.request(sliced_id, mlp_input())
    app = make_app()
    app.state.services.catalog.register(sliced_id, price_atomic=2_500_000)
    with TestClient(app) as client:
        wait_status(client, receipt.request_id, ("seen",), timeout_s=30)
        posted = client.post(f"/v1/requests/{receipt.request_id}/input", json={"input": mlp_input()})
        assert posted.status_code == 202, posted.text
        done = wait_status(client, receipt.request_id, ("fulfilled", "failed"))
        bundle = client.get(f"/v1/proofs/{done['bundle_cid']}",
                            headers={"X-Job-Token": posted.json()["access_token"]}).json()
    assert done["status"] == "fulfilled", done
    assert bundle["kind"] == "proofmarket/sliced-bundle" and len(bundle["slices"]) == 2
    onchain = env.market.market.get_request(receipt.request_id)
    assert onchain.status is RequestStatus.FULFILLED
    assert onchain.output_hash == bytes.fromhex(bundle["output"]["hash"][2:])  # the last slice's output
    jobs = [j for j in app.state.services.calls.repo.recent(50) if j.bundle_cid == done["bundle_cid"]]
    assert jobs and jobs[0].system == SLICED_SYSTEM and jobs[0].rail == "escrow" and jobs[0].status == "settled"
