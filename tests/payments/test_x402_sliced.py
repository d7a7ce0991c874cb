"""A sliced model sold by a node over x402 (``systems/ezkl/sliced_system.py``): listed like any model, one paid call
proves its slices on the node's prover pool, is charged once, and its paid bundle (receipt and all) verifies at the
node and here; a bundle with a slice taken from another call is refused."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from paid_node import ADMIN, serve_node
from x402 import x402ClientSync
from x402.http.clients import x402_requests
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402_helpers import Chain, Served, funded_wallet, mlp_input, node_settings

from proofmarket.core.errors import VerificationFailed
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client
from proofmarket.store import LocalStore
from proofmarket.systems import verify_bundle_any
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.ids import SLICED_SYSTEM
from proofmarket.systems.workspace import Workspace

PRICE = 7_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sliced_id(home: Path, chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> str:
    ws = Workspace(node_settings(home, tmp_path_factory.mktemp("unused") / "unused.db", chain.rpc_url,
                                 chain.deployment_file, payments="off"))
    try:
        samples = json.loads(sample_path("mlp", "samples").read_text())
        return str(ws.compile_sliced(sample_path("mlp"), samples, 2, profile=PrivacyProfile(),
                                     candidates=[Candidate(256, 2, 7, 1)]).model_id)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, sliced_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_node(home, tmp_path_factory.mktemp("sliced-db") / "node.db", chain, sliced_id, PRICE,
                    prover_workers=2) as served:
        yield served


def paying(chain: Chain, tag: str) -> tuple[requests.Session, str]:
    wallet = funded_wallet(chain, f"sliced-{tag}", 10 * PRICE)
    client = x402ClientSync()
    register_exact_evm_client(client, EthAccountSigner(wallet), networks=chain.network)
    client.set_spend_controls({"allowed_assets": [{"network": chain.network, "asset": chain.usdc.address}]})
    return x402_requests(client), wallet.address


def test_a_sliced_model_is_listed_paid_once_and_its_paid_bundle_verifies(node: Served, chain: Chain, home: Path,
                                                                         sliced_id: str, tmp_path: Path) -> None:
    listed = requests.get(f"{node.url}/v1/models/{sliced_id}", timeout=30).json()
    assert listed["mode"] == "proven" and len(listed["sliced"]["slices"]) == 2, listed  # its public fields: the slices
    pay, payer = paying(chain, "once")
    before = chain.balances(payer)[0]
    answer = pay.post(f"{node.url}/v1/models/{sliced_id}/infer", json=mlp_input(), timeout=300)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["system"] == SLICED_SYSTEM and body["receipt"] is not None
    assert chain.balances(payer)[0] == before - PRICE  # one call, one charge, two slices
    bundle = body["bundle"]
    assert len(bundle["slices"]) == 2 and bundle["output"]["values"] == body["output"]
    paid = requests.get(f"{node.url}/v1/proofs/{body['bundle_cid']}", timeout=30,
                        headers={"X-Job-Token": body["access_token"]}).json()
    assert paid["slices"] == bundle["slices"]
    here = verify_bundle_any({**bundle, "payment": body["payment"], "receipt": body["receipt"]},
                             LocalStore(home / "store"))
    assert here.valid and any("receipt" in c for c in here.checks), here.checks
    verdict = requests.post(f"{node.url}/v1/verify", json=bundle, timeout=60).json()
    assert verdict["valid"] is True and verdict["model_id"] == sliced_id, verdict
    # the SDK, from an empty cache: the slices' artifacts fetched from the node by CID, every slice and link checked
    with Client(node.url, cache_dir=tmp_path / "sdk-cache") as sdk, \
            pytest.raises(VerificationFailed, match="dev"):  # a dev SRS is refused off the devnet
        sdk.verify(bundle)
    with Client(node.url, devnet=True, cache_dir=tmp_path / "sdk-cache") as sdk:
        checked = sdk.verify(bundle)
    assert checked.valid and any("links hold" in c for c in checked.checks), checked.checks
    # a second call's last slice in this bundle: the node's verifier refuses the broken link
    other = pay.post(f"{node.url}/v1/models/{sliced_id}/infer",
                     json={"input_data": [[0.1 * i for i in range(8)]]}, timeout=300).json()["bundle"]
    spliced: dict[str, Any] = copy.deepcopy(bundle)
    spliced["slices"][1], spliced["output"] = other["slices"][1], other["output"]
    refused = requests.post(f"{node.url}/v1/verify", json=spliced, timeout=60).json()
    assert refused["valid"] is False and "link" in refused["reason"], refused
    # the web app's verifier (verify.js with EZKL's WASM engine, in Node): the artifacts by CID from the node
    results = {}
    for doc, valid in ((bundle, True), (spliced, False)):
        path = tmp_path / f"page-{valid}.json"
        path.write_text(json.dumps(doc))
        done = subprocess.run(["node", str(ROOT / "scripts" / "verify_bundle.mjs"), node.url, str(path)],
                              capture_output=True, text=True, timeout=300)
        results[valid] = json.loads(done.stdout.strip().splitlines()[-1])
    assert results[True]["valid"] is True and any("links hold" in c for c in results[True]["checks"]), results
    assert results[True]["output"] == bundle["output"]["values"]  # what the page shows: the proven output
    assert results[False]["valid"] is False and "link between slices 1 and 2" in results[False]["error"], results
    check = requests.get(f"{node.url}/v1/ledger/check", headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=60).json()
    assert check["ok"], check["differences"]
